"""Whole-model inference, visionkit against onnxruntime and OpenCV DNN on the exported ONNX file (same weights,
same input), through ``visionkit.bench``: the textbook MNIST CNN at batch 256 and ResNet-18 (224x224) at batch 1.

Run with the OpenBLAS variables unset for every engine, in one command (DESIGN.md):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest benchmarks/bench_engines.py
Timings are reported (pytest-benchmark's table, and the closing table of conftest.py), never asserted; the one
thing asserted is that the engines agree on the output.
"""

import numpy as np
import pytest
from _harness import THREADS, run_benchmark

from visionkit import registry
from visionkit.bench import (
    EngineSkipped,
    count_macs,
    header_lines,
    prepare_engine,
    run_bench,
    table_lines,
)

CASES = {
    "keras-mnist-cnn": 256,
    "resnet18": 1,
}
PEERS = ("onnxruntime", "opencv")

_models = {}


def _case(arch):
    return f"{arch} forward, batch {CASES[arch]} (engines)"


def _model_and_input(arch):
    if arch not in _models:
        model = registry.get_architecture(arch).build(seed=0)
        shape = tuple(model.inputs[0].shape[1:])
        x = np.random.default_rng(0).standard_normal((CASES[arch],) + shape, dtype=np.float32)
        _models[arch] = (model, x, 2 * count_macs(model, shape) * CASES[arch])
    return _models[arch]


@pytest.mark.parametrize("arch", list(CASES))
def test_visionkit(benchmark, arch):
    model, x, flops = _model_and_input(arch)
    eng = prepare_engine("visionkit", model, x)
    run_benchmark(benchmark, _case(arch), "visionkit", eng.fn, (flops, "GFLOP"))


@pytest.mark.parametrize("engine", PEERS)
@pytest.mark.parametrize("arch", list(CASES))
def test_peer(benchmark, ort_mod, arch, engine):
    """Each peer under pytest-benchmark, THREADS threads (as the other benchmark files pin their peers)."""
    model, x, flops = _model_and_input(arch)
    try:
        eng = prepare_engine(engine, model, x, threads=THREADS)
    except EngineSkipped as e:
        pytest.skip(str(e))
    try:
        benchmark.extra_info["setup"] = eng.note
        run_benchmark(benchmark, _case(arch), engine, eng.fn, (flops, "GFLOP"))
    finally:
        eng.close()


@pytest.mark.parametrize("arch", list(CASES))
def test_report(ort_mod, arch, capsys):
    """The `visionkit bench` report for this case: machine header and table, printed; the outputs must agree."""
    model, _x, _ = _model_and_input(arch)
    report = run_bench(model, name=arch, batch=CASES[arch], engines=PEERS, repeat=5, threads=THREADS,
                       random_weights=True)
    with capsys.disabled():
        print()
        for line in header_lines(report) + [""] + table_lines(report):
            print(line)
    for r in report.results:
        if r.status == "ok" and r.engine != "visionkit":
            assert r.agrees, f"{r.engine} disagrees with visionkit: max |diff| {r.max_abs_diff}"
