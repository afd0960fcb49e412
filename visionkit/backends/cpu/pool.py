"""CPU pooling kernels: one thread per (image, channel) plane, so backward scatters never race.

Semantics (PyTorch's, with asymmetric pads so TensorFlow "same" fits) are spelled out in the backend contract.
"""

import numpy as np
from numba import njit, prange

from .conv_columns import _valid_cols
from .threads import launch


@njit(parallel=True, cache=True)
def _max_forward(x, kh, kw, sh, sw, pt, pl, dh, dw, y, idx):
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        xp = x[n, c]
        for oh in range(OH):
            h0 = oh * sh - pt
            for ow in range(OW):
                w0 = ow * sw - pl
                m = -np.inf
                mi = -1
                for i in range(kh):
                    ih = h0 + i * dh
                    if ih < 0 or ih >= H:
                        continue
                    for j in range(kw):
                        iw = w0 + j * dw
                        if iw < 0 or iw >= W:
                            continue
                        v = xp[ih, iw]
                        if mi < 0 or _gt(v, m):
                            m = v
                            mi = ih * W + iw
                y[n, c, oh, ow] = m
                idx[n, c, oh, ow] = mi


@njit(parallel=True, cache=True)
def _max_rows(x, kh, kw, sh, sw, pt, pl, dh, dw, y):
    """Max pooling without indices (inference), any window, separably: each output row first takes the running
    max of its kh input rows over whole rows (contiguous, vectorised), then the max of kw columns of that row
    per output column. The max is associative, NaN included, so the result is the window's max; ResNet's 3x3
    stride-2 stem pooling went from 1.5 to 0.64 ms single-threaded against nine strided taps per output
    (and the indexed kernel's per-output window walk was ~10x slower still)."""
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        xp = x[n, c]
        rows = np.empty(W, x.dtype)
        for oh in range(OH):
            rows[:] = -np.inf
            for i in range(kh):
                ih = oh * sh - pt + i * dh
                if ih >= 0 and ih < H:
                    xr = xp[ih]
                    for q in range(W):
                        rows[q] = _nanmax(xr[q], rows[q])
            yr = y[n, c, oh]
            yr[:] = -np.inf
            for j in range(kw):
                off, lo, hi = _valid_cols(j, sw, dw, pl, W, OW)
                for ow in range(lo, hi):
                    yr[ow] = _nanmax(rows[ow * sw + off], yr[ow])


@njit(cache=True, inline="always")
def _gt(v, m):
    """v replaces the running max m when larger or NaN (PyTorch's rule, so NaN propagates); this exact form also
    lets LLVM vectorise the 2x2 kernel (an extra "m == m" test made it 4x slower)."""
    return v > m or v != v


@njit(cache=True, inline="always")
def _nanmax(a, b):
    return a if (a > b or a != a) else b


@njit(parallel=True, cache=True)
def _max_2x2(x, y):
    """2x2/stride-2/unpadded max without indices (inference): ~28 GB/s here, 3x the indexed kernel."""
    N, C = x.shape[0], x.shape[1]
    OH, OW = y.shape[2], y.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        for oh in range(OH):
            r0 = x[n, c, 2 * oh]
            r1 = x[n, c, 2 * oh + 1]
            yr = y[n, c, oh]
            for ow in range(OW):
                m0 = _nanmax(r0[2 * ow], r0[2 * ow + 1])
                m1 = _nanmax(r1[2 * ow], r1[2 * ow + 1])
                yr[ow] = _nanmax(m0, m1)


@njit(parallel=True, cache=True)
def _max_2x2_indexed(x, y, idx):
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        for oh in range(OH):
            r0 = x[n, c, 2 * oh]
            r1 = x[n, c, 2 * oh + 1]
            yr = y[n, c, oh]
            ir = idx[n, c, oh]
            b0 = 2 * oh * W
            for ow in range(OW):
                a = r0[2 * ow]
                b = r0[2 * ow + 1]
                s0 = _gt(b, a)
                m0 = b if s0 else a
                i0 = b0 + 2 * ow + (1 if s0 else 0)
                a = r1[2 * ow]
                b = r1[2 * ow + 1]
                s1 = _gt(b, a)
                m1 = b if s1 else a
                i1 = b0 + W + 2 * ow + (1 if s1 else 0)
                s = _gt(m1, m0)
                yr[ow] = m1 if s else m0
                ir[ow] = i1 if s else i0


@njit(parallel=True, cache=True)
def _index_scatter(gy, idx, gx):
    """gx = 0, then gx[n, c].flat[idx] += gy, plane by plane: each plane is zeroed just before its scatter, while
    it is in cache (a separate np.zeros pass cost as much as the scatter)."""
    N, C = gy.shape[0], gy.shape[1]
    P = gy.shape[2] * gy.shape[3]
    HW = gx.shape[2] * gx.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        g = gy[n, c].reshape(P)
        ii = idx[n, c].reshape(P)
        plane = gx[n, c].reshape(HW)
        plane[:] = 0
        for p in range(P):
            k = ii[p]
            if k >= 0:
                plane[k] += g[p]


