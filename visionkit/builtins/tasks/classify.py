"""The classify task: top-k classes with probabilities for each image."""

from __future__ import annotations

import time

from visionkit.registry import Task
from visionkit.tasks.scores import class_names, to_probabilities


class ClassifyTask(Task):
    """Top-k classes with probabilities (``topk``, default 5, best first). The annotated image that
    ``visionkit run`` saves carries the best class and its probability (``visionkit.tasks.pipeline.render``)."""

    name = "classify"
    description = "top-k classes with probabilities"
    default_model = "digits"

    def run(self, model, images, topk=5, batch_size=None, **options):
        import numpy as np

        from visionkit.tasks.preprocess import Preprocessor
        from visionkit.tasks.results import ClassScore, Result

        images = list(images)
        if not images:
            return []
        topk = max(1, int(topk))
        t0 = time.perf_counter()
        pre = Preprocessor.from_model(model)
        arrays = [pre.to_array(im) for im in images]
        t1 = time.perf_counter()
        # one predict per input shape (all the same when the model has a fixed size)
        groups = {}
        for i, a in enumerate(arrays):
            groups.setdefault(a.shape, []).append(i)
        scores = [None] * len(arrays)
        for idx in groups.values():
            batch = np.stack([arrays[i] for i in idx])
            out = model.predict(batch, batch_size=batch_size or len(idx))
            if isinstance(out, (list, tuple)):
                raise ValueError(f"model {getattr(model, 'name', '?')!r} has {len(out)} outputs; "
                                 "classify needs a model with one")
            for j, i in enumerate(idx):
                scores[i] = np.asarray(out[j]).reshape(-1)
        t2 = time.perf_counter()
        probs = to_probabilities(np.stack(scores))
        names = class_names(model, probs.shape[1])
        k = min(topk, probs.shape[1])
        results = []
        for img, row in zip(images, probs):
            order = np.argsort(-row, kind="stable")[:k]
            results.append(Result(
                source="", width=int(img.shape[1]), height=int(img.shape[0]), task=self.name,
                model=str(getattr(model, "name", "")),
                classes=[ClassScore(int(c), names[c], float(row[c])) for c in order]))
        t3 = time.perf_counter()
        n = len(images)
        times = {"preprocess": (t1 - t0) * 1e3 / n, "inference": (t2 - t1) * 1e3 / n,
                 "postprocess": (t3 - t2) * 1e3 / n}
        for r in results:
            r.times_ms = dict(times)
        return results
