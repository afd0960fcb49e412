"""Detection metrics: average precision (PASCAL VOC and COCO flavours), mean AP over classes and IoU thresholds,
precision / recall curves, and a greedy box matcher for comparing two detectors.

One image's boxes may be given as

* a list of :class:`visionkit.tasks.results.Box` (or a detect-task ``Result``, whose ``boxes`` are used);
* a dict ``{"boxes": (N, 4), "scores": (N,), "classes": (N,), "difficult": (N,)}`` (scores, classes and
  difficult optional; "labels" or "class_ids" also name the classes);
* a tuple of arrays: for detections ``(boxes, scores)`` or ``(boxes, scores, classes)``, for ground truth
  ``(boxes,)``, ``(boxes, classes)`` or ``(boxes, classes, difficult)``;
* a bare (N, 4) array (scores 1.0 in input order, class 0).

Boxes are (x1, y1, x2, y2) pixel corners. Several images are a *list* of such entries, one per image.

Matching (per class, per IoU threshold): detections of all images are sorted by score, highest first (stable, so
equal scores keep input order); each one takes the highest-IoU still-unmatched ground truth of its class in its
image with IoU >= the threshold and counts as a true positive, otherwise as a false positive. Ground truth flagged
"difficult" (VOC) is not counted in the number of positives, and a detection whose only match at the threshold is a
difficult box is ignored: neither true nor false positive (a difficult box may absorb any number of detections).
A class with no (non-difficult) ground truth has an undefined AP, reported as NaN and left out of the mean.
"""

from dataclasses import dataclass, field

import numpy as np

from ..tasks.nms import box_iou

#: COCO's IoU thresholds 0.50:0.05:0.95.
COCO_IOU_THRESHOLDS = tuple(float(t) for t in np.round(np.linspace(0.5, 0.95, 10), 2))

METHODS = ("voc2010", "voc2007", "coco101")
_METHOD_ALIASES = {"voc2010": "voc2010", "voc": "voc2010", "all": "voc2010", "allpoints": "voc2010",
                   "all-points": "voc2010", "voc2007": "voc2007", "11point": "voc2007", "11-point": "voc2007",
                   "coco101": "coco101", "coco": "coco101", "101point": "coco101", "101-point": "coco101"}


@dataclass
class _Boxes:
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    difficult: np.ndarray

    def __len__(self):
        return len(self.boxes)

    def select(self, mask):
        return _Boxes(self.boxes[mask], self.scores[mask], self.classes[mask], self.difficult[mask])


def _is_box(x):
    return all(hasattr(x, a) for a in ("x1", "y1", "x2", "y2"))


def _column(values, n, dtype, default, what):
    if values is None:
        return np.full(n, default, dtype)
    a = np.asarray(values).reshape(-1)
    if a.size != n:
        raise ValueError(f"{n} boxes but {a.size} {what}")
    return a.astype(dtype)


def _make(boxes, scores=None, classes=None, difficult=None):
    b = np.asarray(boxes, np.float64)
    if b.size == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) x1, y1, x2, y2 corners, got shape {b.shape}")
    n = len(b)
    return _Boxes(b, _column(scores, n, np.float64, 1.0, "scores"), _column(classes, n, np.int64, 0, "classes"),
                  _column(difficult, n, bool, False, "difficult flags"))


def _one_image(x, truth):
    """Normalise one image's detections (truth=False) or ground truth (truth=True) to _Boxes."""
    if isinstance(x, _Boxes):
        return x
    if hasattr(x, "boxes") and not isinstance(x, dict):        # a visionkit Result
        x = list(x.boxes)
    if isinstance(x, dict):
        classes = next((x[k] for k in ("classes", "labels", "class_ids") if k in x), None)
        return _make(x["boxes"], None if truth else x.get("scores"), classes, x.get("difficult"))
    if isinstance(x, (list, tuple)) and (len(x) == 0 or _is_box(x[0])):
        return _make([[b.x1, b.y1, b.x2, b.y2] for b in x], [getattr(b, "score", 1.0) for b in x],
                     [getattr(b, "class_id", 0) for b in x],
                     [bool(getattr(b, "difficult", False)) for b in x])
    if isinstance(x, tuple):
        if truth:
            return _make(*x[:3]) if len(x) == 1 else _make(x[0], None, *x[1:3])
        return _make(*x[:3])
    return _make(x)


def _looks_like_one_image(x):
    if isinstance(x, (dict, tuple, np.ndarray, _Boxes)) or hasattr(x, "boxes"):
        return True
    if isinstance(x, list):
        if len(x) == 0 or _is_box(x[0]):
            return True
        first = x[0]
        # a nested list of numbers, [[x1, y1, x2, y2], ...], is one image's box array
        return np.ndim(first) == 1 and len(first) == 4 and all(np.isscalar(v) for v in first)
    return True


def _images(x, truth):
    """A list of per-image _Boxes from one image's entry or a list of them."""
    if _looks_like_one_image(x):
        return [_one_image(x, truth)]
    return [_one_image(e, truth) for e in x]