def _plain_2x2(x_shape, kernel, stride, pads, out_hw):
    """A 2x2, stride-2, unpadded window whose outputs all lie inside the input (no ceil_mode overhang): the case
    the _max_2x2* and _avg_2x2 kernels walk two rows at a time."""
    return (tuple(kernel) == (2, 2) and tuple(stride) == (2, 2) and not any(pads) and out_hw[0] * 2 <= x_shape[2]
            and out_hw[1] * 2 <= x_shape[3])


def max_pool2d_forward(x, kernel, stride, pads, dilation, out_hw, with_indices=True):
    N, C = x.shape[0], x.shape[1]
    y = np.empty((N, C) + tuple(out_hw), x.dtype)
    fast = _plain_2x2(x.shape, kernel, stride, pads, out_hw) and tuple(dilation) == (1, 1)
    if fast and not with_indices:
        launch(_max_2x2, x.size, x, y)
        return y, None
    if not with_indices:
        launch(_max_rows, y.size * kernel[0] * kernel[1], x, kernel[0], kernel[1], stride[0], stride[1], pads[0],
               pads[2], dilation[0], dilation[1], y)
        return y, None
    idx = np.empty((N, C) + tuple(out_hw), np.int32)
    if fast:
        launch(_max_2x2_indexed, x.size, x, y, idx)
    else:
        launch(_max_forward, y.size * kernel[0] * kernel[1], x, kernel[0], kernel[1], stride[0], stride[1],
               pads[0], pads[2], dilation[0], dilation[1], y, idx)
    return y, idx


def max_pool2d_backward(gy, idx, x_shape):
    gx = np.empty(x_shape, gy.dtype)
    launch(_index_scatter, gx.size, gy, idx, gx)
    return gx


@njit(cache=True)
def _avg_window(o, s, p0, k, size, p1):
    start = o * s - p0
    end = min(start + k, size + p1)
    pool = end - start
    return max(start, 0), min(end, size), pool


@njit(parallel=True, cache=True)
def _avg_forward(x, kh, kw, sh, sw, pt, pb, pl, pr, include_pad, divisor, y):
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        xp = x[n, c]
        for oh in range(OH):
            h0, h1, ph = _avg_window(oh, sh, pt, kh, H, pb)
            for ow in range(OW):
                w0, w1, pw = _avg_window(ow, sw, pl, kw, W, pr)
                acc = 0.0
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        acc += xp[ih, iw]
                if divisor > 0:
                    d = divisor
                elif include_pad:
                    d = ph * pw
                else:
                    d = (h1 - h0) * (w1 - w0)
                y[n, c, oh, ow] = acc / d if d > 0 else 0.0


@njit(parallel=True, cache=True)
def _avg_backward(gy, kh, kw, sh, sw, pt, pb, pl, pr, include_pad, divisor, gx):
    N, C, H, W = gx.shape
    OH, OW = gy.shape[2], gy.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        plane = gx[n, c]
        for oh in range(OH):
            h0, h1, ph = _avg_window(oh, sh, pt, kh, H, pb)
            for ow in range(OW):
                w0, w1, pw = _avg_window(ow, sw, pl, kw, W, pr)
                if divisor > 0:
                    d = divisor
                elif include_pad:
                    d = ph * pw
                else:
                    d = (h1 - h0) * (w1 - w0)
                if d <= 0:
                    continue
                g = gy[n, c, oh, ow] / d
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        plane[ih, iw] += g


@njit(parallel=True, cache=True)
def _avg_2x2(x, y, d):
    """2x2/stride-2/unpadded average: rows walked two at a time, a loop LLVM vectorises (the general kernel's
    per-window bookkeeping made LeNet-5's pools a quarter of its time). The sum in float64 in the general
    kernel's order, divided by d (4, or the divisor): bitwise what it gives."""
    N, C = x.shape[0], x.shape[1]
    OH, OW = y.shape[2], y.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        for oh in range(OH):
            r0 = x[n, c, 2 * oh]
            r1 = x[n, c, 2 * oh + 1]
            yr = y[n, c, oh]
            for ow in range(OW):
                acc = np.float64(r0[2 * ow]) + np.float64(r0[2 * ow + 1])
                acc += np.float64(r1[2 * ow])
                acc += np.float64(r1[2 * ow + 1])
                yr[ow] = acc / d


