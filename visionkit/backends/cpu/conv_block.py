"""MobileNetV2's inverted residual block for inference: a 1x1 expansion, a depthwise KxK conv and a 1x1
projection, each with its epilogue (bias, an inference BatchNorm, ReLU/ReLU6), then the residual Add when there is
one, as one Numba kernel whose two intermediate tensors are channels-last (NHWC). The first conv may also be any
ungrouped conv (through im2col columns): MobileNetV2's 3x3/2 stem runs with its first block, which does not expand.

Why channels-last: run as three NCHW convolutions, the depthwise conv walks each plane's rows, and on MobileNetV2's
14x14 and 7x7 planes most of a row is a loop remainder (576 channels at 14x14: 0.10-0.17 ms against 0.06
channels-last; 960 at 7x7: 0.08-0.16 against 0.03, one image, two threads). Channels-last, every tap is one
contiguous run over the channels, vectorised whatever the plane's size. The 1x1 convs change layout on the way:
BLAS reads the NCHW input as a transposed matrix to write the expansion channels-last, and the projection's
channels-last product is stored transposed into the NCHW output. And one call replaces three or four layer calls
(~19 us of Python each).

Work split, per image, on ``parts`` threads: pixels (each thread a contiguous run of input pixels, then of output
pixels, so that most of what a thread reads it wrote itself) when the image is large; channels for small images
(each thread its expansion channels, the same channels of the depthwise conv, then its projection channels), whose
pixel runs would be too short for BLAS. The channel split's 1x1 convs are NCHW products, whose weights BLAS packs
faster.
"""
import numpy as np
from numba import njit, prange

from .. import conv_output_size
from . import threads
from .act import _act
from .blas import gemm_at
from .block_vectors import dw3x3_row, finish_rows, lanes, transpose_finish
from .conv_columns import _im2col_tile
from .conv_epilogue import _epilogue, _store, _store_inplace
from .scratch import scratch


@njit(inline="always")
def _store_channels(row, b, s, t, affine, act):
    """row[k] = act((row[k] + b[k]) * s[k] + t[k]) (bias, scale, shift of each channel): conv_epilogue's
    _store_inplace for a channels-last pixel, one loop per case so each vectorises."""
    n = row.shape[0]
    if affine:
        if act == 0:
            for k in range(n):
                row[k] = _act((row[k] + b[k]) * s[k] + t[k], 0, 0.0)
        elif act == 9:
            for k in range(n):
                row[k] = _act((row[k] + b[k]) * s[k] + t[k], 9, 0.0)
        else:
            for k in range(n):
                row[k] = (row[k] + b[k]) * s[k] + t[k]
    else:
        if act == 0:
            for k in range(n):
                row[k] = _act(row[k] + b[k], 0, 0.0)
        elif act == 9:
            for k in range(n):
                row[k] = _act(row[k] + b[k], 9, 0.0)
        else:
            for k in range(n):
                row[k] = row[k] + b[k]


@njit(inline="always")
def _store_pixels(E, q0, q1, c0, c1, ep, affine, act, V):
    """_store_channels over pixels q0..q1 of the channels-last E, channels c0..c1 (ep's rows bias, scale, shift):
    V channels at a time over the run of pixels (block_vectors.finish_rows; V = 0: pixel by pixel), the
    channels left over pixel by pixel. Block 2 of MobileNetV2 (96 channels at 112x112): 0.08 -> 0.035 ms over
    its GEMM, two threads."""
    cv = c0
    if V > 0:
        cv = c0 + (c1 - c0) // V * V
        for c in range(c0, cv, V):
            finish_rows(E, ep, q0, q1 - q0, c, affine, act)
    if cv < c1:
        b, s, t = ep[0, cv:c1], ep[1, cv:c1], ep[2, cv:c1]
        for q in range(q0, q1):
            _store_channels(E[q, cv:c1], b, s, t, affine, act)


@njit(inline="always")
def _expand(xf, x0, HW, C, we, E, q0, q1, ep, affine, act, V):
    """E[q0:q1] = epilogue(x[:, q0:q1]^T @ we^T): the expansion of pixels q0..q1, channels-last (x's plane n
    starts at element x0 of xf; we is the (Ce, C) weight)."""
    Ce = E.shape[1]
    gemm_at(True, True, q1 - q0, Ce, C, xf, x0 + q0, HW, we, 0, C, E, q0 * Ce, Ce)
    _store_pixels(E, q0, q1, 0, Ce, ep, affine, act, V)


