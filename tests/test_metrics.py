"""visionkit.metrics: classification, detection and segmentation metrics against hand-computed cases (and
scikit-learn where it is installed), and the OpenCV plots' sizes, content and edge cases."""

import warnings

import numpy as np
import pytest

from visionkit.metrics import (COCO_IOU_THRESHOLDS, average_precision, classification_report, confusion_matrix,
                               confusion_matrix_image, frequency_weighted_iou, iou_per_class, line_plot,
                               match_boxes, mean_average_precision, mean_iou, mean_pixel_accuracy, pixel_accuracy,
                               precision_recall_image, segmentation_confusion, top_k_accuracy,
                               training_curves_image)
from visionkit.metrics.plots import _runs, _ticks
from visionkit.tasks.results import Box, Result

# --------------------------------------------------------------------------------------------- classification

Y = [0, 1, 2, 2, 2]
P = [0, 0, 2, 2, 1]


def test_confusion_matrix_rows_true_cols_predicted():
    cm = confusion_matrix(Y, P, 3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, [[1, 0, 0], [1, 0, 0], [0, 1, 2]])
    np.testing.assert_array_equal(confusion_matrix([], [], 2), np.zeros((2, 2)))
    with pytest.raises(ValueError):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError):
        confusion_matrix([0, 1], [0], 3)


