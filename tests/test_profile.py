"""Where inference time goes: visionkit.profile and `visionkit bench --profile`."""

import json

import numpy as np
from click.testing import CliRunner

import visionkit as vk
from visionkit import layers as L
from visionkit.commands.bench import bench
from visionkit.profile import profile_layers, profile_lines


def _model():
    return vk.Sequential([
        L.Conv2D(8, 3, padding="same", use_bias=False, input_shape=(1, 12, 12), name="c1"),
        L.BatchNorm(name="bn1"),
        L.Activation("relu", name="r1"),
        L.MaxPool2D(2, name="pool"),
        L.Flatten(name="flat"),
        L.Dense(4, name="fc"),
    ])


def test_profile_rows_follow_the_inference_run():
    model = _model()
    rows = profile_layers(model, np.zeros((2, 1, 12, 12), np.float32), repeat=3, warmup=1)
    # the conv -> BN -> ReLU chain is one fused step, named after the convolution
    assert sorted((r.name, r.kind) for r in rows) == [
        ("c1", "Conv2D+BatchNorm+relu"), ("fc", "Dense"), ("flat", "Flatten"), ("pool", "MaxPool2D")]
    assert all(r.ms >= 0 for r in rows) and [r.ms for r in rows] == sorted((r.ms for r in rows), reverse=True)
    assert abs(sum(r.share for r in rows) - 1) < 1e-9
    lines = profile_lines(rows, top=2)
    assert lines[0].split() == ["LAYER", "KIND", "MS", "SHARE"]
    assert any(line.startswith("(2 more)") for line in lines)
    assert lines[-1].split()[:2] == ["total", "4"]


def test_bench_profile_cli(tmp_path):
    path = tmp_path / "m.vk"
    _model().save(str(path))
    res = CliRunner().invoke(bench, [str(path), "--vs", "visionkit", "--repeat", "2", "--warmup", "1", "--profile",
                                     "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert {r["name"] for r in doc["profile"]} == {"c1", "pool", "flat", "fc"}
    res = CliRunner().invoke(bench, [str(path), "--vs", "visionkit", "--repeat", "2", "--profile"])
    assert res.exit_code == 0, res.output
    assert "Where visionkit's time goes" in res.stdout and "Conv2D+BatchNorm+relu" in res.stdout