@njit(inline="always")
def _expand_channels(xf, x0, HW, C, we, E, Z, e0, e1, ep, affine, act):
    """E[:, e0:e1] = epilogue(we[e0:e1] @ x): the expansion of every pixel into channels e0..e1 (the split by
    channels), as the NCHW product into the scratch Z, then stored transposed. BLAS packs the weights of this
    product from their own layout; the transposed product (as _expand) ran 1.3x slower at 7x7, more with the
    weights out of cache (160 -> 960 channels: 0.29 against 0.38 ms on one thread, caches flushed)."""
    M = e1 - e0
    gemm_at(False, False, M, HW, C, we, e0 * C, C, xf, x0, HW, Z, 0, HW)
    z = Z[:M * HW].reshape(M, HW)
    b, s, t = ep[0, e0:e1], ep[1, e0:e1], ep[2, e0:e1]
    for q in range(HW):
        row = E[q, e0:e1]
        for k in range(M):
            row[k] = z[k, q]
        _store_channels(row, b, s, t, affine, act)


@njit(inline="always")
def _conv_rows(x, n, w1, E, r0, r1, W1, g1, col, ep, affine, act, V):
    """E[rows r0..r1 of the first conv's output, all channels] = epilogue(its im2col columns^T @ w1^T), for a first
    conv that is not 1x1 (MobileNetV2's 3x3/2 stem before its first block): g1 = (KH, KW, sh, sw, pt, pl, dh, dw);
    col is the thread's scratch for the columns, (C*KH*KW) x ((r1 - r0) * W1)."""
    KH, KW, sh, sw, pt, pl, dh, dw = g1
    Ce, K = w1.shape
    M = (r1 - r0) * W1
    c = col[:K * M].reshape(K, M)
    _im2col_tile(x, n, 1, 0, x.shape[1], KH, KW, sh, sw, pt, pl, dh, dw, r0, r1, W1, c)
    gemm_at(True, True, M, Ce, K, col, 0, M, w1, 0, K, E, r0 * W1 * Ce, Ce)
    _store_pixels(E, r0 * W1, r1 * W1, 0, Ce, ep, affine, act, V)


@njit(inline="always", fastmath={"contract"})
def _depthwise(E, H, W, wd, D, OW, q0, q1, c0, c1, sh, sw, pt, pl, ep, affine, act):
    """D[q, c0:c1] = epilogue(the depthwise conv of E at output pixel q), q0 <= q < q1; E and D channels-last,
    wd (KH, KW, channels). Each tap one contiguous run over the channels; the 3x3 windows inside the input sum
    their nine taps in registers and store once, the others (borders, other kernels) accumulate tap by tap.
    (Two neighbouring pixels per loop at stride 1, sharing six inputs, ran 1.5-2.5x slower with few channels:
    LLVM no longer vectorised it.)"""
    KH, KW = wd.shape[0], wd.shape[1]
    n = c1 - c0
    b, s, t = ep[0, c0:c1], ep[1, c0:c1], ep[2, c0:c1]
    for q in range(q0, q1):
        oy = q // OW
        iy0 = oy * sh - pt
        ix0 = (q - oy * OW) * sw - pl
        o = D[q, c0:c1]
        if KH == 3 and KW == 3 and iy0 >= 0 and iy0 + 3 <= H and ix0 >= 0 and ix0 + 3 <= W:
            r = iy0 * W + ix0
            x00, x01, x02 = E[r, c0:c1], E[r + 1, c0:c1], E[r + 2, c0:c1]
            x10, x11, x12 = E[r + W, c0:c1], E[r + W + 1, c0:c1], E[r + W + 2, c0:c1]
            x20, x21, x22 = E[r + 2 * W, c0:c1], E[r + 2 * W + 1, c0:c1], E[r + 2 * W + 2, c0:c1]
            w00, w01, w02 = wd[0, 0, c0:c1], wd[0, 1, c0:c1], wd[0, 2, c0:c1]
            w10, w11, w12 = wd[1, 0, c0:c1], wd[1, 1, c0:c1], wd[1, 2, c0:c1]
            w20, w21, w22 = wd[2, 0, c0:c1], wd[2, 1, c0:c1], wd[2, 2, c0:c1]
            for k in range(n):
                o[k] = (x00[k] * w00[k] + x01[k] * w01[k] + x02[k] * w02[k]
                        + x10[k] * w10[k] + x11[k] * w11[k] + x12[k] * w12[k]
                        + x20[k] * w20[k] + x21[k] * w21[k] + x22[k] * w22[k])
        else:
            for k in range(n):
                o[k] = 0
            for i in range(KH):
                iy = iy0 + i
                if iy < 0 or iy >= H:
                    continue
                for j in range(KW):
                    ix = ix0 + j
                    if ix < 0 or ix >= W:
                        continue
                    xr = E[iy * W + ix, c0:c1]
                    wr = wd[i, j, c0:c1]
                    for k in range(n):
                        o[k] += xr[k] * wr[k]
        _store_channels(o, b, s, t, affine, act)


