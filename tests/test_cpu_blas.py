"""GEMM called from inside Numba kernels (visionkit/backends/cpu/blas.py): numpy's own OpenBLAS, by symbol."""

import numpy as np
import pytest

from visionkit.backends.cpu import blas

pytestmark = pytest.mark.skipif(not blas.AVAILABLE, reason="numpy's BLAS has no scipy-openblas ILP64 GEMM symbols")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 3, 5), (64, 70, 100), (16, 196, 64)])
def test_gemm_matches_numpy(dtype, m, k, n):
    rng = np.random.default_rng(m * 100 + n)
    a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    c = np.full((m, n), np.nan, dtype)  # beta 0: whatever c held is ignored, NaN included
    blas.gemm(a, b, c, 0.0)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


def test_gemm_takes_row_strided_views_and_accumulates():
    """The Winograd kernels pass matrices that are views into wider buffers (rows contiguous, any row stride),
    and the weight gradient sums its bands with beta = 1."""
    rng = np.random.default_rng(0)
    big_a, big_b = rng.standard_normal((20, 30)), rng.standard_normal((40, 50))
    big_c = rng.standard_normal((25, 60))
    before = big_c.copy()
    a, b, c = big_a[2:12, 3:20], big_b[5:22, 1:41], big_c[4:14, 10:50]
    want = a @ b + c
    blas.gemm(a, b, c, 1.0)
    np.testing.assert_allclose(big_c[4:14, 10:50], want, rtol=1e-12)
    outside = np.ones(big_c.shape, bool)
    outside[4:14, 10:50] = False
    np.testing.assert_array_equal(big_c[outside], before[outside])  # the rest of the buffer is left alone


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (1, 512, 1000), (3, 70, 9)])
def test_gemm_nt_matches_numpy_on_row_blocks(dtype, m, k, n):
    """c = a @ b.T for b a block of a dense weight's rows (the classifier's per-thread outputs)."""
    rng = np.random.default_rng(m * 100 + n)
    a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((n + 4, k)).astype(dtype)
    c = np.full((m, n + 6), np.nan, dtype)
    blas.gemm_nt(a, b[2:n + 2], c[:, 3:n + 3])
    np.testing.assert_allclose(c[:, 3:n + 3], a @ b[2:n + 2].T, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-4 if dtype == np.float32 else 1e-12)
    assert np.isnan(c[:, :3]).all() and np.isnan(c[:, n + 3:]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,k,o", [(1, 512, 1000), (2, 33, 7), (5, 300, 129), (0, 8, 3), (300, 64, 10), (600, 512, 40)])
def test_dense_on_the_kernel_path(dtype, n, k, o):
    from visionkit.backends.cpu import dense

    rng = np.random.default_rng(o)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((n, k), (o, k), (o,)))
    want = x.astype(np.float64) @ w.astype(np.float64).T + b
    np.testing.assert_allclose(dense.linear_forward(x, w, b), want, rtol=1e-4 if dtype == np.float32 else 1e-12,
                               atol=1e-4 if dtype == np.float32 else 1e-12)
