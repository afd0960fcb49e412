"""Scoring a detector or a segmenter on a labelled dataset: run it image by image, compare with the truth.

    det = evaluate_detector(lambda img: task.run(model, [img])[0].boxes, scenes)   # scenes: a DetectionDataset
    det["map50"], det["map"], det["per_class"]                                    # AP@0.5, AP@[.5:.95]
    seg = evaluate_segmenter(lambda img: task.run(model, [img])[0].mask, data, num_classes=11)
    seg["mean_iou"], seg["pixel_accuracy"]

Detection: AP at IoU 0.5 with all-point interpolation (VOC 2010+) and COCO's mAP averaged over IoU 0.50:0.05:0.95
(101-point interpolation), per class and overall, plus precision and recall of the boxes as returned (at the
detector's own confidence threshold). Segmentation: pixel accuracy, per-class IoU, mean IoU, frequency-weighted IoU
(the FCN paper's definitions), pixels labelled 255 ignored.
"""

from __future__ import annotations

import numpy as np

from .detection import mean_average_precision, match_boxes
from .segmentation import (frequency_weighted_iou, iou_per_class, mean_iou, mean_pixel_accuracy, pixel_accuracy,
                           segmentation_confusion)


def _as_arrays(boxes):
    b = np.array([[x.x1, x.y1, x.x2, x.y2] for x in boxes], np.float64).reshape(-1, 4)
    return {"boxes": b, "scores": np.array([x.score for x in boxes], np.float64),
            "classes": np.array([x.class_id for x in boxes], np.int64)}


def evaluate_detector(detect, dataset, progress=None):
    """``detect(image) -> [Box]`` over every image of a DetectionDataset; a dict of the figures (module doc), with
    the DetectionMetrics objects under "voc" and "coco" for curves."""
    dets = []
    for i in range(len(dataset)):
        dets.append(_as_arrays(detect(dataset.images[i])))
        if progress is not None:
            progress.update(1)
    truth = dataset.to_ground_truth()
    k, names = dataset.num_classes, dataset.class_names
    voc = mean_average_precision(dets, truth, iou_thresholds=0.5, num_classes=k, class_names=names)
    coco = mean_average_precision(dets, truth, iou_thresholds="coco", num_classes=k, method="coco101",
                                  class_names=names)
    matched = sum(len(match_boxes(d, t, 0.5)) for d, t in zip(dets, truth))
    n_det, n_true = sum(len(d["boxes"]) for d in dets), sum(len(t["boxes"]) for t in truth)
    per_class = {names[c]: {"ap50": _num(voc.ap[c, 0]), "ap": _num(coco.per_class_ap.get(c)),
                            "truth": int(sum(np.count_nonzero(t["classes"] == c) for t in truth))}
                 for c in range(k)}
    return {"images": len(dataset), "detections": n_det, "ground_truth": n_true,
            "precision": matched / n_det if n_det else 0.0, "recall": matched / n_true if n_true else 0.0,
            "map50": _num(voc.map), "map": _num(coco.map), "per_class": per_class, "voc": voc, "coco": coco}


def evaluate_segmenter(segment, dataset, num_classes, ignore_index=255, progress=None):
    """``segment(image) -> mask`` over every image of a dataset whose labels are masks; a dict of the figures."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    for i in range(len(dataset)):
        segmentation_confusion(segment(dataset.images[i]), dataset.labels[i], num_classes, ignore_index, cm)
        if progress is not None:
            progress.update(1)
    names = list(dataset.class_names)[:num_classes]
    ious = iou_per_class(cm)
    return {"images": len(dataset), "pixel_accuracy": _num(pixel_accuracy(cm)),
            "mean_pixel_accuracy": _num(mean_pixel_accuracy(cm)), "mean_iou": _num(mean_iou(cm)),
            "frequency_weighted_iou": _num(frequency_weighted_iou(cm)),
            "per_class_iou": {n: _num(v) for n, v in zip(names, ious)}, "confusion": cm}


def _num(v):
    return None if v is None or not np.isfinite(v) else round(float(v), 6)