def _method(method):
    key = str(method).lower().replace("_", "")
    if key not in _METHOD_ALIASES:
        raise ValueError(f"unknown AP method {method!r}; choose one of {', '.join(METHODS)}")
    return _METHOD_ALIASES[key]


def _ap_from_curve(precision, recall, method):
    """AP of a precision / recall curve whose points are in decreasing score order."""
    precision = np.asarray(precision, np.float64)
    recall = np.asarray(recall, np.float64)
    if method == "voc2007":
        # mean over recall 0, 0.1, ..., 1 of the best precision at that recall or beyond
        out = 0.0
        for t in np.linspace(0, 1, 11):
            p = precision[recall >= t - 1e-12]
            out += (p.max() if p.size else 0.0) / 11
        return float(out)
    # the precision envelope: the best precision at this recall or any larger one
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if precision.size else precision
    if method == "coco101":
        # at each recall point 0, 0.01, ..., 1: the envelope at the first detection reaching it, 0 if none does
        idx = np.searchsorted(recall, np.linspace(0, 1, 101) - 1e-12, side="left")
        vals = np.zeros(101)
        reached = idx < len(envelope)
        vals[reached] = envelope[idx[reached]]
        return float(np.mean(vals))
    # voc2010: the area under the envelope, summed where recall changes
    r = np.concatenate([[0.0], recall])
    return float(np.sum((r[1:] - r[:-1]) * envelope))


@dataclass
class PRCurve:
    """One class's precision / recall after each detection (highest score first), and the scores there."""

    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray
    ap: float = float("nan")
    num_positives: int = 0


def _match_image(det, truth, iou_threshold):
    """Greedy matching within one image and one class. det must be sorted by score. Returns per-detection status
    (1 TP, 0 FP, -1 ignored) and the matched truth index (-1 if none)."""
    status = np.zeros(len(det), np.int64)
    matched_to = np.full(len(det), -1, np.int64)
    if len(truth) == 0 or len(det) == 0:
        return status, matched_to
    iou = box_iou(det.boxes, truth.boxes)
    taken = np.zeros(len(truth), bool)
    for i in range(len(det)):
        row = iou[i]
        ok = (row >= iou_threshold) & ~truth.difficult & ~taken
        if ok.any():
            j = int(np.argmax(np.where(ok, row, -1.0)))
            taken[j] = True
            status[i], matched_to[i] = 1, j
        elif np.any((row >= iou_threshold) & truth.difficult):
            status[i] = -1
            matched_to[i] = int(np.argmax(np.where(truth.difficult, row, -1.0)))
    return status, matched_to


def _class_curve(dets, truths, class_id, iou_threshold, method):
    """PRCurve for one class over all images (class_id None: every box, class-agnostic)."""
    per_det_scores, per_det_status = [], []
    npos = 0
    for det, truth in zip(dets, truths):
        if class_id is not None:
            det = det.select(det.classes == class_id)
            truth = truth.select(truth.classes == class_id)
        npos += int(np.sum(~truth.difficult))
        order = np.argsort(-det.scores, kind="stable")
        det = det.select(order)
        status, _ = _match_image(det, truth, iou_threshold)
        per_det_scores.append(det.scores)
        per_det_status.append(status)
    scores = np.concatenate(per_det_scores) if per_det_scores else np.zeros(0)
    status = np.concatenate(per_det_status) if per_det_status else np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")
    scores, status = scores[order], status[order]
    keep = status >= 0
    scores, status = scores[keep], status[keep]
    tp = np.cumsum(status == 1)
    fp = np.cumsum(status == 0)
    precision = tp / np.maximum(tp + fp, 1)
    if npos == 0:
        return PRCurve(precision, np.full(len(tp), np.nan), scores, float("nan"), 0)
    recall = tp / npos
    return PRCurve(precision, recall, scores, _ap_from_curve(precision, recall, method), npos)


def average_precision(detections, ground_truth, iou_threshold=0.5, method="voc2010", class_id=None):
    """AP of one class's detections against its ground truth, over one image or a list of images.

    method: "voc2010" (the area under the precision envelope at every recall step, VOC 2010+), "voc2007" (the
    11-point interpolation) or "coco101" (COCO's 101 recall points). class_id: score only that class's boxes;
    None treats every box as one class. NaN when there is no (non-difficult) ground truth.
    """
    dets, truths = _images(detections, False), _images(ground_truth, True)
    if len(dets) != len(truths):
        raise ValueError(f"detections for {len(dets)} images but ground truth for {len(truths)}")
    return _class_curve(dets, truths, class_id, float(iou_threshold), _method(method)).ap


