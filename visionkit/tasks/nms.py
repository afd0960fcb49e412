"""Non-max suppression, as torchvision.ops.nms / batched_nms define it.

Boxes are (x1, y1, x2, y2) in pixels; a box's area is (x2 - x1) * (y2 - y1). Greedy: take the highest score,
drop every remaining box whose IoU with it is GREATER than the threshold, repeat. Ties in score keep the
earlier box first (a stable sort), so the result does not depend on the sort's whims.

``nms_contained`` is the same greedy pass with another overlap: the intersection over the smaller box's area, so a
box lying mostly inside a better one goes (a part of an object found as an object), which IoU misses when the
two differ in size.
"""

import numpy as np


def _areas_and_intersections(a, b):
    """For boxes a (N, 4) and b (M, 4): their areas (N,) and (M,) and every pairwise intersection (N, M), empty
    boxes counting 0."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    return area_a, area_b, w * h


def _ratio(inter, denominator):
    return np.where(denominator > 0, inter / np.where(denominator > 0, denominator, 1), 0.0)


def box_iou(a, b):
    """IoU of every box in a (N, 4) with every box in b (M, 4): an (N, M) array. Empty boxes have IoU 0."""
    area_a, area_b, inter = _areas_and_intersections(a, b)
    return _ratio(inter, area_a[:, None] + area_b[None, :] - inter)


def box_overlap_smaller(a, b):
    """The intersection of every box in a (N, 4) with every box in b (M, 4) over the smaller of the two areas: an
    (N, M) array, 1 where one box lies inside the other. Empty boxes give 0."""
    area_a, area_b, inter = _areas_and_intersections(a, b)
    return _ratio(inter, np.minimum(area_a[:, None], area_b[None, :]))


def nms(boxes, scores, iou_threshold=0.5, classes=None, max_detections=None):
    """Indices of the boxes kept, highest score first.

    classes: per-box class ids; when given, boxes only suppress boxes of their own class (torchvision's
    batched_nms); None suppresses across classes (class-agnostic). max_detections caps the result.
    """
    return _greedy(boxes, scores, iou_threshold, classes, max_detections, box_iou, "nms")


def nms_contained(boxes, scores, threshold=0.5, classes=None, max_detections=None):
    """``nms`` with the overlap measured as ``box_overlap_smaller``: a box goes when more than ``threshold`` of
    the smaller of it and a better box lies inside the other. Indices of the boxes kept, highest score first."""
    return _greedy(boxes, scores, threshold, classes, max_detections, box_overlap_smaller, "nms_contained")


def _greedy(boxes, scores, iou_threshold, classes, max_detections, overlap, what):
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"{what}: {len(boxes)} boxes but {len(scores)} scores")
    if classes is not None:
        classes = np.asarray(classes).reshape(-1)
        if len(classes) != len(boxes):
            raise ValueError(f"{what}: {len(boxes)} boxes but {len(classes)} class ids")
        # offsetting each class's boxes far apart makes one class-agnostic pass do per-class suppression
        span = (np.abs(boxes).max() if boxes.size else 0.0) * 2 + 1
        boxes = boxes + (np.unique(classes, return_inverse=True)[1] * span)[:, None]
    order = np.argsort(-scores, kind="stable")
    keep = []
    limit = len(order) if max_detections is None else int(max_detections)
    while order.size and len(keep) < limit:
        i = order[0]
        keep.append(int(i))
        if order.size == 1:
            break
        iou = overlap(boxes[i], boxes[order[1:]])[0]
        order = order[1:][~(iou > iou_threshold)]
    return np.asarray(keep, np.int64)