@njit(inline="always")
def _depthwise_rows(E, H, W, wd, D, OW, q0, q1, c0, c1, sh, sw, pt, pl, ep, affine, act, V):
    """_depthwise over output pixels q0..q1, channels c0..c1, with each output row's interior (the pixels whose
    3x3 windows lie inside the input) run V channels at a time by block_vectors.dw3x3_row; a last vector that
    would pass c1 is moved back to end there (it computes some channels twice, to the same bits). The borders,
    fewer than V channels (V = 0: all) and other kernels go through _depthwise. Bitwise the same outputs.
    (_depthwise has one call site here: each inlined copy of it costs the kernel's compile ~20 s.)"""
    KH, KW = wd.shape[0], wd.shape[1]
    vectors = V > 0 and c1 - c0 >= V and KH == 3 and KW == 3
    wt = wd.reshape(KH * KW, wd.shape[2])
    lo = (pl + sw - 1) // sw  # the first and last output columns whose windows lie inside the input
    hi = (W - 3 + pl) // sw
    q = q0
    while q < q1:
        oy = q // OW
        row0 = oy * OW
        end = min(q1, row0 + OW)
        iy0 = oy * sh - pt
        a, b = max(q, row0 + lo), min(end, row0 + hi + 1)
        if not vectors or iy0 < 0 or iy0 + 3 > H or a >= b:
            a, b = end, end
        else:
            src = iy0 * W + (a - row0) * sw - pl
            for c in range(c0, c1, V):
                dw3x3_row(E, D, wt, ep, src, sw, W, a, b - a, min(c, c1 - V), affine, act)
        for s0, s1 in ((q, a), (b, end)):
            if s0 < s1:
                _depthwise(E, H, W, wd, D, OW, s0, s1, c0, c1, sh, sw, pt, pl, ep, affine, act)
        q = end


@njit(inline="always")
def _add_residual(yf, xf, a, b):
    """yf[a:b] += xf[a:b]: the block's residual Add, while the row is in cache (x + y is y + x to the bit)."""
    dst, src = yf[a:b], xf[a:b]
    for q in range(b - a):
        dst[q] += src[q]


@njit(inline="always")
def _project(D, wp, Z, yf, y0, OHW, q0, q1, o0, o1, ep, affine, act, xf, residual, V):
    """y[o0:o1, q0:q1] = epilogue(wp[o0:o1] @ D[q0:q1]^T) (+ x[o0:o1, q0:q1] when ``residual``): the projection of
    output pixels q0..q1 into channels o0..o1, NCHW (the image's planes start at element y0 of yf, and of xf when
    x is added). BLAS writes it channels-last into the scratch Z, and the epilogue transposes, V x V tiles in
    registers (block_vectors.transpose_finish; V = 0: element by element): the NCHW product (wp @ D^T) ran
    1.1-1.6x slower (56x56 pixels, 144 channels into 24: 0.42 against 0.28 ms on one thread)."""
    Ce = D.shape[1]
    M, N = q1 - q0, o1 - o0
    gemm_at(False, True, M, N, Ce, D, q0 * Ce, Ce, wp, o0 * Ce, Ce, Z, 0, N)
    z = Z[:M * N].reshape(M, N)
    Mv, Nv = 0, 0
    if V > 0:  # V x V tiles transposed in registers, the rest element by element
        Mv, Nv = M // V * V, N // V * V
        for j0 in range(0, Nv, V):
            for m0 in range(0, Mv, V):
                transpose_finish(Z, N, m0, j0, yf, y0 + q0, OHW, ep, o0, affine, act, xf, residual)
    for o in range(o0, o1):
        a = y0 + o * OHW + q0
        done = Mv if o - o0 < Nv else 0
        _store(yf[a + done:a + M], z[done:, o - o0], ep, o, affine, act)
        if residual:
            _add_residual(yf, xf, a + done, a + M)


