"""CPU tensor plumbing: padding, adds, channel concat/split, channel sums, host transfers (no-ops here)."""

import numpy as np
from numba import njit, prange

from .threads import launch


def _pad_map(n_in, before, after, mode):
    """Source index for every padded position; -1 marks a constant-filled one."""
    idx = np.arange(-before, n_in + after)
    if mode == 0:
        return np.where((idx >= 0) & (idx < n_in), idx, -1)
    if mode == 2:
        return np.clip(idx, 0, n_in - 1)
    if n_in == 1:  # reflect of a single pixel can only repeat it
        return np.zeros_like(idx)
    period = 2 * (n_in - 1)
    m = np.abs(idx) % period
    return np.where(m < n_in, m, period - m)


@njit(parallel=True, cache=True)
def _pad_gather(x, y, hm, wm, value):
    N, C = x.shape[0], x.shape[1]
    OH, OW = y.shape[2], y.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        for i in range(OH):
            hi = hm[i]
            for j in range(OW):
                wj = wm[j]
                y[n, c, i, j] = x[n, c, hi, wj] if hi >= 0 and wj >= 0 else value


@njit(parallel=True, cache=True)
def _pad_scatter(gy, gx, hm, wm):
    N, C = gx.shape[0], gx.shape[1]
    OH, OW = gy.shape[2], gy.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        for i in range(OH):
            hi = hm[i]
            if hi < 0:
                continue
            for j in range(OW):
                wj = wm[j]
                if wj >= 0:
                    gx[n, c, hi, wj] += gy[n, c, i, j]


def pad_forward(x, pads, mode, value):
    hm = _pad_map(x.shape[2], pads[0], pads[1], mode)
    wm = _pad_map(x.shape[3], pads[2], pads[3], mode)
    y = np.empty(x.shape[:2] + (len(hm), len(wm)), x.dtype)
    launch(_pad_gather, y.size, x, y, hm, wm, float(value))
    return y


def pad_backward(gy, x_shape, pads, mode):
    gx = np.zeros(x_shape, gy.dtype)
    launch(_pad_scatter, gy.size, gy, gx, _pad_map(x_shape[2], pads[0], pads[1], mode),
                 _pad_map(x_shape[3], pads[2], pads[3], mode))
    return gx


@njit(parallel=True, cache=True)
def _add_channel_bias(y3, b):
    N, C, P = y3.shape
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        bv = b[c]
        for p in range(P):
            y3[n, c, p] += bv


def add_channel_bias(y, b):
    """y[:, c] += b[c], in place; returns y."""
    launch(_add_channel_bias, y.size, y.reshape(y.shape[0], y.shape[1], -1), b)
    return y


@njit(parallel=True, cache=True)
def _scale_channels(x3, s, y3):
    N, C, P = x3.shape
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        v = s[n, c]
        for p in range(P):
            y3[n, c, p] = x3[n, c, p] * v


@njit(parallel=True, cache=True)
def _scale_channels_backward(gy3, x3, s, gx3, gs):
    N, C, P = x3.shape
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        v = s[n, c]
        acc = 0.0
        for p in range(P):
            g = gy3[n, c, p]
            gx3[n, c, p] = g * v
            acc += g * x3[n, c, p]
        gs[n, c] = acc


def _as3d(a):
    return a.reshape(a.shape[0], a.shape[1], int(np.prod(a.shape[2:], dtype=np.int64)))


def scale_channels(x, s):
    """y[n, c] = x[n, c] * s[n, c] (s is (N, C)): squeeze-and-excitation's rescaling."""
    y = np.empty_like(x)
    launch(_scale_channels, x.size, _as3d(x), s, _as3d(y))
    return y


def scale_channels_backward(gy, x, s):
    gx = np.empty_like(x)
    gs = np.empty(s.shape, x.dtype)
    launch(_scale_channels_backward, 2 * x.size, _as3d(gy), _as3d(x), s, _as3d(gx), gs)
    return gx, gs


def add(a, b):
    return a + b


def concat_channels(xs):
    return np.concatenate(xs, axis=1)


def split_channels(g, sizes):
    return [np.ascontiguousarray(p) for p in np.split(g, np.cumsum(sizes)[:-1], axis=1)]


@njit(parallel=True, cache=True, fastmath={"reassoc"})  # reassoc: each row's sum vectorises
def _channel_sums(g, out):
    """out[c] = sum of g[:, c, :] in float64, one channel per thread (deterministic for a given shape)."""
    N, C, P = g.shape
    for c in prange(C):
        acc = 0.0
        for n in range(N):
            r = g[n, c]
            s = 0.0
            for p in range(P):
                s += np.float64(r[p])
            acc += s
        out[c] = acc


def sum_except_channels(g):
    """Bias gradients: the sum over every axis but 1, accumulated in float64 (numpy's sum with dtype=float64
    converts the whole array first and ran 5x slower)."""
    g3 = g.reshape(g.shape[0], g.shape[1], -1)
    out = np.empty(g.shape[1], np.float64)
    launch(_channel_sums, g.size, g3, out)
    return out.astype(g.dtype)


def to_device(a):
    return np.ascontiguousarray(a)


def to_host(a):
    return np.asarray(a)
