"""Winograd's minimal filtering F(2x2, 3x3) for the CPU forward of 3x3, stride-1, undilated, ungrouped convolutions
with many channels, and for their input gradient (a correlation with the flipped kernel; see ``conv``) (Lavin
and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016; what cuDNN, oneDNN and NNPACK do here).

Each 2x2 block of outputs ("tile") comes from a 4x4 patch d of the input: Y = A^T [ (G g G^T) * (B^T d B) ] A,
summed over input channels. The sum over channels of the element-wise products is, for each of the 16 positions
of the 4x4 transform, a matrix product (O x C) @ (C x tiles), so the convolution becomes 16 GEMMs of 4 / 9 the
multiply-adds of im2col's single GEMM, plus two cheap transforms. Rounding differs from the direct sum by a few
ulps (relative 1e-6 in float32, 1e-15 in float64; tests/test_conv_winograd.py holds it to the loop reference).

Work is cut in bands of tile rows of one image, or runs of whole small images, each band's transformed input and
GEMM outputs (16 x C x tiles and 16 x O x tiles) small enough to stay in L2 between the transforms and the GEMMs.
The fused epilogue (bias, BatchNorm, ReLU/ReLU6) runs on each band while it is still in cache. Where numpy's BLAS
can be called from Numba (``blas.AVAILABLE``), one ``prange`` kernel runs whole runs of bands, GEMMs included, on
Numba's threads (``_forward_runs``, ``_weight_gradient_runs``); elsewhere the bands go to the Python pool as the
im2col path's tiles do. A forward whose images make a single band (one small image) would run on one thread that
way: it runs image by image instead, every thread taking a share of the transforms, then of the output channels
(``_forward_image_parts``).
"""

import numpy as np
from numba import njit, prange

from . import blas
from .blas import gemm
from .conv_epilogue import _finish_band
from .threads import num_workers, single_threaded_blas

# tiles (2x2 output blocks) per band: measured on the 2-core machine, 256 beat 128 and 512 on both benchmark
# shapes (1x64x56x56 and 32x32x28x28 -> 64)
BAND_TILES = 256
# channels in and out below which im2col's single GEMM stays ahead (the transforms cost per channel)
MIN_CHANNELS = 16
# output pixels (all images together) below which the weight transform, the tiles' padding and the 16 small
# GEMMs cost more than they save: measured against im2col, 1x256x14x14 -> 256 ran 0.86x, 1x128x28x28 -> 128 1.75x
MIN_OUTPUT_PIXELS = 400
# extra elements between the 16 matrices of a transformed weight, input or output: the transforms write (and read)
# all 16 at once, and when the matrices sit a multiple of 4 KB apart those 16 streams fight over the same L1 sets.
# A 1x64x56x56 image's input transform (16 x 64 x 784 floats, 200 KB apart) took 2.25 ms, 0.23 ms with this gap
K_GAP = 32


# a forward whose images make a single band (one small image: ResNet's 14x14 stage at batch 1) runs one image at a
# time on all threads, cut by output channels (_forward_image_parts), while its transformed weights (16 x O x C)
# are at most this big. Against im2col, one process: 256x256 channels at 14x14 2.06 -> 1.39 ms, 64x64 0.21 ->
# 0.10 ms, 256x256 at 7x7 0.51 -> 0.37 ms; but 512x512 at 7x7 (16.8 MB of transformed weights) 1.63 -> 2.50 ms
IMAGE_MAX_WEIGHT_BYTES = 8 << 20


def _winograd_shape(C, O, KH, KW, stride, dilation, groups, dtype):
    return (KH, KW) == (3, 3) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and groups == 1 and \
        min(C, O) >= MIN_CHANNELS and np.dtype(dtype) in (np.float32, np.float64)


def use_winograd(N, C, O, KH, KW, OH, OW, stride, dilation, groups, dtype):
    """Whether a forward goes this way: 3x3, stride 1, no dilation, one group, enough channels and pixels."""
    return _winograd_shape(C, O, KH, KW, stride, dilation, groups, dtype) and N * OH * OW >= MIN_OUTPUT_PIXELS


def use_image_parts(N, C, O, KH, KW, OH, OW, stride, dilation, groups, dtype):
    """Whether a forward runs image by image, all threads on each (_forward_image_parts): a Winograd shape whose
    images make a single band, its transformed weights at most IMAGE_MAX_WEIGHT_BYTES, BLAS callable from Numba."""
    return blas.AVAILABLE and _winograd_shape(C, O, KH, KW, stride, dilation, groups, dtype) and \
        len(bands(N, OH, OW)) == 1 and 16 * O * C * np.dtype(dtype).itemsize <= IMAGE_MAX_WEIGHT_BYTES


