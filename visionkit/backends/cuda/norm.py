"""CUDA normalisation: local response normalisation (elementwise over a channel window) and batch norm.

Batch-norm statistics and gradient sums are per-channel parallel reductions: one block per channel, its
threads striding over (N, H*W) and combining in shared memory (float64, like the CPU twin); the mean is
reduced first and the variance is a second pass over the deviations (no catastrophic cancellation).
Elementwise passes are one thread per element over the flat index of the (N, C, P) view.
"""

import math

from numba import cuda, float64

from .tensor import RED_TPB, _as3d, block_sum, empty, grid1d, red_threads

# ----------------------------------------------------------------------------------------------- LRN


@cuda.jit(device=True, inline=True)
def _lrn_d(x3, n, c, p, size, alpha, k):
    """k + alpha/size * sum of x^2 over channels c - size//2 .. c + (size-1)//2 (clipped)."""
    C = x3.shape[1]
    c0 = max(0, c - size // 2)
    c1 = min(C - 1, c + (size - 1) // 2)
    s = 0.0
    for j in range(c0, c1 + 1):
        v = x3[n, j, p]
        s += v * v
    return k + alpha / size * s


@cuda.jit
def _lrn_forward(x3, y3, size, alpha, beta, k):
    i = cuda.grid(1)
    N, C, P = x3.shape
    if i >= N * C * P:
        return
    p = i % P
    u = i // P
    c = u % C
    n = u // C
    y3[n, c, p] = x3[n, c, p] * _lrn_d(x3, n, c, p, size, alpha, k) ** (-beta)


@cuda.jit
def _lrn_terms(gy3, x3, t3, size, alpha, beta, k):
    """t = gy * x * d^(-beta-1): what each channel's window sends back to its members."""
    i = cuda.grid(1)
    N, C, P = x3.shape
    if i >= N * C * P:
        return
    p = i % P
    u = i // P
    c = u % C
    n = u // C
    t3[n, c, p] = gy3[n, c, p] * x3[n, c, p] * _lrn_d(x3, n, c, p, size, alpha, k) ** (-beta - 1.0)


@cuda.jit
def _lrn_backward(gy3, x3, t3, gx3, size, alpha, beta, k):
    """gx_i = g_i d_i^-beta - 2 alpha beta/size x_i sum_{windows c containing i} t_c (a gather over channels)."""
    i = cuda.grid(1)
    N, C, P = x3.shape
    if i >= N * C * P:
        return
    p = i % P
    u = i // P
    c = u % C
    n = u // C
    c0 = max(0, c - (size - 1) // 2)
    c1 = min(C - 1, c + size // 2)
    s = 0.0
    for j in range(c0, c1 + 1):
        s += t3[n, j, p]
    d = _lrn_d(x3, n, c, p, size, alpha, k)
    gx3[n, c, p] = gy3[n, c, p] * d ** (-beta) - 2.0 * alpha * beta / size * x3[n, c, p] * s


def lrn_forward(x, size, alpha, beta, k):
    y = empty(x.shape, x.dtype)
    if x.size:
        b, t = grid1d(x.size)
        _lrn_forward[b, t](_as3d(x), _as3d(y), int(size), float(alpha), float(beta), float(k))
    return y


def lrn_backward(gy, x, size, alpha, beta, k):
    gx = empty(x.shape, gy.dtype)
    if x.size:
        tt = empty(x.shape, gy.dtype)
        b, t = grid1d(x.size)
        args = (int(size), float(alpha), float(beta), float(k))
        _lrn_terms[b, t](_as3d(gy), _as3d(x), _as3d(tt), *args)
        _lrn_backward[b, t](_as3d(gy), _as3d(x), _as3d(tt), _as3d(gx), *args)
    return gx


# ----------------------------------------------------------------------------------------------- batch norm


@cuda.jit
def _stats(x3, mean, var):
    c = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    N, P = x3.shape[0], x3.shape[2]
    M = N * P
    buf = cuda.shared.array(RED_TPB, float64)
    acc = 0.0
    for q in range(tid, M, nt):
        n = q // P
        acc += x3[n, c, q - n * P]
    mu = block_sum(buf, tid, nt, acc) / M
    acc = 0.0
    for q in range(tid, M, nt):
        n = q // P
        d = x3[n, c, q - n * P] - mu
        acc += d * d
    v = block_sum(buf, tid, nt, acc) / M
    if tid == 0:
        mean[c] = mu
        var[c] = v


def batch_norm_stats(x):
    x3 = _as3d(x)
    C = int(x3.shape[1])
    mean = empty((C,), x.dtype)
    var = empty((C,), x.dtype)
    if C:
        _stats[C, red_threads(x3.shape[0] * x3.shape[2])](x3, mean, var)
    return mean, var


@cuda.jit
def _bn_forward(x3, mean, var, w, has_w, b, has_b, eps, y3):
    i = cuda.grid(1)
    N, C, P = x3.shape
    if i >= N * C * P:
        return
    p = i % P
    u = i // P
    c = u % C
    n = u // C
    scale = 1.0 / math.sqrt(var[c] + eps)
    if has_w:
        scale *= w[c]
    shift = -mean[c] * scale
    if has_b:
        shift += b[c]
    y3[n, c, p] = x3[n, c, p] * scale + shift


def batch_norm_forward(x, mean, var, weight, bias, eps):
    y = empty(x.shape, x.dtype)
    if x.size:
        bl, t = grid1d(x.size)
        _bn_forward[bl, t](_as3d(x), mean, var, weight if weight is not None else mean, weight is not None,
                           bias if bias is not None else mean, bias is not None, float(eps), _as3d(y))
    return y


@cuda.jit
def _bn_grad_sums(gy3, x3, mean, var, eps, sg, sgx):
    """sg[c] = sum gy; sgx[c] = sum gy * xhat."""
    c = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    N, P = x3.shape[0], x3.shape[2]
    buf = cuda.shared.array(RED_TPB, float64)
    mu = float64(mean[c])
    a = 0.0
    bb = 0.0
    for q in range(tid, N * P, nt):
        n = q // P
        p = q - n * P
        g = gy3[n, c, p]
        a += g
        bb += g * (x3[n, c, p] - mu)
    ta = block_sum(buf, tid, nt, a)
    tb = block_sum(buf, tid, nt, bb)
    if tid == 0:
        sg[c] = ta
        sgx[c] = tb / math.sqrt(var[c] + eps)


@cuda.jit
def _bn_backward(gy3, x3, mean, var, w, has_w, eps, sg, sgx, training, gx3):
    i = cuda.grid(1)
    N, C, P = x3.shape
    if i >= N * C * P:
        return
    p = i % P
    u = i // P
    c = u % C
    n = u // C
    invstd = 1.0 / math.sqrt(var[c] + eps)
    wc = w[c] if has_w else 1.0
    if training:
        m = N * P
        xhat = (x3[n, c, p] - mean[c]) * invstd
        gx3[n, c, p] = wc * invstd / m * (m * gy3[n, c, p] - sg[c] - xhat * sgx[c])
    else:
        gx3[n, c, p] = gy3[n, c, p] * (wc * invstd)


def batch_norm_backward(gy, x, mean, var, weight, eps, training):
    x3, gy3 = _as3d(x), _as3d(gy)
    C = int(x3.shape[1])
    sg = empty((C,), x.dtype)
    sgx = empty((C,), x.dtype)
    gx = empty(x.shape, x.dtype)
    if C:
        _bn_grad_sums[C, red_threads(x3.shape[0] * x3.shape[2])](gy3, x3, mean, var, float(eps), sg, sgx)
    if x.size:
        bl, t = grid1d(x.size)
        _bn_backward[bl, t](gy3, x3, mean, var, weight if weight is not None else mean, weight is not None,
                            float(eps), sg, sgx, bool(training), _as3d(gx))
    return gx, sgx, sg
