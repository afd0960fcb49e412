"""CUDA interpolation (nearest, bilinear) with PyTorch's coordinate rules, as the backend contract states.

Source coordinates and weights are computed in the input's precision (float32 for float32 input, as PyTorch
and the CPU twin do), so edge cases with non-integer scales pick the same source pixels on both backends, and a
float32 kernel does no float64 arithmetic per pixel; the kernels are therefore built per dtype. Only
``_range`` (once per thread, a superset of the outputs to visit) works in float64.

Forward: one thread per output pixel. Backward is a race-free gather: each thread owns one input pixel, walks
the short range of output rows and columns that can read it (a float64 superset), recomputes their source
coordinates with the very device function the forward used, and keeps the weight each gives this pixel.
The interpolation is separable, so a pixel's gradient is sum_oh sum_ow wh(oh) ww(ow) gy[oh, ow].
"""

import functools
import math

import numba
import numpy as np
from numba import cuda

from .tensor import empty, grid1d, unravel4, zero_of


@functools.cache
def _kernels(dtype):
    ft = numba.from_dtype(np.dtype(dtype))
    half = np.dtype(dtype).type(0.5)
    fzero = np.dtype(dtype).type(0)
    fone = np.dtype(dtype).type(1)

    @cuda.jit(device=True, inline=True)
    def coord(dst, n_in, n_out, mode, align, scale):
        """(i0, i1, l0, l1): output index dst reads input i0 with weight l0 and i1 with weight l1."""
        if mode == 0:
            if n_out == n_in:
                i = dst
            elif n_out == 2 * n_in:
                i = dst >> 1
            else:
                i = int(math.floor(ft(dst) * scale))
                if i > n_in - 1:
                    i = n_in - 1
            return i, i, fone, fzero
        if align:
            src = ft(dst) * scale
        else:
            src = scale * (ft(dst) + half) - half
            if src < fzero:
                src = fzero
        i0 = int(src)
        if i0 > n_in - 1:
            i0 = n_in - 1
        i1 = i0 + 1 if i0 < n_in - 1 else i0
        l1 = src - ft(i0)
        return i0, i1, fone - l1, l1

    @cuda.jit(device=True, inline=True)
    def weight(dst, i, n_in, n_out, mode, align, scale):
        i0, i1, l0, l1 = coord(dst, n_in, n_out, mode, align, scale)
        w = fzero
        if i0 == i:
            w += l0
        if i1 == i:
            w += l1
        return w

    @cuda.jit
    def forward(x, y, mode, align, sh, sw):
        t = cuda.grid(1)
        if t >= y.size:
            return
        C, H, W = x.shape[1], x.shape[2], x.shape[3]
        OH, OW = y.shape[2], y.shape[3]
        n, c, oh, ow = unravel4(t, C, OH, OW)
        h0, h1, a0, a1 = coord(oh, H, OH, mode, align, sh)
        w0, w1, b0, b1 = coord(ow, W, OW, mode, align, sw)
        if mode == 0:
            y[n, c, oh, ow] = x[n, c, h0, w0]
        else:
            y[n, c, oh, ow] = (a0 * (b0 * x[n, c, h0, w0] + b1 * x[n, c, h0, w1])
                               + a1 * (b0 * x[n, c, h1, w0] + b1 * x[n, c, h1, w1]))

    @cuda.jit
    def backward(gy, gx, mode, align, sh, sw, zero):
        t = cuda.grid(1)
        if t >= gx.size:
            return
        C, H, W = gx.shape[1], gx.shape[2], gx.shape[3]
        OH, OW = gy.shape[2], gy.shape[3]
        n, c, ih, iw = unravel4(t, C, H, W)
        ohl, ohh = _range(ih, H, OH, mode, align, sh)
        owl, owh = _range(iw, W, OW, mode, align, sw)
        acc = zero
        for oh in range(ohl, ohh + 1):
            wh = weight(oh, ih, H, OH, mode, align, sh)
            if wh == fzero:
                continue
            for ow in range(owl, owh + 1):
                ww = weight(ow, iw, W, OW, mode, align, sw)
                if ww != fzero:
                    acc += wh * ww * gy[n, c, oh, ow]
        gx[n, c, ih, iw] = acc

    return forward, backward


@cuda.jit(device=True, inline=True)
def _range(i, n_in, n_out, mode, align, scale):
    """A superset [lo, hi] of the output indices that read input index i (membership is checked exactly later);
    scale is the source-per-destination step (align_corners: (in-1)/(out-1)). Widened by two on each side
    against float32 rounding of the forward's coordinates."""
    s = float(scale)
    if s <= 0.0:
        return 0, n_out - 1
    if mode == 0 and n_out == n_in:
        return i, i
    if mode == 0 and n_out == 2 * n_in:
        return 2 * i, 2 * i + 1
    if mode == 0:
        lo = math.floor(i / s) - 2.0
        hi = math.ceil((i + 1) / s) + 2.0
        if i == n_in - 1:
            hi = n_out - 1.0
    elif align:
        lo = math.floor((i - 1) / s) - 2.0
        hi = math.ceil((i + 1) / s) + 2.0
    else:
        lo = math.floor((i - 0.5) / s - 0.5) - 2.0
        hi = math.ceil((i + 1.5) / s - 0.5) + 2.0
    if lo < 0.0:
        lo = 0.0
    if hi > n_out - 1.0:
        hi = n_out - 1.0
    return int(lo), int(hi)


def _args(in_hw, out_hw, mode, align_corners, scale_hw, dtype):
    """The per-axis scales, as the CPU twin computes them: align_corners uses (in-1)/(out-1)."""
    ft = np.dtype(dtype).type
    sc = []
    for n_in, n_out, given in zip(in_hw, out_hw, scale_hw):
        if align_corners:
            s = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        else:
            s = float(given)
        sc.append(ft(s))
    return int(mode), bool(align_corners), sc[0], sc[1]


def interpolate_forward(x, out_hw, mode, align_corners, scale_hw):
    y = empty((int(x.shape[0]), int(x.shape[1]), int(out_hw[0]), int(out_hw[1])), x.dtype)
    if y.size:
        fwd, _ = _kernels(x.dtype)
        b, t = grid1d(y.size)
        fwd[b, t](x, y, *_args(x.shape[2:], y.shape[2:], mode, align_corners, scale_hw, x.dtype))
    return y


def interpolate_backward(gy, x_shape, mode, align_corners, scale_hw):
    gx = empty(x_shape, gy.dtype)
    if gx.size:
        _, bwd = _kernels(gy.dtype)
        b, t = grid1d(gx.size)
        bwd[b, t](gy, gx, *_args(tuple(x_shape)[2:], gy.shape[2:], mode, align_corners, scale_hw, gy.dtype),
                  zero_of(gy))
    return gx
