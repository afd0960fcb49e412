"""The sliding-window detect task: a classifier slid over an image pyramid in one fully-convolutional pass per
level, its window scores equal to the classifier's on each crop, boxes where the objects are, NMS, box regression,
and `visionkit run detect` with --save-txt / --json on a classifier model file.

The classifiers here are written by hand, so where the boxes must be is known exactly: a "ring" detector whose
logit is the sum of the window's border pixels minus the sum of its interior, trained on nothing.
"""

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import visionkit as vk
from visionkit import layers as L
from visionkit import plugins
from visionkit.builtins import tasks as builtin_tasks
from visionkit.builtins.tasks.detect import DetectTask
from visionkit.cli import cli
from visionkit.tasks.preprocess import Preprocessor
from visionkit.tasks.sliding import SlidingWindowDetector

CARD = {"class_names": ["background", "ring"],
        "preprocessing": {"input_size": [8, 8], "channels": 1, "scale": 1 / 255}}


def ring_classifier(regression=None):
    """8x8 gray windows -> (background, ring): logit = 0.5 * (border sum - interior sum) - 10 (pixels in 0..1),
    so an 8x8 ring of white on black scores 0.5 * 28 - 10 = 4 (p = 0.98) and anything else far less.
    regression: the 4 constant box values of a second output (see visionkit.tasks.sliding)."""
    x = vk.Input((1, 8, 8))
    f = L.Flatten()(x)
    cls = L.Dense(2, activation="softmax", name="cls")(f)
    outs = cls
    if regression is not None:
        outs = [cls, L.Dense(4, name="box")(f)]
    model = vk.Model(x, outs)
    ring = np.ones((8, 8), np.float32)
    ring[1:7, 1:7] = -1
    dense = model.get_layer("cls")
    dense.kernel.value = np.stack([np.zeros(64, np.float32), 0.5 * ring.reshape(-1)])
    dense.bias.value = np.array([0, -10], np.float32)
    if regression is not None:
        box = model.get_layer("box")
        box.kernel.value = np.zeros((4, 64), np.float32)
        box.bias.value = np.asarray(regression, np.float32)
    model.metadata = dict(CARD)
    return model


def draw_ring(img, x, y, size):
    t = size // 8
    img[y:y + size, x:x + size] = 255
    img[y + t:y + size - t, x + t:x + size - t] = 0


def boxes_of(result):
    return sorted([round(b.x1, 3), round(b.y1, 3), round(b.x2, 3), round(b.y2, 3)] for b in result.boxes)


