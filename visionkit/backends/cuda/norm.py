"""CUDA normalisation: local response normalisation (elementwise over a channel window) and batch norm.

Batch-norm statistics and gradient sums are two-stage per-channel reductions (tensor.red_plan), float64
like the CPU twin: blocks over (channel, chunk of N*H*W) write partials, then one block per channel combines
them. The statistics keep the two-pass accuracy: each chunk sums its deviations from its own mean, and the
chunks combine exactly (Chan's parallel variance), so there is no catastrophic cancellation.
Per-channel coefficients (scale/shift, the backward's A/E/F) are computed once per channel in float64 and
rounded to the tensor's dtype; the elementwise passes (one thread per element of the (N, C, P) view) then run
in the tensor's own precision. The running statistics are updated in place on the device.
"""

import functools
import math

import numba
import numpy as np
from numba import cuda, float64

from .tensor import (
    RED_TPB,
    _as3d,
    block_sum,
    empty,
    full,
    grid1d,
    red_plan,
    red_threads,
)

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
def _stats_part(x3, length, psum, pm2):
    """First stage, block (c, k): the sum and the sum of squared deviations from its own mean (two passes over
    the chunk, the second from cache) of items k*length .. of channel c's (N, P) walk."""
    c = cuda.blockIdx.x
    k = cuda.blockIdx.y
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    N, P = x3.shape[0], x3.shape[2]
    q0 = k * length
    q1 = min(q0 + length, N * P)
    buf = cuda.shared.array(RED_TPB, float64)
    acc = 0.0
    for q in range(q0 + tid, q1, nt):
        n = q // P
        acc += x3[n, c, q - n * P]
    s = block_sum(buf, tid, nt, acc)
    mk = s / (q1 - q0)
    acc = 0.0
    for q in range(q0 + tid, q1, nt):
        n = q // P
        d = x3[n, c, q - n * P] - mk
        acc += d * d
    m2 = block_sum(buf, tid, nt, acc)
    if tid == 0:
        psum[c, k] = s
        pm2[c, k] = m2


@cuda.jit
def _stats_finish(psum, pm2, length, M, mean, var):
    """Second stage: the chunks' (count, sum, M2) combined exactly (Chan et al.): M2 = sum_k M2_k + n_k (mu_k - mu)^2,
    every term non-negative, so no cancellation."""
    c = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    K = psum.shape[1]
    buf = cuda.shared.array(RED_TPB, float64)
    acc = 0.0
    for k in range(tid, K, nt):
        acc += psum[c, k]
    mu = block_sum(buf, tid, nt, acc) / M
    acc = 0.0
    for k in range(tid, K, nt):
        cnt = min(length, M - k * length)
        d = psum[c, k] / cnt - mu
        acc += pm2[c, k] + cnt * d * d
    v = block_sum(buf, tid, nt, acc) / M
    if tid == 0:
        mean[c] = mu
        var[c] = v


def batch_norm_stats(x):
    x3 = _as3d(x)
    C = int(x3.shape[1])
    M = int(x3.shape[0] * x3.shape[2])
    if M == 0:  # no samples: undefined statistics, as 0/0
        return full((C,), x.dtype, np.nan), full((C,), x.dtype, np.nan)
    mean = empty((C,), x.dtype)
    var = empty((C,), x.dtype)
    if C:
        k, length = red_plan(M)
        psum = empty((C, k), np.float64)
        pm2 = empty((C, k), np.float64)
        _stats_part[(C, k), red_threads(length)](x3, length, psum, pm2)
        _stats_finish[C, red_threads(k)](psum, pm2, length, M, mean, var)
    return mean, var


@functools.cache
def _running_kernel(dtype):
    ft = numba.from_dtype(np.dtype(dtype))

    @cuda.jit
    def update(rm, rv, mean, var, keep, m, unbias):
        """The CPU twin's rounding: running * (1-m) in the running dtype, plus the batch term computed in float64
        and rounded to that dtype."""
        c = cuda.grid(1)
        if c >= rm.size:
            return
        rm[c] = rm[c] * keep + ft(m * float64(mean[c]))
        rv[c] = rv[c] * keep + ft(m * float64(var[c]) * unbias)

    return update


def batch_norm_update_running(running_mean, running_var, mean, var, momentum, n):
    """In place, as PyTorch: running = (1 - momentum) * running + momentum * batch, with the batch variance made
    unbiased (times n / (n - 1)); all on the device."""
    m = float(momentum)
    unbias = n / (n - 1)
    if running_mean.dtype != running_var.dtype:
        raise TypeError("batch_norm_update_running: running_mean and running_var differ in dtype")
    C = int(running_mean.size)
    for a, name in ((running_var, "running_var"), (mean, "mean"), (var, "var")):
        if int(a.size) != C:
            raise ValueError(f"batch_norm_update_running: {name} has {a.size} entries, expected {C}")
    if C:
        b, t = grid1d(C)
        _running_kernel(running_mean.dtype)[b, t](running_mean, running_var, mean, var,
                                                   running_mean.dtype.type(1.0 - m), m, float(unbias))


