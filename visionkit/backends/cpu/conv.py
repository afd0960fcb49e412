"""CPU convolution: im2col + BLAS GEMM for wide layers, a direct kernel for few input channels per group.

DESIGN.md's measurements on this machine: with 16+ input channels, im2col inside njit followed by OpenBLAS GEMM
reaches 65-78% of the sgemm ceiling, while the best direct Numba loop reaches ~20%; direct kernels win only when
each output sums over few terms (LeNet's first conv, depthwise convs). ``_use_direct`` encodes that choice.

All functions take the resolved arguments described in ``visionkit/backends/__init__.py``.
"""

import numpy as np
from numba import njit, prange

# A GEMM over fewer terms than this per output is dominated by im2col traffic: go direct.
DIRECT_MAX_TERMS = 32
# im2col buffers are built for as many images at once as fit in this many bytes.
COL_BYTES = 32 << 20


def out_size(size, k, s, p_total, d):
    return (size + p_total - d * (k - 1) - 1) // s + 1


def _use_direct(cg, kh, kw, og):
    return cg * kh * kw < DIRECT_MAX_TERMS or og < 4


def _ow_range(j, sw, pl, dw, W, OW):
    """Output columns whose input column ow*sw - pl + j*dw falls inside [0, W)."""
    off = j * dw - pl
    lo = 0 if off >= 0 else (-off + sw - 1) // sw
    hi = (W - 1 - off) // sw + 1 if W - 1 - off >= 0 else 0
    return lo, min(max(hi, lo), OW)


# ----------------------------------------------------------------------------------------------- im2col / col2im


@njit(parallel=True, cache=True)
def _im2col(x, n0, nb, c0, cg, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, col):
    """col[(c, i, j), b*OH*OW + oh*OW + ow] = x[n0+b, c0+c, oh*sh-pt+i*dh, ow*sw-pl+j*dw] (0 outside)."""
    H = x.shape[2]
    W = x.shape[3]
    K = cg * kh * kw
    for t in prange(K * nb):
        r = t // nb
        b = t - r * nb
        c = r // (kh * kw)
        ij = r - c * (kh * kw)
        i = ij // kw
        j = ij - i * kw
        off = j * dw - pl
        lo = 0 if off >= 0 else (-off + sw - 1) // sw
        hi = (W - 1 - off) // sw + 1 if W - 1 - off >= 0 else 0
        hi = min(max(hi, lo), OW)
        base = b * OH * OW
        for oh in range(OH):
            ih = oh * sh - pt + i * dh
            row = base + oh * OW
            if ih < 0 or ih >= H:
                for ow in range(OW):
                    col[r, row + ow] = 0
                continue
            for ow in range(lo):
                col[r, row + ow] = 0
            xr = x[n0 + b, c0 + c, ih]
            if sw == 1:
                for ow in range(lo, hi):
                    col[r, row + ow] = xr[ow + off]
            else:
                for ow in range(lo, hi):
                    col[r, row + ow] = xr[ow * sw + off]
            for ow in range(hi, OW):
                col[r, row + ow] = 0


@njit(parallel=True, cache=True)
def _col2im(col, n0, nb, c0, cg, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, gx):
    """Adjoint of _im2col: gx[n0+b, c0+c, ...] += col[...]; one thread per (image, channel) plane, no races."""
    H = gx.shape[2]
    W = gx.shape[3]
    for t in prange(nb * cg):
        b = t // cg
        c = t - b * cg
        plane = gx[n0 + b, c0 + c]
        base = b * OH * OW
        for i in range(kh):
            for j in range(kw):
                r = (c * kh + i) * kw + j
                off = j * dw - pl
                lo = 0 if off >= 0 else (-off + sw - 1) // sw
                hi = (W - 1 - off) // sw + 1 if W - 1 - off >= 0 else 0
                hi = min(max(hi, lo), OW)
                for oh in range(OH):
                    ih = oh * sh - pt + i * dh
                    if ih < 0 or ih >= H:
                        continue
                    row = base + oh * OW
                    for ow in range(lo, hi):
                        plane[ih, ow * sw + off] += col[r, row + ow]


@njit(parallel=True, cache=True)
def _scatter_out(out, y, n0, nb, o0, og, bias, has_bias):
    """y[n0+b, o0+o, :] = out[o, b*P:(b+1)*P] (+ bias): GEMM result (Og, nb*P) back to NCHW."""
    P = y.shape[2] * y.shape[3]
    yf = y.reshape(y.shape[0], y.shape[1], P)
    for t in prange(nb * og):
        b = t // og
        o = t - b * og
        bv = bias[o0 + o] if has_bias else 0.0
        for p in range(P):
            yf[n0 + b, o0 + o, p] = out[o, b * P + p] + bv


