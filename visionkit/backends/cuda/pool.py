"""CUDA pooling: one thread per output element in the forward passes (memory bound: a thread's window reads
overlap its neighbours' in cache), and race-free backward passes:

- average and adaptive-average backward are gathers: each thread owns one input pixel and sums the gradient
  of the windows that cover it (the covering range of outputs is computed, not searched);
- channel-max backward is a gather too (an input channel belongs to exactly one output channel);
- max / adaptive-max backward receives only the argmax indices (no window geometry), so several outputs may
  name the same input pixel: it scatters with ``cuda.atomic.add`` into a zeroed gradient.

Why the max backward keeps its atomics, and when they are deterministic anyway: a gather would need to know
which outputs' windows cover a pixel, and the contract's ``max_pool2d_backward(gy, idx, x_shape)`` carries no
kernel, stride, padding or dilation (it also serves adaptive max pooling, whose bins have no fixed stride), so
idx alone cannot be inverted cheaply. The result is nevertheless bitwise deterministic whenever at most two
outputs name the same pixel, because 0 + a = a exactly and a + b = b + a: that covers every non-overlapping
pool (stride >= dilated kernel extent, e.g. the common 2x2/stride-2), where each pixel has at most one
contributor, and any 1-D-overlap-by-one case. Run-to-run variation in the last bits is possible only when
three or more overlapping windows pick the same pixel (e.g. 3x3 stride 1 or 2 over a local maximum).
A deterministic gather for those would need the geometry in the contract (then: each pixel walks the output
range covering it, as ``_avg_backward`` does, and adds gy where idx names it, in a fixed order).
"""

import math

from numba import cuda

from .tensor import empty, grid1d, unravel4, zero_of, zeros


@cuda.jit(device=True, inline=True)
def _better(v, m, mi):
    """Does v replace the running max m (index mi)? Larger, or NaN: PyTorch's rule and the CPU twin's, so the
    last NaN of a window gives the index."""
    return mi < 0 or v > m or v != v


@cuda.jit
def _max_forward(x, kh, kw, sh, sw, pt, pl, dh, dw, y, idx, with_idx, ninf):
    t = cuda.grid(1)
    if t >= y.size:
        return
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    OH, OW = y.shape[2], y.shape[3]
    n, c, oh, ow = unravel4(t, C, OH, OW)
    h0 = oh * sh - pt
    w0 = ow * sw - pl
    m = ninf
    mi = -1
    for i in range(kh):
        ih = h0 + i * dh
        if ih < 0 or ih >= H:
            continue
        for j in range(kw):
            iw = w0 + j * dw
            if iw < 0 or iw >= W:
                continue
            v = x[n, c, ih, iw]
            if _better(v, m, mi):
                m = v
                mi = ih * W + iw
    y[n, c, oh, ow] = m
    if with_idx:
        idx[n, c, oh, ow] = mi