def avg_pool2d_forward(x, kernel, stride, pads, out_hw, count_include_pad, divisor):
    N, C = x.shape[0], x.shape[1]
    y = np.empty((N, C) + tuple(out_hw), x.dtype)
    if _plain_2x2(x.shape, kernel, stride, pads, out_hw):
        launch(_avg_2x2, x.size, x, y, float(divisor or 4))
        return y
    launch(_avg_forward, y.size * kernel[0] * kernel[1], x, kernel[0], kernel[1], stride[0], stride[1],
           pads[0], pads[1], pads[2], pads[3], bool(count_include_pad), int(divisor or 0), y)
    return y


def avg_pool2d_backward(gy, x_shape, kernel, stride, pads, count_include_pad, divisor):
    gx = np.zeros(x_shape, gy.dtype)
    launch(_avg_backward, gy.size * kernel[0] * kernel[1], gy, kernel[0], kernel[1], stride[0], stride[1],
           pads[0], pads[1], pads[2], pads[3], bool(count_include_pad), int(divisor or 0), gx)
    return gx


@njit(parallel=True, cache=True)
def _adaptive_forward(x, y, idx, is_max):
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        xp = x[n, c]
        for oh in range(OH):
            h0 = (oh * H) // OH
            h1 = -((-(oh + 1) * H) // OH)
            for ow in range(OW):
                w0 = (ow * W) // OW
                w1 = -((-(ow + 1) * W) // OW)
                if is_max:
                    m = xp[h0, w0]
                    mi = h0 * W + w0
                    for ih in range(h0, h1):
                        for iw in range(w0, w1):
                            v = xp[ih, iw]
                            if _gt(v, m):
                                m = v
                                mi = ih * W + iw
                    y[n, c, oh, ow] = m
                    idx[n, c, oh, ow] = mi
                else:
                    acc = 0.0
                    for ih in range(h0, h1):
                        for iw in range(w0, w1):
                            acc += xp[ih, iw]
                    y[n, c, oh, ow] = acc / ((h1 - h0) * (w1 - w0))


@njit(parallel=True, cache=True)
def _adaptive_avg_backward(gy, gx):
    N, C, H, W = gx.shape
    OH, OW = gy.shape[2], gy.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        plane = gx[n, c]
        for oh in range(OH):
            h0 = (oh * H) // OH
            h1 = -((-(oh + 1) * H) // OH)
            for ow in range(OW):
                w0 = (ow * W) // OW
                w1 = -((-(ow + 1) * W) // OW)
                g = gy[n, c, oh, ow] / ((h1 - h0) * (w1 - w0))
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        plane[ih, iw] += g


def adaptive_avg_pool2d_forward(x, out_hw):
    y = np.empty(x.shape[:2] + tuple(out_hw), x.dtype)
    launch(_adaptive_forward, x.size, x, y, np.empty((1, 1, 1, 1), np.int32), False)
    return y


def adaptive_avg_pool2d_backward(gy, x_shape):
    gx = np.zeros(x_shape, gy.dtype)
    launch(_adaptive_avg_backward, gx.size, gy, gx)
    return gx


def adaptive_max_pool2d_forward(x, out_hw):
    y = np.empty(x.shape[:2] + tuple(out_hw), x.dtype)
    idx = np.empty(x.shape[:2] + tuple(out_hw), np.int32)
    launch(_adaptive_forward, x.size, x, y, idx, True)
    return y, idx


@njit(parallel=True, cache=True)
def _channel_max_forward(x, k, y, idx):
    N, C, H, W = x.shape
    OC = C // k
    P = H * W
    xf = x.reshape(N, C, P)
    yf = y.reshape(N, OC, P)
    idf = idx.reshape(N, OC, P)
    for t in prange(N * OC):
        n = t // OC
        oc = t - n * OC
        for p in range(P):
            m = xf[n, oc * k, p]
            mi = oc * k
            for c in range(oc * k + 1, oc * k + k):
                v = xf[n, c, p]
                if _gt(v, m):
                    m = v
                    mi = c
            yf[n, oc, p] = m
            idf[n, oc, p] = mi


@njit(parallel=True, cache=True)
def _channel_max_backward(gy, idx, gx):
    N, OC, H, W = gy.shape
    P = H * W
    gyf = gy.reshape(N, OC, P)
    idf = idx.reshape(N, OC, P)
    gxf = gx.reshape(gx.shape[0], gx.shape[1], P)
    for n in prange(N):
        for oc in range(OC):
            for p in range(P):
                gxf[n, idf[n, oc, p], p] += gyf[n, oc, p]


def channel_max_pool_forward(x, k):
    N, C, H, W = x.shape
    y = np.empty((N, C // k, H, W), x.dtype)
    idx = np.empty((N, C // k, H, W), np.int32)
    launch(_channel_max_forward, x.size, x, k, y, idx)
    return y, idx


def channel_max_pool_backward(gy, idx, x_shape):
    gx = np.zeros(x_shape, gy.dtype)
    launch(_channel_max_backward, gy.size, gy, idx, gx)
    return gx
