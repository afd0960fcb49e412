"""Plain-numpy implementations of ONNX operators, with ONNX's semantics (any rank, broadcasting, every attribute).

They serve twice: the generic ONNX layers (``visionkit.onnx.layers``) run them at inference, and the importer
(``visionkit.onnx.importer``) runs them at load time to fold constant subgraphs (shape computations). They keep
the dtype of their inputs (int64 shape arithmetic stays int64); the layers convert the result to float32.

Each function takes the operator's inputs positionally (None for an absent optional input) and its attributes,
already normalised by the importer, as keywords.
"""

from __future__ import annotations

import math

import numpy as np

# --------------------------------------------------------------------------------------------------------------
# elementwise


def binary(a, b, op):
    if op == "Add":
        return a + b
    if op == "Sub":
        return a - b
    if op == "Mul":
        return a * b
    if op == "Div":
        if np.issubdtype(np.result_type(a, b), np.integer):
            q = np.trunc(np.asarray(a, np.float64) / np.asarray(b, np.float64))
            return q.astype(np.result_type(a, b))
        return a / b
    if op == "Pow":
        return np.power(a, b).astype(np.result_type(a, b))
    if op == "Max":
        return np.maximum(a, b)
    if op == "Min":
        return np.minimum(a, b)
    raise ValueError(f"unknown binary op {op!r}")


def _selu(x, alpha, gamma):
    return np.where(x > 0, gamma * x, gamma * alpha * (np.exp(np.minimum(x, 0)) - 1)).astype(x.dtype)


def unary(x, op, alpha=None, beta=None, gamma=None):
    """Elementwise activations with ONNX's parameter names (alpha/beta/gamma as each op defines them)."""
    if op == "Relu":
        return np.maximum(x, 0).astype(x.dtype)
    if op == "Sigmoid":
        return (1.0 / (1.0 + np.exp(-x))).astype(x.dtype)
    if op == "Tanh":
        return np.tanh(x)
    if op == "LeakyRelu":
        a = 0.01 if alpha is None else alpha
        return np.where(x >= 0, x, a * x).astype(x.dtype)
    if op == "Elu":
        a = 1.0 if alpha is None else alpha
        return np.where(x > 0, x, a * (np.exp(np.minimum(x, 0)) - 1)).astype(x.dtype)
    if op == "Selu":
        a = 1.67326319217681884765625 if alpha is None else alpha
        g = 1.05070102214813232421875 if gamma is None else gamma
        return _selu(x, a, g)
    if op == "HardSigmoid":
        a = 0.2 if alpha is None else alpha
        b = 0.5 if beta is None else beta
        return np.clip(a * x + b, 0, 1).astype(x.dtype)
    if op == "HardSwish":
        return (x * np.clip(x / 6.0 + 0.5, 0, 1)).astype(x.dtype)
    if op == "Identity":
        return x
    raise ValueError(f"unknown unary op {op!r}")


def clip(x, lo=None, hi=None):
    y = x
    if lo is not None:
        y = np.maximum(y, np.asarray(lo, x.dtype))
    if hi is not None:
        y = np.minimum(y, np.asarray(hi, x.dtype))
    return y.astype(x.dtype)


def prelu(x, slope):
    return np.where(x < 0, slope * x, x).astype(x.dtype)


def softmax(x, axis=-1, legacy=False):
    """Softmax along ``axis``; ``legacy`` (opset < 13): over the 2-D flattening at ``axis`` (all dims from axis on)."""
    if legacy:
        axis = axis % max(x.ndim, 1)
        shape = x.shape
        rows = int(math.prod(shape[:axis]))
        flat = x.reshape(rows, -1)
        return softmax(flat, axis=1).reshape(shape)
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return (e / np.sum(e, axis=axis, keepdims=True)).astype(x.dtype)


# --------------------------------------------------------------------------------------------------------------
# linear algebra


def matmul(a, b):
    return np.matmul(a, b)


def gemm(a, b, c=None, alpha=1.0, beta=1.0, trans_a=0, trans_b=0):
    if trans_a:
        a = a.T
    if trans_b:
        b = b.T
    y = alpha * (a @ b)
    if c is not None:
        y = y + beta * c
    return y.astype(np.result_type(a, b))