@cuda.jit
def _bn_affine(mean, var, w, has_w, b, has_b, eps, scale, shift):
    """Per channel, in float64 as the CPU twin: scale = w / sqrt(var + eps), shift = b - mean * scale."""
    c = cuda.grid(1)
    if c >= scale.size:
        return
    sc = 1.0 / math.sqrt(float64(var[c]) + eps)
    if has_w:
        sc *= w[c]
    sf = -float64(mean[c]) * sc
    if has_b:
        sf += b[c]
    scale[c] = sc
    shift[c] = sf


@cuda.jit
def _bn_apply(x3, scale, shift, y3):
    """y = x * scale[c] + shift[c], in the tensor's precision."""
    i = cuda.grid(1)
    N, C, P = x3.shape
    if i >= N * C * P:
        return
    p = i % P
    u = i // P
    c = u % C
    n = u // C
    y3[n, c, p] = x3[n, c, p] * scale[c] + shift[c]


def batch_norm_forward(x, mean, var, weight, bias, eps):
    y = empty(x.shape, x.dtype)
    if x.size:
        C = int(x.shape[1])
        scale = empty((C,), x.dtype)
        shift = empty((C,), x.dtype)
        bl, t = grid1d(C)
        _bn_affine[bl, t](mean, var, weight if weight is not None else mean, weight is not None,
                          bias if bias is not None else mean, bias is not None, float(eps), scale, shift)
        bl, t = grid1d(x.size)
        _bn_apply[bl, t](_as3d(x), scale, shift, _as3d(y))
    return y


@cuda.jit
def _bn_sums_part(gy3, x3, mean, length, pa, pb):
    """First stage, block (c, k): partial sums of gy and gy * (x - mean) over a chunk of channel c."""
    c = cuda.blockIdx.x
    k = cuda.blockIdx.y
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    N, P = x3.shape[0], x3.shape[2]
    buf = cuda.shared.array(RED_TPB, float64)
    mu = float64(mean[c])
    a = 0.0
    bb = 0.0
    for q in range(k * length + tid, min((k + 1) * length, N * P), nt):
        n = q // P
        p = q - n * P
        g = gy3[n, c, p]
        a += g
        bb += g * (x3[n, c, p] - mu)
    ta = block_sum(buf, tid, nt, a)
    tb = block_sum(buf, tid, nt, bb)
    if tid == 0:
        pa[c, k] = ta
        pb[c, k] = tb


@cuda.jit
def _bn_sums_finish(pa, pb, var, w, has_w, eps, M, sg, sgx, coef):
    """Second stage: sg = sum gy, sgx = sum gy * xhat, and the per-channel coefficients of the elementwise pass
    (float64 here, rounded to the tensor's dtype): A = w * invstd, E = A * sg / M, F = A * invstd * sgx / M."""
    c = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    K = pa.shape[1]
    buf = cuda.shared.array(RED_TPB, float64)
    a = 0.0
    bb = 0.0
    for k in range(tid, K, nt):
        a += pa[c, k]
        bb += pb[c, k]
    ta = block_sum(buf, tid, nt, a)
    tb = block_sum(buf, tid, nt, bb)
    if tid == 0:
        invstd = 1.0 / math.sqrt(float64(var[c]) + eps)
        s1 = tb * invstd
        A = invstd
        if has_w:
            A *= w[c]
        sg[c] = ta
        sgx[c] = s1
        coef[0, c] = A
        coef[1, c] = A * ta / M
        coef[2, c] = A * invstd * s1 / M


@cuda.jit
def _bn_backward(gy3, x3, mean, coef, training, gx3):
    """training: gx = A gy - (E + F (x - mean)) (the batch statistics' share); inference: gx = A gy."""
    i = cuda.grid(1)
    N, C, P = x3.shape
    if i >= N * C * P:
        return
    p = i % P
    u = i // P
    c = u % C
    n = u // C
    g = gy3[n, c, p] * coef[0, c]
    if training:
        g -= coef[1, c] + coef[2, c] * (x3[n, c, p] - mean[c])
    gx3[n, c, p] = g


def batch_norm_backward(gy, x, mean, var, weight, eps, training):
    x3, gy3 = _as3d(x), _as3d(gy)
    C = int(x3.shape[1])
    M = int(x3.shape[0] * x3.shape[2])
    sg = empty((C,), x.dtype)
    sgx = empty((C,), x.dtype)
    gx = empty(x.shape, x.dtype)
    if C:
        k, length = red_plan(M)
        pa = empty((C, k), np.float64)
        pb = empty((C, k), np.float64)
        coef = empty((3, C), x.dtype)
        _bn_sums_part[(C, k), red_threads(length)](gy3, x3, mean, length, pa, pb)
        _bn_sums_finish[C, red_threads(k)](pa, pb, var, weight if weight is not None else var, weight is not None,
                                           float(eps), max(M, 1), sg, sgx, coef)
        if x.size:
            bl, t = grid1d(x.size)
            _bn_backward[bl, t](gy3, x3, mean, coef, bool(training), _as3d(gx))
    return gx, sgx, sg
