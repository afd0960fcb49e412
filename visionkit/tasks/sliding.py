"""The textbooks' sliding-window detector, built from any image classifier.

A classifier trained on W x W windows is turned into a fully-convolutional network (``model.
to_fully_convolutional()``): one pass over an image gives the class scores of every window position at once,
position (i, j) scoring the window whose top-left corner is (i * s, j * s), s being the product of the strides
before the head. An image pyramid (``visionkit.tasks.pyramid``) makes objects of every size between ``min_size``
and ``max_size`` fill the window at some level. Each window becomes a box with its best class and probability;
windows below ``conf`` are dropped and non-max suppression keeps the best of the overlapping ones.

    detector = SlidingWindowDetector(classifier)              # the card gives window size, channels, mean/std
    boxes = detector.detect(image, conf=0.8, iou=0.3, min_size=28, max_size=112)

Scores and classes:
    - the model's outputs are turned into probabilities (``visionkit.tasks.scores.to_probabilities``: softmax
      unless the model ends in one);
    - a background class (the card's ``background_class``, or a class named "background") is never reported; a
      window's score is then its best non-background probability. Without one every window has a class, and
      ``conf`` alone separates objects from the rest.

Grouping the windows (each optional; the defaults keep plain per-class NMS). An object is seen by many windows, at
neighbouring positions and pyramid levels; a false alarm usually by few. For each window above ``conf`` its
"cluster" is the windows above ``conf`` of its class that overlap it with IoU > 0.5 (itself included), and v the sum
of their probabilities:
    - ``votes`` (> 0): a box's score becomes its probability times 1 - exp(-v / votes), so a box seen by about
      ``votes`` confident windows keeps 63% of its probability and a lone window 1 - exp(-1 / votes) of it; boxes
      whose score then falls below ``conf`` are dropped;
    - ``merge``: after NMS each kept box becomes the probability-weighted mean of its cluster's boxes (box voting),
      steadier than any one window's regression;
    - ``contain`` (0..1): after NMS a box is also dropped when more than this fraction of the smaller of it and a
      better box lies inside the other (``visionkit.tasks.nms.nms_contained``): a stroke of a large digit read
      as a "1" inside the digit's own box overlaps it with a small IoU, and NMS alone keeps it.

Box regression (optional): a model with a second output of 4 values per window refines each box. The four
numbers are the box centre (x, y) as fractions of the window (0..1 from its left/top edge) and the square roots
of the box width and height as fractions of the window's (sqrt(w / W), sqrt(h / H)), the parametrisation the
textbook recommends so that errors on small boxes weigh more. Without it a box is the window itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .nms import box_iou, nms, nms_contained
from .preprocess import Preprocessor
from .pyramid import pyramid_scales, resize_for_scale
from .results import Box
from .scores import background_index, class_names, to_probabilities


def _map_stride(fcn, window):
    """The stride (pixels between neighbouring window positions) of a fully-convolutional model, from the shapes
    its layers give for a window-sized and a larger input. (rows, cols) of a window-sized input must be 1 x 1."""
    (wh, ww), extra = window, 720  # 720 is divisible by every stride a CNN is likely to have (2..6, 8, 9, 10...)

    def grid(h, w):
        out = fcn.predict(np.zeros((1, fcn.inputs[0].shape[1], h, w), np.float32))
        out = out[0] if isinstance(out, list) else out
        return out.shape[2], out.shape[3]

    r0, c0 = grid(wh, ww)
    if (r0, c0) != (1, 1):
        raise ValueError(f"a {wh}x{ww} window gives a {r0}x{c0} score map, not one score: the classifier's "
                         f"input size and its head disagree")
    r1, c1 = grid(wh + extra, ww + extra)
    if r1 <= 1 or c1 <= 1 or extra % (r1 - 1) or extra % (c1 - 1):
        raise ValueError("cannot tell the window stride of the fully convolutional model")
    return extra // (r1 - 1), extra // (c1 - 1)


@dataclass
class WindowScores:
    """One pyramid level: ``probs`` (rows, cols, classes), ``boxes`` (rows, cols, 4) in original-image pixels
    (the windows, refined by box regression when the model has it), and the level's scale (y, x)."""

    probs: np.ndarray
    boxes: np.ndarray
    scale: tuple


