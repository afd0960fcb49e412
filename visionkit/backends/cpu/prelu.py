"""CPU PReLU: y = x where x > 0, else alpha[c] * x, with one learned slope per channel (or one for all).

Arrays arrive as (N, C, P): P is the product of the spatial sizes (1 for a dense layer's (N, C) output); alpha has
C entries, or 1 (shared by every channel). The CUDA twin is ``visionkit.backends.cuda.prelu``.
"""

import numpy as np
from numba import njit, prange

from .threads import launch


@njit(parallel=True, cache=True)
def _prelu_forward(x3, alpha, y3):
    N, C, P = x3.shape
    shared = alpha.shape[0] == 1
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        a = alpha[0] if shared else alpha[c]
        for p in range(P):
            v = x3[n, c, p]
            y3[n, c, p] = v if v > 0 else a * v  # "v > 0" sends NaN through a * v: NaN stays NaN


@njit(parallel=True, cache=True)
def _prelu_backward(gy3, x3, alpha, gx3, part):
    """gx = gy (x > 0) or alpha * gy; part[n, c] = sum over the plane of gy * x where x <= 0 (float64)."""
    N, C, P = x3.shape
    shared = alpha.shape[0] == 1
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        a = alpha[0] if shared else alpha[c]
        acc = 0.0
        for p in range(P):
            v = x3[n, c, p]
            g = gy3[n, c, p]
            if v > 0:
                gx3[n, c, p] = g
            else:
                gx3[n, c, p] = a * g
                acc += g * v
        part[n, c] = acc


def _as3d(a):
    return a.reshape(a.shape[0], a.shape[1], int(np.prod(a.shape[2:], dtype=np.int64)))


def prelu_forward(x, alpha):
    """y of x (N, C, ...) with slopes alpha (C,) or (1,)."""
    y = np.empty_like(x)
    if x.size:
        launch(_prelu_forward, x.size, _as3d(x), alpha, _as3d(y))
    return y


def prelu_backward(gy, x, alpha):
    """(gx, galpha): galpha shaped like alpha, summed over the batch and the spatial positions."""
    gx = np.empty_like(x)
    part = np.zeros((x.shape[0], x.shape[1]), np.float64)
    if x.size:
        launch(_prelu_backward, 2 * x.size, _as3d(gy), _as3d(x), alpha, _as3d(gx), part)
    ga = part.sum(axis=0)
    if alpha.shape[0] == 1:
        ga = ga.sum(keepdims=True)
    return gx, ga.astype(x.dtype)