# --------------------------------------------------------------------------------------------------------------
# shapes


def reshape(x, shape, allowzero=0):
    shape = [int(d) for d in shape]
    if not allowzero:
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return x.reshape(shape)


def transpose(x, perm=None):
    if perm is None:
        perm = list(range(x.ndim))[::-1]
    return np.transpose(x, perm)


def squeeze(x, axes=None):
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(int(a) % x.ndim for a in axes))


def unsqueeze(x, axes):
    rank = x.ndim + len(axes)
    axes = sorted(int(a) % rank for a in axes)
    y = x
    for a in axes:
        y = np.expand_dims(y, a)
    return y


def flatten(x, axis=1):
    axis = axis % (x.ndim + 1) if axis < 0 else axis
    rows = int(math.prod(x.shape[:axis]))
    return x.reshape(rows, -1) if x.size or rows else x.reshape(rows, 0)


def concat(*xs, axis=0):
    return np.concatenate([np.asarray(a) for a in xs], axis=axis)


def slice_(x, starts, ends, axes=None, steps=None):
    if axes is None:
        axes = list(range(len(starts)))
    if steps is None:
        steps = [1] * len(starts)
    idx = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = int(a) % x.ndim
        n = x.shape[a]
        s, e, st = int(s), int(e), int(st)
        # ONNX clamps like Python slicing does, but INT_MAX/INT_MIN sentinels must not overflow
        s = max(min(s, n), -n - 1) if st < 0 else max(min(s, n), -n)
        e = max(min(e, n), -n - 1)
        if st < 0:
            s = s + n if s < 0 else min(s, n - 1)
            e = e + n if e < 0 else e
            idx[a] = slice(s, e if e >= 0 else None, st)
        else:
            idx[a] = slice(s, e, st)
    return x[tuple(idx)]


def gather(x, indices, axis=0):
    indices = np.asarray(indices, np.int64)
    n = x.shape[axis]
    return np.take(x, np.where(indices < 0, indices + n, indices), axis=axis)


