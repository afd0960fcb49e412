"""CPU fully connected layer: BLAS GEMMs (numpy's OpenBLAS), run on visionkit's pool with BLAS itself held to one
thread (``threads.gemm``: OpenBLAS's own threads would spin on after the call and slow the next layer). Where BLAS
can be called from Numba, the forward is one Numba kernel whose threads each take a block of rows or outputs.
"""

import numpy as np
from numba import njit, prange

from . import blas, threads
from .blas import gemm_nt
from .threads import gemm, launch, num_workers


@njit(parallel=True, cache=True)
def _linear_parts(x, w, y, parts, by_rows):
    """y = x @ w.T on ``parts`` threads, each computing a block of rows of y (by_rows) or of its columns (the
    outputs: rows of w)."""
    M, O = x.shape[0], w.shape[0]
    for p in prange(parts):
        if by_rows:
            m0, m1 = p * M // parts, (p + 1) * M // parts
            if m0 < m1:
                gemm_nt(x[m0:m1], w, y[m0:m1])
        else:
            o0, o1 = p * O // parts, (p + 1) * O // parts
            if o0 < o1:
                gemm_nt(x, w[o0:o1], y[:, o0:o1])


def linear_forward(x, w, b):
    M, O = x.shape[0], w.shape[0]
    flops = 2.0 * M * O * w.shape[1]
    if blas.AVAILABLE and flops > 0 and x.dtype == w.dtype:
        # one kernel on Numba's threads rather than the pool: a classifier at batch 1 is bound by reading its
        # weight, which the pool (under its 30 MFLOP threshold) read on one thread (in the model at batch 1,
        # ResNet-18's 512 -> 1000 fc 0.27 -> 0.16 ms, MobileNetV2's 1280 -> 1000 0.42 -> 0.23 ms); and a large
        # one left the pool's threads beside Numba's workers, which spin for ~2 ms after the kernel before it
        y = np.empty((M, O), x.dtype)
        work = flops if flops >= threads.KERNEL_MIN_FLOPS else w.size
        with threads.single_threaded_blas():
            launch(_linear_parts, work, np.ascontiguousarray(x), np.ascontiguousarray(w), y, num_workers(), M >= O)
    else:
        y = gemm(x, w.T)
    if b is not None:
        y += b
    return y


def linear_backward(gy, x, w):
    return gemm(gy, w), gemm(gy.T, x), gy.sum(axis=0)