def test_classification_report_hand_computed():
    r = classification_report(Y, P, ["a", "b", "c"])
    np.testing.assert_allclose(r.precision, [0.5, 0.0, 1.0])
    np.testing.assert_allclose(r.recall, [1.0, 0.0, 2 / 3])
    np.testing.assert_allclose(r.f1, [2 / 3, 0.0, 0.8])
    assert r.support == [1, 1, 3]
    assert r.accuracy == pytest.approx(0.6)
    assert r.macro_avg["precision"] == pytest.approx(0.5)
    assert r.macro_avg["recall"] == pytest.approx((1 + 2 / 3) / 3)
    assert r.macro_avg["f1"] == pytest.approx((2 / 3 + 0.8) / 3)
    assert r.weighted_avg["precision"] == pytest.approx(0.7)
    assert r.weighted_avg["recall"] == pytest.approx(0.6)
    assert r.weighted_avg["f1"] == pytest.approx((2 / 3 + 3 * 0.8) / 5)
    assert r.weighted_avg["support"] == 5
    assert not r.zero_division_occurred          # class b was predicted once (wrongly): precision 0/1 is defined
    d = r.to_dict()
    assert d["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert set(d) == {"a", "b", "c", "accuracy", "macro avg", "weighted avg"}


def test_classification_report_text_is_aligned():
    text = classification_report(Y, P, ["cat", "dog", "a much longer name"]).to_text()
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[0].split() == ["precision", "recall", "f1-score", "support"]
    assert lines[-3].split() == ["accuracy", "0.60", "5"]
    assert lines[-1].split()[:2] == ["weighted", "avg"]
    widths = {len(line) for line in lines}
    assert len(widths) == 1, text                  # every row ends in the support column
    acc_col = lines[-3].index("0.60") + 4
    assert lines[1][:acc_col].endswith("0.67")     # accuracy sits under the f1-score column


def test_zero_division_gives_zero_and_is_flagged():
    r = classification_report([0, 0, 1], [0, 0, 0], ["x", "y", "z"])
    assert r.precision == [pytest.approx(2 / 3), 0.0, 0.0]
    assert r.recall == [1.0, 0.0, 0.0]
    assert r.undefined["precision"] == ["y", "z"]     # never predicted
    assert r.undefined["recall"] == ["z"]             # never present
    assert r.undefined["f1"] == ["z"]
    assert r.zero_division_occurred
    assert classification_report([0, 0, 1], [0, 0, 0], 3, zero_division=1.0).precision[1:] == [1.0, 1.0]


def test_top_k_accuracy():
    scores = [[0.1, 0.5, 0.4], [0.3, 0.3, 0.4], [0.8, 0.1, 0.1]]
    labels = [2, 1, 0]
    assert top_k_accuracy(scores, labels, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(scores, labels, 2) == pytest.approx(2 / 3)   # the 0.3 tie ranks class 0 before 1
    assert top_k_accuracy(scores, labels, 3) == 1.0
    with pytest.raises(ValueError):
        top_k_accuracy(scores, labels, 0)


def test_classification_against_sklearn():
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    y = rng.integers(0, 6, 300)
    p = np.where(rng.random(300) < 0.5, y, rng.integers(0, 5, 300))     # class 5 is never predicted
    np.testing.assert_array_equal(confusion_matrix(y, p, 6), skm.confusion_matrix(y, p, labels=np.arange(6)))
    ours = classification_report(y, p, [f"c{i}" for i in range(6)])
    ref = skm.classification_report(y, p, labels=list(range(6)), target_names=[f"c{i}" for i in range(6)],
                                    output_dict=True, zero_division=0)
    for name in ours.class_names:
        assert ours.to_dict()[name]["precision"] == pytest.approx(ref[name]["precision"])
        assert ours.to_dict()[name]["recall"] == pytest.approx(ref[name]["recall"])
        assert ours.to_dict()[name]["f1"] == pytest.approx(ref[name]["f1-score"])
    for key in ("macro avg", "weighted avg"):
        assert ours.to_dict()[key]["f1"] == pytest.approx(ref[key]["f1-score"])
    assert ours.accuracy == pytest.approx(ref["accuracy"])
    scores = rng.random((300, 6))
    for k in (1, 2, 4):
        assert top_k_accuracy(scores, y, k) == pytest.approx(skm.top_k_accuracy_score(y, scores, k=k,
                                                                                      labels=np.arange(6)))


# -------------------------------------------------------------------------------------------------- detection

def box(x, y, size=10, score=1.0, cls=0):
    return Box(x, y, x + size, y + size, score, cls)


GT3 = [box(0, 0), box(100, 0), box(200, 0)]


@pytest.mark.parametrize("method", ["voc2010", "voc2007", "coco101"])
def test_perfect_detector_scores_one(method):
    dets = [box(b.x1, b.y1, score=s) for b, s in zip(GT3, (0.9, 0.8, 0.7))]
    assert average_precision(dets, GT3, method=method) == pytest.approx(1.0)


def test_false_positive_ranked_first():
    gt = GT3[:2]
    dets = [box(500, 500, score=0.9), box(0, 0, score=0.8), box(100, 0, score=0.7)]
    # precision 0, 1/2, 2/3 at recall 0, 1/2, 1: the envelope is 2/3 everywhere
    for method in ("voc2010", "voc2007", "coco101"):
        assert average_precision(dets, gt, method=method) == pytest.approx(2 / 3)


def test_missed_ground_truth():
    dets = [box(0, 0, score=0.9)]
    gt = GT3[:2]                                     # precision 1 up to recall 1/2, nothing beyond
    assert average_precision(dets, gt, method="voc2010") == pytest.approx(0.5)
    assert average_precision(dets, gt, method="voc2007") == pytest.approx(6 / 11)      # recall 0, .1, ..., .5
    assert average_precision(dets, gt, method="coco101") == pytest.approx(51 / 101)    # recall 0, .01, ..., .5
    assert average_precision([], gt) == 0.0


def test_eleven_point_differs_from_all_points():
    # TP, FP, TP, TP over three objects: precision 1, 1/2, 2/3, 3/4 at recall 1/3, 1/3, 2/3, 1
    dets = [box(0, 0, score=0.9), box(500, 0, score=0.8), box(100, 0, score=0.7), box(200, 0, score=0.6)]
    assert average_precision(dets, GT3, method="voc2010") == pytest.approx(1 / 3 + 2 / 3 * 0.75)
    assert average_precision(dets, GT3, method="voc2007") == pytest.approx((4 + 7 * 0.75) / 11)
    assert average_precision(dets, GT3, method="coco101") == pytest.approx((34 + 67 * 0.75) / 101)
    with pytest.raises(ValueError):
        average_precision(dets, GT3, method="bogus")


def test_duplicates_are_false_positives_and_greedy_takes_best_iou():
    dets = [box(0, 0, score=0.9), box(1, 0, score=0.8)]
    assert average_precision(dets, [box(0, 0)]) == pytest.approx(1.0)    # the duplicate comes after recall 1
    # the first detection takes the truth it overlaps best (IoU 9/11 over 8/12); the second, whose best truth is
    # taken, falls back to the other one (IoU 7/13 >= 0.5)
    dets = [box(1, 0, score=0.9), box(0, 0, score=0.8)]
    assert match_boxes(dets, [box(0, 0), box(3, 0)], 0.5) == [(0, 0, pytest.approx(9 / 11)),
                                                               (1, 1, pytest.approx(7 / 13))]
    assert average_precision(dets, [box(0, 0), box(3, 0)]) == pytest.approx(1.0)
    assert average_precision(dets, [box(0, 0), box(3, 0)], iou_threshold=0.6) == pytest.approx(0.5)


def test_difficult_ground_truth_is_ignored():
    gt = {"boxes": [[0, 0, 10, 10], [100, 0, 110, 10]], "classes": [0, 0], "difficult": [True, False]}
    dets = {"boxes": [[0, 0, 10, 10], [500, 0, 510, 10], [100, 0, 110, 10]], "scores": [0.9, 0.85, 0.8]}
    # the detection of the difficult box is dropped: FP then TP over one positive
    assert average_precision(dets, gt) == pytest.approx(0.5)
    gt_plain = dict(gt, difficult=[False, False])
    assert average_precision(dets, gt_plain) == pytest.approx(0.5 + 0.5 * 2 / 3)
    only_difficult = dict(gt, boxes=[[0, 0, 10, 10]], classes=[0], difficult=[True])
    assert np.isnan(average_precision(dets, only_difficult))


def test_input_forms_agree():
    boxes = np.array([[0, 0, 10, 10], [500, 0, 510, 10], [100, 0, 110, 10]], float)
    scores = np.array([0.9, 0.85, 0.8])
    gt_arr = np.array([[0, 0, 10, 10], [100, 0, 110, 10], [200, 0, 210, 10]], float)
    as_boxes = [Box(*b, s) for b, s in zip(boxes, scores)]
    expected = average_precision(as_boxes, GT3)
    assert average_precision((boxes, scores), gt_arr) == pytest.approx(expected)
    assert average_precision((boxes, scores, [0, 0, 0]), (gt_arr, [0, 0, 0])) == pytest.approx(expected)
    assert average_precision({"boxes": boxes, "scores": scores}, {"boxes": gt_arr}) == pytest.approx(expected)
    result = Result("x.png", 640, 480, "detect", "m", boxes=as_boxes)
    assert average_precision(result, gt_arr.tolist()) == pytest.approx(expected)
    # split over two images, the same detections give the same AP
    two = average_precision([as_boxes[:1], as_boxes[1:]], [GT3[:1], GT3[1:]])
    assert two == pytest.approx(expected)
    # but a detection in the wrong image does not match
    assert average_precision([as_boxes, []], [[], GT3]) == 0.0


def test_mean_average_precision_per_class():
    gts = [[box(0, 0, cls=0), box(100, 0, cls=1)], [box(0, 0, cls=1), box(50, 50, cls=2)]]
    dets = [[box(0, 0, score=0.9, cls=0), box(100, 0, score=0.8, cls=1), box(300, 0, score=0.99, cls=3)],
            [box(0, 0, score=0.7, cls=2), box(50, 50, score=0.6, cls=2)]]
    m = mean_average_precision(dets, gts, num_classes=4, class_names=["a", "b", "c", "d"])
    assert m.ap.shape == (4, 1)
    assert m.per_class_ap[0] == pytest.approx(1.0)
    assert m.per_class_ap[1] == pytest.approx(0.5)           # the image-2 class-1 box is missed (wrong class)
    assert m.per_class_ap[2] == pytest.approx(0.5)           # FP (class 2 on a class-1 box) first, then TP
    assert np.isnan(m.per_class_ap[3])                       # no ground truth: left out of the mean
    assert m.map == pytest.approx(2 / 3)
    assert m.map_per_threshold == {0.5: pytest.approx(2 / 3)}
    curves = m.pr_curves()
    assert set(curves) == {"a", "b", "c"}
    np.testing.assert_allclose(curves["c"].precision, [0.0, 0.5])
    np.testing.assert_allclose(curves["c"].recall, [0.0, 1.0])
    assert m.to_dict()["per_class_ap"]["d"] is None
    with pytest.raises(ValueError):
        mean_average_precision(dets, gts, num_classes=2)


def test_coco_thresholds():
    assert COCO_IOU_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    gt = [[Box(0, 0, 10, 10, 1.0)]]
    det = [[Box(0, 0, 10, 7.2, 0.9)]]                         # IoU 0.72: a hit at 0.50 ... 0.70 only
    m = mean_average_precision(det, gt, iou_thresholds="coco", method="coco101")
    np.testing.assert_allclose(m.ap[0], [1.0] * 5 + [0.0] * 5)
    assert m.map == pytest.approx(0.5)
    assert m.map_per_threshold[0.75] == 0.0


def test_match_boxes():
    pred = [box(0, 0, score=0.5), box(100, 0, score=0.9, cls=1), box(300, 0, score=0.7)]
    truth = [box(1, 1), box(100, 0, cls=1)]
    pairs = match_boxes(pred, truth, 0.5)
    assert [(i, j) for i, j, _ in pairs] == [(1, 1), (0, 0)]          # highest score first
    assert pairs[1][2] == pytest.approx(81 / 119)
    assert match_boxes(pred, truth, 0.9) == [(1, 1, 1.0)]
    assert [p[:2] for p in match_boxes(np.array([[100, 0, 110, 10]]), truth, 0.5)] == []     # class 0 vs 1
    assert [p[:2] for p in match_boxes(np.array([[100, 0, 110, 10]]), truth, 0.5, class_aware=False)] == [(0, 1)]
    assert match_boxes([], truth) == [] and match_boxes(pred, []) == []


# ----------------------------------------------------------------------------------------------- segmentation

TRUE = np.array([[0, 0, 1], [1, 2, 255]])
PRED = np.array([[0, 1, 1], [1, 2, 0]])


def test_segmentation_metrics_hand_computed():
    cm = segmentation_confusion(PRED, TRUE, 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [0, 0, 1]])      # the 255 pixel is ignored
    np.testing.assert_allclose(iou_per_class(cm), [0.5, 2 / 3, 1.0])
    assert mean_iou(cm) == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert pixel_accuracy(cm) == pytest.approx(0.8)
    assert mean_pixel_accuracy(cm) == pytest.approx((0.5 + 1 + 1) / 3)
    assert frequency_weighted_iou(cm) == pytest.approx((2 * 0.5 + 2 * 2 / 3 + 1 * 1) / 5)


def test_segmentation_accumulates_and_ignores():
    total = segmentation_confusion([PRED, PRED], [TRUE, TRUE], 3)
    np.testing.assert_array_equal(total, 2 * segmentation_confusion(PRED, TRUE, 3))
    cm = np.zeros((3, 3), np.int64)
    segmentation_confusion(PRED, TRUE, 3, confusion=cm)
    segmentation_confusion(PRED, TRUE, 3, confusion=cm)
    np.testing.assert_array_equal(cm, total)
    # a custom ignore label, and none at all
    cm = segmentation_confusion(PRED, np.where(TRUE == 255, 1, TRUE), 3, ignore_index=2)
    assert cm.sum() == 5 and cm[2].sum() == 0
    with pytest.raises(ValueError):
        segmentation_confusion(PRED, TRUE, 3, ignore_index=None)             # 255 is not a class
    # a class absent from both masks is NaN per class and left out of the means
    cm4 = segmentation_confusion(PRED, TRUE, 4)
    assert np.isnan(iou_per_class(cm4)[3])
    assert mean_iou(cm4) == pytest.approx(mean_iou(cm4[:3, :3]))
    assert frequency_weighted_iou(cm4) == pytest.approx(frequency_weighted_iou(cm4[:3, :3]))


# ------------------------------------------------------------------------------------------------------ plots

def _nontrivial(img):
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    non_white = np.any(img < 240, axis=2).mean()
    assert 0.01 < non_white < 0.9, non_white
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20


def _has_color(img, rgb, tol=30, at_least=30):
    return int(np.all(np.abs(img.astype(int) - rgb) <= tol, axis=2).sum()) >= at_least


def test_confusion_matrix_image():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 500)
    cm = confusion_matrix(y, np.where(rng.random(500) < 0.7, y, rng.integers(0, 10, 500)), 10)
    cm[3] = 0                                          # an all-zero row must not make NaNs
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        img = confusion_matrix_image(cm, names)
    h, w = img.shape[:2]
    assert 600 <= w <= 1000 and 600 <= h <= 1000
    _nontrivial(img)
    assert _has_color(img, (8, 48, 107), tol=40, at_least=500)      # dark diagonal cells
    counts = confusion_matrix_image(cm, names, normalize=False)
    _nontrivial(counts)
    small = confusion_matrix_image([[0, 0], [0, 0]])                 # all zeros, default names
    _nontrivial(small)
    with pytest.raises(ValueError):
        confusion_matrix_image(cm, names[:3])