def pad(x, pads, mode="constant", value=0.0):
    """ONNX Pad: ``pads`` = [begin_0, ..., begin_n, end_0, ..., end_n] (negative values crop)."""
    n = x.ndim
    pads = [int(p) for p in pads]
    begins, ends = pads[:n], pads[n:]
    # crop first (negative pads), then pad
    crop = tuple(slice(-b if b < 0 else 0, x.shape[i] + e if e < 0 else None) for i, (b, e) in enumerate(zip(begins, ends)))
    x = x[crop]
    width = [(max(b, 0), max(e, 0)) for b, e in zip(begins, ends)]
    if mode == "constant":
        return np.pad(x, width, mode="constant", constant_values=np.asarray(value, x.dtype) if value is not None else 0)
    np_mode = {"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode]
    return np.pad(x, width, mode=np_mode)


# --------------------------------------------------------------------------------------------------------------
# windows (pooling and convolution, N-D)


def auto_pads(auto_pad, in_sizes, kernel, strides, dilations):
    """Explicit (begins, ends) for SAME_UPPER / SAME_LOWER: output ceil(in / stride)."""
    begins, ends = [], []
    for n, k, s, d in zip(in_sizes, kernel, strides, dilations):
        out = -(-n // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
        small = total // 2
        if auto_pad == "SAME_UPPER":
            begins.append(small)
            ends.append(total - small)
        else:
            begins.append(total - small)
            ends.append(small)
    return begins, ends


def _window_pads(x, kernel, strides, dilations, pads, auto_pad):
    nsp = len(kernel)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return auto_pads(auto_pad, x.shape[2:], kernel, strides, dilations)
    if auto_pad == "VALID" or pads is None:
        return [0] * nsp, [0] * nsp
    return list(pads[:nsp]), list(pads[nsp:])


def pool_out_size(n, k, s, d, pb, pe, ceil_mode):
    span = (k - 1) * d + 1
    num = n + pb + pe - span
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= n + pb:
        out -= 1  # the last window may not start inside the end padding (PyTorch's rule, ONNX's reference)
    return max(out, 0)


def pool(x, kind="max", kernel=(), strides=None, pads=None, dilations=None, ceil_mode=0, count_include_pad=0,
         auto_pad="NOTSET"):
    """N-D max / average pooling over the dims after (N, C)."""
    nsp = len(kernel)
    strides = list(strides or [1] * nsp)
    dilations = list(dilations or [1] * nsp)
    begins, ends = _window_pads(x, kernel, strides, dilations, pads, auto_pad)
    in_sizes = x.shape[2:]
    outs = [pool_out_size(n, k, s, d, b, e, ceil_mode)
            for n, k, s, d, b, e in zip(in_sizes, kernel, strides, dilations, begins, ends)]
    # pad generously so every window of the output lies inside the padded array
    extra = [max((o - 1) * s + (k - 1) * d + 1 - (n + b + e), 0)
             for o, s, k, d, n, b, e in zip(outs, strides, kernel, dilations, in_sizes, begins, ends)]
    width = [(0, 0), (0, 0)] + [(b, e + x_) for b, e, x_ in zip(begins, ends, extra)]
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x.astype(np.float64 if kind != "max" else x.dtype), width, constant_values=fill)
    # the per-position mask: 1 inside the input, 2 inside the declared padding, 0 in the ceil-mode overhang
    mask = np.zeros(xp.shape[2:], np.int8)
    mask[tuple(slice(0, b + n + e) for b, n, e in zip(begins, in_sizes, ends))] = 2
    mask[tuple(slice(b, b + n) for b, n in zip(begins, in_sizes))] = 1
    acc = None
    count = np.zeros(outs, np.float64)
    for offs in np.ndindex(*kernel):
        sl = tuple(slice(o * d, o * d + (m - 1) * s + 1, s) for o, d, m, s in zip(offs, dilations, outs, strides))
        win = xp[(slice(None), slice(None)) + sl]
        m = mask[sl]
        if kind == "max":
            acc = win.copy() if acc is None else np.maximum(acc, win)
        else:
            acc = win.copy() if acc is None else acc + win
            count += (m == 1) if not count_include_pad else (m >= 1)
    if kind == "max":
        return acc.astype(x.dtype)
    return (acc / np.maximum(count, 1)).astype(x.dtype)


def global_pool(x, kind="max"):
    axes = tuple(range(2, x.ndim))
    if kind == "max":
        return np.max(x, axis=axes, keepdims=True)
    return np.mean(x, axis=axes, keepdims=True).astype(x.dtype)


def conv(x, w, b=None, strides=None, pads=None, dilations=None, group=1, auto_pad="NOTSET"):
    """N-D convolution (cross-correlation), OIHW... weights, grouped."""
    nsp = x.ndim - 2
    kernel = w.shape[2:]
    strides = list(strides or [1] * nsp)
    dilations = list(dilations or [1] * nsp)
    begins, ends = _window_pads(x, kernel, strides, dilations, pads, auto_pad)
    xp = np.pad(x, [(0, 0), (0, 0)] + list(zip(begins, ends)))
    outs = [(n - ((k - 1) * d + 1)) // s + 1 for n, k, d, s in zip(xp.shape[2:], kernel, dilations, strides)]
    n_, c = x.shape[:2]
    o = w.shape[0]
    cg, og = c // group, o // group
    y = np.zeros((n_, o) + tuple(outs), np.float64)
    for offs in np.ndindex(*kernel):
        sl = tuple(slice(q * d, q * d + (m - 1) * s + 1, s) for q, d, m, s in zip(offs, dilations, outs, strides))
        win = xp[(slice(None), slice(None)) + sl]
        for g in range(group):
            wk = w[(slice(g * og, (g + 1) * og), slice(None)) + offs]  # (og, cg)
            y[:, g * og:(g + 1) * og] += np.einsum("nc...,oc->no...", win[:, g * cg:(g + 1) * cg], wk)
    if b is not None:
        y += b.reshape((1, o) + (1,) * nsp)
    return y.astype(x.dtype)


def conv_transpose_geometry(in_sizes, kernel, strides, dilations, pads, output_padding, output_shape, auto_pad):
    """(begins, ends, output_padding) of a ConvTranspose, resolving ``output_shape`` and ``auto_pad`` as ONNX does."""
    nsp = len(kernel)
    strides = list(strides or [1] * nsp)
    dilations = list(dilations or [1] * nsp)
    output_padding = list(output_padding or [0] * nsp)
    if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if output_shape is None:
            output_shape = [n * s for n, s in zip(in_sizes, strides)]
        output_shape = list(output_shape)[-nsp:]
        begins, ends = [], []
        for i in range(nsp):
            total = (strides[i] * (in_sizes[i] - 1) + output_padding[i] + (kernel[i] - 1) * dilations[i] + 1
                     - output_shape[i])
            if total < 0:  # a larger output than the stride gives: the extra rows go to the end (output_padding)
                output_padding[i] += -total
                total = 0
            if auto_pad == "SAME_UPPER":
                begins.append(total // 2)
                ends.append(total - total // 2)
            else:
                begins.append(total - total // 2)
                ends.append(total // 2)
        return begins, ends, output_padding
    if pads is None:
        pads = [0] * (2 * nsp)
    return list(pads[:nsp]), list(pads[nsp:]), output_padding


def conv_transpose(x, w, b=None, strides=None, pads=None, dilations=None, group=1, output_padding=None,
                   output_shape=None, auto_pad="NOTSET"):
    """N-D transposed convolution, weights (C_in, C_out/group, k...)."""
    nsp = x.ndim - 2
    kernel = w.shape[2:]
    strides = list(strides or [1] * nsp)
    dilations = list(dilations or [1] * nsp)
    begins, ends, output_padding = conv_transpose_geometry(
        x.shape[2:], kernel, strides, dilations, pads, output_padding, output_shape, auto_pad
    )
    full = [(n - 1) * s + (k - 1) * d + 1 + op for n, s, k, d, op in
            zip(x.shape[2:], strides, kernel, dilations, output_padding)]
    n_, c = x.shape[:2]
    og = w.shape[1]
    o = og * group
    cg = c // group
    y = np.zeros((n_, o) + tuple(full), np.float64)
    in_sizes = x.shape[2:]
    for offs in np.ndindex(*kernel):
        sl = tuple(slice(q * d, q * d + (m - 1) * s + 1, s) for q, d, m, s in zip(offs, dilations, in_sizes, strides))
        for g in range(group):
            wk = w[(slice(g * cg, (g + 1) * cg), slice(None)) + offs]  # (cg, og)
            y[(slice(None), slice(g * og, (g + 1) * og)) + sl] += np.einsum(
                "nc...,co->no...", x[:, g * cg:(g + 1) * cg], wk
            )
    # crop the pads (negative pads would enlarge: pad with zeros)
    crop = tuple(slice(bg, f - e) for bg, e, f in zip(begins, ends, full))
    y = y[(slice(None), slice(None)) + crop]
    if b is not None:
        y += b.reshape((1, o) + (1,) * nsp)
    return y.astype(x.dtype)


# --------------------------------------------------------------------------------------------------------------
# normalisation


def batch_norm(x, scale, bias, mean, var, epsilon=1e-5):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = scale / np.sqrt(var + epsilon)
    return ((x - mean.reshape(shape)) * inv.reshape(shape) + bias.reshape(shape)).astype(x.dtype)


def lrn(x, size, alpha=1e-4, beta=0.75, bias=1.0):
    c = x.shape[1]
    sq = np.square(x.astype(np.float64))
    before, after = (size - 1) // 2, -(-(size - 1) // 2)
    acc = np.zeros_like(sq)
    for ch in range(c):
        lo, hi = max(0, ch - before), min(c - 1, ch + after)
        acc[:, ch] = sq[:, lo:hi + 1].sum(axis=1)
    return (x / np.power(bias + alpha / size * acc, beta)).astype(x.dtype)


# --------------------------------------------------------------------------------------------------------------
# resize


def resize_output_shape(in_shape, scales=None, sizes=None, axes=None, keep_aspect_ratio_policy="stretch"):
    """(output shape, scales per axis) as ONNX Resize computes them."""
    rank = len(in_shape)
    axes = list(range(rank)) if axes is None else [int(a) % rank for a in axes]
    full_scales = [1.0] * rank
    out = list(in_shape)
    if sizes is not None:
        sizes = [int(s) for s in sizes]
        if keep_aspect_ratio_policy != "stretch":
            r = [sizes[i] / in_shape[a] for i, a in enumerate(axes)]
            s = min(r) if keep_aspect_ratio_policy == "not_larger" else max(r)
            for a in axes:
                full_scales[a] = s
                out[a] = int(math.floor(s * in_shape[a] + 0.5))
        else:
            for i, a in enumerate(axes):
                out[a] = sizes[i]
                full_scales[a] = sizes[i] / in_shape[a]
    else:
        for i, a in enumerate(axes):
            full_scales[a] = float(scales[i])
            out[a] = int(math.floor(in_shape[a] * float(scales[i])))
    return out, full_scales


def _source_coords(n_out, n_in, scale, mode, roi_start=0.0, roi_end=1.0):
    x = np.arange(n_out, dtype=np.float64)
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        adj = n_out / (scale * n_in)
        center = n_in / 2.0
        offset = center * (1 - adj)
        return offset + (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if n_out > 1 else np.zeros_like(x)
    if mode == "align_corners":  # the resized length is in * scale, unrounded (ONNX's reference, onnxruntime)
        length = n_in * scale
        return x * (n_in - 1) / (length - 1) if n_out > 1 and length != 1 else np.zeros_like(x)
    if mode == "asymmetric":
        return x / scale
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    if mode == "tf_crop_and_resize":
        if n_out > 1:
            return roi_start * (n_in - 1) + x * (roi_end - roi_start) * (n_in - 1) / (n_out - 1)
        return np.full_like(x, 0.5 * (roi_start + roi_end) * (n_in - 1))
    raise ValueError(f"Resize: unknown coordinate_transformation_mode {mode!r}")


def _nearest_index(c, mode):
    if mode == "round_prefer_floor":
        return np.ceil(c - 0.5)
    if mode == "round_prefer_ceil":
        return np.floor(c + 0.5)
    if mode == "floor":
        return np.floor(c)
    if mode == "ceil":
        return np.ceil(c)
    raise ValueError(f"Resize: unknown nearest_mode {mode!r}")


def resize(x, out_shape, scales, mode="nearest", coordinate_transformation_mode="half_pixel",
           nearest_mode="round_prefer_floor", extrapolation_value=0.0, roi=None):
    """Resize ``x`` to ``out_shape`` (one axis at a time: nearest and multilinear are separable)."""
    y = x.astype(np.float64)
    rank = x.ndim
    for a in range(rank):
        n_in, n_out = x.shape[a], int(out_shape[a])
        if n_in == n_out and scales[a] == 1.0 and coordinate_transformation_mode != "tf_crop_and_resize":
            continue
        rs, re_ = (float(roi[a]), float(roi[rank + a])) if roi is not None and len(roi) == 2 * rank else (0.0, 1.0)
        c = _source_coords(n_out, n_in, scales[a], coordinate_transformation_mode, rs, re_)
        outside = (c < 0) | (c > n_in - 1) if coordinate_transformation_mode == "tf_crop_and_resize" else None
        if mode == "nearest":
            idx = np.clip(_nearest_index(c, nearest_mode), 0, n_in - 1).astype(np.int64)
            y = np.take(y, idx, axis=a)
        else:
            cc = np.clip(c, 0, n_in - 1)
            i0 = np.floor(cc).astype(np.int64)
            i1 = np.minimum(i0 + 1, n_in - 1)
            w = (cc - i0).reshape([-1 if k == a else 1 for k in range(rank)])
            y = np.take(y, i0, axis=a) * (1 - w) + np.take(y, i1, axis=a) * w
        if outside is not None and outside.any():
            sel = [slice(None)] * rank
            sel[a] = outside
            y[tuple(sel)] = extrapolation_value
    return y.astype(x.dtype)
