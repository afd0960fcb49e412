"""visionkit's built-in tasks, a plugin like any other: its ``register_tasks`` hook registers them.

    classify   top-k classes with probabilities (ClassifyTask)

A task's ``run(model, images, **options)`` takes a model and a list of images (uint8 H x W x C, RGB or one channel,
as ``visionkit.io.read_image`` returns them) and returns one ``visionkit.tasks.results.Result`` per image, with the
per-image stage times in ``times_ms`` (the batch's time divided evenly). ``visionkit run`` (``visionkit.tasks.
pipeline``) fills in each result's source and frame.
"""

from __future__ import annotations

import time

from visionkit.hookspecs import hookimpl
from visionkit.registry import Task


def class_names(model, n):
    """The model card's ``class_names`` when it names all ``n`` outputs, else "class 0" .. "class n-1"."""
    names = (getattr(model, "metadata", None) or {}).get("class_names")
    if isinstance(names, (list, tuple)) and len(names) == n:
        return [str(x) for x in names]
    return [f"class {i}" for i in range(n)]


def to_probabilities(scores):
    """Rows of class scores -> rows of probabilities.

    Some architectures end in a softmax and return probabilities already; others return logits. A row set is taken
    as probabilities when no value is negative and every row sums to 1 (within 1e-3); otherwise a (numerically
    stable) softmax is applied. One output per image is a binary classifier: a sigmoid is applied unless the
    values already lie in [0, 1], and the two classes are (1 - p, p).
    """
    import numpy as np

    s = np.asarray(scores, dtype=np.float64)
    s = s.reshape(s.shape[0], -1)
    if s.shape[1] == 1:
        p = s[:, 0]
        if p.size and (p.min() < 0 or p.max() > 1):
            p = 1.0 / (1.0 + np.exp(-p))
        return np.stack([1 - p, p], axis=1)
    if s.size and s.min() >= -1e-6 and np.allclose(s.sum(axis=1), 1.0, atol=1e-3):
        return np.clip(s, 0.0, 1.0)
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class ClassifyTask(Task):
    """Top-k classes with probabilities (``topk``, default 5, best first). The annotated image that
    ``visionkit run`` saves carries the best class and its probability (``visionkit.tasks.pipeline.render``)."""

    name = "classify"
    description = "top-k classes with probabilities"

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


@hookimpl
def register_tasks(register):
    """Register the built-in tasks."""
    register("classify", ClassifyTask())
