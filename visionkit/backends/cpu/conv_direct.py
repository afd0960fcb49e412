"""Direct convolution kernels, for convolutions whose outputs each sum over few terms (LeNet's first conv,
depthwise convs): ``_flat_*`` for stride 1 on a padded input at its row pitch (one long contiguous inner loop),
``_direct_*`` for any stride."""

import numpy as np
from numba import njit, prange

from .conv_columns import _valid_cols
from .conv_epilogue import _store


@njit(parallel=True, cache=True, fastmath={"contract"})
def _direct_forward(x, w, y, sh, sw, pt, pl, dh, dw, groups):
    """Direct conv for any stride (stride 1 takes _flat_forward); thread-local accumulator, as there."""
    N, _, H, W = x.shape
    O, Cg, KH, KW = w.shape
    OH, OW = y.shape[2], y.shape[3]
    Og = O // groups
    for t in prange(N * O):
        n = t // O
        o = t - n * O
        g = o // Og
        acc = np.zeros((OH, OW), x.dtype)
        for c in range(Cg):
            xc = x[n, g * Cg + c]
            for i in range(KH):
                for j in range(KW):
                    wv = w[o, c, i, j]
                    off, lo, hi = _valid_cols(j, sw, dw, pl, W, OW)
                    for oh in range(OH):
                        ih = oh * sh - pt + i * dh
                        if ih < 0 or ih >= H:
                            continue
                        ar = acc[oh]
                        xr = xc[ih]
                        for ow in range(lo, hi):
                            ar[ow] += wv * xr[ow * sw + off]
        y[n, o] = acc


@njit(parallel=True, cache=True)
def _direct_backward_input(gy, w, gx, sh, sw, pt, pl, dh, dw, groups):
    N, C, H, W = gx.shape
    O, Cg, KH, KW = w.shape
    OH, OW = gy.shape[2], gy.shape[3]
    Og = O // groups
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        g = c // Cg
        cl = c - g * Cg
        gxc = gx[n, c]
        for o in range(g * Og, (g + 1) * Og):
            gyo = gy[n, o]
            for i in range(KH):
                for j in range(KW):
                    wv = w[o, cl, i, j]
                    off, lo, hi = _valid_cols(j, sw, dw, pl, W, OW)
                    for oh in range(OH):
                        ih = oh * sh - pt + i * dh
                        if ih < 0 or ih >= H:
                            continue
                        gr = gyo[oh]
                        xr = gxc[ih]
                        if sw == 1:
                            for ow in range(lo, hi):
                                xr[ow + off] += wv * gr[ow]
                        else:
                            for ow in range(lo, hi):
                                xr[ow * sw + off] += wv * gr[ow]


@njit(parallel=True, cache=True)
def _direct_backward_weight(x, gy, gw, sh, sw, pt, pl, dh, dw, groups):
    N, _, H, W = x.shape
    O, Cg, KH, KW = gw.shape
    OH, OW = gy.shape[2], gy.shape[3]
    Og = O // groups
    for t in prange(O * Cg):
        o = t // Cg
        c = t - o * Cg
        g = o // Og
        for i in range(KH):
            for j in range(KW):
                off, lo, hi = _valid_cols(j, sw, dw, pl, W, OW)
                acc = 0.0
                for n in range(N):
                    xc = x[n, g * Cg + c]
                    gyo = gy[n, o]
                    for oh in range(OH):
                        ih = oh * sh - pt + i * dh
                        if ih < 0 or ih >= H:
                            continue
                        gr = gyo[oh]
                        xr = xc[ih]
                        if sw == 1:
                            for ow in range(lo, hi):
                                acc += gr[ow] * xr[ow + off]
                        else:
                            for ow in range(lo, hi):
                                acc += gr[ow] * xr[ow * sw + off]
                gw[o, c, i, j] = acc