@njit(nogil=True, cache=True, fastmath={"reassoc"})
def _pad_band(x, n0, r0, pt, pl, xb):
    """xb[b, c, i, j] = x[n0 + b, c, r0 + i - pt, j - pl], zero outside x: a band's input rows with their padding,
    for each of its images. Returns False when a copied value is NaN or infinite: the transforms would spread it
    over whole tiles (and inf - inf gives NaN), so the whole convolution is then computed the im2col way, which
    keeps PyTorch's pattern of NaN and inf. Each row is zeros, a plain copy and zeros, and the check sums v - v
    in any order ("reassoc": NaN still wins), so both vectorise (a per-element branch and one serial sum made
    this copy 46 us per band of 1x64x56x56)."""
    H, W = x.shape[2], x.shape[3]
    nb, C, R, Wb = xb.shape
    left = min(pl, Wb)
    count = max(0, min(W, Wb - pl))
    bad = 0.0
    for b in range(nb):
        for c in range(C):
            for i in range(R):
                dst = xb[b, c, i]
                r = r0 + i - pt
                if r < 0 or r >= H:
                    dst[:] = 0
                    continue
                src = x[n0 + b, c, r]
                for j in range(left):
                    dst[j] = 0
                for q in range(count):
                    v = src[q]
                    dst[pl + q] = v
                    bad += v - v  # 0 for every finite value, NaN once any is not
                for j in range(pl + count, Wb):
                    dst[j] = 0
    return bad == 0.0


@njit(nogil=True, cache=True, inline="always")
def _row_times_b(V, k, c, t, m0, m1, m2, m3):
    """V[k:k + 4, c, t] = (m0, m1, m2, m3) B, one row of B^T d B."""
    V[k, c, t] = m0 - m2
    V[k + 1, c, t] = m1 + m2
    V[k + 2, c, t] = m2 - m1
    V[k + 3, c, t] = m1 - m3


@njit(nogil=True, cache=True)
def _input_transform(xb, tiles_h, tw, V):
    """V[k, c, t] = (B^T d B)[k // 4, k % 4] for the 4x4 patch d of tile t = (image b, tile row i, column j),
    t = (b * tiles_h + i) * tw + j, in xb; B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]].
    Straight-line code per tile, every value in a register, each of the 16 outputs a contiguous run."""
    nb, C = xb.shape[0], xb.shape[1]
    for b in range(nb):
        for c in range(C):
            for i in range(tiles_h):
                x0, x1, x2, x3 = xb[b, c, 2 * i], xb[b, c, 2 * i + 1], xb[b, c, 2 * i + 2], xb[b, c, 2 * i + 3]
                base = (b * tiles_h + i) * tw
                for j in range(tw):
                    q = 2 * j
                    t = base + j
                    # B^T d, column by column: rows (x0 - x2, x1 + x2, x2 - x1, x1 - x3)
                    a0, a1 = x0[q] - x2[q], x0[q + 1] - x2[q + 1]
                    a2, a3 = x0[q + 2] - x2[q + 2], x0[q + 3] - x2[q + 3]
                    b0, b1 = x1[q] + x2[q], x1[q + 1] + x2[q + 1]
                    b2, b3 = x1[q + 2] + x2[q + 2], x1[q + 3] + x2[q + 3]
                    e0, e1 = x2[q] - x1[q], x2[q + 1] - x1[q + 1]
                    e2, e3 = x2[q + 2] - x1[q + 2], x2[q + 3] - x1[q + 3]
                    f0, f1 = x1[q] - x3[q], x1[q + 1] - x3[q + 1]
                    f2, f3 = x1[q + 2] - x3[q + 2], x1[q + 3] - x3[q + 3]
                    # then (.) B along each row
                    _row_times_b(V, 0, c, t, a0, a1, a2, a3)
                    _row_times_b(V, 4, c, t, b0, b1, b2, b3)
                    _row_times_b(V, 8, c, t, e0, e1, e2, e3)
                    _row_times_b(V, 12, c, t, f0, f1, f2, f3)