class SlidingWindowDetector:
    """A classifier slid over an image pyramid in one fully-convolutional pass per level (see the module doc)."""

    def __init__(self, model, batch_size=1):
        self.model = model
        card = Preprocessor.from_model(model)
        if card.input_size is None:
            raise ValueError(f"model {getattr(model, 'name', '?')!r} has no fixed input size: a sliding-window "
                             f"detector needs the classifier's window size (set preprocessing.input_size)")
        self.window = card.input_size
        # the FCN sees each pyramid level at its own size, with the classifier's channels and normalisation
        self.pre = Preprocessor(card.channels, None, card.scale, card.mean, card.std)
        self.fcn = model.to_fully_convolutional()
        self.stride = _map_stride(self.fcn, self.window)
        outs = self.fcn.outputs
        self.has_regression = len(outs) == 2 and outs[1].shape[1] == 4
        if len(outs) > 1 and not self.has_regression:
            raise ValueError(f"model {getattr(model, 'name', '?')!r} has {len(outs)} outputs; a sliding-window "
                             f"detector takes class scores and, optionally, a second output of 4 box values")
        self.num_classes = outs[0].shape[1]
        self.names = class_names(model, 2 if self.num_classes == 1 else self.num_classes)
        self.background = background_index(model, self.names)
        if self.num_classes == 1 and self.background is None:
            self.background = 0  # one sigmoid output: column 0 is "not the object"

    def scales(self, image, min_size=None, max_size=None, factor=0.709):
        return pyramid_scales(image.shape[0], image.shape[1], self.window, min_size, max_size, factor)

    def level(self, image, scale, step=1, times=None):
        """WindowScores of one pyramid level (``step``: keep every step-th window position). ``times``, a dict,
        gets the milliseconds spent in preprocess / inference / postprocess added."""
        t0 = time.perf_counter()
        h, w = image.shape[:2]
        small = resize_for_scale(image, scale)
        sy, sx = small.shape[0] / h, small.shape[1] / w  # the actual scales after rounding the size
        x = self.pre.to_array(small)[None]
        t1 = time.perf_counter()
        outs = self.fcn.predict(x, batch_size=1)
        t2 = time.perf_counter()
        scores, reg = (outs[0], outs[1]) if self.has_regression else (outs, None)
        scores = scores[0, :, ::step, ::step]
        k, rows, cols = scores.shape
        probs = to_probabilities(scores.reshape(k, -1).T).reshape(rows, cols, -1)
        (wh, ww), (th, tw) = self.window, self.stride
        y0 = (np.arange(rows) * th * step)[:, None].astype(np.float64)
        x0 = (np.arange(cols) * tw * step)[None, :].astype(np.float64)
        if reg is None:
            cx, cy = x0 + ww / 2, y0 + wh / 2
            bw, bh = np.full((rows, cols), float(ww)), np.full((rows, cols), float(wh))
        else:
            r = reg[0, :, ::step, ::step].astype(np.float64)
            cx, cy = x0 + r[0] * ww, y0 + r[1] * wh
            bw, bh = r[2] ** 2 * ww, r[3] ** 2 * wh
        cx, cy = np.broadcast_to(cx, (rows, cols)), np.broadcast_to(cy, (rows, cols))
        boxes = np.stack([(cx - bw / 2) / sx, (cy - bh / 2) / sy, (cx + bw / 2) / sx, (cy + bh / 2) / sy], axis=-1)
        if times is not None:
            for k, dt in (("preprocess", t1 - t0), ("inference", t2 - t1), ("postprocess", time.perf_counter() - t2)):
                times[k] = times.get(k, 0.0) + dt * 1e3
        return WindowScores(probs, boxes, (sy, sx))

    def detect(self, image, *, conf=0.5, iou=0.45, agnostic=False, max_det=300, min_size=None, max_size=None,
               factor=0.709, stride=None, votes=0.0, merge=False, contain=None, times=None):
        """Boxes (visionkit Box, best first) in ``image`` (H x W x C uint8). ``stride``: pixels between windows
        at each level (rounded to a multiple of the network's own, which is the default). ``votes``, ``merge``,
        ``contain``: grouping the windows (module doc). ``times``: as in ``level``."""
        step = 1 if stride is None else max(1, int(round(stride / max(self.stride))))
        found_boxes, found_scores, found_classes = [], [], []
        for scale in self.scales(image, min_size, max_size, factor):
            lv = self.level(image, scale, step, times)
            probs = lv.probs.reshape(-1, lv.probs.shape[-1]).copy()
            if self.background is not None:
                probs[:, self.background] = -1.0
            cls = probs.argmax(axis=1)
            score = probs[np.arange(len(cls)), cls]
            keep = score >= conf
            found_boxes.append(lv.boxes.reshape(-1, 4)[keep])
            found_scores.append(score[keep])
            found_classes.append(cls[keep])
        t0 = time.perf_counter()
        boxes = self._suppress(image, found_boxes, found_scores, found_classes, iou, agnostic, max_det,
                               conf, votes, merge, contain)
        if times is not None:
            times["postprocess"] = times.get("postprocess", 0.0) + (time.perf_counter() - t0) * 1e3
        return boxes

    def _suppress(self, image, found_boxes, found_scores, found_classes, iou, agnostic, max_det, conf=0.0,
                  votes=0.0, merge=False, contain=None):
        if not found_boxes or not sum(len(s) for s in found_scores):
            return []
        boxes, probs = np.concatenate(found_boxes), np.concatenate(found_scores)
        classes = np.concatenate(found_classes)
        h, w = image.shape[:2]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        windows = boxes, probs, classes  # every window above conf: the clusters votes and merge count on
        scores = probs
        if votes:
            support = np.concatenate([_cluster_weights(*windows, np.arange(i, min(i + 512, len(probs))))
                                      .sum(axis=1) for i in range(0, len(probs), 512)])
            scores = probs * (1.0 - np.exp(-support / float(votes)))
            keep = scores >= conf
            boxes, classes, scores = boxes[keep], classes[keep], scores[keep]
        limit = max_det if contain is None else None  # the containment pass may drop some: cap after it
        kept = nms(boxes, scores, iou, classes=None if agnostic else classes, max_detections=limit)
        boxes = boxes[kept]
        if merge and len(kept):
            weights = _cluster_weights(*windows, rows=None, queries=(boxes, classes[kept]))
            total = weights.sum(axis=1, keepdims=True)  # 0 only for an empty (zero-area) box: it stays as it is
            boxes = np.where(total > 0, weights @ windows[0] / np.where(total > 0, total, 1.0), boxes)
        scores, classes = scores[kept], classes[kept]
        if contain is not None and len(kept):
            keep = nms_contained(boxes, scores, contain, classes=None if agnostic else classes,
                                 max_detections=max_det)
            boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
        return [Box(*map(float, b), score=float(p), class_id=int(c), name=self.names[c])
                for b, p, c in zip(boxes, scores, classes)]


def _cluster_weights(boxes, probs, classes, rows=None, queries=None, overlap=0.5):
    """The clusters of some windows (``rows``, indices into ``boxes``) or of other boxes (``queries``: (boxes,
    classes)): a (len(rows), n) array whose entry (i, j) is the probability of window j when it has the class of
    row i and overlaps it with IoU > ``overlap``, else 0. A window always counts in its own cluster."""
    qb, qc = (boxes[rows], classes[rows]) if queries is None else queries
    weights = (box_iou(qb, boxes) > overlap) * (qc[:, None] == classes[None, :]) * probs[None, :]
    if queries is None:
        weights[np.arange(len(rows)), rows] = probs[rows]
    return weights
