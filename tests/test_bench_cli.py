"""`visionkit bench`: the machine header, one row per engine (skipped ones with a reason), --json, bad --vs."""

import json
import sys

import pytest
from click.testing import CliRunner

from visionkit.bench import PEERS, run_bench
from visionkit.commands.bench import bench

ARGS = ["keras-mnist-cnn", "--repeat", "2", "--batch", "2", "--warmup", "1"]


def invoke(*args):
    return CliRunner().invoke(bench, list(args))


def _installed(engine):
    module = {"onnxruntime": "onnxruntime", "torch": "torch", "opencv": "cv2"}[engine]
    try:
        __import__(module)
    except ImportError:
        return False
    return engine != "onnxruntime" or "onnx" in sys.modules or _importable("onnx")


def _importable(name):
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def test_table_and_header():
    r = invoke(*ARGS)
    assert r.exit_code == 0, r.output
    out = r.output
    for start in ("Model: keras-mnist-cnn", "CPU: ", "Threads: numba ", "Versions: ", "Env: OPENBLAS_CORETYPE=",
                  "MACs per image: "):
        assert any(line.startswith(start) for line in out.splitlines()), start
    assert "random weights" in out  # said on stderr too (CliRunner mixes the streams)
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in
            ("visionkit",) + PEERS}
    assert set(rows) == {"visionkit", *PEERS}
    for engine in PEERS:
        if _installed(engine):
            assert "skipped" not in rows[engine] and "failed" not in rows[engine], rows[engine]
            assert "MISMATCH" not in rows[engine]
        else:
            assert "skipped" in rows[engine] and "not installed" in rows[engine]


def test_json():
    r = invoke(*ARGS, "--json", "--vs", "onnxruntime")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output[r.output.index("{"):])
    assert doc["model"] == "keras-mnist-cnn" and doc["batch"] == 2 and doc["input_shape"] == [1, 28, 28]
    assert doc["system"]["cpu"] and doc["system"]["numba_threads"] >= 1
    engines = {e["engine"]: e for e in doc["results"]}
    assert set(engines) == {"visionkit", "onnxruntime"}
    vk = engines["visionkit"]
    assert vk["status"] == "ok" and len(vk["times_ms"]) == 2 and vk["median_ms"] > 0 and vk["gflops"] > 0
    if engines["onnxruntime"]["status"] == "ok":
        assert engines["onnxruntime"]["agrees"] is True
        assert engines["onnxruntime"]["max_abs_diff"] < 1e-4


def test_unknown_engine_is_a_usage_error():
    r = invoke("keras-mnist-cnn", "--vs", "onnxruntime,tensorflow")
    assert r.exit_code == 2
    assert "tensorflow" in r.output
    for engine in PEERS:
        assert engine in r.output


def test_unknown_model_is_a_usage_error():
    r = invoke("keras-mnist-cnnn")
    assert r.exit_code == 2 and "keras-mnist-cnn" in r.output  # the close match is suggested


def test_missing_engine_is_skipped_with_a_reason(monkeypatch):
    from visionkit import registry

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setitem(sys.modules, "cv2", None)
    model = registry.get_architecture("keras-mnist-cnn").build(seed=0)
    report = run_bench(model, batch=1, repeat=1, warmup=0, engines=("onnxruntime", "opencv"))
    ort, cv = report.result("onnxruntime"), report.result("opencv")
    assert ort.status == "skipped" and "onnxruntime is not installed" in ort.reason
    assert cv.status == "skipped" and "OpenCV is not installed" in cv.reason
    with pytest.raises(ValueError, match="valid: onnxruntime, torch, opencv"):
        run_bench(model, engines=("tvm",))
