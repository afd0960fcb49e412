"""CPU interpolation (nearest, bilinear) with PyTorch's coordinate rules, in the input's precision as PyTorch
does on the CPU, so that edge cases (non-integer scale factors) pick the same source pixels."""

import numpy as np
from numba import njit, prange

from .threads import launch


def _axis_tables(n_out, n_in, scale, align_corners, mode, ft):
    """Per output index: the two source indices and the weight of the second, in the input's float type
    (PyTorch computes source coordinates in float for float32 inputs and in double for float64)."""
    o = np.arange(n_out)
    of = o.astype(ft)
    if mode == 0:
        if n_out == n_in:
            k = o
        elif n_out == 2 * n_in:
            k = o >> 1
        else:
            k = np.minimum(np.floor(of * ft(scale)).astype(np.int64), n_in - 1)
        return k, k, np.zeros(n_out, ft)
    if align_corners:
        src = of * ft(scale)
    else:
        src = np.maximum(ft(scale) * (of + ft(0.5)) - ft(0.5), ft(0))
    k = np.minimum(src.astype(np.int64), n_in - 1)
    return k, np.where(k < n_in - 1, k + 1, k), (src - k.astype(ft)).astype(ft)


@njit(parallel=True, cache=True)
def _resize(x, y, h0, h1, lh, w0, w1, lw):
    N, C = x.shape[0], x.shape[1]
    OH, OW = y.shape[2], y.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        xp = x[n, c]
        for oh in range(OH):
            a1 = lh[oh]
            a0 = 1.0 - a1
            r0 = xp[h0[oh]]
            r1 = xp[h1[oh]]
            for ow in range(OW):
                b1 = lw[ow]
                b0 = 1.0 - b1
                y[n, c, oh, ow] = (a0 * (b0 * r0[w0[ow]] + b1 * r0[w1[ow]])
                                   + a1 * (b0 * r1[w0[ow]] + b1 * r1[w1[ow]]))


@njit(parallel=True, cache=True)
def _resize_backward(gy, gx, h0, h1, lh, w0, w1, lw):
    N, C = gx.shape[0], gx.shape[1]
    OH, OW = gy.shape[2], gy.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        plane = gx[n, c]
        for oh in range(OH):
            a1 = lh[oh]
            a0 = 1.0 - a1
            for ow in range(OW):
                b1 = lw[ow]
                b0 = 1.0 - b1
                g = gy[n, c, oh, ow]
                plane[h0[oh], w0[ow]] += a0 * b0 * g
                plane[h0[oh], w1[ow]] += a0 * b1 * g
                plane[h1[oh], w0[ow]] += a1 * b0 * g
                plane[h1[oh], w1[ow]] += a1 * b1 * g


@njit(parallel=True, cache=True)
def _nearest(x, y, hi, wi):
    """A gather, not the bilinear kernel with zero weights: 0 * inf would turn infinities into NaN."""
    N, C = x.shape[0], x.shape[1]
    OH, OW = y.shape[2], y.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        for oh in range(OH):
            r = x[n, c, hi[oh]]
            for ow in range(OW):
                y[n, c, oh, ow] = r[wi[ow]]


@njit(parallel=True, cache=True)
def _nearest_backward(gy, gx, hi, wi):
    N, C = gx.shape[0], gx.shape[1]
    OH, OW = gy.shape[2], gy.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        for oh in range(OH):
            r = gx[n, c, hi[oh]]
            for ow in range(OW):
                r[wi[ow]] += gy[n, c, oh, ow]


def _scale(n_in, n_out, given, align_corners):
    if align_corners:
        return (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    return given


def _tables(in_hw, out_hw, mode, align_corners, scale_hw, dtype):
    ft = np.dtype(dtype).type
    th = _axis_tables(out_hw[0], in_hw[0], _scale(in_hw[0], out_hw[0], scale_hw[0], align_corners),
                      bool(align_corners), mode, ft)
    tw = _axis_tables(out_hw[1], in_hw[1], _scale(in_hw[1], out_hw[1], scale_hw[1], align_corners),
                      bool(align_corners), mode, ft)
    return th + tw


def interpolate_forward(x, out_hw, mode, align_corners, scale_hw):
    y = np.empty(x.shape[:2] + tuple(out_hw), x.dtype)
    h0, h1, lh, w0, w1, lw = _tables(x.shape[2:], out_hw, mode, align_corners, scale_hw, x.dtype)
    if mode == 0:
        launch(_nearest, y.size, x, y, h0, w0)
    else:
        launch(_resize, 4 * y.size, x, y, h0, h1, lh, w0, w1, lw)
    return y


def interpolate_backward(gy, x_shape, mode, align_corners, scale_hw):
    gx = np.zeros(x_shape, gy.dtype)
    h0, h1, lh, w0, w1, lw = _tables(x_shape[2:], gy.shape[2:], mode, align_corners, scale_hw, gy.dtype)
    if mode == 0:
        launch(_nearest_backward, gy.size, gy, gx, h0, w0)
    else:
        launch(_resize_backward, 4 * gy.size, gy, gx, h0, h1, lh, w0, w1, lw)
    return gx
