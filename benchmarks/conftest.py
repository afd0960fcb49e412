"""Shared benchmark plumbing: peers (torch, onnxruntime) pinned to 2 threads, and a closing table of ratios.

Run the engine comparison with the OpenBLAS variables unset for every engine in that one command:
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest benchmarks
Timings are reported, never asserted.
"""

import os

import numpy as np
import pytest

import visionkit  # noqa: F401  (sets the thread policy before Numba starts)
from _harness import RESULTS, THREADS, median_time, record


def _timing_off(config):
    return bool(config.getoption("benchmark_disable", False))


@pytest.fixture(scope="session")
def torch_mod(request):
    if _timing_off(request.config):
        pytest.skip("timings disabled (--benchmark-disable): peers are only timed in a real benchmark run")
    torch = pytest.importorskip("torch")
    torch.set_num_threads(THREADS)
    return torch


@pytest.fixture(scope="session")
def ort_mod(request):
    if _timing_off(request.config):
        pytest.skip("timings disabled (--benchmark-disable)")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    return ort


@pytest.fixture(scope="session")
def sgemm_gflops(request):
    """The machine's float32 GEMM rate, measured in this run: the ceiling convolution is compared with."""
    if _timing_off(request.config):
        return None
    a = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32)
    t = median_time(lambda: a @ a)
    g = 2 * 1024 ** 3 / t / 1e9
    record("sgemm 1024x1024", "numpy", t, (2 * 1024 ** 3, "GFLOP"))
    return g


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    tr = terminalreporter
    tr.section("visionkit vs peers (medians; ratio = visionkit time / peer time)")
    blas = os.environ.get("OPENBLAS_CORETYPE")
    tr.write_line(f"OPENBLAS_CORETYPE={blas or '(unset)'}  threads={THREADS}")
    sg = RESULTS.get("sgemm 1024x1024", {})
    if "numpy" in sg:  # measured again at the end: the ceiling is the better of the two (the machine is shared)
        a = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32)
        sg["numpy"] = min(sg["numpy"], median_time(lambda: a @ a))
    sg_rate = sg["work"][0] / sg["numpy"] / 1e9 if "numpy" in sg else None
    for case, entry in RESULTS.items():
        if case.startswith("sgemm"):
            tr.write_line(f"{case:48s} {sg_rate:8.1f} GFLOP/s")
            continue
        vk = entry.get("visionkit")
        parts = [f"{case:48s}"]
        if vk is not None:
            parts.append(f"visionkit {vk * 1e3:9.3f} ms")
            if "work" in entry:
                amount, unit = entry["work"]
                rate = amount / vk / 1e9
                parts.append(f"{rate:7.1f} {unit}/s")
                if unit == "GFLOP" and sg_rate:
                    parts.append(f"({100 * rate / sg_rate:3.0f}% of sgemm)")
        for peer in ("torch", "onnxruntime"):
            if peer in entry:
                ratio = f" x{vk / entry[peer]:.2f}" if vk else ""
                parts.append(f"{peer} {entry[peer] * 1e3:8.3f} ms{ratio}")
        tr.write_line("  ".join(parts))