def test_line_plot():
    series = {"a": [3.0, 2.0, 1.5, 1.2], "b": [1.0, float("nan"), 2.0, 2.5], "c": [0.5]}
    img = line_plot(series, "title", "epoch", "value", size=(640, 400))
    assert img.shape == (400, 640, 3)
    _nontrivial(img)
    assert _has_color(img, (0, 114, 178)) and _has_color(img, (230, 120, 0)) and _has_color(img, (0, 158, 115))
    # every value NaN, an empty series, no series at all: still an image with axes and "no data"
    _nontrivial(line_plot({"nan": [float("nan")] * 3, "empty": []}, size=(300, 200)))
    _nontrivial(line_plot({}, size=(300, 200)))
    xy = line_plot({"sq": (np.linspace(0, 1, 50), np.linspace(0, 1, 50) ** 2)}, size=(300, 200))
    _nontrivial(xy)


def test_nan_breaks_lines_and_ticks_are_nice():
    runs = _runs(np.arange(1.0, 7.0), np.array([1, 2, np.nan, 4, np.nan, 6.0]))
    assert [len(r) for r in runs] == [2, 1, 1]
    ticks, step = _ticks(0.0, 1.0, 5)
    assert step == 0.2 and ticks[0] == 0.0 and ticks[-1] == pytest.approx(1.0)
    assert _ticks(0.5, 30.5, 6, integer=True)[0] == [5, 10, 15, 20, 25, 30]
    assert _ticks(0.5, 1.5, 6, integer=True)[0] == [1]