def test_window_scores_equal_the_classifier_on_every_crop():
    """The fully-convolutional pass scores window (i, j) exactly as the classifier scores that crop."""
    model = vk.Sequential([
        L.Conv2D(4, 3, activation="relu", input_shape=(3, 16, 16)), L.MaxPool2D(2),
        L.Conv2D(6, 3, activation="tanh"), L.Flatten(), L.Dense(5), L.Dense(3, activation="softmax"),
    ], seed=3)
    model.metadata = {"preprocessing": {"input_size": [16, 16], "mean": 0.5, "std": 0.25}}
    det = SlidingWindowDetector(model)
    assert det.stride == (2, 2)
    img = np.random.default_rng(1).integers(0, 256, (31, 26, 3), dtype=np.uint8)
    level = det.level(img, 1.0)
    rows, cols = level.probs.shape[:2]
    assert (rows, cols) == ((31 - 16) // 2 + 1, (26 - 16) // 2 + 1)
    pre = Preprocessor.from_model(model)
    crops = [img[2 * i:2 * i + 16, 2 * j:2 * j + 16] for i in range(rows) for j in range(cols)]
    expected = model.predict(pre(crops)).reshape(rows, cols, 3)
    np.testing.assert_allclose(level.probs, expected, atol=2e-6)
    np.testing.assert_array_equal(level.boxes[2, 3], [6, 4, 22, 20])  # window at (x=2*3, y=2*2), 16 wide


def test_rings_are_found_where_they_are_and_nowhere_else():
    img = np.zeros((48, 64), np.uint8)
    draw_ring(img, 10, 5, 8)
    draw_ring(img, 41, 30, 8)
    [result] = DetectTask().run(ring_classifier(), [img], conf=0.9, min_size=8, max_size=8)
    assert boxes_of(result) == [[10, 5, 18, 13], [41, 30, 49, 38]]
    assert all(b.name == "ring" and b.class_id == 1 and b.score > 0.97 for b in result.boxes)
    assert result.summary() == "2 rings"


def test_the_pyramid_finds_a_ring_twice_the_window():
    img = np.zeros((40, 56), np.uint8)
    draw_ring(img, 20, 12, 16)  # at scale 0.5 it is the 8x8 ring the classifier knows
    [result] = DetectTask().run(ring_classifier(), [img], conf=0.9, min_size=8, max_size=16, factor=0.5)
    assert boxes_of(result) == [[20, 12, 36, 28]]


def test_conf_max_det_and_nms_options():
    img = np.zeros((48, 64), np.uint8)
    draw_ring(img, 10, 5, 8)
    draw_ring(img, 41, 30, 8)
    task, model = DetectTask(), ring_classifier()
    [loose] = task.run(model, [img], conf=1e-4, iou=0.99, min_size=8, max_size=8)
    [strict] = task.run(model, [img], conf=1e-4, iou=0.1, min_size=8, max_size=8)
    assert len(loose.boxes) > len(strict.boxes) >= 2   # without suppression the near-misses stay
    assert [b.score for b in loose.boxes] == sorted((b.score for b in loose.boxes), reverse=True)
    [one] = task.run(model, [img], conf=0.3, min_size=8, max_size=8, max_det=1)
    assert len(one.boxes) == 1
    [none] = task.run(model, [np.zeros((30, 30), np.uint8)], conf=0.5, min_size=8, max_size=8)
    assert none.boxes == [] and none.summary() == "no detections"


def test_box_regression_refines_the_window():
    """Box values (0.5, 0.25, 0.5, 1.0): centre at half the window's width and a quarter of its height, width
    0.5 ** 2 = a quarter of the window's, height all of it."""
    img = np.zeros((32, 32), np.uint8)
    draw_ring(img, 12, 10, 8)
    model = ring_classifier(regression=[0.5, 0.25, 0.5, 1.0])
    [result] = DetectTask().run(model, [img], conf=0.9, min_size=8, max_size=8)
    [box] = result.boxes
    # window (12, 10)-(20, 18): centre x 12 + 4 = 16, centre y 10 + 2 = 12, w = 0.25 * 8 = 2, h = 8
    np.testing.assert_allclose([box.x1, box.y1, box.x2, box.y2], [15, 8, 17, 16])


def test_a_classifier_without_a_fixed_input_size_is_refused():
    model = vk.Sequential([L.Conv2D(2, 3, input_shape=(1, None, None))], seed=0)
    with pytest.raises(ValueError, match="window size"):
        DetectTask().run(model, [np.zeros((20, 20), np.uint8)])


@pytest.fixture
def plugin_set():
    with plugins.using_plugins(("tasks", builtin_tasks)) as ps:
        yield ps


def test_cli_detect_with_a_classifier_file_saves_boxes_labels_and_json(plugin_set, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ring_classifier().save("rings.vk", metadata=CARD)
    img = np.zeros((48, 64, 3), np.uint8)
    draw_ring(img, 10, 5, 8)
    draw_ring(img, 41, 30, 8)
    cv2.imwrite("scene.png", img)
    args = ["run", "detect", "scene.png", "--model", "rings.vk", "--conf", "0.9", "--min-size", "8",
            "--max-size", "8", "--save-txt", "--save-conf"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "image 1/1 scene.png: 64x48 2 rings" in result.stdout and "Speed:" in result.stdout
    labels = (tmp_path / "runs/detect/predict/labels/scene.txt").read_text().splitlines()
    rows = sorted([float(v) for v in line.split()] for line in labels)
    np.testing.assert_allclose([r[:5] for r in rows], [[1, 14 / 64, 9 / 48, 8 / 64, 8 / 48],
                                                       [1, 45 / 64, 34 / 48, 8 / 64, 8 / 48]], atol=1e-6)
    assert all(r[5] > 0.97 for r in rows)
    drawn = cv2.imread(str(tmp_path / "runs/detect/predict/scene.png"))
    assert drawn is not None and drawn.shape == (48, 64, 3) and (drawn != img).any()

    result = CliRunner().invoke(cli, args[:-2] + ["--json"])
    doc = json.loads(result.stdout)
    assert sorted([b["x1"], b["y1"]] for b in doc["results"][0]["boxes"]) == [[10, 5], [41, 30]]
    assert not (tmp_path / "runs/detect/predict2").exists()  # --json alone saves nothing


def test_the_model_card_sets_the_detect_defaults_and_options_override_them():
    img = np.zeros((48, 64), np.uint8)
    draw_ring(img, 10, 5, 8)
    model = ring_classifier()
    model.metadata = dict(CARD, detect={"conf": 0.99, "min_size": 8, "max_size": 8})
    [strict] = DetectTask().run(model, [img])
    assert strict.boxes == []              # the card's conf 0.99 is above the ring's 0.98
    [given] = DetectTask().run(model, [img], conf=0.9)
    assert boxes_of(given) == [[10, 5, 18, 13]]