@njit(nogil=True, cache=True)
def _output_transform(M, y, n0, nb, i0, tiles_h, tw):
    """y[n0 + b, o, 2(i0 + i) + a, 2j + c] = (A^T m A)[a, c] for m the 4x4 of tile (b, i, j) in M[:, o, :], cut
    at the output's edge; A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]."""
    O, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    for b in range(nb):
        for o in range(O):
            for i in range(tiles_h):
                r = 2 * (i0 + i)
                base = (b * tiles_h + i) * tw
                for j in range(tw):
                    t = base + j
                    q = 2 * j
                    s0 = M[0, o, t] + M[4, o, t] + M[8, o, t]
                    s1 = M[1, o, t] + M[5, o, t] + M[9, o, t]
                    s2 = M[2, o, t] + M[6, o, t] + M[10, o, t]
                    s3 = M[3, o, t] + M[7, o, t] + M[11, o, t]
                    u0 = M[4, o, t] - M[8, o, t] - M[12, o, t]
                    u1 = M[5, o, t] - M[9, o, t] - M[13, o, t]
                    u2 = M[6, o, t] - M[10, o, t] - M[14, o, t]
                    u3 = M[7, o, t] - M[11, o, t] - M[15, o, t]
                    y[n0 + b, o, r, q] = s0 + s1 + s2
                    if q + 1 < OW:
                        y[n0 + b, o, r, q + 1] = s1 - s2 - s3
                    if r + 1 < OH:
                        y[n0 + b, o, r + 1, q] = u0 + u1 + u2
                        if q + 1 < OW:
                            y[n0 + b, o, r + 1, q + 1] = u1 - u2 - u3


@njit(nogil=True, cache=True, inline="always")
def _row_times_at(DYt, k, t, o, p, q):
    """DYt[k:k + 4, t, o] = (p, q) A^T = (p, p + q, p - q, -q), one row of A dy A^T."""
    DYt[k, t, o] = p
    DYt[k + 1, t, o] = p + q
    DYt[k + 2, t, o] = p - q
    DYt[k + 3, t, o] = -q


@njit(nogil=True, cache=True)
def _grad_transform(gy, n0, nb, i0, tiles_h, tw, DYt):
    """DYt[k, t, o] = (A dy A^T)[k // 4, k % 4] for dy the 2x2 output gradient of tile t = (image b, tile row i,
    column j), zero past the output's edge; A = [[1, 0], [1, 1], [1, -1], [0, -1]]. The weight gradient's 16
    matrices are then (V[k] @ DYt[k])^T (the forward's y = A^T (U * V) A, differentiated in U): tiles by output
    channels, so that BLAS multiplies plain, not transposed, matrices (0.22 against 0.36 ms per band of
    1x64x56x56). Returns False when a value is NaN or infinite (the caller then takes the im2col way)."""
    O, OH, OW = gy.shape[1], gy.shape[2], gy.shape[3]
    zero = gy.dtype.type(0)
    bad = 0.0
    for b in range(nb):  # channels innermost: each tile's 16 rows of DYt filled contiguously
        for i in range(tiles_h):
            r = 2 * (i0 + i)
            base = (b * tiles_h + i) * tw
            for j in range(tw):
                q = 2 * j
                t = base + j
                for o in range(O):
                    g00 = gy[n0 + b, o, r, q]
                    g01 = gy[n0 + b, o, r, q + 1] if q + 1 < OW else zero
                    g10 = gy[n0 + b, o, r + 1, q] if r + 1 < OH else zero
                    g11 = gy[n0 + b, o, r + 1, q + 1] if r + 1 < OH and q + 1 < OW else zero
                    bad += (g00 - g00) + (g01 - g01) + (g10 - g10) + (g11 - g11)
                    # A dy: rows (g0., g0. + g1., g0. - g1., -g1.); then each row (p, q) -> (p, p + q, p - q, -q)
                    p0, q0 = g00, g01
                    p1, q1 = g00 + g10, g01 + g11
                    p2, q2 = g00 - g10, g01 - g11
                    p3, q3 = -g10, -g11
                    _row_times_at(DYt, 0, t, o, p0, q0)
                    _row_times_at(DYt, 4, t, o, p1, q1)
                    _row_times_at(DYt, 8, t, o, p2, q2)
                    _row_times_at(DYt, 12, t, o, p3, q3)
    return bad == 0.0


# G of F(2x2, 3x3); the weight gradient's G^T dU G for every (o, c) at once is one GEMM with the Kronecker
# product G (x) G: row 4a + b, column 3k + l holds G[a, k] G[b, l]
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
_GG = np.kron(_G, _G)


