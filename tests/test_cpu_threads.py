"""The CPU backend's thread policy: GEMMs run on visionkit's pool with BLAS held to one thread (OpenBLAS's own
workers spin after a multi-threaded call and slow the next layer), and BLAS gets its thread count back after."""

import os

import numpy as np
import pytest

import visionkit as vk
from visionkit import layers as L
from visionkit.backends.cpu import threads

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads():
    """numpy's own BLAS's thread count (torch or scipy, loaded by other tests, bring BLAS libraries of their own,
    which visionkit never calls)."""
    libs = threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers
    mine = [c.num_threads for c in libs if os.sep + "numpy" in c.filepath]
    if not mine:
        pytest.skip("threadpoolctl sees no BLAS library of numpy's own")
    return mine[0]


@pytest.mark.parametrize("shape", [(1, 300, 500), (257, 300, 64), (64, 256, 3136), (3, 5, 2), (130, 7, 129)])
def test_gemm_matches_numpy(shape):
    M, K, N = shape
    rng = np.random.default_rng(M + K + N)
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((N, K), dtype=np.float32).T  # a transposed view, as the dense layer passes
    want = a.astype(np.float64) @ b.astype(np.float64)
    got = threads.gemm(a, b)
    assert got.shape == (M, N) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4 * np.sqrt(K))


def test_gemm_into_strided_out():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((40, 600), dtype=np.float32)
    b = rng.standard_normal((600, 900), dtype=np.float32)
    out = np.full((40, 1000), 7.0, np.float32)
    threads.gemm(a, b, out=out[:, 50:950])
    np.testing.assert_allclose(out[:, 50:950], a @ b, rtol=1e-5, atol=1e-3)
    assert (out[:, :50] == 7).all() and (out[:, 950:] == 7).all()


class _Probe(L.Layer):
    """Records BLAS's thread count while the model runs."""

    seen = []

    def forward(self, x, training=False):
        _Probe.seen.append(_blas_threads())
        return x, None

    def backward(self, grad_out, ctx):
        _Probe.seen.append(_blas_threads())
        return grad_out

    def compute_output_shape(self, input_shape):
        return input_shape


def test_model_runs_hold_blas_to_one_thread_and_restore_it():
    before = _blas_threads()
    if before == 1:
        with threadpoolctl.threadpool_limits(2, user_api="blas"):
            if _blas_threads() != 2:
                pytest.skip("BLAS cannot be given two threads here")
            _check_hold()
    else:
        _check_hold()
    assert _blas_threads() == before


def _check_hold():
    before = _blas_threads()
    model = vk.Sequential([L.Dense(8, input_shape=(16,)), _Probe(), L.Dense(3)])
    _Probe.seen.clear()
    y = model(np.ones((4, 16), np.float32))
    model.backward(np.ones_like(y))
    model.predict(np.ones((4, 16), np.float32))
    assert _Probe.seen == [1, 1, 1]
    assert _blas_threads() == before


def _tuned_in_subprocess(env_extra):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "VISIONKIT_MALLOC"}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", "import visionkit._memory as m; print(m.TUNED)"], env=env,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"


def test_malloc_tuning_applies_on_glibc_and_yields_to_the_user():
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc malloc tuning is Linux-only")
    try:
        ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        pytest.skip("not glibc")
    assert _tuned_in_subprocess({})
    assert not _tuned_in_subprocess({"VISIONKIT_MALLOC": "default"})
    assert not _tuned_in_subprocess({"MALLOC_TRIM_THRESHOLD_": "1000000"})


def test_run_tiles_states_are_fixed_contiguous_runs(monkeypatch):
    """With make_state, each state sums a fixed contiguous run of tiles in order, and the states come back in run
    order, however the threads are scheduled (random sleeps here): the sums cannot depend on timing."""
    import random
    import time

    from visionkit.backends.cpu import threads

    monkeypatch.setattr(threads, "PARALLEL_MIN_FLOPS", 0)
    if threads.num_workers() < 2:
        pytest.skip("one numba thread: run_tiles runs on the calling thread")
    tiles = list(range(11))

    def fn(t, seen):
        time.sleep(random.random() * 0.003)
        seen.append(t)

    for _ in range(5):
        states = threads.run_tiles(tiles, fn, 1.0, make_state=list)
        w = len(states)
        assert w == min(threads.num_workers(), len(tiles))
        assert states == [tiles[i * 11 // w:(i + 1) * 11 // w] for i in range(w)]


def test_conv_weight_gradient_is_bitwise_repeatable():
    """The weight gradients (im2col and Winograd) sum per-worker partials: the same inputs give the same bits."""
    from visionkit import ops

    rng = np.random.default_rng(0)
    for shape in [(8, 32, 28, 28), (8, 16, 11, 13)]:  # a Winograd 3x3 and an im2col 5x5
        k = 3 if shape[2] == 28 else 5
        x = rng.standard_normal(shape, dtype=np.float32)
        w = rng.standard_normal((32, shape[1], k, k), dtype=np.float32)
        gy = rng.standard_normal(ops.conv2d(x, w, padding=1).shape, dtype=np.float32)
        first = ops.conv2d_backward(gy, x, w, padding=1)[1]
        for _ in range(4):
            np.testing.assert_array_equal(ops.conv2d_backward(gy, x, w, padding=1)[1], first)


def test_small_launches_run_on_one_thread_and_give_the_count_back():
    """launch runs a small parallel kernel with one Numba thread (waking the others costs more than the work),
    through the threading layer's own count functions, and leaves the caller's count as it found it."""
    import numba
    from numba import njit, prange

    @njit(parallel=True)
    def threads_seen(out):
        for i in prange(out.size):
            out[i] = numba.get_num_threads()

    before = numba.get_num_threads()
    small, big = np.zeros(4), np.zeros(4)
    threads.launch(threads_seen, 1, small)
    assert small.max() == 1 and numba.get_num_threads() == before
    threads.launch(threads_seen, threads.PARALLEL_MIN_WORK, big)
    assert big.max() == before and numba.get_num_threads() == before
    assert threads.num_workers() == before
