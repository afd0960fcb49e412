"""CPU convolution: im2col + BLAS GEMM for wide layers, a direct kernel for few input channels per group.

DESIGN.md's measurements on this machine: with 16+ input channels, im2col followed by OpenBLAS GEMM reaches
65-78% of the sgemm ceiling, while the best direct Numba loop reaches ~20%; direct kernels win only when each
output sums over few terms (LeNet's first conv, depthwise convs). ``_use_direct`` encodes that choice.

The GEMM path works in tiles (a band of output rows of one image, or several whole small images) whose im2col
columns fit in L2: each tile's im2col is followed at once by its GEMM, on one of the pool threads of
``threads.run_tiles``, so the columns never travel to memory and back, and by the fused epilogue (bias, an
inference BatchNorm, ReLU/ReLU6) while its output is still in cache.

Wide 3x3 stride-1 layers (ResNet's and VGG's body, at 20x20 outputs and more) run forward as Winograd
F(2x2, 3x3) instead: 16 GEMMs with 4/9 of the multiply-adds, 1.4-1.75x faster than im2col on this machine
(``conv_winograd``); so do their input gradient (a 3x3 correlation with the flipped kernel) and their weight
gradient (the same transforms, differentiated).

This module holds the contract and the tiling; the kernels live beside it: ``conv_columns`` (im2col/col2im),
``conv_epilogue``, ``conv_direct``, ``conv_winograd``. All functions take the resolved arguments described in
``visionkit/backends/__init__.py``.
"""

import numpy as np

from .. import conv_output_size
from . import blas, threads
from .conv_block import block_forward
from .conv_blas import _im2col_image_runs, _im2col_tile_runs, _pointwise_runs
from .conv_columns import _col2im_pitch_tile, _col2im_tile, _im2col_pitch_tile, _im2col_tile, _pitch_rows
from .conv_direct import (
    _at_pitch,
    _direct_backward_input,
    _direct_backward_weight,
    _direct_forward,
    _dw3x3_forward,
    _dw_flat_forward,
    _flat_backward_input,
    _flat_backward_weight,
    _flat_forward,
    _pad_input,
)
from .conv_epilogue import _epilogue, _finish_band, _finish_planes, _images_out, _rows_out
from .conv_winograd import (
    K_GAP,
    _forward_image_parts,
    _forward_runs,
    _grad_transform,
    _input_transform,
    _output_transform,
    _pad_band,
    _weight_gradient_runs,
    bands,
    transformed_weights,
    use_image_parts,
    use_winograd,
    weight_gradient,
)
from .scratch import scratch as _scratch
from .threads import gemm, launch, num_workers, run_tiles

# A GEMM over fewer terms than this per output is dominated by im2col traffic: go direct.
DIRECT_MAX_TERMS = 32
# ... unless at least this many output channels (per group) share each column of at least this many terms.
GEMM_MIN_OUT = 16
GEMM_MIN_TERMS = 8
# im2col columns per tile: about 1 MB of float32, so a tile's columns stay in L2 until its GEMM reads them.
TILE_ELEMS = 1 << 18
# ... and the tile's output band (Og x cols, also what the weight gradient reads of gy) at most this: with few
# im2col rows (a 1-channel 3x3 conv into 32) the columns alone allowed 10 images, and the 1 MB gy band spilled
# out of L2 (weight gradient 5.5 -> 3.4 ms, forward 3.2 -> 2.8 ms single-threaded for 128 MNIST images; wide
# layers unchanged or up to 10% faster)
OUT_TILE_ELEMS = 1 << 16
MIN_TILE_COLS = 256  # narrower GEMMs lose more to call overhead than they gain in cache


def _use_direct(cg, kh, kw, og):
    """Direct loops for few terms per output, unless many output channels share each im2col column: a 3x3
    conv of 1-3 input channels into 32+ runs 1.3-2x faster as a GEMM (the MNIST and CIFAR first layers), while
    LeNet's 6-filter 5x5 conv runs 2x faster direct."""
    terms = cg * kh * kw
    return terms < DIRECT_MAX_TERMS and not (og >= GEMM_MIN_OUT and terms >= GEMM_MIN_TERMS)


