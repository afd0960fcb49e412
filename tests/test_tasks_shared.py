"""Non-max suppression against a brute-force reference, and pyramid scales from their definition."""

import numpy as np
import pytest

from visionkit.tasks.nms import box_iou, box_overlap_smaller, nms, nms_contained
from visionkit.tasks.pyramid import pyramid_scales, resize_for_scale


def _nms_reference(boxes, scores, thr):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        ok = True
        for k in keep:
            x1, y1 = max(boxes[i][0], boxes[k][0]), max(boxes[i][1], boxes[k][1])
            x2, y2 = min(boxes[i][2], boxes[k][2]), min(boxes[i][3], boxes[k][3])
            inter = max(0, x2 - x1) * max(0, y2 - y1)
            ai = (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1])
            ak = (boxes[k][2] - boxes[k][0]) * (boxes[k][3] - boxes[k][1])
            if inter / (ai + ak - inter) > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(5))
def test_nms_matches_the_greedy_definition(seed):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 50, (60, 2))
    wh = rng.uniform(5, 30, (60, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    scores = rng.random(60).round(2)  # rounded: ties exercise the stable order
    for thr in (0.3, 0.5, 0.7):
        assert list(nms(boxes, scores, thr)) == _nms_reference(boxes, scores, thr)


def test_nms_per_class_and_limits():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10]], float)
    scores = np.array([0.9, 0.8, 0.7])
    assert list(nms(boxes, scores, 0.5)) == [0]
    assert list(nms(boxes, scores, 0.5, classes=[0, 1, 0])) == [0, 1]
    assert list(nms(boxes, scores, 0.5, classes=[0, 1, 2], max_detections=2)) == [0, 1]
    assert nms(np.zeros((0, 4)), np.zeros(0)).shape == (0,)
    with pytest.raises(ValueError):
        nms(boxes, scores[:2])


def test_nms_contained_drops_a_box_inside_a_better_one_that_iou_keeps():
    # a digit's box, a thin "1" along its left stroke (IoU 0.2, wholly inside), and a box beside it (a quarter in)
    boxes = np.array([[0, 0, 20, 40], [0, 0, 4, 40], [15, 0, 35, 40]], float)
    scores = np.array([0.9, 0.95, 0.8])
    np.testing.assert_allclose(box_overlap_smaller(boxes[:1], boxes), [[1, 1, 0.25]])
    assert list(nms(boxes, scores, 0.3)) == [1, 0, 2]              # IoU 0.2 and 1/7: plain NMS keeps all three
    assert list(nms_contained(boxes, scores, 0.5)) == [1, 2]       # the better "1" wins; the digit lies over it
    scores[0] = 0.99
    assert list(nms_contained(boxes, scores, 0.5)) == [0, 2]
    assert list(nms_contained(boxes, scores, 0.2)) == [0]           # a quarter of the third box is over 0.2
    assert list(nms_contained(boxes, scores, 0.5, classes=[0, 1, 0])) == [0, 1, 2]
    assert list(nms_contained(boxes, scores, 0.2, max_detections=1)) == [0]
    np.testing.assert_array_equal(box_overlap_smaller([[0, 0, 0, 0]], [[0, 0, 5, 5]]), [[0]])
    with pytest.raises(ValueError, match="nms_contained"):
        nms_contained(boxes, scores[:2])


def test_box_iou():
    iou = box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]])
    np.testing.assert_allclose(iou, [[1 / 3, 0, 0]])


def test_pyramid_scales_cover_min_to_max_object_sizes():
    s = pyramid_scales(480, 640, window=12, min_size=20, factor=0.709)
    assert s[0] == pytest.approx(12 / 20)
    assert all(b == pytest.approx(a * 0.709) for a, b in zip(s, s[1:]))
    assert min(480, 640) * s[-1] >= 12 and min(480, 640) * s[-1] * 0.709 < 12
    capped = pyramid_scales(480, 640, window=12, min_size=20, max_size=100)
    assert capped[-1] >= 12 / 100 * (1 - 1e-9) and len(capped) < len(s)
    with pytest.raises(ValueError):
        pyramid_scales(10, 10, 12, factor=1.5)


def test_resize_for_scale():
    img = np.zeros((100, 80, 3), np.uint8)
    assert resize_for_scale(img, 0.5).shape == (50, 40, 3)
    assert resize_for_scale(img, 1.5).shape == (150, 120, 3)
