"""Evaluation metrics and their plots, for the three tasks.

* classification: ``confusion_matrix``, ``classification_report`` (precision / recall / F1 per class, macro and
  weighted averages, as scikit-learn defines them) and ``top_k_accuracy``;
* detection: ``average_precision`` (VOC 2010 all-points, VOC 2007 11-point, COCO 101-point),
  ``mean_average_precision`` over classes and IoU thresholds (0.5, or COCO's 0.50:0.95) with precision / recall
  curves, and ``match_boxes`` for comparing two detectors' boxes;
* segmentation: ``segmentation_confusion`` (accumulated over images, with an ignore label), ``iou_per_class``,
  ``mean_iou``, ``pixel_accuracy``, ``mean_pixel_accuracy`` and ``frequency_weighted_iou`` (the FCN paper's);
* plots (OpenCV only, RGB uint8 images): ``confusion_matrix_image``, ``line_plot``, ``training_curves_image`` and
  ``precision_recall_image``.
"""

from .classification import ClassificationReport, classification_report, confusion_matrix, top_k_accuracy
from .detection import (COCO_IOU_THRESHOLDS, DetectionMetrics, PRCurve, average_precision, match_boxes,
                        mean_average_precision)
from .plots import confusion_matrix_image, line_plot, precision_recall_image, training_curves_image
from .segmentation import (accuracy_per_class, frequency_weighted_iou, iou_per_class, mean_iou,
                           mean_pixel_accuracy, pixel_accuracy, segmentation_confusion)

__all__ = [
    "COCO_IOU_THRESHOLDS", "ClassificationReport", "DetectionMetrics", "PRCurve", "accuracy_per_class",
    "average_precision", "classification_report", "confusion_matrix", "confusion_matrix_image",
    "frequency_weighted_iou", "iou_per_class", "line_plot", "match_boxes", "mean_average_precision", "mean_iou",
    "mean_pixel_accuracy", "pixel_accuracy", "precision_recall_image", "segmentation_confusion", "top_k_accuracy",
    "training_curves_image",
]
