"""CUDA convolution: im2col + the tiled GEMM (gemm.py) for wide layers, direct kernels for thin ones.

Wide layers (many terms per output): a kernel unrolls the input of a chunk of images into columns
col[b, (c, i, j), p] (the (c, i, j) rows of group g are contiguous, so a group's K x P operand is a plain
strided sub-matrix), then one batched GEMM launch over (image, group) computes
    forward          y[b, g]      = W[g] (Og x K)    @ col[b, g] (K x P)      (+ bias, fused in the epilogue)
    backward input   gcol[b, g]   = W[g]^T (K x Og)  @ gy[b, g] (Og x P)      then a col2im *gather*
    backward weight  part[b, g]   = gy[b, g] (Og x P) @ col[b, g]^T (P x K)  then a sum over b
writing straight into the NCHW output. col2im is a gather (each thread owns one input pixel and sums the
column entries that read it), so it needs no atomics; the weight gradient sums per-image partial products
with a reduction kernel instead of racing on gw.

Thin layers (depthwise, LeNet's 1-channel input, < 4 outputs per group), where a GEMM tile would be mostly
empty: one thread per output (forward) or per input pixel (backward input, a gather), and a two-stage
reduction for the weight gradient: blocks over (weight element, chunk of (n, oh, ow)) write float64 partials
that a second small kernel adds up (tensor.red_plan), so few weights and a large batch still fill the GPU.

The backward passes take OH, OW from gy, never from x_shape: x_shape may be larger than the forward needs.
The stride-1 input gradient stays GEMM + col2im gather here (the CPU twin recasts it as a forward conv with
the flipped kernel to reuse its L2 tiling; on the GPU both are one GEMM plus one coalesced memory pass, and
the flip would cost an extra kernel and buffer for the flipped weights).
"""

import numpy as np
from numba import cuda, float64

from .. import conv_output_size
from . import act as activations
from . import norm
from . import gemm as _g
from .tensor import (
    RED_TPB,
    add,
    block_sum,
    empty,
    finish_sums,
    grid1d,
    red_plan,
    red_threads,
    unravel4,
    zero_of,
)

# fewer GEMM terms per output than this go direct, as on the CPU; so do groups of fewer than 4 outputs, which
# would leave most of a 64-row GEMM tile idle (the CPU's single-threaded BLAS has no such tile to waste)
DIRECT_MAX_TERMS = 32
# the im2col buffer is built for as many images at once as fit in this many bytes
COL_BYTES = 256 << 20


def _use_direct(cg, kh, kw, og):
    return cg * kh * kw < DIRECT_MAX_TERMS or og < 4


def _geometry(x_shape, w_shape, stride, pads, dilation, groups, y_shape=None):
    """Sizes of a conv. The backward passes take OH, OW from the gradient (y_shape), as the CPU twin: x may be
    larger than the forward needs (conv_transpose2d's output_padding, even >= stride when dilation > stride)."""
    N, C, H, W = (int(v) for v in x_shape)
    O, Cg, KH, KW = (int(v) for v in w_shape)
    if y_shape is not None:
        if (int(y_shape[0]), int(y_shape[1])) != (N, O):
            raise ValueError(f"conv2d backward: grad_out has shape {tuple(y_shape)}, expected ({N}, {O}, ...)")
        OH, OW = int(y_shape[2]), int(y_shape[3])
    else:
        OH = conv_output_size(H, KH, stride[0], pads[0] + pads[1], dilation[0])
        OW = conv_output_size(W, KW, stride[1], pads[2] + pads[3], dilation[1])
    return N, C, H, W, O, Cg, KH, KW, OH, OW, O // groups


