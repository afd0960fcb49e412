"""The CPU convolution's fused epilogue: bias, then an inference BatchNorm's scale and shift, then ReLU or ReLU6,
applied while each output tile is still in cache (``ep`` holds bias, scale, shift as rows of a (3, O) array)."""

import numpy as np
from numba import njit, prange

from .act import _act


@njit(nogil=True, cache=True, inline="always")
def _store(dst, src, ep, o, affine, act):
    """The fused epilogue every path ends with, while the tile is still in cache:
    dst[:] = act((src + bias) * scale + shift), with ep = (bias, scale, shift) per output channel (rows of a
    (3, O) array), the affine step only when ``affine`` (a BatchNorm folded in at inference), and act an
    activation code (0 relu, 9 relu6, else none; NaN kept as the activation kernels keep it). Each case is a
    loop of its own, so that each vectorises. The operations and their order are BatchNorm's and the
    activation's own, so a fused run matches the separate layers to float32 rounding (bitwise on the GEMM paths;
    inlined into the direct kernel, LLVM may contract the affine step into one FMA)."""
    bv = ep[0, o]
    sv = ep[1, o]
    tv = ep[2, o]
    n = dst.shape[0]
    if affine:
        if act == 0:
            for q in range(n):
                dst[q] = _act((src[q] + bv) * sv + tv, 0, 0.0)
        elif act == 9:
            for q in range(n):
                dst[q] = _act((src[q] + bv) * sv + tv, 9, 0.0)
        else:
            for q in range(n):
                dst[q] = (src[q] + bv) * sv + tv
    else:
        if act == 0:
            for q in range(n):
                dst[q] = _act(src[q] + bv, 0, 0.0)
        elif act == 9:
            for q in range(n):
                dst[q] = _act(src[q] + bv, 9, 0.0)
        else:
            for q in range(n):
                dst[q] = src[q] + bv


@njit(nogil=True, cache=True, inline="always")
def _store_inplace(buf, ep, o, affine, act):
    """_store(buf, buf, ...) written with one array: given two, LLVM's runtime overlap check sees them overlap
    and falls back to its scalar loop (the fused BatchNorm epilogue ran slower than BatchNorm's own pass)."""
    bv = ep[0, o]
    sv = ep[1, o]
    tv = ep[2, o]
    n = buf.shape[0]
    if affine:
        if act == 0:
            for q in range(n):
                buf[q] = _act((buf[q] + bv) * sv + tv, 0, 0.0)
        elif act == 9:
            for q in range(n):
                buf[q] = _act((buf[q] + bv) * sv + tv, 9, 0.0)
        else:
            for q in range(n):
                buf[q] = (buf[q] + bv) * sv + tv
    else:
        if act == 0:
            for q in range(n):
                buf[q] = _act(buf[q] + bv, 0, 0.0)
        elif act == 9:
            for q in range(n):
                buf[q] = _act(buf[q] + bv, 9, 0.0)
        else:
            for q in range(n):
                buf[q] = buf[q] + bv


@njit(nogil=True, cache=True)
def _rows_out(out, y, n0, nb, o0, oh0, oh1, Wp, ep, affine, act):
    """y[n0+b, o0+o, oh0+r, :] = epilogue(out[o, b*L + r*Wp : ... + OW]): a pitch-layout GEMM result back to
    NCHW (L = out's columns per image)."""
    OW = y.shape[3]
    L = out.shape[1] // nb
    for b in range(nb):
        for o in range(out.shape[0]):
            for r in range(oh1 - oh0):
                _store(y[n0 + b, o0 + o, oh0 + r], out[o, b * L + r * Wp:b * L + r * Wp + OW], ep, o0 + o, affine,
                       act)


@njit(nogil=True, cache=True)
def _finish_band(y, n, o0, og, p0, p1, ep, affine, act):
    """y[n, o0+o].flat[p0:p1] = epilogue(itself) in place (a tile the GEMM wrote straight into y). It takes y
    itself, not the GEMM's strided view of the band: rows of that view have Numba's 'any' layout, whose loops
    do not vectorise (a fused BatchNorm + ReLU6 there ran 6x slower than BatchNorm's own pass)."""
    P = y.shape[2] * y.shape[3]
    for o in range(og):
        _store_inplace(y[n, o0 + o].reshape(P)[p0:p1], ep, o0 + o, affine, act)


@njit(nogil=True, cache=True)
def _images_out(out, y, n0, nb, o0, ep, affine, act):
    """y[n0+b, o0+o] = epilogue(out[o, b*P : (b+1)*P]): a GEMM over several whole images back to NCHW."""
    P = y.shape[2] * y.shape[3]
    for b in range(nb):
        yb = y[n0 + b].reshape(y.shape[1], P)
        for o in range(out.shape[0]):
            _store(yb[o0 + o], out[o, b * P:(b + 1) * P], ep, o0 + o, affine, act)


@njit(parallel=True, cache=True)
def _finish_planes(y, ep, affine, act):
    """y = epilogue(y) in place, plane by plane (after the strided direct kernel)."""
    N, O = y.shape[0], y.shape[1]
    P = y.shape[2] * y.shape[3]
    yf = y.reshape(N, O, P)
    for t in prange(N * O):
        n = t // O
        o = t - n * O
        _store_inplace(yf[n, o], ep, o, affine, act)


@njit(cache=True, error_model="numpy")  # x / 0 -> inf, as numpy (a zero variance with eps 0)
def _fold_bn(ep, mean, var, weight, beta, eps):
    """ep[1], ep[2] = BatchNorm's scale and shift, in float64 then rounded to ep's dtype: norm._affine's own
    operations in its order (1 / sqrt(var + eps), weight * that, beta - mean * scale), so the same bits, in one
    compiled loop where its ten numpy calls cost ~5 us of each fused layer call. weight / beta: None -> 1 / 0."""
    for o in range(ep.shape[1]):
        invstd = 1.0 / np.sqrt(np.float64(var[o]) + eps)
        scale = (1.0 if weight is None else np.float64(weight[o])) * invstd
        ep[1, o] = scale
        ep[2, o] = (0.0 if beta is None else np.float64(beta[o])) - np.float64(mean[o]) * scale


def _epilogue(b, bn, O, dtype):
    """(ep, affine): the (3, O) rows bias, scale, shift of _store. bn = (mean, var, weight, bias, eps) of a
    BatchNorm that follows, its scale and shift computed exactly as its own kernel computes them."""
    ep = np.zeros((3, O), dtype)
    ep[1] = 1
    if b is not None:
        ep[0] = b
    if bn is None:
        return ep, False
    mean, var, weight, beta, eps = bn
    _fold_bn(ep, mean, var, weight, beta, float(eps))
    return ep, True