def test_training_curves_image():
    epochs = np.arange(1, 21)
    history = {"train_loss": list(2 * np.exp(-epochs / 5)), "val_loss": list(2.2 * np.exp(-epochs / 6)),
               "train_accuracy": list(1 - np.exp(-epochs / 4)), "val_accuracy": list(0.9 - np.exp(-epochs / 5))}
    history["val_loss"][4] = float("nan")
    img = training_curves_image(history, size=(1000, 400))
    assert img.shape == (400, 1000, 3)
    left, right = img[:, :500], img[:, 500:]
    _nontrivial(left)
    _nontrivial(right)
    for panel in (left, right):                        # train and validation colours in both panels
        assert _has_color(panel, (0, 114, 178)) and _has_color(panel, (230, 120, 0))
    # a single epoch, missing series, Keras names, a list of per-epoch dicts
    one = training_curves_image({"loss": [0.7], "val_acc": [0.5]}, size=(800, 300))
    assert one.shape == (300, 800, 3)
    _nontrivial(one[:, :400])
    _nontrivial(one[:, 400:])
    assert _has_color(one[:, :400], (0, 114, 178), at_least=10)
    assert _has_color(one[:, 400:], (230, 120, 0), at_least=10)
    per_epoch = training_curves_image([{"train_loss": 1.0}, {"train_loss": 0.5}], size=(800, 300))
    _nontrivial(per_epoch)
    _nontrivial(training_curves_image({}, size=(800, 300)))