@njit(parallel=True, cache=True)
def _gather_grad(gy, n0, nb, o0, og, out):
    """out[o, b*P + p] = gy[n0+b, o0+o, p]: NCHW gradient slice to the GEMM layout (Og, nb*P)."""
    P = gy.shape[2] * gy.shape[3]
    gf = gy.reshape(gy.shape[0], gy.shape[1], P)
    for t in prange(nb * og):
        b = t // og
        o = t - b * og
        for p in range(P):
            out[o, b * P + p] = gf[n0 + b, o0 + o, p]


@njit(parallel=True, cache=True)
def _add_bias(y, bias):
    N, O = y.shape[0], y.shape[1]
    P = y.shape[2] * y.shape[3]
    yf = y.reshape(N, O, P)
    for t in prange(N * O):
        n = t // O
        o = t - n * O
        bv = bias[o]
        for p in range(P):
            yf[n, o, p] += bv


# ----------------------------------------------------------------------------------------------- direct kernels


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
                    off = j * dw - pl
                    lo = 0 if off >= 0 else (-off + sw - 1) // sw
                    hi = (W - 1 - off) // sw + 1 if W - 1 - off >= 0 else 0
                    hi = min(max(hi, lo), OW)
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
                    off = j * dw - pl
                    lo = 0 if off >= 0 else (-off + sw - 1) // sw
                    hi = (W - 1 - off) // sw + 1 if W - 1 - off >= 0 else 0
                    hi = min(max(hi, lo), OW)
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
                off = j * dw - pl
                lo = 0 if off >= 0 else (-off + sw - 1) // sw
                hi = (W - 1 - off) // sw + 1 if W - 1 - off >= 0 else 0
                hi = min(max(hi, lo), OW)
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


@njit(parallel=True, cache=True, fastmath={"contract"})
def _flat_forward(xp, w, yf, OW, dh, dw, groups):
    """Stride-1 direct conv on a padded input, computing each output row at the input's row pitch Wp so the
    inner loop runs over one long contiguous span (the extra Wp-OW columns per row are cropped afterwards).
    The accumulator is thread-local so LLVM sees no aliasing and vectorises (8x faster than accumulating in y)."""
    N, _, Hp, Wp = xp.shape
    O, Cg, KH, KW = w.shape
    OH = yf.shape[2]
    Og = O // groups
    L = (OH - 1) * Wp + OW  # the last output row stops at OW: reading on would leave the input plane
    for t in prange(N * O):
        n = t // O
        o = t - n * O
        g = o // Og
        acc = np.zeros(L, xp.dtype)
        for c in range(Cg):
            xf = xp[n, g * Cg + c].reshape(Hp * Wp)
            for i in range(KH):
                for j in range(KW):
                    wv = w[o, c, i, j]
                    base = i * dh * Wp + j * dw
                    xs = xf[base:base + L]
                    for q in range(L):
                        acc[q] += wv * xs[q]
        yf[n, o].reshape(OH * Wp)[:L] = acc


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
    if not any(pads):
        return x
    return np.pad(x, ((0, 0), (0, 0), (pads[0], pads[1]), (pads[2], pads[3])))


def _at_pitch(gy, Wp):
    """gy (N, O, OH, OW) laid out at row pitch Wp, zeros in the extra columns."""
    g = np.zeros(gy.shape[:3] + (Wp,), gy.dtype)
    g[..., : gy.shape[3]] = gy
    return g


# ----------------------------------------------------------------------------------------------- the contract


def _geometry(x_shape, w_shape, stride, pads, dilation, groups, y_shape=None):
    """Sizes of a conv; backward passes take OH, OW from the gradient (x may be larger than the forward needs)."""
    N, C, H, W = x_shape
    O, Cg, KH, KW = w_shape
    if y_shape is not None:
        OH, OW = y_shape[2], y_shape[3]
    else:
        OH = out_size(H, KH, stride[0], pads[0] + pads[1], dilation[0])
        OW = out_size(W, KW, stride[1], pads[2] + pads[3], dilation[1])
    return N, C, H, W, O, Cg, KH, KW, OH, OW, O // groups