@dataclass
class DetectionMetrics:
    """mean_average_precision's answer.

    ap: (num_classes, len(iou_thresholds)) AP per class and threshold (NaN for a class without ground truth);
    per_class_ap: {class_id: AP averaged over the thresholds}; map: their mean over classes with ground truth;
    map_per_threshold: {threshold: mAP}; curves: {threshold: {class_id: PRCurve}}.
    """

    iou_thresholds: tuple
    method: str
    ap: np.ndarray
    per_class_ap: dict
    map: float
    map_per_threshold: dict
    curves: dict = field(repr=False)
    class_names: list = None

    def name(self, class_id):
        if self.class_names and 0 <= class_id < len(self.class_names):
            return str(self.class_names[class_id])
        return str(class_id)

    def pr_curves(self, iou_threshold=None):
        """{class name: PRCurve} at one threshold (the first by default), classes with ground truth only."""
        t = self.iou_thresholds[0] if iou_threshold is None else float(iou_threshold)
        if t not in self.curves:
            raise KeyError(f"no curves at IoU {t}; thresholds are {self.iou_thresholds}")
        return {self.name(c): cur for c, cur in self.curves[t].items() if cur.num_positives > 0}

    def to_dict(self):
        return {"method": self.method, "iou_thresholds": list(self.iou_thresholds),
                "map": None if np.isnan(self.map) else self.map,
                "map_per_threshold": {str(t): (None if np.isnan(v) else v) for t, v in self.map_per_threshold.items()},
                "per_class_ap": {self.name(c): (None if np.isnan(v) else v) for c, v in self.per_class_ap.items()}}


def _nanmean(a):
    a = np.asarray(a, np.float64)
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else float("nan")


def mean_average_precision(per_image_detections, per_image_ground_truth, iou_thresholds=(0.5,), num_classes=None,
                           method="voc2010", class_names=None):
    """Per-class AP, mAP and precision / recall curves over a set of images.

    per_image_detections / per_image_ground_truth: lists with one entry per image (see the module docstring for
    the accepted forms). iou_thresholds: a number, a sequence, or "coco" for 0.50:0.05:0.95. num_classes: the
    class ids are 0..num_classes-1 (inferred from the largest id seen when None). method: as average_precision.
    """
    dets, truths = _images(per_image_detections, False), _images(per_image_ground_truth, True)
    if len(dets) != len(truths):
        raise ValueError(f"detections for {len(dets)} images but ground truth for {len(truths)}")
    if isinstance(iou_thresholds, str):
        if iou_thresholds.lower() != "coco":
            raise ValueError(f"iou_thresholds: a number, a sequence or 'coco', got {iou_thresholds!r}")
        iou_thresholds = COCO_IOU_THRESHOLDS
    thresholds = tuple(float(t) for t in np.atleast_1d(np.asarray(iou_thresholds, np.float64)))
    if not thresholds or any(not 0 < t <= 1 for t in thresholds):
        raise ValueError(f"IoU thresholds must lie in (0, 1], got {thresholds}")
    method = _method(method)
    seen = np.concatenate([x.classes for x in dets + truths]) if dets else np.zeros(0, np.int64)
    if num_classes is None:
        num_classes = int(seen.max()) + 1 if seen.size else (len(class_names) if class_names else 0)
    num_classes = int(num_classes)
    if seen.size and (seen.min() < 0 or seen.max() >= num_classes):
        raise ValueError(f"class ids {int(seen.min())}..{int(seen.max())} outside [0, {num_classes})")
    ap = np.full((num_classes, len(thresholds)), np.nan)
    curves = {}
    for ti, t in enumerate(thresholds):
        curves[t] = {}
        for c in range(num_classes):
            cur = _class_curve(dets, truths, c, t, method)
            curves[t][c] = cur
            ap[c, ti] = cur.ap
    per_class = {c: _nanmean(ap[c]) for c in range(num_classes)}
    return DetectionMetrics(
        iou_thresholds=thresholds, method=method, ap=ap, per_class_ap=per_class,
        map=_nanmean(list(per_class.values())),
        map_per_threshold={t: _nanmean(ap[:, ti]) for ti, t in enumerate(thresholds)},
        curves=curves, class_names=list(class_names) if class_names is not None else None)


def match_boxes(pred, truth, iou_threshold=0.5, class_aware=True):
    """Greedy one-to-one matching of one image's predicted boxes to reference boxes.

    Predictions are taken highest score first (input order for bare arrays); each takes the highest-IoU unmatched
    reference box with IoU >= iou_threshold (of the same class when class_aware). Returns a list of
    ``(pred_index, truth_index, iou)`` in that order, indices into the inputs as given; a prediction or reference
    box absent from the list went unmatched.
    """
    p, t = _one_image(pred, False), _one_image(truth, True)
    t = _Boxes(t.boxes, t.scores, t.classes, np.zeros(len(t), bool))
    iou = box_iou(p.boxes, t.boxes)
    if class_aware:
        iou = np.where(p.classes[:, None] == t.classes[None, :], iou, -1.0)
    taken = np.zeros(len(t), bool)
    pairs = []
    for i in np.argsort(-p.scores, kind="stable"):
        if len(t) == 0:
            break
        row = np.where(taken, -1.0, iou[i])
        j = int(np.argmax(row))
        if row[j] >= iou_threshold and row[j] >= 0:
            taken[j] = True
            pairs.append((int(i), j, float(iou[i, j])))
    return pairs
