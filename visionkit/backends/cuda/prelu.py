"""CUDA PReLU, the twin of ``visionkit.backends.cpu.prelu`` (same functions, same arguments).

Forward: one thread per element. Backward: one thread per element for gx, and one block per (n, c) plane summing
gy * x where x <= 0 (float64, ``tensor.block_sum``); a second small kernel adds the planes' sums over the batch
(and over the channels when one slope is shared).
"""

import numpy as np
from numba import cuda, float64

from .tensor import RED_TPB, TPB, _as3d, block_sum, empty, flat, grid1d, red_threads


@cuda.jit
def _prelu_forward(x, alpha, y, C, P, shared):
    i = cuda.grid(1)
    if i < x.size:
        c = 0 if shared else (i // P) % C
        v = x[i]
        y[i] = v if v > 0 else alpha[c] * v


@cuda.jit
def _prelu_grad_x(gy, x, alpha, gx, C, P, shared):
    i = cuda.grid(1)
    if i < x.size:
        c = 0 if shared else (i // P) % C
        g = gy[i]
        gx[i] = g if x[i] > 0 else alpha[c] * g


@cuda.jit
def _prelu_grad_alpha_part(gy3, x3, part):
    """One block per (n, c): part[n, c] = the plane's sum of gy * x where x <= 0."""
    nc = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    C, P = x3.shape[1], x3.shape[2]
    n = nc // C
    c = nc - n * C
    acc = 0.0
    for p in range(tid, P, nt):
        v = x3[n, c, p]
        if not v > 0:
            acc += gy3[n, c, p] * v
    buf = cuda.shared.array(RED_TPB, float64)
    tot = block_sum(buf, tid, nt, acc)
    if tid == 0:
        part[n, c] = tot


@cuda.jit
def _prelu_grad_alpha_finish(part, ga, shared):
    k = cuda.grid(1)
    N, C = part.shape
    if k < ga.size:
        acc = 0.0
        if shared:
            for n in range(N):
                for c in range(C):
                    acc += part[n, c]
        else:
            for n in range(N):
                acc += part[n, k]
        ga[k] = acc


def prelu_forward(x, alpha):
    """y of x (N, C, ...) with slopes alpha (C,) or (1,)."""
    y = empty(tuple(x.shape), x.dtype)
    if x.size:
        C = int(x.shape[1])
        P = x.size // max(1, int(x.shape[0]) * C)
        _prelu_forward[grid1d(x.size), TPB](flat(x), alpha, flat(y), C, int(P), alpha.shape[0] == 1)
    return y


def prelu_backward(gy, x, alpha):
    """(gx, galpha): galpha shaped like alpha, summed over the batch and the spatial positions."""
    gx = empty(tuple(x.shape), x.dtype)
    ga = empty(tuple(alpha.shape), x.dtype)
    shared = alpha.shape[0] == 1
    if x.size:
        C = int(x.shape[1])
        P = x.size // max(1, int(x.shape[0]) * C)
        _prelu_grad_x[grid1d(x.size), TPB](flat(gy), flat(x), alpha, flat(gx), C, int(P), shared)
        x3 = _as3d(x)
        part = empty((int(x.shape[0]), C), np.float64)
        _prelu_grad_alpha_part[int(x3.shape[0] * x3.shape[1]), red_threads(x3.shape[2])](_as3d(gy), x3, part)
        _prelu_grad_alpha_finish[grid1d(ga.size), TPB](part, ga, shared)
    else:
        ga = cuda.to_device(np.zeros(alpha.shape, x.dtype))
    return gx, ga
