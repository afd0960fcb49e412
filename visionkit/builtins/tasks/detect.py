"""The detect task: boxes with classes and confidences.

Two kinds of model detect:
    - a cascade detector shipped as a model bundle whose card names it (``"detector": "mtcnn"``): the default model,
      MTCNN, finds faces and their five landmarks (``visionkit.detectors.mtcnn``);
    - any image classifier, slid over an image pyramid in one fully-convolutional pass per level
      (``visionkit.tasks.sliding.SlidingWindowDetector``): its best non-background class and probability per
      window, a score threshold and non-max suppression.
"""

from __future__ import annotations

import importlib
import time
import weakref

from visionkit.registry import Task

# cascade detectors by the name a bundle's card gives: "module:function(bundle, image, **options) -> [Box]"
CASCADES = {"mtcnn": "visionkit.detectors.mtcnn:detect_faces"}


def _cascade(name):
    if name not in CASCADES:
        raise ValueError(f"model card names detector {name!r}; known: {', '.join(sorted(CASCADES))}")
    module, func = CASCADES[name].split(":")
    return getattr(importlib.import_module(module), func)


class DetectTask(Task):
    """Boxes, best first, in each image. Options (all optional):

    conf       minimum score of a box [0.5; MTCNN: its last stage's threshold, 0.7]
    iou        non-max suppression IoU threshold [0.45]
    agnostic   suppress across classes [off: only boxes of the same class suppress each other]
    max_det    at most this many boxes per image [300]
    min_size   smallest object size in pixels [the classifier's window; MTCNN: 20]
    max_size   largest object size in pixels [the image's shorter side]
    factor     pyramid scale step, 0 < factor < 1 [0.709]
    stride     pixels between windows at each level [the network's own]
    votes      sliding window: score boxes by how many confident windows agree on them [0: off]
    merge      sliding window: each kept box becomes the score-weighted mean of its windows [off]
    contain    sliding window: also drop a box when more than this fraction of it lies inside a better box [off]
    (votes, merge, contain: see ``visionkit.tasks.sliding``)

    A model card may set its own defaults for conf, iou, min_size, max_size, factor, agnostic, votes, merge and
    contain under "detect"; an option given (not None) overrides the card's, False and 0 included.
    """

    name = "detect"
    description = "boxes with classes and confidences (MTCNN faces; any classifier as a sliding window)"
    default_model = "mtcnn"

    def __init__(self):
        self._detectors = weakref.WeakKeyDictionary()  # classifier -> its SlidingWindowDetector (FCN built once)

    def _sliding(self, model):
        from visionkit.tasks.sliding import SlidingWindowDetector

        det = self._detectors.get(model)
        if det is None:
            det = self._detectors[model] = SlidingWindowDetector(model)
        return det

    def run(self, model, images, conf=None, iou=None, agnostic=None, max_det=300, min_size=None, max_size=None,
            factor=None, stride=None, votes=None, merge=None, contain=None, **options):
        from visionkit.tasks.results import Result

        meta = getattr(model, "metadata", None) or {}
        # the model card's own defaults ("detect": {"conf": ..., "iou": ..., "min_size": ...}), then the task's
        card = meta.get("detect") if isinstance(meta.get("detect"), dict) else {}
        conf = card.get("conf") if conf is None else conf
        iou = card.get("iou", 0.45) if iou is None else iou
        min_size = card.get("min_size") if min_size is None else min_size
        max_size = card.get("max_size") if max_size is None else max_size
        factor = card.get("factor", 0.709) if factor is None else factor
        agnostic = bool(card.get("agnostic", False) if agnostic is None else agnostic)  # False overrides the card
        votes = card.get("votes", 0.0) if votes is None else votes
        merge = bool(card.get("merge", False) if merge is None else merge)
        contain = card.get("contain") if contain is None else contain
        cascade = meta.get("detector")
        results = []
        for img in images:
            times = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
            t0 = time.perf_counter()
            if cascade:
                kwargs = {"factor": factor}
                if min_size is not None:
                    kwargs["min_size"] = min_size
                if conf is not None:
                    kwargs["thresholds"] = (0.6, 0.7, float(conf))
                boxes = _cascade(cascade)(model, img, **kwargs)[:max_det]
                times["inference"] = (time.perf_counter() - t0) * 1e3
            else:
                det = self._sliding(model)
                boxes = det.detect(img, conf=0.5 if conf is None else conf, iou=iou, agnostic=agnostic,
                                   max_det=max_det, min_size=min_size, max_size=max_size, factor=factor,
                                   stride=stride, votes=votes, merge=merge, contain=contain, times=times)
            results.append(Result(source="", width=int(img.shape[1]), height=int(img.shape[0]), task=self.name,
                                  model=str(getattr(model, "name", "")), boxes=boxes, times_ms=times))
        return results
