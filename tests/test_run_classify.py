"""`visionkit run classify` end to end: a tiny classifier saved with a card, good and bad images, JSON and text
output, run folders, refusals (architecture without weights, unknown task), Ctrl-C, and the real console script.

The CliRunner tests use a plugin set holding the built-in tasks plugin and a stand-in architecture, so they do not
depend on the installed entry points; the subprocess test puts a distribution declaring the tasks entry point on
PYTHONPATH (the same one visionkit's pyproject declares).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import visionkit as vk
from visionkit import layers as L
from visionkit import plugins
from visionkit.builtins import tasks as builtin_tasks
from visionkit.builtins.tasks import to_probabilities
from visionkit.cli import cli
from visionkit.hookspecs import hookimpl
from visionkit.io import read_image
from visionkit.tasks.preprocess import Preprocessor

ROOT = Path(__file__).resolve().parents[1]


class _StandIn:
    """An architecture without weights, as a plugin registers one."""

    __name__ = "standin"

    @hookimpl
    def register_architectures(self, register):
        register("tiny-arch", lambda **kw: None, input_shape=(1, 16, 16), num_classes=3)


@pytest.fixture
def plugin_set():
    with plugins.using_plugins(("tasks", builtin_tasks), ("standin", _StandIn())) as ps:
        yield ps


def _tiny(channels, path, card=True):
    model = vk.Sequential([
        L.Conv2D(4, 3, activation="relu", input_shape=(channels, 16, 16)), L.MaxPool2D(2), L.Flatten(),
        L.Dense(3, activation="softmax"),
    ], seed=0)
    meta = {"class_names": ["a", "b", "c"]}
    if card:
        meta["preprocessing"] = {"input_size": [16, 16], "channels": channels, "scale": 1 / 255,
                                 "mean": [0.5] * channels, "std": [0.25] * channels}
    model.save(path, metadata=meta)
    vk.reset_names()
    return vk.load_model(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    good = {
        "color.png": rng.integers(0, 256, (20, 30, 3), dtype=np.uint8),
        "gray.jpg": rng.integers(0, 256, (24, 18), dtype=np.uint8),
        "rgba.png": rng.integers(0, 256, (16, 16, 4), dtype=np.uint8),
        "deep.png": rng.integers(0, 65536, (17, 19, 3), dtype=np.uint16),
    }
    for name, img in good.items():
        assert cv2.imwrite(str(d / name), img)
    (d / "empty.jpg").write_bytes(b"")
    (d / "text.jpg").write_text("this is not a picture\n")
    jpeg = cv2.imencode(".jpg", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))[1].tobytes()
    (d / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    bad = ["missing.png", "empty.jpg", "text.jpg", "cut.jpg"]
    return d, [str(d / n) for n in good], [str(d / n) for n in bad]


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _expected_top(model, path):
    x = Preprocessor.from_model(model)([read_image(path, channels=3)])
    return int(np.argmax(model.predict(x)[0]))


def test_json_has_one_result_per_good_image_and_the_errors(plugin_set, files, tmp_path):
    d, good, bad = files
    model = _tiny(1, tmp_path / "tiny.vk")
    result = _invoke("run", "classify", *good, *bad, "--model", tmp_path / "tiny.vk", "--json", "--batch", 3)
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)  # stdout holds the JSON document and nothing else
    assert [r["source"] for r in doc["results"]] == good
    for r in doc["results"]:
        assert r["task"] == "classify" and len(r["classes"]) == 3
        assert r["classes"][0]["class_id"] == _expected_top(model, r["source"])
        assert abs(sum(c["score"] for c in r["classes"]) - 1) < 1e-4
        assert set(r["times_ms"]) == {"preprocess", "inference", "postprocess"}
    errors = {Path(e["source"]).name: e["error"] for e in doc["errors"]}
    assert set(errors) == {Path(p).name for p in bad}
    assert "empty" in errors["empty.jpg"] and "truncated" in errors["cut.jpg"]
    assert doc["shape"] == [3, 1, 16, 16] and doc["save_dir"] is None
    for p in bad:
        assert f"error: {p}: " in result.stderr


def test_text_output_saves_annotated_images_in_numbered_run_folders(plugin_set, files, tmp_path, monkeypatch):
    d, good, bad = files
    _tiny(1, tmp_path / "tiny.vk")
    monkeypatch.chdir(tmp_path)
    result = _invoke("run", "classify", *good, "--model", "tiny.vk", "--topk", 2)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(f"image 1/4 {good[0]}: 30x20 ") and lines[0].endswith("ms")
    assert lines[1].startswith(f"image 2/4 {good[1]}: 18x24 ")
    assert lines[-2].startswith("Speed: ") and lines[-2].endswith("per image at shape (1, 1, 16, 16)")
    assert lines[-1] == f"Results saved to {os.path.join('runs', 'classify', 'predict')}"
    saved = sorted(os.listdir(tmp_path / "runs" / "classify" / "predict"))
    assert saved == sorted(Path(p).name for p in good)
    img = cv2.imread(str(tmp_path / "runs" / "classify" / "predict" / "color.png"))
    assert img.shape == (20, 30, 3)
    again = _invoke("run", "classify", good[0], "--model", "tiny.vk", "--name", "predict")
    assert again.exit_code == 0 and again.stdout.strip().endswith(os.path.join("runs", "classify", "predict2"))
    out = _invoke("run", "classify", good[0], *bad[:2], "--model", "tiny.vk", "--out", tmp_path / "mine")
    assert out.exit_code == 1 and os.listdir(tmp_path / "mine") == ["color.png"]
    assert not [n for n in os.listdir(tmp_path / "mine") if n.startswith(".tmp")]


def test_a_three_channel_model_without_card_takes_a_grayscale_image(plugin_set, files, tmp_path):
    d, good, bad = files
    model = _tiny(3, tmp_path / "rgb.vk", card=False)  # size and channels from the model's input shape
    gray = good[1]
    result = _invoke("run", "classify", gray, "--model", tmp_path / "rgb.vk", "--json")
    assert result.exit_code == 0, result.output
    [r] = json.loads(result.stdout)["results"]
    assert r["classes"][0]["class_id"] == _expected_top(model, gray)


def test_an_architecture_without_weights_is_refused(plugin_set, files):
    result = _invoke("run", "classify", files[1][0], "--model", "tiny-arch")
    assert result.exit_code == 2
    assert "architecture without trained weights" in result.stderr and "random weights" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    missing = _invoke("run", "classify", files[1][0])
    # the default model (digits) comes from the pretrained plugin, which this plugin set leaves out
    assert missing.exit_code == 2 and "default model 'digits' is not registered" in missing.stderr
    typo = _invoke("run", "classify", files[1][0], "--model", "tiny-archh")
    assert typo.exit_code == 2 and "did you mean tiny-arch" in typo.stderr


def test_unknown_task_lists_close_matches(plugin_set, files):
    result = _invoke("run", "clasify", files[1][0], "--model", "x.vk")
    assert result.exit_code == 2 and "did you mean classify?" in result.stderr


def test_ctrl_c_exits_130_without_partial_files(plugin_set, files, tmp_path, monkeypatch):
    _tiny(1, tmp_path / "tiny.vk")
    monkeypatch.chdir(tmp_path)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(builtin_tasks.ClassifyTask, "run", interrupted)
    result = _invoke("run", "classify", *files[1], "--model", "tiny.vk")
    assert result.exit_code == 130 and "Interrupted" in result.stderr
    assert not (tmp_path / "runs" / "classify" / "predict").exists()  # made with the first file, so never here


def test_probabilities_pass_through_and_logits_get_softmax():
    p = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(to_probabilities(p), p)
    logits = np.array([[2.0, -1.0, 0.5]])
    e = np.exp(logits - logits.max())
    np.testing.assert_allclose(to_probabilities(logits), e / e.sum())
    np.testing.assert_allclose(to_probabilities(np.array([[0.25]])), [[0.75, 0.25]])  # one sigmoid output
    np.testing.assert_allclose(to_probabilities(np.array([[0.0], [-2.0]]))[1], [1 - 1 / (1 + np.exp(2)),
                                                                                  1 / (1 + np.exp(2))])


def test_real_console_run(files, tmp_path):
    """The real process, the tasks plugin found through an entry point."""
    d, good, bad = files
    _tiny(1, tmp_path / "tiny.vk")
    site = tmp_path / "site"
    info = site / "vk_test_tasks-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vk-test-tasks\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[visionkit]\ntasks = visionkit.builtins.tasks\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]), VISIONKIT_PLUGINS="tasks")
    out = subprocess.run([sys.executable, "-m", "visionkit", "run", "classify", good[0], bad[2], "--model",
                          str(tmp_path / "tiny.vk"), "--json"], capture_output=True, text=True, timeout=120,
                         env=env, cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    doc = json.loads(out.stdout)
    assert len(doc["results"]) == 1 and len(doc["errors"]) == 1
    lines = out.stderr.splitlines()  # with --json, the per-image lines go to stderr with the errors
    assert f"error: {bad[2]}: not an image OpenCV can decode (corrupt, truncated or another format)" in lines
    assert any(line.startswith(f"image 1/2 {good[0]}: 30x20 ") for line in lines)