def _chunk(N, K, P, itemsize):
    """How many images' im2col columns to build at once."""
    return int(max(1, min(N, COL_BYTES // max(1, K * P * itemsize))))


def conv2d_forward(x, w, b, stride, pads, dilation, groups):
    N, C, H, W, O, Cg, KH, KW, OH, OW, Og = _geometry(x.shape, w.shape, stride, pads, dilation, groups)
    sh, sw = stride
    dh, dw = dilation
    pt, pl = pads[0], pads[2]
    if _use_direct(Cg, KH, KW, Og) and stride == (1, 1):
        xp = _pad_input(x, pads)
        yf = np.zeros((N, O, OH, xp.shape[3]), x.dtype)
        _flat_forward(xp, w, yf, OW, dh, dw, groups)
        y = np.ascontiguousarray(yf[..., :OW])
        if b is not None:
            _add_bias(y, b)
        return y
    if _use_direct(Cg, KH, KW, Og):
        y = np.empty((N, O, OH, OW), x.dtype)
        _direct_forward(x, w, y, sh, sw, pt, pl, dh, dw, groups)
        if b is not None:
            _add_bias(y, b)
        return y
    y = np.empty((N, O, OH, OW), x.dtype)
    K, P = Cg * KH * KW, OH * OW
    nb = _chunk(N, K, P, x.itemsize)
    col = np.empty((K, nb * P), x.dtype)
    w2 = w.reshape(O, K)
    has_bias = b is not None
    bias = b if has_bias else np.zeros(1, x.dtype)
    for n0 in range(0, N, nb):
        m = min(nb, N - n0)
        cm = col if m == nb else np.empty((K, m * P), x.dtype)
        for g in range(groups):
            _im2col(x, n0, m, g * Cg, Cg, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW, cm)
            wg = w2[g * Og:(g + 1) * Og]
            if m == 1 and not has_bias:
                np.matmul(wg, cm, out=y[n0, g * Og:(g + 1) * Og].reshape(Og, P))
            else:
                _scatter_out(wg @ cm, y, n0, m, g * Og, Og, bias, has_bias)
    return y


def conv2d_backward_input(gy, w, x_shape, stride, pads, dilation, groups):
    N, C, H, W, O, Cg, KH, KW, OH, OW, Og = _geometry(x_shape, w.shape, stride, pads, dilation, groups, gy.shape)
    if gy.shape[:2] != (N, O):
        raise ValueError(f"conv2d backward: grad_out has shape {gy.shape}, expected ({N}, {O}, ...)")
    sh, sw = stride
    dh, dw = dilation
    pt, pl = pads[0], pads[2]
    if _use_direct(Cg, KH, KW, Og) and stride == (1, 1):
        Hp, Wp = H + pads[0] + pads[1], W + pads[2] + pads[3]
        gxp = np.zeros((N, C, Hp, Wp), gy.dtype)
        _flat_backward_input(_at_pitch(gy, Wp), w, gxp, OW, dh, dw, groups)
        return np.ascontiguousarray(gxp[:, :, pads[0]:pads[0] + H, pads[2]:pads[2] + W])
    gx = np.zeros(x_shape, gy.dtype)
    if _use_direct(Cg, KH, KW, Og):
        _direct_backward_input(gy, w, gx, sh, sw, pt, pl, dh, dw, groups)
        return gx
    K, P = Cg * KH * KW, OH * OW
    nb = _chunk(N, K, P, gy.itemsize)
    w2 = w.reshape(O, K)
    gbuf = np.empty((Og, nb * P), gy.dtype)
    for n0 in range(0, N, nb):
        m = min(nb, N - n0)
        for g in range(groups):
            if m == 1:
                gyg = gy[n0, g * Og:(g + 1) * Og].reshape(Og, P)
            else:
                gyg = gbuf if m == nb else np.empty((Og, m * P), gy.dtype)
                _gather_grad(gy, n0, m, g * Og, Og, gyg)
            gcol = w2[g * Og:(g + 1) * Og].T @ gyg
            _col2im(gcol, n0, m, g * Cg, Cg, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW, gx)
    return gx


def conv2d_backward_weight(x, gy, w_shape, stride, pads, dilation, groups):
    N, C, H, W, O, Cg, KH, KW, OH, OW, Og = _geometry(x.shape, w_shape, stride, pads, dilation, groups, gy.shape)
    sh, sw = stride
    dh, dw = dilation
    pt, pl = pads[0], pads[2]
    if _use_direct(Cg, KH, KW, Og) and stride == (1, 1):
        xp = _pad_input(x, pads)
        gw = np.zeros(w_shape, x.dtype)
        _flat_backward_weight(xp, gy, gw, dh, dw, groups)
        return gw
    if _use_direct(Cg, KH, KW, Og):
        gw = np.zeros(w_shape, x.dtype)
        _direct_backward_weight(x, gy, gw, sh, sw, pt, pl, dh, dw, groups)
        return gw
    K, P = Cg * KH * KW, OH * OW
    nb = _chunk(N, K, P, x.itemsize)
    col = np.empty((K, nb * P), x.dtype)
    gbuf = np.empty((Og, nb * P), x.dtype)
    gw = np.zeros((O, K), x.dtype)
    for n0 in range(0, N, nb):
        m = min(nb, N - n0)
        cm = col if m == nb else np.empty((K, m * P), x.dtype)
        for g in range(groups):
            _im2col(x, n0, m, g * Cg, Cg, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW, cm)
            if m == 1:
                gyg = gy[n0, g * Og:(g + 1) * Og].reshape(Og, P)
            else:
                gyg = gbuf if m == nb else np.empty((Og, m * P), x.dtype)
                _gather_grad(gy, n0, m, g * Og, Og, gyg)
            gw[g * Og:(g + 1) * Og] += gyg @ cm.T
    return gw.reshape(w_shape)