@njit(nogil=True, cache=True)
def _weight_transform(wf, Uf, t0, t1):
    """U[4a + b, o, c] = (G g G^T)[a, b] for g = w[o, c], for the rows t = o * C + c from t0 to t1 - 1: G applied
    down the columns of g, then along the rows of the product; G's rows are (1, 0, 0), (1/2, 1/2, 1/2),
    (1/2, -1/2, 1/2), (0, 0, 1). Straight-line code per (o, c), w read through its flat (O * C, 9) view wf, U
    written through a (16, O * C) one."""
    h = wf.dtype.type(0.5)
    for t in range(t0, t1):
        g0, g1, g2, g3, g4, g5, g6, g7, g8 = wf[t, 0], wf[t, 1], wf[t, 2], wf[t, 3], wf[t, 4], wf[t, 5], \
            wf[t, 6], wf[t, 7], wf[t, 8]
        # G g, row by row (rows of g: g0..g2, g3..g5, g6..g8)
        p0, p1, p2 = g0, g1, g2
        q0, q1, q2 = h * (g0 + g3 + g6), h * (g1 + g4 + g7), h * (g2 + g5 + g8)
        r0, r1, r2 = h * (g0 - g3 + g6), h * (g1 - g4 + g7), h * (g2 - g5 + g8)
        s0, s1, s2 = g6, g7, g8
        # then (.) G^T along each row: (m0, m1, m2) -> (m0, (m0 + m1 + m2) / 2, (m0 - m1 + m2) / 2, m2)
        Uf[0, t], Uf[1, t], Uf[2, t], Uf[3, t] = p0, h * (p0 + p1 + p2), h * (p0 - p1 + p2), p2
        Uf[4, t], Uf[5, t], Uf[6, t], Uf[7, t] = q0, h * (q0 + q1 + q2), h * (q0 - q1 + q2), q2
        Uf[8, t], Uf[9, t], Uf[10, t], Uf[11, t] = r0, h * (r0 + r1 + r2), h * (r0 - r1 + r2), r2
        Uf[12, t], Uf[13, t], Uf[14, t], Uf[15, t] = s0, h * (s0 + s1 + s2), h * (s0 - s1 + s2), s2


def transformed_weights(w):
    """The 16 (O, C) matrices G g G^T of a (O, C, 3, 3) weight, in its dtype: U[4a + b, o, c], the matrices K_GAP
    elements further apart than packed (each contiguous). A loop, not the GEMM with G (x) G it once was: 0.19 ms
    per call for 128x128 channels there (a small GEMM's overheads; and outside the held-BLAS session OpenBLAS woke
    a worker that then spun on the bands' core), 7 calls per ResNet-18 forward. The gap matters here as for the
    bands' buffers: 16 output streams 64 KB apart made the loop 0.73 ms."""
    O, C = w.shape[0], w.shape[1]
    Uf = np.empty((16, O * C + K_GAP), w.dtype)[:, :O * C]
    _weight_transform(np.ascontiguousarray(w).reshape(O * C, 9), Uf, 0, O * C)
    return Uf.reshape(16, O, C)


def weight_gradient(dU, dtype):
    """The (O, C, 3, 3) weight gradient G^T dU G from the summed (16, O, C) gradient of the transformed weights."""
    O, C = dU.shape[1], dU.shape[2]
    with single_threaded_blas():  # (as transformed_weights)
        dg = np.matmul(_GG.T.astype(dU.dtype), dU.reshape(16, O * C))  # (9, O * C): row 3k + l
    return np.ascontiguousarray(dg.reshape(3, 3, O, C).transpose(2, 3, 0, 1)).astype(dtype, copy=False)