@cuda.jit
def _index_scatter(gy, idx, gx):
    t = cuda.grid(1)
    if t >= gy.size:
        return
    C, OH, OW = gy.shape[1], gy.shape[2], gy.shape[3]
    W = gx.shape[3]
    n, c, oh, ow = unravel4(t, C, OH, OW)
    k = idx[n, c, oh, ow]
    if k >= 0:
        cuda.atomic.add(gx, (n, c, k // W, k % W), gy[n, c, oh, ow])


def max_pool2d_forward(x, kernel, stride, pads, dilation, out_hw, with_indices=True):
    N, C = int(x.shape[0]), int(x.shape[1])
    shape = (N, C, int(out_hw[0]), int(out_hw[1]))
    y = empty(shape, x.dtype)
    idx = empty(shape if with_indices else (1, 1, 1, 1), "int32")
    if y.size:
        b, t = grid1d(y.size)
        _max_forward[b, t](x, int(kernel[0]), int(kernel[1]), int(stride[0]), int(stride[1]), int(pads[0]),
                           int(pads[2]), int(dilation[0]), int(dilation[1]), y, idx, bool(with_indices),
                           x.dtype.type(-math.inf))
    return y, (idx if with_indices else None)


def max_pool2d_backward(gy, idx, x_shape):
    gx = zeros(x_shape, gy.dtype)
    if gy.size:
        b, t = grid1d(gy.size)
        _index_scatter[b, t](gy, idx, gx)
    return gx


# ----------------------------------------------------------------------------------------------- average


@cuda.jit(device=True, inline=True)
def _avg_div(oh, ow, kh, kw, sh, sw, pt, pb, pl, pr, H, W, include_pad, divisor):
    """PyTorch's divisor of output (oh, ow) (0 for an empty window)."""
    hs = oh * sh - pt
    he = min(hs + kh, H + pb)
    ws = ow * sw - pl
    we = min(ws + kw, W + pr)
    if divisor > 0:
        return divisor
    if include_pad:
        return (he - hs) * (we - ws)
    return (min(he, H) - max(hs, 0)) * (min(we, W) - max(ws, 0))


@cuda.jit
def _avg_forward(x, kh, kw, sh, sw, pt, pb, pl, pr, include_pad, divisor, y, zero):
    t = cuda.grid(1)
    if t >= y.size:
        return
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    OH, OW = y.shape[2], y.shape[3]
    n, c, oh, ow = unravel4(t, C, OH, OW)
    hs = oh * sh - pt
    ws = ow * sw - pl
    h0 = max(hs, 0)
    h1 = min(min(hs + kh, H + pb), H)
    w0 = max(ws, 0)
    w1 = min(min(ws + kw, W + pr), W)
    acc = zero
    for ih in range(h0, h1):
        for iw in range(w0, w1):
            acc += x[n, c, ih, iw]
    d = _avg_div(oh, ow, kh, kw, sh, sw, pt, pb, pl, pr, H, W, include_pad, divisor)
    y[n, c, oh, ow] = acc / d if d > 0 else zero


@cuda.jit
def _avg_backward(gy, kh, kw, sh, sw, pt, pb, pl, pr, include_pad, divisor, gx, zero):
    """Gather: input (ih, iw) lies in the windows oh in [ceil((ih+pt-kh+1)/sh), floor((ih+pt)/sh)]."""
    t = cuda.grid(1)
    if t >= gx.size:
        return
    C, H, W = gx.shape[1], gx.shape[2], gx.shape[3]
    OH, OW = gy.shape[2], gy.shape[3]
    n, c, ih, iw = unravel4(t, C, H, W)
    oh0 = max(0, -((kh - 1 - ih - pt) // sh))
    oh1 = min(OH - 1, (ih + pt) // sh)
    ow0 = max(0, -((kw - 1 - iw - pl) // sw))
    ow1 = min(OW - 1, (iw + pl) // sw)
    acc = zero
    for oh in range(oh0, oh1 + 1):
        for ow in range(ow0, ow1 + 1):
            d = _avg_div(oh, ow, kh, kw, sh, sw, pt, pb, pl, pr, H, W, include_pad, divisor)
            if d > 0:
                acc += gy[n, c, oh, ow] / d
    gx[n, c, ih, iw] = acc


def avg_pool2d_forward(x, kernel, stride, pads, out_hw, count_include_pad, divisor):
    N, C = int(x.shape[0]), int(x.shape[1])
    y = empty((N, C, int(out_hw[0]), int(out_hw[1])), x.dtype)
    if y.size:
        b, t = grid1d(y.size)
        _avg_forward[b, t](x, int(kernel[0]), int(kernel[1]), int(stride[0]), int(stride[1]), *(int(p) for p in pads),
                           bool(count_include_pad), int(divisor or 0), y, zero_of(x))
    return y


def avg_pool2d_backward(gy, x_shape, kernel, stride, pads, count_include_pad, divisor):
    gx = empty(x_shape, gy.dtype)
    if gx.size:
        b, t = grid1d(gx.size)
        _avg_backward[b, t](gy, int(kernel[0]), int(kernel[1]), int(stride[0]), int(stride[1]), *(int(p) for p in pads),
                            bool(count_include_pad), int(divisor or 0), gx, zero_of(gy))
    return gx


# ----------------------------------------------------------------------------------------------- adaptive


@cuda.jit
def _adaptive_forward(x, y, idx, is_max, zero):
    t = cuda.grid(1)
    if t >= y.size:
        return
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    OH, OW = y.shape[2], y.shape[3]
    n, c, oh, ow = unravel4(t, C, OH, OW)
    h0 = (oh * H) // OH
    h1 = -((-(oh + 1) * H) // OH)
    w0 = (ow * W) // OW
    w1 = -((-(ow + 1) * W) // OW)
    if is_max:
        m = x[n, c, h0, w0]
        mi = h0 * W + w0
        for ih in range(h0, h1):
            for iw in range(w0, w1):
                v = x[n, c, ih, iw]
                if _better(v, m, mi):
                    m = v
                    mi = ih * W + iw
        y[n, c, oh, ow] = m
        idx[n, c, oh, ow] = mi
    else:
        acc = zero
        for ih in range(h0, h1):
            for iw in range(w0, w1):
                acc += x[n, c, ih, iw]
        y[n, c, oh, ow] = acc / ((h1 - h0) * (w1 - w0))


@cuda.jit
def _adaptive_avg_backward(gy, gx, zero):
    """Gather: bin i covers [floor(i*H/OH), ceil((i+1)*H/OH)), so input ih lies in bins
    floor(ih*OH/H) .. floor(((ih+1)*OH - 1)/H) (checked exactly below)."""
    t = cuda.grid(1)
    if t >= gx.size:
        return
    C, H, W = gx.shape[1], gx.shape[2], gx.shape[3]
    OH, OW = gy.shape[2], gy.shape[3]
    n, c, ih, iw = unravel4(t, C, H, W)
    acc = zero
    for oh in range((ih * OH) // H, min(OH - 1, ((ih + 1) * OH - 1) // H) + 1):
        h0 = (oh * H) // OH
        h1 = -((-(oh + 1) * H) // OH)
        if ih < h0 or ih >= h1:
            continue
        for ow in range((iw * OW) // W, min(OW - 1, ((iw + 1) * OW - 1) // W) + 1):
            w0 = (ow * W) // OW
            w1 = -((-(ow + 1) * W) // OW)
            if iw < w0 or iw >= w1:
                continue
            acc += gy[n, c, oh, ow] / ((h1 - h0) * (w1 - w0))
    gx[n, c, ih, iw] = acc


def adaptive_avg_pool2d_forward(x, out_hw):
    y = empty((int(x.shape[0]), int(x.shape[1]), int(out_hw[0]), int(out_hw[1])), x.dtype)
    if y.size:
        b, t = grid1d(y.size)
        _adaptive_forward[b, t](x, y, empty((1, 1, 1, 1), "int32"), False, zero_of(x))
    return y


def adaptive_avg_pool2d_backward(gy, x_shape):
    gx = empty(x_shape, gy.dtype)
    if gx.size:
        b, t = grid1d(gx.size)
        _adaptive_avg_backward[b, t](gy, gx, zero_of(gy))
    return gx


def adaptive_max_pool2d_forward(x, out_hw):
    shape = (int(x.shape[0]), int(x.shape[1]), int(out_hw[0]), int(out_hw[1]))
    y = empty(shape, x.dtype)
    idx = empty(shape, "int32")
    if y.size:
        b, t = grid1d(y.size)
        _adaptive_forward[b, t](x, y, idx, True, zero_of(x))
    return y, idx


# ----------------------------------------------------------------------------------------------- channel max


@cuda.jit
def _channel_max_forward(x3, k, y3, idx3):
    t = cuda.grid(1)
    N, OC, P = y3.shape
    if t >= N * OC * P:
        return
    p = t % P
    u = t // P
    oc = u % OC
    n = u // OC
    m = x3[n, oc * k, p]
    mi = oc * k
    for c in range(oc * k + 1, oc * k + k):
        v = x3[n, c, p]
        if _better(v, m, mi):
            m = v
            mi = c
    y3[n, oc, p] = m
    idx3[n, oc, p] = mi


@cuda.jit
def _channel_max_backward(gy3, idx3, gx3, k, zero):
    """Gather: input channel c belongs to output channel c // k alone."""
    t = cuda.grid(1)
    N, C, P = gx3.shape
    if t >= N * C * P:
        return
    p = t % P
    u = t // P
    c = u % C
    n = u // C
    oc = c // k
    if oc < gy3.shape[1] and idx3[n, oc, p] == c:
        gx3[n, c, p] = gy3[n, oc, p]
    else:
        gx3[n, c, p] = zero


def _v3(a):
    return a.reshape(a.shape[0], a.shape[1], a.shape[2] * a.shape[3])


def channel_max_pool_forward(x, k):
    N, C, H, W = (int(v) for v in x.shape)
    k = int(k)
    y = empty((N, C // k, H, W), x.dtype)
    idx = empty((N, C // k, H, W), "int32")
    if y.size:
        b, t = grid1d(y.size)
        _channel_max_forward[b, t](_v3(x), k, _v3(y), _v3(idx))
    return y, idx


def channel_max_pool_backward(gy, idx, x_shape):
    gx = empty(x_shape, gy.dtype)
    if gx.size:
        k = int(x_shape[1]) // int(gy.shape[1])
        b, t = grid1d(gx.size)
        _channel_max_backward[b, t](_v3(gy), _v3(idx), _v3(gx), k, zero_of(gy))
    return gx
