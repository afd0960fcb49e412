"""CPU fully connected layer: BLAS GEMMs (numpy's OpenBLAS), run on visionkit's pool with BLAS itself held to one
thread (``threads.gemm``: OpenBLAS's own threads would spin on after the call and slow the next layer); a few rows
against a large weight (a classifier at batch 1) as one Numba kernel whose threads each take a block of outputs.
"""

import numpy as np
from numba import njit, prange

from . import blas, threads
from .blas import gemm_nt
from .threads import gemm, launch, num_workers


@njit(parallel=True, cache=True)
def _linear_parts(x, w, y, parts):
    """y = x @ w.T, each of ``parts`` threads computing a block of the outputs (rows of w)."""
    O = w.shape[0]
    for p in prange(parts):
        o0, o1 = p * O // parts, (p + 1) * O // parts
        if o0 < o1:
            gemm_nt(x, w[o0:o1], y[:, o0:o1])


def linear_forward(x, w, b):
    flops = 2.0 * x.shape[0] * w.shape[0] * w.shape[1]
    if blas.AVAILABLE and 0 < flops < threads.PARALLEL_MIN_FLOPS and x.dtype == w.dtype:
        # too little arithmetic for the pool, but the weight streams from memory on both cores: in the model at
        # batch 1, ResNet-18's 512 -> 1000 classifier 0.27 -> 0.16 ms, MobileNetV2's 1280 -> 1000 0.42 -> 0.23 ms
        y = np.empty((x.shape[0], w.shape[0]), x.dtype)
        with threads.single_threaded_blas():
            launch(_linear_parts, w.size, np.ascontiguousarray(x), np.ascontiguousarray(w), y, num_workers())
    else:
        y = gemm(x, w.T)
    if b is not None:
        y += b
    return y


def linear_backward(gy, x, w):
    return gemm(gy, w), gemm(gy.T, x), gy.sum(axis=0)