# ----------------------------------------------------------------------------------------------- the contract


def _geometry(x_shape, w_shape, stride, pads, dilation, groups, y_shape=None):
    """Sizes of a conv; backward passes take OH, OW from the gradient (x may be larger than the forward needs)."""
    N, C, H, W = x_shape
    O, Cg, KH, KW = w_shape
    if y_shape is not None:
        OH, OW = y_shape[2], y_shape[3]
    else:
        OH = conv_output_size(H, KH, stride[0], pads[0] + pads[1], dilation[0])
        OW = conv_output_size(W, KW, stride[1], pads[2] + pads[3], dilation[1])
    return N, C, H, W, O, Cg, KH, KW, OH, OW, O // groups


def _tiles(N, OH, OW, K, Og, min_rows=1):
    """Work items (n0, nb, oh0, oh1): bands of output rows of one image, or runs of whole small images, each with
    about TILE_ELEMS im2col elements and at most OUT_TILE_ELEMS of output (or output gradient) for its Og
    channels; for a single image the band count is rounded up to a multiple of the workers so that none idles
    at the end."""
    P = OH * OW
    cols = max(MIN_TILE_COLS, min(8192, TILE_ELEMS // K, OUT_TILE_ELEMS // Og))
    if P > cols:
        rows = min(OH, max(min_rows, cols // OW, 1))
        bands = -(-OH // rows)
        workers = num_workers()
        if N < workers and bands % workers:
            bands += workers - bands % workers
        # bands of equal height: 28 rows in 2 bands were 16 + 12 (ResNet's 3x3/2 conv into 28x28 at batch 1)
        rows = min(OH, max(min_rows, -(-OH // bands)))
        return [(n, 1, a, min(a + rows, OH)) for n in range(N) for a in range(0, OH, rows)]
    nb = max(1, cols // P)
    if N < 2 * num_workers():  # a few images: one each, so every worker gets one
        nb = 1
    return [(n, min(nb, N - n), 0, OH) for n in range(0, N, nb)]


def _is_pointwise(w_shape, stride, pads):
    """A 1x1, stride-1, unpadded conv: its im2col columns are the input planes themselves."""
    return tuple(w_shape[2:]) == (1, 1) and tuple(stride) == (1, 1) and not any(pads)


def _band(a, n0, nb, g0, og, oh0, oh1, OW, P, tmp_name):
    """The (og, cols) GEMM view of a tile's slice of an NCHW tensor: a strided view for one image (BLAS takes
    the row stride as its leading dimension), a gathered copy for several."""
    if nb == 1:
        return a[n0, g0:g0 + og].reshape(og, P)[:, oh0 * OW:oh1 * OW]
    buf = _scratch.get(tmp_name, og * nb * P, a.dtype).reshape(og, nb, P)
    buf[:] = a[n0:n0 + nb, g0:g0 + og].reshape(nb, og, P).transpose(1, 0, 2)
    return buf.reshape(og, nb * P)


def conv2d_forward(x, w, b, stride, pads, dilation, groups, act=-1, bn=None):
    """act(batch_norm(conv2d(...))) in one pass over the output: act an activation code (0 relu, 9 relu6, -1
    none), bn None or a following BatchNorm's inference parameters (mean, var, weight, bias, eps)."""
    N, C, H, W, O, Cg, KH, KW, OH, OW, Og = _geometry(x.shape, w.shape, stride, pads, dilation, groups)
    sh, sw = stride
    dh, dw = dilation
    pt, pl = pads[0], pads[2]
    act = int(act)
    ep, affine = _epilogue(b, bn, O, x.dtype)
    finish = b is not None or affine or act in (0, 9)
    y = np.empty((N, O, OH, OW), x.dtype)
    depthwise = groups == C and Og == 1
    Hp, Wp = H + pads[0] + pads[1], W + pads[2] + pads[3]
    if depthwise and stride == (1, 1) and _use_direct(Cg, KH, KW, Og):
        launch(_dw_flat_forward, y.size * KH * KW, x, w, y, pt, pl, Hp, Wp, dh, dw, ep, affine, act)
        return y
    if _use_direct(Cg, KH, KW, Og) and stride == (1, 1):
        launch(_flat_forward, y.size * Cg * KH * KW, _pad_input(x, pads), w, y, dh, dw, groups, ep, affine, act)
        return y
    if depthwise and (KH, KW) == (3, 3):
        # strided 3x3 depthwise (MobileNet's downsampling): MobileNetV2's four, 2.5 -> 1.4 ms at batch 1
        launch(_dw3x3_forward, y.size * 9, x, w, y, pt, pl, Hp, Wp, sh, sw, dh, dw, ep, affine, act)
        return y
    if _use_direct(Cg, KH, KW, Og):
        launch(_direct_forward, y.size * Cg * KH * KW, x, w, y, sh, sw, pt, pl, dh, dw, groups)
        if finish:
            launch(_finish_planes, y.size, y, ep, affine, act)
        return y
    if use_image_parts(N, C, O, KH, KW, OH, OW, stride, dilation, groups, x.dtype):
        if _winograd_image_parts(x, w, pads, y, ep, affine, act, finish):
            return y
    elif use_winograd(N, C, O, KH, KW, OH, OW, stride, dilation, groups, x.dtype) and \
            _winograd_forward(x, w, pads, y, ep, affine, act, finish):
        return y
    if blas.AVAILABLE and groups == 1 and (KH, KW) == (1, 1) and not any(pads):
        # strided too (ResNet's downsampling shortcuts): a 1x1 conv of the subsampled input, whose copy is a
        # quarter of the input, where the im2col path took 0.45-0.55 ms a shortcut at batch 1
        xs = x if stride == (1, 1) else x[:, :, ::sh, ::sw]
        _pointwise_forward(np.ascontiguousarray(xs), w, y, ep, affine, act, finish)
        return y
    K, P = Cg * KH * KW, OH * OW
    w2 = w.reshape(O, K)
    pointwise = _is_pointwise(w.shape, stride, pads)
    pitched = stride == (1, 1) and not pointwise
    tiles = _tiles(N, OH, OW, K, Og)
    flops = 2.0 * y.size * K
    # fewer tiles than workers (one small image: ResNet's 14x14 and 7x7 stages at batch 1): the tiles run one
    # after another and each GEMM is cut across the workers by output channels instead
    few = len(tiles) < num_workers()
    if few and blas.AVAILABLE and groups == 1 and flops >= threads.KERNEL_MIN_FLOPS:  # as one Numba kernel
        col = _scratch.get("col", K * P, x.dtype).reshape(K, P)
        with threads.single_threaded_blas():
            for n in range(N):
                launch(_im2col_image_runs, flops, x, n, w2, y, KH, KW, sh, sw, pt, pl, dh, dw, col, num_workers(),
                       ep, affine, act, finish)
        return y
    matmul = gemm if few and flops >= threads.PARALLEL_MIN_FLOPS else np.matmul

    def tile(t, _):
        n0, nb, oh0, oh1 = t
        if pitched:
            R = oh1 - oh0
            L = (R - 1) * Wp + OW
            tp = _scratch.get("tp", Cg * nb * (R + (KH - 1) * dh) * Wp, x.dtype).reshape(Cg, -1)
            col = _scratch.get("col", K * nb * L, x.dtype).reshape(K, nb * L)
            out = _scratch.get("out", Og * nb * L, x.dtype).reshape(Og, nb * L)
            for g in range(groups):
                _im2col_pitch_tile(x, n0, nb, g * Cg, Cg, KH, KW, pt, pl, dh, dw, oh0, oh1, Wp, tp, col)
                matmul(w2[g * Og:(g + 1) * Og], col, out=out)
                _rows_out(out, y, n0, nb, g * Og, oh0, oh1, Wp, ep, affine, act)
            return
        cols = nb * (oh1 - oh0) * OW
        col = _scratch.get("col", K * cols, x.dtype).reshape(K, cols)
        for g in range(groups):
            if pointwise:  # a 1x1 conv's columns are the input itself
                col = _band(x, n0, nb, g * Cg, Cg, oh0, oh1, OW, P, "xcol")
            else:
                _im2col_tile(x, n0, nb, g * Cg, Cg, KH, KW, sh, sw, pt, pl, dh, dw, oh0, oh1, OW, col)
            wg = w2[g * Og:(g + 1) * Og]
            if nb == 1:
                matmul(wg, col, out=y[n0, g * Og:(g + 1) * Og].reshape(Og, P)[:, oh0 * OW:oh1 * OW])
                if finish:  # while the tile is still in cache
                    _finish_band(y, n0, g * Og, Og, oh0 * OW, oh1 * OW, ep, affine, act)
            else:
                out = matmul(wg, col, out=_scratch.get("out", Og * cols, x.dtype).reshape(Og, cols))
                _images_out(out, y, n0, nb, g * Og, ep, affine, act)

    if matmul is gemm:
        for t in tiles:
            tile(t, None)
    elif blas.AVAILABLE and groups == 1:
        # strided, undilated: pitched too, through phase planes (_im2col_phase_tile): ResNet's 7x7/2 stem's
        # im2col 2.2-2.5 -> 1.0 ms, MobileNetV2's 3x3/2 stem's 0.41-0.43 -> 0.28-0.31 ms (one thread, one image)
        phased = not pitched and not pointwise and dilation == (1, 1)
        _im2col_tiles_kernel(x, w2, y, tiles, pitched or phased, KH, KW, sh, sw, pt, pl, dh, dw,
                             OW + (KW - 1) // sw if phased else Wp, flops, ep, affine, act, finish)
    else:
        run_tiles(tiles, tile, flops)
    return y


def expand_depthwise_project(x, expand, depthwise, project, stride, pads, residual=False,
                             expand_geometry=((1, 1), (0, 0, 0, 0), (1, 1))):
    """project(depthwise(expand(x))) for inference, + x with ``residual``: MobileNetV2's inverted residual block.
    Each stage is (w, b, bn, act) as conv2d_forward takes them: w (Ce, C, KH1, KW1), (Ce, 1, KH, KW) and
    (P, Ce, 1, 1); stride and pads are the depthwise conv's (dilation 1), expand_geometry the first conv's (stride,
    pads, dilation; ungrouped, 1x1 in the inverted residual block). One kernel with channels-last intermediates
    (conv_block); without BLAS callable from Numba, the three convolutions one after another."""
    if blas.AVAILABLE:
        return block_forward(x, expand, depthwise, project, stride, pads, residual, expand_geometry)
    (we, b1, bn1, act1), (wd, b2, bn2, act2), (wp, b3, bn3, act3) = expand, depthwise, project
    y = conv2d_forward(x, we, b1, *expand_geometry, 1, act1, bn1)
    y = conv2d_forward(y, wd, b2, stride, pads, (1, 1), y.shape[1], act2, bn2)
    y = conv2d_forward(y, wp, b3, (1, 1), (0, 0, 0, 0), (1, 1), 1, act3, bn3)
    return y + x if residual else y


def _im2col_tiles_kernel(x, w2, y, tiles, pitched, KH, KW, sh, sw, pt, pl, dh, dw, Wp, flops, ep, affine, act,
                         finish):
    """The ungrouped im2col tiles as one Numba kernel calling BLAS (conv_blas._im2col_tile_runs): one contiguous
    run of tiles per worker, each run's buffers sized for its largest tile."""
    C, O, K, OW = x.shape[1], w2.shape[0], w2.shape[1], y.shape[3]
    count = min(threads.kernel_workers(flops), len(tiles))
    runs = np.array(threads.run_bounds(len(tiles), count), np.int64)
    tile_list = np.array(tiles, np.int64)
    nb, R = tile_list[:, 1], tile_list[:, 3] - tile_list[:, 2]
    cols = int((nb * (((R - 1) * Wp + OW) if pitched else R * OW)).max())
    rows = sh * sw * (R + (KH - 1) // sh) if (sh, sw) != (1, 1) else R + (KH - 1) * dh  # (_im2col_tile_runs)
    tp = int((nb * rows * Wp).max()) * C if pitched else 1
    TP = _scratch.get("tp", count * tp, x.dtype).reshape(count, tp)
    COL = _scratch.get("col", count * K * cols, x.dtype).reshape(count, K * cols)
    OUT = _scratch.get("out", count * O * cols, x.dtype).reshape(count, O * cols)
    with threads.single_threaded_blas():
        launch(_im2col_tile_runs, flops if count > 1 else 0, x, w2, y, tile_list, runs, pitched, KH, KW, sh, sw,
               pt, pl, dh, dw, Wp, TP, COL, OUT, ep, affine, act, finish)


# pixels per work item of the one-kernel 1x1 conv: its columns and outputs ((C + O) x this) stay in L2
POINTWISE_CHUNK_BYTES = 512 << 10


def _pointwise_forward(x, w, y, ep, affine, act, finish):
    """A 1x1 conv as one Numba kernel calling BLAS per block of pixels (conv_blas._pointwise_runs): MobileNet's
    expansions and projections, each a short GEMM whose Python-pool hand-offs cost as much as its arithmetic."""
    N, C, O = x.shape[0], x.shape[1], w.shape[0]
    P = x.shape[2] * x.shape[3]
    flops = 2.0 * N * O * C * P
    workers = threads.kernel_workers(flops)
    chunks = -(-P // max(64, POINTWISE_CHUNK_BYTES // ((C + O) * x.itemsize)))
    if N == 1 and workers < chunks < 4 * workers:
        # a few chunks: as many for every worker (5 chunks of a 56x56 image ran as 3 on one thread, 2 on the other)
        chunks = -(-chunks // workers) * workers
    chunk = -(-P // chunks)  # equal chunks: a cap of 195 pixels had cut a 14x14 image into 195 + 1
    items = N * -(-P // chunk)
    # one image widened (MobileNet's expansions): each thread its share of the output channels over every chunk,
    # the planes the depthwise conv after it gives that thread (it splits by channels too), so they are read from
    # the core that wrote them: MobileNetV2 b1 13.0 -> 12.6 ms (median of 8 alternated rounds, one process)
    widening = N == 1 and O > C
    osplit = workers if (items < workers or widening) and O >= 8 * workers else 1
    with threads.single_threaded_blas():
        launch(_pointwise_runs, flops if workers > 1 else 0, x, w.reshape(O, C), y, chunk, osplit, ep, affine,
               act, finish)


def _by_k(name, rows, cols, dtype):
    """Per-thread scratch viewed as (16, rows, cols), the 16 matrices K_GAP elements further apart than packed
    (each matrix stays contiguous for BLAS)."""
    return _by_k_runs(name, 1, rows, cols, dtype)[0]


def _winograd_buffers(dtype, nb, C, O, rows, tw):
    """A band's per-thread scratch: its padded input rows (nb, C, 2 rows + 2, 2 tw + 2), the transformed input
    (16, C, tiles) and the 16 GEMMs' other side (16, O, tiles)."""
    T = nb * rows * tw
    xb = _scratch.get("wino_x", nb * C * (2 * rows + 2) * (2 * tw + 2), dtype).reshape(nb, C, 2 * rows + 2, -1)
    return xb, _by_k("wino_v", C, T, dtype), _by_k("wino_m", O, T, dtype)


def _winograd_forward(x, w, pads, y, ep, affine, act, finish):
    """The 3x3 forward as F(2x2, 3x3) Winograd (conv_winograd), band by band on the pool, into y. False when the
    input holds NaN or inf: the transforms would spread it over whole tiles, so the caller then takes im2col,
    which keeps PyTorch's pattern of them (as the weight gradient does)."""
    C, O, OH, OW = x.shape[1], w.shape[0], y.shape[2], y.shape[3]
    U = transformed_weights(w)
    tw = -(-OW // 2)
    flops = 2.0 * y.size * C * 9
    if blas.AVAILABLE:
        tiles, runs, band_list, XB, VB, count = _winograd_runs(x, bands(y.shape[0], OH, OW), tw, flops)
        MB = _by_k_runs("wino_m", count, O, VB.shape[3], x.dtype)
        ok = np.ones(len(tiles), np.bool_)
        with threads.single_threaded_blas():
            launch(_forward_runs, flops if count > 1 else 0, x, U, pads[0], pads[2], y, band_list, runs, tw, XB,
                   VB, MB, ep, affine, act, finish, ok)
        return bool(ok.all())
    finite = [True]

    def band(t, _):
        n0, nb, i0, rows = t
        xb, V, M = _winograd_buffers(x.dtype, nb, C, O, rows, tw)
        if not _pad_band(x, n0, 2 * i0, pads[0], pads[2], xb):
            finite[0] = False
            return
        _input_transform(xb, rows, tw, V)
        np.matmul(U, V, out=M)
        _output_transform(M, y, n0, nb, i0, rows, tw)
        if finish:  # while the band is still in cache
            p0, p1 = 2 * i0 * OW, min(2 * (i0 + rows), OH) * OW
            for n in range(n0, n0 + nb):
                _finish_band(y, n, 0, O, p0, p1, ep, affine, act)

    run_tiles(bands(y.shape[0], OH, OW), band, flops)
    return finite[0]


def _winograd_image_parts(x, w, pads, y, ep, affine, act, finish):
    """The 3x3 forward as Winograd image by image, each on all threads (conv_winograd._forward_image_parts), for
    images that make a single band. False when the input holds NaN or inf (as _winograd_forward)."""
    N, C, O, OH, OW = x.shape[0], x.shape[1], w.shape[0], y.shape[2], y.shape[3]
    th, tw = -(-OH // 2), -(-OW // 2)
    parts = num_workers()
    Uf = np.empty((16, O * C + K_GAP), w.dtype)[:, :O * C]
    xb = _scratch.get("wino_x", C * (2 * th + 2) * (2 * tw + 2), x.dtype).reshape(1, C, 2 * th + 2, 2 * tw + 2)
    V, M = _by_k("wino_v", C, th * tw, x.dtype), _by_k("wino_m", O, th * tw, x.dtype)
    ok = np.ones(parts, np.bool_)
    flops = 2.0 * OH * OW * O * C * 9
    with threads.single_threaded_blas():
        for n in range(N):
            launch(_forward_image_parts, flops, x, n, np.ascontiguousarray(w).reshape(O * C, 9), pads[0], pads[2],
                   y, th, tw, Uf, Uf.reshape(16, O, C), xb, V, M, parts, ep, affine, act, finish, ok)
            if not ok.all():
                return False
    return True


def _by_k_runs(name, count, rows, cols, dtype):
    """Scratch for ``count`` runs, each 16 (rows, cols) matrices K_GAP elements further apart than packed: a
    (count, 16, rows, cols) strided view."""
    stride = rows * cols + K_GAP
    buf = _scratch.get(name, count * 16 * stride, dtype)
    item = buf.itemsize
    return np.lib.stride_tricks.as_strided(buf, (count, 16, rows, cols), (16 * stride * item, stride * item,
                                                                           cols * item, item))


def _winograd_runs(x, tiles, tw, flops):
    """For the one-kernel Winograd paths (blas.AVAILABLE): the bands cut into one contiguous run per worker (one
    run for small jobs), and each run's padded-input and transformed-input buffers, sized for its largest band."""
    count = min(threads.kernel_workers(flops), len(tiles))
    runs = np.array(threads.run_bounds(len(tiles), count), np.int64)
    band_list = np.array(tiles, np.int64)
    C = x.shape[1]
    nb, rows = int(band_list[:, 1].max()), int(band_list[:, 3].max())
    T = int((band_list[:, 1] * band_list[:, 3]).max()) * tw
    XB = _scratch.get("wino_x", count * nb * C * (2 * rows + 2) * (2 * tw + 2), x.dtype).reshape(
        count, nb, C, 2 * rows + 2, 2 * tw + 2)
    return tiles, runs, band_list, XB, _by_k_runs("wino_v", count, C, T, x.dtype), count


def _winograd_weight_gradient(x, gy, pads):
    """The 3x3 weight gradient through Winograd's transforms: per band the forward's input transform V and the
    output gradient's A dy A^T (tiles by channels, DYt), then dU[k]^T += V[k] @ DYt[k] on each worker, summed,
    and G^T dU G at the end. None when the input or gradient holds NaN or inf (the caller then takes im2col, as
    the forward does)."""
    C, O, OH, OW = x.shape[1], gy.shape[1], gy.shape[2], gy.shape[3]
    tw = -(-OW // 2)
    flops = 2.0 * gy.size * C * 9
    if blas.AVAILABLE:
        tiles, runs, band_list, XB, VB, count = _winograd_runs(x, bands(x.shape[0], OH, OW), tw, flops)
        DB = _by_k_runs("wino_m", count, VB.shape[3], O, x.dtype)
        acc = np.zeros((count, 16, C, O), x.dtype)
        ok = np.ones(len(tiles), np.bool_)
        with threads.single_threaded_blas():
            launch(_weight_gradient_runs, flops if count > 1 else 0, x, gy, pads[0], pads[2], band_list, runs, tw,
                   XB, VB, DB, acc, ok)
        if not ok.all():
            return None
        dUt = acc[0]
        for r in range(1, count):
            dUt += acc[r]
        return weight_gradient(dUt.transpose(0, 2, 1), x.dtype)
    finite = [True]

    def band(t, dUt):
        n0, nb, i0, rows = t
        xb, V, _ = _winograd_buffers(x.dtype, nb, C, O, rows, tw)
        DYt = _by_k("wino_m", nb * rows * tw, O, x.dtype)
        tmp = _scratch.get("wino_du", 16 * C * O, x.dtype).reshape(16, C, O)
        if not (_pad_band(x, n0, 2 * i0, pads[0], pads[2], xb) and _grad_transform(gy, n0, nb, i0, rows, tw, DYt)):
            finite[0] = False
            return
        _input_transform(xb, rows, tw, V)
        dUt += np.matmul(V, DYt, out=tmp)

    parts = run_tiles(bands(x.shape[0], OH, OW), band, flops, lambda: np.zeros((16, C, O), x.dtype))
    if not finite[0]:
        return None
    dUt = parts[0]
    for p in parts[1:]:
        dUt += p
    return weight_gradient(dUt.transpose(0, 2, 1), x.dtype)


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
    if _use_direct(Cg, KH, KW, Og):
        gx = np.zeros(x_shape, gy.dtype)
        launch(_direct_backward_input, gy.size * Cg * KH * KW, gy, w, gx, sh, sw, pt, pl, dh, dw, groups)
        return gx
    K, P = Cg * KH * KW, OH * OW
    pads_t = (dh * (KH - 1) - pt, H - OH + pt, dw * (KW - 1) - pl, W - OW + pl)
    winograd = use_winograd(N, O, C, KH, KW, H, W, stride, dilation, groups, gy.dtype)
    if stride == (1, 1) and min(pads_t) >= 0 and (Cg >= Og or winograd):
        # a stride-1 input gradient is a forward conv of gy with the flipped, transposed kernel: the forward's
        # tiles and GEMM shape, and no col2im scatter. Measured faster when the conv does not widen (Cg >= Og);
        # when it widens, the flipped conv's GEMM has few rows and twice the im2col, and col2im wins, unless the
        # flipped conv runs as Winograd (the MNIST CNN's 32 -> 64 conv: a training step 45 -> 37 ms).
        flipped = w.reshape(groups, Og, Cg, KH, KW)[:, :, :, ::-1, ::-1].transpose(0, 2, 1, 3, 4)
        return conv2d_forward(gy, np.ascontiguousarray(flipped).reshape(C, Og, KH, KW), None, (1, 1), pads_t,
                              dilation, groups)
    gx = np.zeros(x_shape, gy.dtype)
    w2 = w.reshape(O, K)

    Wp = W + pads[2] + pads[3]

    def tile(t, _):
        n0, nb, oh0, oh1 = t
        if stride == (1, 1):  # pitched: one slice per column row and image, as in the forward
            R = oh1 - oh0
            L = (R - 1) * Wp + OW
            gyp = _scratch.get("gy", Og * nb * L, gy.dtype).reshape(Og, nb * L)
            gcol = _scratch.get("col", K * nb * L, gy.dtype).reshape(K, nb * L)
            tp = _scratch.get("tp", Cg * (R + (KH - 1) * dh) * Wp, gy.dtype).reshape(Cg, -1)
            for g in range(groups):
                _pitch_rows(gy, n0, nb, g * Og, Og, oh0, oh1, Wp, gyp)
                np.matmul(w2[g * Og:(g + 1) * Og].T, gyp, out=gcol)
                _col2im_pitch_tile(gcol, n0, nb, g * Cg, Cg, KH, KW, pt, pl, dh, dw, oh0, oh1, Wp, tp, gx)
            return
        cols = nb * (oh1 - oh0) * OW
        gcol = _scratch.get("col", K * cols, gy.dtype).reshape(K, cols)
        for g in range(groups):
            gyg = _band(gy, n0, nb, g * Og, Og, oh0, oh1, OW, P, "gy")
            np.matmul(w2[g * Og:(g + 1) * Og].T, gyg, out=gcol)
            _col2im_tile(gcol, n0, nb, g * Cg, Cg, KH, KW, sh, sw, pt, pl, dh, dw, oh0, oh1, OW, gx)

    # bands of one image write overlapping input rows: run every other band, then the rest, once each band is
    # taller than the kernel's reach (bands two apart never touch the same row)
    min_rows = ((KH - 1) * dh) // sh + 1
    tiles = _tiles(N, OH, OW, K, Og, min_rows)
    flops = 2.0 * gy.size * K
    if any(t[2] > 0 for t in tiles):
        rows = tiles[0][3] - tiles[0][2]
        run_tiles([t for t in tiles if (t[2] // rows) % 2 == 0], tile, flops)
        run_tiles([t for t in tiles if (t[2] // rows) % 2 == 1], tile, flops)
    else:
        run_tiles(tiles, tile, flops)
    return gx


def conv2d_backward_weight(x, gy, w_shape, stride, pads, dilation, groups):
    N, C, H, W, O, Cg, KH, KW, OH, OW, Og = _geometry(x.shape, w_shape, stride, pads, dilation, groups, gy.shape)
    sh, sw = stride
    dh, dw = dilation
    pt, pl = pads[0], pads[2]
    if _use_direct(Cg, KH, KW, Og) and stride == (1, 1):
        xp = _pad_input(x, pads)
        gw = np.zeros(w_shape, x.dtype)
        launch(_flat_backward_weight, gy.size * Cg * KH * KW, xp, gy, gw, dh, dw, groups)
        return gw
    if _use_direct(Cg, KH, KW, Og):
        gw = np.zeros(w_shape, x.dtype)
        launch(_direct_backward_weight, gy.size * Cg * KH * KW, x, gy, gw, sh, sw, pt, pl, dh, dw, groups)
        return gw
    if use_winograd(N, C, O, KH, KW, OH, OW, stride, dilation, groups, x.dtype):
        gw = _winograd_weight_gradient(x, gy, pads)
        if gw is not None:
            return gw
    K, P = Cg * KH * KW, OH * OW
    pointwise = _is_pointwise(w_shape, stride, pads) and (OH, OW) == (H, W)

    def tile(t, acc):
        n0, nb, oh0, oh1 = t
        cols = nb * (oh1 - oh0) * OW
        col = _scratch.get("col", K * cols, x.dtype).reshape(K, cols)
        tmp = _scratch.get("gw", K * Og, x.dtype).reshape(K, Og)
        for g in range(groups):
            if pointwise:
                col = _band(x, n0, nb, g * Cg, Cg, oh0, oh1, OW, P, "xcol")
            else:
                _im2col_tile(x, n0, nb, g * Cg, Cg, KH, KW, sh, sw, pt, pl, dh, dw, oh0, oh1, OW, col)
            gyg = _band(gy, n0, nb, g * Og, Og, oh0, oh1, OW, P, "gy")
            # gw^T = col @ gy^T: BLAS runs this shape at full speed, gy @ col^T 20% slower
            acc[:, g * Og:(g + 1) * Og] += np.matmul(col, gyg.T, out=tmp)

    parts = run_tiles(_tiles(N, OH, OW, K, Og), tile, 2.0 * gy.size * K, lambda: np.zeros((K, O), x.dtype))
    gw_t = parts[0]
    for p in parts[1:]:
        gw_t += p
    return np.ascontiguousarray(gw_t.T).reshape(w_shape)
