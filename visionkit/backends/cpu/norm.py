"""CPU normalisation kernels: local response normalisation (AlexNet) and batch normalisation."""

import numpy as np
from numba import njit, prange

from .threads import launch


@njit(parallel=True, cache=True)
def _lrn_scale(x, size, alpha, k, d):
    """d = k + alpha/size * (sum of x^2 over the channel window c - size//2 .. c + (size-1)//2)."""
    N, C, H, W = x.shape
    P = H * W
    xf = x.reshape(N, C, P)
    df = d.reshape(N, C, P)
    lo_off = size // 2
    hi_off = (size - 1) // 2
    a = alpha / size
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        c0 = max(0, c - lo_off)
        c1 = min(C - 1, c + hi_off)
        for p in range(P):
            s = 0.0
            for j in range(c0, c1 + 1):
                v = xf[n, j, p]
                s += v * v
            df[n, c, p] = k + a * s


def lrn_forward(x, size, alpha, beta, k):
    d = np.empty_like(x)
    launch(_lrn_scale, x.size * size, x, size, alpha, k, d)
    return x * d ** (-beta)


@njit(parallel=True, cache=True)
def _lrn_backward(gy, x, d, tt, size, alpha, beta, gx):
    """gx_i = g_i d_i^-beta - 2 alpha beta / size * x_i * sum over windows containing i of g_c x_c d_c^(-beta-1)."""
    N, C, H, W = x.shape
    P = H * W
    xf = x.reshape(N, C, P)
    df = d.reshape(N, C, P)
    gf = gy.reshape(N, C, P)
    tf = tt.reshape(N, C, P)
    gxf = gx.reshape(N, C, P)
    # channel i feeds the windows of channels i - (size-1)//2 .. i + size//2
    lo_off = (size - 1) // 2
    hi_off = size // 2
    coef = 2.0 * alpha * beta / size
    for t in prange(N * C):
        n = t // C
        i = t - n * C
        c0 = max(0, i - lo_off)
        c1 = min(C - 1, i + hi_off)
        for p in range(P):
            s = 0.0
            for c in range(c0, c1 + 1):
                s += tf[n, c, p]
            gxf[n, i, p] = gf[n, i, p] * df[n, i, p] ** (-beta) - coef * xf[n, i, p] * s


def lrn_backward(gy, x, size, alpha, beta, k):
    d = np.empty_like(x)
    launch(_lrn_scale, x.size * size, x, size, alpha, k, d)
    tt = gy * x * d ** (-beta - 1.0)
    gx = np.empty_like(x)
    launch(_lrn_backward, x.size * size, gy, x, d, tt, size, alpha, beta, gx)
    return gx


def _as3d(x):
    """(N, C, H, W) or (N, C) viewed as (N, C, P)."""
    return x.reshape(x.shape[0], x.shape[1], int(np.prod(x.shape[2:], dtype=np.int64)))  # explicit: N may be 0


@njit(parallel=True, cache=True)
def _stats(x3, mean, var):
    N, C, P = x3.shape
    m = N * P
    for c in prange(C):
        s = 0.0
        for n in range(N):
            for p in range(P):
                s += x3[n, c, p]
        mu = s / m
        q = 0.0
        for n in range(N):
            for p in range(P):
                dlt = x3[n, c, p] - mu
                q += dlt * dlt
        mean[c] = mu
        var[c] = q / m


def batch_norm_stats(x):
    x3 = _as3d(x)
    C = x3.shape[1]
    mean = np.empty(C, x.dtype)
    var = np.empty(C, x.dtype)
    launch(_stats, 2 * x.size, x3, mean, var)
    return mean, var


def batch_norm_update_running(running_mean, running_var, mean, var, momentum, n):
    """In place, as PyTorch: running = (1 - momentum) * running + momentum * batch, with the batch variance made
    unbiased (times n / (n - 1))."""
    m = float(momentum)
    running_mean *= 1.0 - m
    running_mean += (m * mean.astype(np.float64)).astype(running_mean.dtype)
    running_var *= 1.0 - m
    running_var += (m * var.astype(np.float64) * (n / (n - 1))).astype(running_var.dtype)


@njit(parallel=True, cache=True)
def _bn_forward(x3, scale, shift, y3):
    N, C, P = x3.shape
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        a = scale[c]
        b = shift[c]
        for p in range(P):
            y3[n, c, p] = x3[n, c, p] * a + b


def _affine(mean, var, weight, bias, eps, dtype):
    invstd = 1.0 / np.sqrt(var.astype(np.float64) + eps)
    w = np.ones_like(invstd) if weight is None else weight.astype(np.float64)
    b = np.zeros_like(invstd) if bias is None else bias.astype(np.float64)
    scale = w * invstd
    return scale.astype(dtype), (b - mean * scale).astype(dtype), invstd


def batch_norm_forward(x, mean, var, weight, bias, eps):
    scale, shift, _ = _affine(mean, var, weight, bias, eps, x.dtype)
    y = np.empty_like(x)
    launch(_bn_forward, x.size, _as3d(x), scale, shift, _as3d(y))
    return y


@njit(parallel=True, cache=True)
def _bn_grad_sums(gy3, x3, mean, invstd, sg, sgx):
    N, C, P = x3.shape
    for c in prange(C):
        a = 0.0
        b = 0.0
        mu = mean[c]
        for n in range(N):
            for p in range(P):
                g = gy3[n, c, p]
                a += g
                b += g * (x3[n, c, p] - mu)
        sg[c] = a
        sgx[c] = b * invstd[c]


@njit(parallel=True, cache=True)
def _bn_backward_train(gy3, x3, mean, invstd, w, sg, sgx, gx3):
    N, C, P = x3.shape
    m = N * P
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        k = w[c] * invstd[c] / m
        mu = mean[c]
        for p in range(P):
            xhat = (x3[n, c, p] - mu) * invstd[c]
            gx3[n, c, p] = k * (m * gy3[n, c, p] - sg[c] - xhat * sgx[c])


def batch_norm_backward(gy, x, mean, var, weight, eps, training):
    C = x.shape[1]
    invstd = 1.0 / np.sqrt(var.astype(np.float64) + eps)
    w = np.ones(C) if weight is None else weight.astype(np.float64)
    gy3, x3 = _as3d(gy), _as3d(x)
    sg = np.empty(C)
    sgx = np.empty(C)
    launch(_bn_grad_sums, 2 * x.size, gy3, x3, mean.astype(np.float64), invstd, sg, sgx)
    gx = np.empty_like(x)
    if training:
        launch(_bn_backward_train, x.size, gy3, x3, mean.astype(np.float64), invstd, w, sg, sgx, _as3d(gx))
    else:
        launch(_bn_forward, x.size, gy3, (w * invstd).astype(x.dtype), np.zeros(C, x.dtype), _as3d(gx))
    return gx, sgx.astype(x.dtype), sg.astype(x.dtype)