@njit(inline="always")
def _project_channels(D, wp, yf, y0, OHW, o0, o1, ep, affine, act, xf, residual):
    """y[o0:o1] = epilogue(wp[o0:o1] @ D^T) (+ x[o0:o1] with ``residual``): the projection of every pixel into
    channels o0..o1 (the split by channels), written NCHW by BLAS itself: with so few pixels this product runs
    faster than _project's (960 -> 80 channels at 7x7: 0.106 against 0.113 ms on one thread, 0.196 against 0.208
    with the caches flushed)."""
    Ce = D.shape[1]
    gemm_at(False, True, o1 - o0, OHW, Ce, wp, o0 * Ce, Ce, D, 0, Ce, yf, y0 + o0 * OHW, OHW)
    for o in range(o0, o1):
        a = y0 + o * OHW
        _store_inplace(yf[a:a + OHW], ep, o, affine, act)
        if residual:
            _add_residual(yf, xf, a, a + OHW)


@njit(parallel=True, cache=True)
def _block_forward(x, w1, g1, pointwise, H1, W1, ep1, affine1, act1, wd, ep2, affine2, act2, sh, sw, pt, pl, wp, ep3,
                   affine3, act3, y, E, D, Z, COL, parts, by_channels, chunk, band, residual, V):
    """y = project(depthwise(expand(x))) image by image: three parallel loops over ``parts`` (see the module
    docstring), the pixel runs cut into chunks of at most ``chunk`` pixels so that each GEMM's block is still in
    cache for its epilogue. The first conv is 1x1 (stride 1, unpadded: ``pointwise``) or any ungrouped conv of
    geometry g1 = (KH, KW, sh, sw, pt, pl, dh, dw), through im2col columns in COL[p], ``band`` rows at a time (its
    rows split by pixels always), with an H1 x W1 output. E (H1*W1, Ce), D (OH*OW, Ce) and Z (parts, at least chunk * P and H*W * ceil(Ce / parts)) are
    scratch. With ``residual``, x (then the shape of y) is added to y. The expansion's epilogue, the 3x3
    depthwise conv inside the image and the projection's store run V channels at a time as explicit vectors
    (block_vectors.py; V = 0: pixel by pixel)."""
    N, C, H, W = x.shape
    Ce = w1.shape[0]
    P, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    HW, OHW = H * W, OH * OW
    xf = x.reshape(x.size)
    yf = y.reshape(y.size)
    for n in range(N):
        for p in prange(parts):
            if not pointwise:
                r0, r1 = p * H1 // parts, (p + 1) * H1 // parts
                for a in range(r0, r1, band):
                    _conv_rows(x, n, w1, E, a, min(r1, a + band), W1, g1, COL[p], ep1, affine1, act1, V)
                continue
            if by_channels:
                e0, e1 = p * Ce // parts, (p + 1) * Ce // parts
                if e0 < e1:
                    _expand_channels(xf, n * C * HW, HW, C, w1, E, Z[p], e0, e1, ep1, affine1, act1)
                continue
            a, b = p * HW // parts, (p + 1) * HW // parts
            for q0 in range(a, b, chunk):
                _expand(xf, n * C * HW, HW, C, w1, E, q0, min(b, q0 + chunk), ep1, affine1, act1, V)
        for p in prange(parts):
            qa, qb, ca, cb = p * OHW // parts, (p + 1) * OHW // parts, 0, Ce
            if by_channels:
                qa, qb, ca, cb = 0, OHW, p * Ce // parts, (p + 1) * Ce // parts
            _depthwise_rows(E, H1, W1, wd, D, OW, qa, qb, ca, cb, sh, sw, pt, pl, ep2, affine2, act2, V)
        for p in prange(parts):
            if by_channels and p * P // parts < (p + 1) * P // parts:
                _project_channels(D, wp, yf, n * P * OHW, OHW, p * P // parts, (p + 1) * P // parts, ep3, affine3,
                                  act3, xf, residual)
            elif not by_channels:
                a, b = p * OHW // parts, (p + 1) * OHW // parts
                for q0 in range(a, b, chunk):
                    _project(D, wp, Z[p], yf, n * P * OHW, OHW, q0, min(b, q0 + chunk), 0, P, ep3, affine3,
                             act3, xf, residual, V)


