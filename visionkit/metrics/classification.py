"""Classification metrics: the confusion matrix, a per-class precision / recall / F1 report and top-k accuracy.

Definitions follow scikit-learn's: the confusion matrix has true classes as rows and predicted classes as columns;
precision = tp / (tp + fp), recall = tp / (tp + fn), F1 = 2 tp / (2 tp + fp + fn). A ratio whose denominator is
zero (a class never predicted, a class never present) is set to ``zero_division`` (0.0 by default, as scikit-learn's
default) and the report records which classes that happened to instead of warning.
"""

from dataclasses import dataclass, field

import numpy as np


def _as_labels(values, name):
    a = np.asarray(values)
    if a.ndim != 1:
        a = a.reshape(-1)
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"{name} must be integer class ids")
        a = a.astype(np.int64)
    return a.astype(np.int64, copy=False)


def confusion_matrix(labels, preds, num_classes):
    """(K, K) int64 counts: entry [i, j] is the number of samples of true class i predicted as class j."""
    k = int(num_classes)
    if k < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    y = _as_labels(labels, "labels")
    p = _as_labels(preds, "preds")
    if y.shape != p.shape:
        raise ValueError(f"{y.size} labels but {p.size} predictions")
    for name, a in (("labels", y), ("preds", p)):
        if a.size and (a.min() < 0 or a.max() >= k):
            raise ValueError(f"{name} hold class ids outside [0, {k}): {int(a.min())}..{int(a.max())}")
    return np.bincount(y * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def _ratio(num, den, zero_division):
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    undefined = den == 0
    out = np.where(undefined, float(zero_division), num / np.where(undefined, 1.0, den))
    return out, undefined


@dataclass
class ClassificationReport:
    """Per-class and averaged scores of a classifier on a labelled set.

    precision, recall, f1 and support are lists in class order; ``macro_avg`` and ``weighted_avg`` are dicts with
    precision / recall / f1 / support. ``undefined`` names, per metric, the classes whose value was a zero division
    and got ``zero_division`` instead; ``zero_division_occurred`` says whether there were any.
    """

    class_names: list
    precision: list
    recall: list
    f1: list
    support: list
    accuracy: float
    macro_avg: dict
    weighted_avg: dict
    confusion: np.ndarray = field(repr=False)
    zero_division: float = 0.0
    undefined: dict = field(default_factory=dict)

    @property
    def zero_division_occurred(self):
        return any(self.undefined.values())

    def per_class(self):
        """{name: {"precision", "recall", "f1", "support"}} in class order."""
        return {n: {"precision": p, "recall": r, "f1": f, "support": s}
                for n, p, r, f, s in zip(self.class_names, self.precision, self.recall, self.f1, self.support)}

    def to_dict(self):
        """JSON-ready: per-class scores under their names, then accuracy and the two averages (sklearn's
        ``output_dict=True`` layout, with the keys "f1", "macro avg" and "weighted avg")."""
        d = self.per_class()
        d["accuracy"] = self.accuracy
        d["macro avg"] = dict(self.macro_avg)
        d["weighted avg"] = dict(self.weighted_avg)
        return d

    def to_text(self, digits=2):
        """An aligned table like scikit-learn's ``classification_report``."""
        heads = ("precision", "recall", "f1-score", "support")
        width = max([len(str(n)) for n in self.class_names] + [len("weighted avg")])
        col = max(9, digits + 3)
        lines = [" " * width + "".join(f" {h:>{col}}" for h in heads), ""]

        def row(name, p, r, f, s):
            return f"{name:>{width}}" + "".join(f" {v:>{col}.{digits}f}" for v in (p, r, f)) + f" {s:>{col}d}"

        for n, p, r, f, s in zip(self.class_names, self.precision, self.recall, self.f1, self.support):
            lines.append(row(str(n), p, r, f, s))
        total = int(sum(self.support))
        lines += ["", f"{'accuracy':>{width}}" + " " * (2 * (col + 1)) + f" {self.accuracy:>{col}.{digits}f}"
                  + f" {total:>{col}d}"]
        for name, avg in (("macro avg", self.macro_avg), ("weighted avg", self.weighted_avg)):
            lines.append(row(name, avg["precision"], avg["recall"], avg["f1"], avg["support"]))
        return "\n".join(lines) + "\n"

    def __str__(self):
        return self.to_text()


def classification_report(labels, preds, class_names, zero_division=0.0):
    """Accuracy, per-class precision / recall / F1 / support and their macro and support-weighted averages.

    class_names: one name per class id (an int K is taken as names "0".."K-1"). Every class is reported, present
    or not, and the macro average is over all of them (as scikit-learn with ``labels=range(K)``).
    """
    if isinstance(class_names, (int, np.integer)):
        class_names = [str(i) for i in range(int(class_names))]
    names = [str(n) for n in class_names]
    cm = confusion_matrix(labels, preds, len(names))
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision, p_undef = _ratio(tp, predicted, zero_division)
    recall, r_undef = _ratio(tp, support, zero_division)
    f1, f_undef = _ratio(2 * tp, support + predicted, zero_division)
    total = int(support.sum())
    accuracy = float(tp.sum() / total) if total else float(zero_division)
    macro = {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean()),
             "support": total}
    if total:
        w = support / total
        weighted = {"precision": float(precision @ w), "recall": float(recall @ w), "f1": float(f1 @ w),
                    "support": total}
    else:
        weighted = {"precision": float(zero_division), "recall": float(zero_division),
                    "f1": float(zero_division), "support": 0}
    undefined = {"precision": [names[i] for i in np.flatnonzero(p_undef)],
                 "recall": [names[i] for i in np.flatnonzero(r_undef)],
                 "f1": [names[i] for i in np.flatnonzero(f_undef)]}
    return ClassificationReport(
        class_names=names, precision=[float(v) for v in precision], recall=[float(v) for v in recall],
        f1=[float(v) for v in f1], support=[int(v) for v in support], accuracy=accuracy, macro_avg=macro,
        weighted_avg=weighted, confusion=cm, zero_division=float(zero_division), undefined=undefined)


def top_k_accuracy(scores, labels, k=5):
    """Fraction of samples whose true class is among the k highest scores of its row.

    scores: (N, C) scores or probabilities; labels: (N,) class ids. Ties in score rank the lower class id first
    (a stable descending sort), so the answer is deterministic. k >= C gives 1.0.
    """
    s = np.asarray(scores, np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be (N, C), got shape {s.shape}")
    y = _as_labels(labels, "labels")
    if y.size != s.shape[0]:
        raise ValueError(f"{s.shape[0]} score rows but {y.size} labels")
    if int(k) < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if y.size == 0:
        return 0.0
    c = s.shape[1]
    if y.min() < 0 or y.max() >= c:
        raise ValueError(f"labels hold class ids outside [0, {c})")
    true_score = s[np.arange(len(y)), y][:, None]
    idx = np.arange(c)[None, :]
    # the true class's rank: classes scoring higher, plus equal-scoring classes with a lower id
    rank = np.sum((s > true_score) | ((s == true_score) & (idx < y[:, None])), axis=1)
    return float(np.mean(rank < int(k)))