def test_precision_recall_image():
    gts = [[box(0, 0, cls=0), box(100, 0, cls=1)], [box(0, 0, cls=1)]]
    dets = [[box(0, 0, score=0.9, cls=0), box(100, 0, score=0.8, cls=1), box(300, 0, score=0.85, cls=1)], []]
    m = mean_average_precision(dets, gts)
    img = precision_recall_image(m, size=(640, 480))
    assert img.shape == (480, 640, 3)
    _nontrivial(img)
    raw = precision_recall_image({"x": ([1.0, 0.5, 0.67], [0.5, 0.5, 1.0], 0.83)}, size=(400, 300))
    _nontrivial(raw)


def test_voc_ap_matches_a_direct_computation_on_random_scenes():
    """All-points AP equals (1 / positives) * sum over true positives of the best precision at that rank or later,
    with matching done here by a plain loop over all detections in score order."""
    rng = np.random.default_rng(7)
    dets, gts = [], []
    for _ in range(6):
        g = rng.uniform(0, 80, (rng.integers(0, 5), 2))
        gts.append([Box(x, y, x + 20, y + 20, 1.0) for x, y in g])
        d = rng.uniform(0, 80, (rng.integers(0, 8), 2))
        dets.append([Box(x, y, x + 20, y + 20, float(rng.random())) for x, y in d]
                    + [Box(x + rng.normal(0, 3), y, x + 20, y + 20, float(rng.random())) for x, y in g[:3]])
    flat = sorted(((b.score, i, b) for i, ds in enumerate(dets) for b in ds), key=lambda t: -t[0])
    taken = [[False] * len(g) for g in gts]
    hits = []
    for _, i, b in flat:
        best, best_j = 0.5, -1
        for j, t in enumerate(gts[i]):
            w = max(0.0, min(b.x2, t.x2) - max(b.x1, t.x1))
            h = max(0.0, min(b.y2, t.y2) - max(b.y1, t.y1))
            iou = w * h / (b.width * b.height + t.width * t.height - w * h)
            if not taken[i][j] and iou >= best:
                best, best_j = iou, j
        if best_j >= 0:
            taken[i][best_j] = True
        hits.append(best_j >= 0)
    hits = np.array(hits)
    npos = sum(len(g) for g in gts)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    expected = sum(precision[k:].max() for k in np.flatnonzero(hits)) / npos
    assert average_precision(dets, gts) == pytest.approx(expected)