# Images with fewer output pixels than this split the block by channels: a thread's share of a 7x7 image's pixels
# (24) makes GEMMs too short for BLAS's blocking. MobileNetV2 b1 with 14x14 images split by pixels, not channels:
# 8.44 -> 8.14 ms (median of 8 alternated rounds, one process); 7x7 ones by pixels too: 11.09 -> 11.20 (a slower
# spell of the machine).
BY_CHANNELS_BELOW = 100
# pixels per GEMM of the pixel split: its input and output blocks ((C + Ce) x this) stay in L2 for the epilogue
CHUNK_BYTES = 512 << 10
# The expansion's epilogue, the 3x3 depthwise conv's rows and the projection's store run explicit vectors of
# channels (block_vectors.py): MobileNetV2's depthwise convs alone took 0.24-0.72x the per-pixel loop's time, one
# thread (32 channels at 112x112: 0.64 -> 0.15 ms; 576 at 14x14: 0.091 -> 0.063). False: pixel by pixel (the
# tests compare the two).
EXPLICIT_VECTORS = True


def block_forward(x, expand, depthwise, project, stride, pads, residual, expand_geometry):
    """project(depthwise(expand(x))) (+ x with ``residual``) for inference (see the module docstring);
    conv.expand_depthwise_project describes the arguments. Only when ``blas.AVAILABLE``."""
    N, _, H, W = x.shape
    (w1, b1, bn1, act1), (wd, b2, bn2, act2), (wp, b3, bn3, act3) = expand, depthwise, project
    (s1h, s1w), pads1, (d1h, d1w) = expand_geometry
    Ce, K, P, KH, KW = w1.shape[0], w1[0].size, wp.shape[0], wd.shape[2], wd.shape[3]
    H1 = conv_output_size(H, w1.shape[2], s1h, pads1[0] + pads1[1], d1h)
    W1 = conv_output_size(W, w1.shape[3], s1w, pads1[2] + pads1[3], d1w)
    OH = conv_output_size(H1, KH, stride[0], pads[0] + pads[1], 1)
    OW = conv_output_size(W1, KW, stride[1], pads[2] + pads[3], 1)
    y = np.empty((N, P, OH, OW), x.dtype)
    ep1, affine1 = _epilogue(b1, bn1, Ce, x.dtype)
    ep2, affine2 = _epilogue(b2, bn2, Ce, x.dtype)
    ep3, affine3 = _epilogue(b3, bn3, P, x.dtype)
    flops = 2.0 * N * (H1 * W1 * Ce * K + OH * OW * Ce * (KH * KW + P))
    parts = threads.kernel_workers(flops)
    chunk = max(64, CHUNK_BYTES // ((Ce + max(K, P)) * x.itemsize))
    E = scratch.get("block_e", H1 * W1 * Ce, x.dtype).reshape(H1 * W1, Ce)
    D = scratch.get("block_d", OH * OW * Ce, x.dtype).reshape(OH * OW, Ce)
    zsize = max(chunk * P, H * W * -(-Ce // parts))
    Z = scratch.get("block_z", parts * zsize, x.dtype).reshape(parts, zsize)
    g1 = (w1.shape[2], w1.shape[3], s1h, s1w, pads1[0], pads1[2], d1h, d1w)
    pointwise = g1[:6] == (1, 1, 1, 1, 0, 0) and (H1, W1) == (H, W)
    band = max(1, chunk // W1)
    by_channels = OH * OW < BY_CHANNELS_BELOW
    colsize = 1 if pointwise else K * band * W1
    COL = scratch.get("block_col", parts * colsize, x.dtype).reshape(parts, colsize)
    with threads.single_threaded_blas():
        threads.launch(_block_forward, flops if parts > 1 else 0, x, np.ascontiguousarray(w1).reshape(Ce, K), g1,
                       pointwise, H1, W1, ep1, affine1, int(act1), np.ascontiguousarray(wd[:, 0].transpose(1, 2, 0)), ep2,
                       affine2, int(act2), stride[0], stride[1], pads[0], pads[2],
                       np.ascontiguousarray(wp).reshape(P, Ce), ep3, affine3, int(act3), y, E, D, Z, COL, parts,
                       by_channels, chunk, band, residual, lanes(x.dtype) if EXPLICIT_VECTORS else 0)
    return y
