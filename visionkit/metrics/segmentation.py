"""Semantic segmentation metrics from a pixel confusion matrix, as the FCN paper (Long, Shelhamer and Darrell,
2015) defines them. With n_ij the number of pixels of true class i predicted as class j and t_i = sum_j n_ij:

* pixel accuracy            sum_i n_ii / sum_i t_i
* mean pixel accuracy       (1 / n_cl) sum_i n_ii / t_i
* mean IoU                  (1 / n_cl) sum_i n_ii / (t_i + sum_j n_ji - n_ii)
* frequency-weighted IoU    (sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)

Classes that never occur (no true and no predicted pixel) have an undefined IoU / accuracy: NaN per class, and left
out of the means (n_cl counts the classes with a defined value).
"""

import numpy as np


def segmentation_confusion(pred_mask, true_mask, num_classes, ignore_index=255, confusion=None):
    """(K, K) int64 pixel counts, rows true class, columns predicted class.

    pred_mask / true_mask: one H x W pair of class-id arrays, or equal-length sequences of them (one per image).
    Pixels whose true class is ``ignore_index`` (None: none are) are left out. confusion: an earlier matrix to add
    to (updated in place and returned), so a dataset can be accumulated image by image.
    """
    k = int(num_classes)
    if k < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    if confusion is None:
        confusion = np.zeros((k, k), np.int64)
    elif confusion.shape != (k, k):
        raise ValueError(f"confusion is {confusion.shape}, expected ({k}, {k})")
    if isinstance(pred_mask, (list, tuple)) and (len(pred_mask) == 0 or np.ndim(pred_mask[0]) >= 2):
        if not isinstance(true_mask, (list, tuple)) or len(true_mask) != len(pred_mask):
            raise ValueError("pred_mask and true_mask: give one mask each, or sequences of the same length")
        for p, t in zip(pred_mask, true_mask):
            segmentation_confusion(p, t, k, ignore_index, confusion)
        return confusion
    p = np.asarray(pred_mask)
    t = np.asarray(true_mask)
    if p.shape != t.shape:
        raise ValueError(f"pred_mask is {p.shape} but true_mask is {t.shape}")
    p = p.reshape(-1).astype(np.int64)
    t = t.reshape(-1).astype(np.int64)
    if ignore_index is not None:
        valid = t != int(ignore_index)
        p, t = p[valid], t[valid]
    if t.size:
        if t.min() < 0 or t.max() >= k:
            raise ValueError(f"true_mask holds class ids outside [0, {k}) other than ignore_index={ignore_index}")
        if p.min() < 0 or p.max() >= k:
            raise ValueError(f"pred_mask holds class ids outside [0, {k}) at labelled pixels")
        confusion += np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    return confusion


def _cm(confusion):
    cm = np.asarray(confusion, np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix is square, got shape {cm.shape}")
    return cm


def _nanmean(a):
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else float("nan")


def iou_per_class(confusion):
    """IoU of each class, n_ii / (t_i + sum_j n_ji - n_ii); NaN for a class with no true or predicted pixel."""
    cm = _cm(confusion)
    inter = np.diag(cm)
    union = cm.sum(axis=1) + cm.sum(axis=0) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), np.nan)


def mean_iou(confusion):
    """Mean of the defined per-class IoUs."""
    return _nanmean(iou_per_class(confusion))


def pixel_accuracy(confusion):
    """Fraction of labelled pixels given their true class (NaN with no labelled pixel)."""
    cm = _cm(confusion)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def accuracy_per_class(confusion):
    """Per-class pixel accuracy (recall), n_ii / t_i; NaN for a class with no true pixel."""
    cm = _cm(confusion)
    t = cm.sum(axis=1)
    return np.where(t > 0, np.diag(cm) / np.where(t > 0, t, 1), np.nan)


def mean_pixel_accuracy(confusion):
    """Mean over classes present in the ground truth of their pixel accuracy."""
    return _nanmean(accuracy_per_class(confusion))


def frequency_weighted_iou(confusion):
    """Per-class IoU weighted by the class's share of the true pixels."""
    cm = _cm(confusion)
    t = cm.sum(axis=1)
    if t.sum() == 0:
        return float("nan")
    iou = np.nan_to_num(iou_per_class(cm), nan=0.0)       # NaN only where t_i = 0, which weighs nothing
    return float(np.sum(t * iou) / t.sum())