@njit(inline="always", fastmath={"contract"})
def _flat_taps(acc, xf, w, o, c, Wp, dh, dw):
    """acc += w[o, c, i, j] * (the flat padded plane xf shifted by tap (i, j)), over every tap: one long
    contiguous loop per tap at the row pitch Wp (acc has L = (OH - 1) * Wp + OW elements)."""
    L = acc.shape[0]
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            wv = w[o, c, i, j]
            base = i * dh * Wp + j * dw
            xs = xf[base:base + L]
            for q in range(L):
                acc[q] += wv * xs[q]


@njit(inline="always")
def _flat_store(y, n, o, acc, Wp, ep, affine, act):
    """y[n, o] = epilogue(the OW real columns of each row of acc, laid out at the row pitch Wp)."""
    OW = y.shape[3]
    for oh in range(y.shape[2]):
        _store(y[n, o, oh], acc[oh * Wp:oh * Wp + OW], ep, o, affine, act)


@njit(parallel=True, cache=True, fastmath={"contract"})
def _flat_forward(xp, w, y, dh, dw, groups, ep, affine, act):
    """Stride-1 direct conv on a padded input, accumulating each output plane at the input's row pitch Wp so the
    inner loop runs over one long contiguous span, then copying the OW real columns of each row into y.
    The accumulator is thread-local so LLVM sees no aliasing and vectorises (8x faster than accumulating in y)."""
    N, _, Hp, Wp = xp.shape
    O, Cg = w.shape[0], w.shape[1]
    OH, OW = y.shape[2], y.shape[3]
    Og = O // groups
    L = (OH - 1) * Wp + OW  # the last output row stops at OW: reading on would leave the input plane
    for t in prange(N * O):
        n = t // O
        o = t - n * O
        g = o // Og
        acc = np.zeros(L, xp.dtype)
        for c in range(Cg):
            _flat_taps(acc, xp[n, g * Cg + c].reshape(Hp * Wp), w, o, c, Wp, dh, dw)
        _flat_store(y, n, o, acc, Wp, ep, affine, act)


@njit(parallel=True, cache=True, fastmath={"contract"})
def _flat_backward_input(gf, w, gxp, OW, dh, dw, groups):
    """Adjoint of _flat_forward: gf is the gradient at row pitch Wp with zeros in the cropped columns."""
    N, C, Hp, Wp = gxp.shape
    O, Cg, KH, KW = w.shape
    OH = gf.shape[2]
    Og = O // groups
    L = (OH - 1) * Wp + OW
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        g = c // Cg
        cl = c - g * Cg
        acc = np.zeros(Hp * Wp, gxp.dtype)
        for o in range(g * Og, (g + 1) * Og):
            gg = gf[n, o].reshape(OH * Wp)[:L]
            for i in range(KH):
                for j in range(KW):
                    wv = w[o, cl, i, j]
                    base = i * dh * Wp + j * dw
                    xs = acc[base:base + L]
                    for q in range(L):
                        xs[q] += wv * gg[q]
        gxp[n, c].reshape(Hp * Wp)[:] = acc


@njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})  # reassoc: a vectorised dot product
def _flat_backward_weight(xp, gy, gw, dh, dw, groups):
    """Stride-1 weight gradient on a padded input, row by row over the real output columns only (a row-pitch
    layout would multiply its zero columns with real inputs, and 0 * NaN would leak NaN into other weights)."""
    N, _, Hp, Wp = xp.shape
    O, Cg, KH, KW = gw.shape
    OH, OW = gy.shape[2], gy.shape[3]
    Og = O // groups
    for t in prange(O * Cg):
        o = t // Cg
        c = t - o * Cg
        g = o // Og
        for i in range(KH):
            for j in range(KW):
                acc = 0.0
                for n in range(N):
                    for oh in range(OH):
                        gr = gy[n, o, oh]
                        xr = xp[n, g * Cg + c, oh + i * dh, j * dw:j * dw + OW]
                        for q in range(OW):
                            acc += gr[q] * xr[q]
                gw[o, c, i, j] = acc


