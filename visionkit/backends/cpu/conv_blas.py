"""Convolutions as one Numba kernel that calls BLAS itself (``blas.gemm``), for the shapes where handing tiles to
the Python pool costs as much as their arithmetic: 1x1 convs (MobileNet's expansions and projections) and a
single small image's im2col conv (ResNet's 14x14 and 7x7 stages at batch 1), and ungrouped im2col convs of many
tiles. Used only when ``blas.AVAILABLE``; ``conv`` chooses."""

from numba import njit, prange

from .blas import gemm
from .conv_columns import _im2col_phase_tile, _im2col_pitch_tile, _im2col_tile
from .conv_epilogue import _finish_band, _images_out, _rows_out, _store_inplace


@njit(parallel=True, cache=True)
def _pointwise_runs(x, w2, y, chunk, osplit, ep, affine, act, finish):
    """A 1x1, stride-1, unpadded, ungrouped conv on Numba's threads, BLAS called from the kernel (blas.gemm): each
    work item multiplies the (O / osplit, C) weights by one image's columns c0:c1 (pixels) and finishes that
    output block (bias, BatchNorm, ReLU/ReLU6) while it is in cache. Items: images x output-channel parts x column
    chunks (osplit > 1 when there are fewer chunks than threads, as in MobileNet's 7x7 layers at batch 1, or when
    one image widens); the parts outermost, so that each thread's run of items keeps to its channels."""
    N, C = x.shape[0], x.shape[1]
    O = w2.shape[0]
    P = x.shape[2] * x.shape[3]
    xf = x.reshape(N, C, P)
    yf = y.reshape(N, O, P)
    nch = (P + chunk - 1) // chunk
    part = (O + osplit - 1) // osplit
    for t in prange(N * nch * osplit):
        n = t // (nch * osplit)
        rest = t - n * nch * osplit
        c0 = (rest % nch) * chunk  # output-channel parts outermost: a thread's items share its channels
        c1 = min(P, c0 + chunk)
        o0 = (rest // nch) * part
        o1 = min(O, o0 + part)
        if o0 >= o1:
            continue
        gemm(w2[o0:o1], xf[n, :, c0:c1], yf[n, o0:o1, c0:c1], 0.0)
        if finish:
            for o in range(o0, o1):
                _store_inplace(yf[n, o, c0:c1], ep, o, affine, act)


@njit(parallel=True, cache=True)
def _im2col_image_runs(x, n, w2, y, KH, KW, sh, sw, pt, pl, dh, dw, col, parts, ep, affine, act, finish):
    """One image's ungrouped im2col conv on Numba's threads, BLAS called from the kernel: its columns built by
    ``parts`` threads (input channels shared), then its GEMM cut by output channels into ``parts`` blocks, each
    finished while in cache. For single small images (ResNet's 14x14 and 7x7 stages, strided convs at batch 1),
    whose one tile would otherwise run its im2col on one thread and its GEMM through the Python pool."""
    C = x.shape[1]
    O = w2.shape[0]
    OH, OW = y.shape[2], y.shape[3]
    taps = KH * KW
    cpart = (C + parts - 1) // parts
    for p in prange(parts):
        c0 = p * cpart
        c1 = min(C, c0 + cpart)
        if c0 < c1:
            _im2col_tile(x, n, 1, c0, c1 - c0, KH, KW, sh, sw, pt, pl, dh, dw, 0, OH, OW, col[c0 * taps:c1 * taps])
    yf = y[n].reshape(O, OH * OW)
    opart = (O + parts - 1) // parts
    for p in prange(parts):
        o0 = p * opart
        o1 = min(O, o0 + opart)
        if o0 < o1:
            gemm(w2[o0:o1], col, yf[o0:o1], 0.0)
            if finish:
                for o in range(o0, o1):
                    _store_inplace(yf[o], ep, o, affine, act)


@njit(parallel=True, cache=True)
def _im2col_tile_runs(x, w2, y, tile_list, runs, pitched, KH, KW, sh, sw, pt, pl, dh, dw, Wp, TP, COL, OUT, ep,
                      affine, act, finish):
    """An ungrouped im2col conv of many tiles on Numba's threads, BLAS called from the kernel: run r takes tiles
    runs[r] to runs[r + 1] - 1 (the im2col path's bands of rows or runs of images) on its own buffers TP[r],
    COL[r], OUT[r], each tile's columns built, multiplied and written out (epilogue fused) while in cache: what
    the Python pool does with the same tiles, without a GIL hand-off between the steps of a tile."""
    C = x.shape[1]
    O = w2.shape[0]
    K = w2.shape[1]
    OH, OW = y.shape[2], y.shape[3]
    P = OH * OW
    for r in prange(runs.shape[0] - 1):
        for ti in range(runs[r], runs[r + 1]):
            n0, nb, oh0, oh1 = tile_list[ti, 0], tile_list[ti, 1], tile_list[ti, 2], tile_list[ti, 3]
            R = oh1 - oh0
            if pitched:  # at row pitch Wp; strided convs through phase planes (_im2col_phase_tile)
                L = (R - 1) * Wp + OW
                strided = sh > 1 or sw > 1
                rows = sh * sw * (R + (KH - 1) // sh) if strided else R + (KH - 1) * dh
                tp = TP[r, :C * nb * rows * Wp].reshape(C, nb * rows * Wp)
                col = COL[r, :K * nb * L].reshape(K, nb * L)
                out = OUT[r, :O * nb * L].reshape(O, nb * L)
                if strided:
                    _im2col_phase_tile(x, n0, nb, 0, C, KH, KW, sh, sw, pt, pl, oh0, oh1, Wp, tp, col)
                else:
                    _im2col_pitch_tile(x, n0, nb, 0, C, KH, KW, pt, pl, dh, dw, oh0, oh1, Wp, tp, col)
                gemm(w2, col, out, 0.0)
                _rows_out(out, y, n0, nb, 0, oh0, oh1, Wp, ep, affine, act)
                continue
            cols = nb * R * OW
            col = COL[r, :K * cols].reshape(K, cols)
            _im2col_tile(x, n0, nb, 0, C, KH, KW, sh, sw, pt, pl, dh, dw, oh0, oh1, OW, col)
            if nb == 1:
                gemm(w2, col, y[n0].reshape(O, P)[:, oh0 * OW:oh1 * OW], 0.0)
                if finish:
                    _finish_band(y, n0, 0, O, oh0 * OW, oh1 * OW, ep, affine, act)
            else:
                out = OUT[r, :O * cols].reshape(O, cols)
                gemm(w2, col, out, 0.0)
                _images_out(out, y, n0, nb, 0, ep, affine, act)