def _chunk(N, rows, P, itemsize, groups):
    """Images per im2col chunk: bounded by COL_BYTES and by gridDim.z (<= 65535) of the (image, group) GEMM."""
    return int(max(1, min(N, COL_BYTES // max(1, rows * P * itemsize), 65535 // max(1, groups))))


# ----------------------------------------------------------------------------------------------- im2col / col2im


@cuda.jit
def _im2col(x, n0, nb, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW, col, zero):
    """col[b, (c*KH + i)*KW + j, oh*OW + ow] = x[n0+b, c, oh*sh-pt+i*dh, ow*sw-pl+j*dw] (zero outside)."""
    t = cuda.grid(1)
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    P = OH * OW
    R = C * KH * KW
    if t >= nb * R * P:
        return
    p = t % P
    u = t // P
    r = u % R
    b = u // R
    ow = p % OW
    oh = p // OW
    j = r % KW
    v = r // KW
    i = v % KH
    c = v // KH
    ih = oh * sh - pt + i * dh
    iw = ow * sw - pl + j * dw
    if ih >= 0 and ih < H and iw >= 0 and iw < W:
        col[t] = x[n0 + b, c, ih, iw]
    else:
        col[t] = zero


@cuda.jit
def _col2im(gcol, n0, nb, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW, gx, zero):
    """gx[n0+b, c, ih, iw] = sum of the gcol entries whose window position reads (ih, iw): a race-free gather."""
    t = cuda.grid(1)
    C, H, W = gx.shape[1], gx.shape[2], gx.shape[3]
    if t >= nb * C * H * W:
        return
    b, c, ih, iw = unravel4(t, C, H, W)
    P = OH * OW
    R = C * KH * KW
    base = b * R * P
    acc = zero
    for i in range(KH):
        th = ih + pt - i * dh
        if th < 0 or th % sh != 0:
            continue
        oh = th // sh
        if oh >= OH:
            continue
        for j in range(KW):
            tw = iw + pl - j * dw
            if tw < 0 or tw % sw != 0:
                continue
            ow = tw // sw
            if ow >= OW:
                continue
            acc += gcol[base + ((c * KH + i) * KW + j) * P + oh * OW + ow]
    gx[n0 + b, c, ih, iw] = acc


@cuda.jit
def _sum_partials(part, nb, out, accumulate):
    """out[j] (+)= sum_b part[b * L + j] with L = out.size: the per-image weight-gradient partials."""
    j = cuda.grid(1)
    L = out.size
    if j >= L:
        return
    acc = part[j]
    for b in range(1, nb):
        acc += part[b * L + j]
    if accumulate:
        acc += out[j]
    out[j] = acc


# ----------------------------------------------------------------------------------------------- direct kernels


@cuda.jit
def _direct_forward(x, w, b, has_bias, y, sh, sw, pt, pl, dh, dw, groups, zero):
    t = cuda.grid(1)
    if t >= y.size:
        return
    H, W = x.shape[2], x.shape[3]
    O, Cg, KH, KW = w.shape[0], w.shape[1], w.shape[2], w.shape[3]
    OH, OW = y.shape[2], y.shape[3]
    n, o, oh, ow = unravel4(t, O, OH, OW)
    g = o // (O // groups)
    acc = zero
    h0 = oh * sh - pt
    w0 = ow * sw - pl
    for c in range(Cg):
        ci = g * Cg + c
        for i in range(KH):
            ih = h0 + i * dh
            if ih < 0 or ih >= H:
                continue
            for j in range(KW):
                iw = w0 + j * dw
                if iw >= 0 and iw < W:
                    acc += w[o, c, i, j] * x[n, ci, ih, iw]
    if has_bias:
        acc += b[o]
    y[n, o, oh, ow] = acc


@cuda.jit
def _direct_backward_input(gy, w, gx, sh, sw, pt, pl, dh, dw, groups, zero):
    t = cuda.grid(1)
    if t >= gx.size:
        return
    C, H, W = gx.shape[1], gx.shape[2], gx.shape[3]
    O, Cg, KH, KW = w.shape[0], w.shape[1], w.shape[2], w.shape[3]
    OH, OW = gy.shape[2], gy.shape[3]
    Og = O // groups
    n, c, ih, iw = unravel4(t, C, H, W)
    g = c // Cg
    cl = c - g * Cg
    acc = zero
    for i in range(KH):
        th = ih + pt - i * dh
        if th < 0 or th % sh != 0:
            continue
        oh = th // sh
        if oh >= OH:
            continue
        for j in range(KW):
            tw = iw + pl - j * dw
            if tw < 0 or tw % sw != 0:
                continue
            ow = tw // sw
            if ow >= OW:
                continue
            for o in range(g * Og, (g + 1) * Og):
                acc += w[o, cl, i, j] * gy[n, o, oh, ow]
    gx[n, c, ih, iw] = acc


@cuda.jit
def _direct_backward_weight(x, gy, KH, KW, length, part, sh, sw, pt, pl, dh, dw, groups):
    """First stage of a two-stage reduction: block (e, k) sums weight element e's terms over items
    k*length .. (k+1)*length-1 of the (n, oh, ow) walk into part[e, k] (float64); tensor.finish_sums adds them.
    Thin layers have few weights, so one block per weight alone would leave most of the GPU idle."""
    e = cuda.blockIdx.x
    k = cuda.blockIdx.y
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    H, W = x.shape[2], x.shape[3]
    O, OH, OW = gy.shape[1], gy.shape[2], gy.shape[3]
    Cg = x.shape[1] // groups
    j = e % KW
    u = e // KW
    i = u % KH
    u = u // KH
    c = u % Cg
    o = u // Cg
    ci = (o // (O // groups)) * Cg + c
    P = OH * OW
    acc = 0.0
    for q in range(k * length + tid, min((k + 1) * length, gy.shape[0] * P), nt):
        n = q // P
        p = q - n * P
        oh = p // OW
        ow = p - oh * OW
        ih = oh * sh - pt + i * dh
        iw = ow * sw - pl + j * dw
        if ih >= 0 and ih < H and iw >= 0 and iw < W:
            acc += gy[n, o, oh, ow] * x[n, ci, ih, iw]
    buf = cuda.shared.array(RED_TPB, float64)
    tot = block_sum(buf, tid, nt, acc)
    if tid == 0:
        part[e, k] = tot


# ----------------------------------------------------------------------------------------------- the contract


def conv2d_forward(x, w, b, stride, pads, dilation, groups, act=-1, bn=None):
    """act(batch_norm(conv2d(...))): the CPU twin fuses BatchNorm (bn = mean, var, weight, bias, eps) and the
    activation (code 0 relu, 9 relu6) into its epilogue; here their own kernels follow the convolution."""
    y = _conv2d_forward(x, w, b, stride, pads, dilation, groups)
    if y.size and bn is not None:
        y = norm.batch_norm_forward(y, *bn)
    if y.size and int(act) in (0, 9):
        y = activations.act_forward(y, int(act), 0.0)
    return y


def expand_depthwise_project(x, expand, depthwise, project, stride, pads, residual=False,
                             expand_geometry=((1, 1), (0, 0, 0, 0), (1, 1))):
    """project(depthwise(expand(x))), + x with ``residual`` (MobileNetV2's inverted residual block), each stage
    (w, b, bn, act) as conv2d_forward takes them: here the three convolutions one after another (the CPU twin
    runs one kernel with channels-last intermediates)."""
    (we, b1, bn1, act1), (wd, b2, bn2, act2), (wp, b3, bn3, act3) = expand, depthwise, project
    y = conv2d_forward(x, we, b1, *expand_geometry, 1, act1, bn1)
    y = conv2d_forward(y, wd, b2, stride, pads, (1, 1), y.shape[1], act2, bn2)
    y = conv2d_forward(y, wp, b3, (1, 1), (0, 0, 0, 0), (1, 1), 1, act3, bn3)
    return add(y, x) if residual else y


def _conv2d_forward(x, w, b, stride, pads, dilation, groups):
    N, C, _, _, O, Cg, KH, KW, OH, OW, Og = _geometry(x.shape, w.shape, stride, pads, dilation, groups)
    sh, sw = (int(v) for v in stride)
    dh, dw = (int(v) for v in dilation)
    pt, pl = int(pads[0]), int(pads[2])
    y = empty((N, O, OH, OW), x.dtype)
    if y.size == 0:
        return y
    if _use_direct(Cg, KH, KW, Og):
        bl, t = grid1d(y.size)
        _direct_forward[bl, t](x, w, b if b is not None else w.reshape(w.size), b is not None, y,
                               sh, sw, pt, pl, dh, dw, int(groups), zero_of(x))
        return y
    K, P, R = Cg * KH * KW, OH * OW, C * KH * KW
    nb = _chunk(N, R, P, x.dtype.itemsize, groups)
    col = empty((nb * R * P,), x.dtype)
    wf = w.reshape(w.size)
    yf = y.reshape(y.size)
    for n0 in range(0, N, nb):
        m = min(nb, N - n0)
        bl, t = grid1d(m * R * P)
        _im2col[bl, t](x, n0, m, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW, col, zero_of(x))
        _g.gemm(wf, (0, 0, Og * K, K, 1), col, (0, R * P, K * P, P, 1), yf, (n0 * O * P, O * P, Og * P, P),
                Og, P, K, nz1=m, nz2=groups, bias=b, bias_mode=1 if b is not None else 0, bias_s2=Og)
    return y


def conv2d_backward_input(gy, w, x_shape, stride, pads, dilation, groups):
    N, C, H, W, O, Cg, KH, KW, OH, OW, Og = _geometry(x_shape, w.shape, stride, pads, dilation, groups, gy.shape)
    sh, sw = (int(v) for v in stride)
    dh, dw = (int(v) for v in dilation)
    pt, pl = int(pads[0]), int(pads[2])
    gx = empty((N, C, H, W), gy.dtype)
    if gx.size == 0:
        return gx
    if _use_direct(Cg, KH, KW, Og):
        bl, t = grid1d(gx.size)
        _direct_backward_input[bl, t](gy, w, gx, sh, sw, pt, pl, dh, dw, int(groups), zero_of(gy))
        return gx
    K, P, R = Cg * KH * KW, OH * OW, C * KH * KW
    nb = _chunk(N, R, P, gy.dtype.itemsize, groups)
    gcol = empty((nb * R * P,), gy.dtype)
    wf = w.reshape(w.size)
    gyf = gy.reshape(gy.size)
    for n0 in range(0, N, nb):
        m = min(nb, N - n0)
        # gcol[b, g] (K x P) = W[g]^T (K x Og) @ gy[n0+b, g] (Og x P)
        _g.gemm(wf, (0, 0, Og * K, 1, K), gyf, (n0 * O * P, O * P, Og * P, P, 1), gcol, (0, R * P, K * P, P),
                K, P, Og, nz1=m, nz2=groups)
        bl, t = grid1d(m * C * H * W)
        _col2im[bl, t](gcol, n0, m, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW, gx, zero_of(gy))
    return gx


def conv2d_backward_weight(x, gy, w_shape, stride, pads, dilation, groups):
    N, C, _, _, O, Cg, KH, KW, OH, OW, Og = _geometry(x.shape, w_shape, stride, pads, dilation, groups, gy.shape)
    sh, sw = (int(v) for v in stride)
    dh, dw = (int(v) for v in dilation)
    pt, pl = int(pads[0]), int(pads[2])
    gw = empty(tuple(int(v) for v in w_shape), x.dtype)
    if gw.size == 0:
        return gw
    if _use_direct(Cg, KH, KW, Og):
        k, length = red_plan(N * OH * OW)
        part = empty((gw.size, k), np.float64)
        _direct_backward_weight[(gw.size, k), red_threads(length)](x, gy, KH, KW, length, part, sh, sw, pt, pl, dh, dw,
                                                                    int(groups))
        finish_sums(part, gw.reshape(gw.size))
        return gw
    K, P, R = Cg * KH * KW, OH * OW, C * KH * KW
    nb = _chunk(N, R, P, x.dtype.itemsize, groups)
    col = empty((nb * R * P,), x.dtype)
    part = empty((nb * O * K,), x.dtype)
    gyf = gy.reshape(gy.size)
    gwf = gw.reshape(gw.size)
    for n0 in range(0, N, nb):
        m = min(nb, N - n0)
        bl, t = grid1d(m * R * P)
        _im2col[bl, t](x, n0, m, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW, col, zero_of(x))
        # part[b, g] (Og x K) = gy[n0+b, g] (Og x P) @ col[b, g]^T (P x K)
        _g.gemm(gyf, (n0 * O * P, O * P, Og * P, P, 1), col, (0, R * P, K * P, 1, P), part, (0, O * K, Og * K, K),
                Og, K, P, nz1=m, nz2=groups)
        bl, t = grid1d(O * K)
        _sum_partials[bl, t](part, m, gwf, n0 > 0)
    return gw