def bands(N, OH, OW):
    """Work items (n0, images, first tile row, tile rows) of about BAND_TILES tiles: bands of tile rows of one
    image, or runs of whole small images (a 14x14 output is 49 tiles: one image alone makes GEMMs too thin)."""
    th, tw = -(-OH // 2), -(-OW // 2)
    if th * tw <= BAND_TILES // 2:
        nb = BAND_TILES // (th * tw)
        return [(n, min(nb, N - n), 0, th) for n in range(0, N, nb)]
    rows = max(1, BAND_TILES // tw)
    count = -(-th // rows)
    workers = num_workers()
    if N < workers and count % workers:  # a few large images: a multiple of the workers, so that none idles
        count += workers - count % workers
    rows = -(-th // count)  # and bands of equal height (28 tile rows in 4 bands: 7 each, not 9, 9, 9, 1)
    return [(n, 1, i0, min(rows, th - i0)) for n in range(N) for i0 in range(0, th, rows)]


# ---- whole convolutions in one parallel kernel, GEMMs included (when blas.AVAILABLE) -----------------------------


@njit(parallel=True, cache=True)
def _forward_runs(x, U, pt, pl, y, band_list, runs, tw, XB, VB, MB, ep, affine, act, finish, ok):
    """The banded forward on Numba's threads: run r (bands runs[r] to runs[r + 1] - 1) on its own buffers XB[r],
    VB[r], MB[r]; each band padded, transformed, multiplied (16 GEMMs), transformed back and finished into y.
    ok[band] False: the band held NaN or inf and was left undone (the caller takes im2col)."""
    O = U.shape[1]
    OH, OW = y.shape[2], y.shape[3]
    for r in prange(runs.shape[0] - 1):
        for bi in range(runs[r], runs[r + 1]):
            n0, nb, i0, rows = band_list[bi, 0], band_list[bi, 1], band_list[bi, 2], band_list[bi, 3]
            T = nb * rows * tw
            xb = XB[r, :nb, :, :2 * rows + 2, :]
            V = VB[r, :, :, :T]
            M = MB[r, :, :, :T]
            if not _pad_band(x, n0, 2 * i0, pt, pl, xb):
                ok[bi] = False
                continue
            _input_transform(xb, rows, tw, V)
            for k in range(16):
                gemm(U[k], V[k], M[k], 0.0)
            _output_transform(M, y, n0, nb, i0, rows, tw)
            if finish:
                p0, p1 = 2 * i0 * OW, min(2 * (i0 + rows), OH) * OW
                for n in range(n0, n0 + nb):
                    _finish_band(y, n, 0, O, p0, p1, ep, affine, act)


@njit(parallel=True, cache=True)
def _weight_gradient_runs(x, gy, pt, pl, band_list, runs, tw, XB, VB, DB, acc, ok):
    """The banded weight gradient on Numba's threads: run r sums V[k] @ DYt[k] of its bands, in band order, into
    acc[r] (16, C, O) (BLAS accumulating with beta = 1), so the result does not depend on which thread ran which
    run. ok[band] False: NaN or inf in the band."""
    for r in prange(runs.shape[0] - 1):
        for bi in range(runs[r], runs[r + 1]):
            n0, nb, i0, rows = band_list[bi, 0], band_list[bi, 1], band_list[bi, 2], band_list[bi, 3]
            T = nb * rows * tw
            xb = XB[r, :nb, :, :2 * rows + 2, :]
            V = VB[r, :, :, :T]
            DYt = DB[r, :, :T, :]
            if not (_pad_band(x, n0, 2 * i0, pt, pl, xb) and _grad_transform(gy, n0, nb, i0, rows, tw, DYt)):
                ok[bi] = False
                continue
            _input_transform(xb, rows, tw, V)
            for k in range(16):
                gemm(V[k], DYt[k], acc[r, k], 1.0)


@njit(parallel=True, cache=True)
def _forward_image_parts(x, n, wf, pt, pl, y, th, tw, Uf, U, xb, V, M, parts, ep, affine, act, finish, ok):
    """One small image's forward (a single band: ResNet's 14x14 stage at batch 1) on ``parts`` threads, which a
    band each cannot give it: first each thread transforms its share of the weights (output channels) and of
    the padded input (input channels); then each multiplies the 16 GEMMs for its output channels, transforms
    them back and finishes them, reading only the weights it transformed itself. ok[p] False: part p's input
    held NaN or inf (the caller takes im2col)."""
    O, C = U.shape[1], U.shape[2]
    OH, OW = y.shape[2], y.shape[3]
    opart = (O + parts - 1) // parts
    cpart = (C + parts - 1) // parts
    for p in prange(parts):
        o0, o1 = min(O, p * opart), min(O, (p + 1) * opart)
        c0, c1 = min(C, p * cpart), min(C, (p + 1) * cpart)
        if o0 < o1:
            _weight_transform(wf, Uf, o0 * C, o1 * C)
        if c0 < c1:
            if _pad_band(x[:, c0:c1], n, 0, pt, pl, xb[:, c0:c1]):
                _input_transform(xb[:, c0:c1], th, tw, V[:, c0:c1])
            else:
                ok[p] = False
    for p in prange(parts):
        o0, o1 = min(O, p * opart), min(O, (p + 1) * opart)
        if o0 < o1:
            for k in range(16):
                gemm(U[k, o0:o1], V[k], M[k, o0:o1], 0.0)
            _output_transform(M[:, o0:o1], y[:, o0:o1], n, 1, 0, th, tw)
            if finish:
                _finish_band(y, n, o0, o1 - o0, 0, OH * OW, ep, affine, act)