def _pad_input(x, pads):
    """x with zero padding (top, bottom, left, right): zeros and one slice copy, not np.pad, whose Python-side
    argument handling cost 65-190 us per call (a MobileNetV2 depthwise layer's whole kernel is ~200 us)."""
    if not any(pads):
        return x
    n, c, h, w = x.shape
    xp = np.zeros((n, c, h + pads[0] + pads[1], w + pads[2] + pads[3]), x.dtype)
    xp[:, :, pads[0]:pads[0] + h, pads[2]:pads[2] + w] = x
    return xp


def _at_pitch(gy, Wp):
    """gy (N, O, OH, OW) laid out at row pitch Wp, zeros in the extra columns."""
    g = np.zeros(gy.shape[:3] + (Wp,), gy.dtype)
    g[..., : gy.shape[3]] = gy
    return g


@njit(inline="always")
def _padded_plane(x, n, c, pt, pl, Hp, Wp):
    """Plane (n, c) of x inside a zeroed (Hp, Wp) buffer at offset (pt, pl): a depthwise conv's padding made per
    plane in the worker's cache, rather than a padded copy of the whole input written out and read back (for
    MobileNetV2's 96x112x112 stride-2 layer, 0.60 -> 0.41 ms)."""
    H, W = x.shape[2], x.shape[3]
    buf = np.zeros((Hp, Wp), x.dtype)
    for r in range(H):
        buf[pt + r, pl:pl + W] = x[n, c, r]
    return buf


@njit(parallel=True, cache=True, fastmath={"contract"})
def _dw_flat_forward(x, w, y, pt, pl, Hp, Wp, dh, dw, ep, affine, act):
    """_flat_forward for a depthwise conv (one input channel per output, stride 1) on the unpadded input: each
    worker pads its own plane (_padded_plane), then accumulates at the row pitch Wp as _flat_forward does."""
    N, C = x.shape[0], x.shape[1]
    OH, OW = y.shape[2], y.shape[3]
    L = (OH - 1) * Wp + OW
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        acc = np.zeros(L, x.dtype)
        _flat_taps(acc, _padded_plane(x, n, c, pt, pl, Hp, Wp).reshape(Hp * Wp), w, c, 0, Wp, dh, dw)
        _flat_store(y, n, c, acc, Wp, ep, affine, act)


@njit(parallel=True, cache=True, fastmath={"contract"})
def _dw3x3_forward(x, w, y, pt, pl, Hp, Wp, sh, sw, dh, dw, ep, affine, act):
    """3x3 depthwise conv (one input channel per output, any stride and dilation) on the unpadded input, each
    worker padding its own plane (_padded_plane): each output row sums its nine taps in registers and is stored
    once, where _flat_forward reads and writes its accumulator nine times (the store port was its limit) and
    _direct_forward walks strided columns per tap."""
    N, C = x.shape[0], x.shape[1]
    OH, OW = y.shape[2], y.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        xc = _padded_plane(x, n, c, pt, pl, Hp, Wp)
        w00, w01, w02 = w[c, 0, 0, 0], w[c, 0, 0, 1], w[c, 0, 0, 2]
        w10, w11, w12 = w[c, 0, 1, 0], w[c, 0, 1, 1], w[c, 0, 1, 2]
        w20, w21, w22 = w[c, 0, 2, 0], w[c, 0, 2, 1], w[c, 0, 2, 2]
        row = np.empty(OW, x.dtype)
        for oh in range(OH):
            r0 = xc[oh * sh]
            r1 = xc[oh * sh + dh]
            r2 = xc[oh * sh + 2 * dh]
            for q in range(OW):
                p = q * sw
                row[q] = (w00 * r0[p] + w01 * r0[p + dw] + w02 * r0[p + 2 * dw]
                          + w10 * r1[p] + w11 * r1[p + dw] + w12 * r1[p + 2 * dw]
                          + w20 * r2[p] + w21 * r2[p + dw] + w22 * r2[p + 2 * dw])
            _store(y[n, c, oh], row, ep, c, affine, act)
