"""Results serialise to plain JSON; run folders number themselves; drawing marks the image where it should."""

import json
import os

import numpy as np

from visionkit.tasks.render import draw_boxes, draw_label, overlay_mask, palette
from visionkit.tasks.results import Box, ClassScore, Result
from visionkit.tasks.runs import next_run_dir


def test_results_to_json_and_the_summary_words():
    r = Result("a.jpg", 640, 480, "detect", "faces", boxes=[Box(1, 2, 30, 40, 0.9, 0, "face"),
                                                             Box(50, 60, 90, 99, 0.8, 0, "face")],
               times_ms={"inference": 12.5})
    d = json.loads(r.to_json())
    assert d["boxes"][0] == {"x1": 1, "y1": 2, "x2": 30, "y2": 40, "score": 0.9, "class_id": 0, "name": "face",
                             "landmarks": []}
    assert "mask" not in d and "classes" not in d and "frame" not in d
    assert r.summary() == "2 faces"
    c = Result("b.png", 28, 28, "classify", "digits", classes=[ClassScore(7, "7", 0.97)])
    assert c.summary() == "7 0.97" and json.loads(c.to_json())["classes"][0]["class_id"] == 7
    s = Result("c.png", 4, 4, "segment", "m", mask=np.array([[0, 1], [2, 2]]), mask_classes=["bg", "a", "b"])
    assert s.summary() == "b 50%, bg 25%, a 25%"  # the classes present, largest area first
    assert json.loads(s.to_json())["mask_areas"][2] == {"class_id": 2, "name": "b", "pixels": 2, "fraction": 0.5}


def test_run_folders_number_themselves(tmp_path):
    root = str(tmp_path / "runs")
    a = next_run_dir("detect", root=root)
    b = next_run_dir("detect", root=root)
    c = next_run_dir("detect", root=root)
    assert [os.path.basename(p) for p in (a, b, c)] == ["predict", "predict2", "predict3"]


def test_drawing_marks_the_image():
    img = np.zeros((100, 120, 3), np.uint8)
    out = draw_boxes(img, [Box(10, 20, 60, 80, 0.9, 1, "cat", [(30, 40)])])
    assert out[50, 10].any() and not out[50, 90].any() and not img.any()
    assert draw_label(img, "cat 0.9")[:10, :20].any()
    mask = np.zeros((100, 120), np.int64)
    mask[:, 60:] = 2
    ov = overlay_mask(np.full((100, 120, 3), 128, np.uint8), mask, ["bg", "a", "b"])
    assert (ov[99, 100] != 128).any() and (ov[99, 10] == 128).all()
    assert len(set(palette(20))) == 20
