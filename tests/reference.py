"""Plain-numpy reference implementations of every op in ``visionkit.ops`` (docs/ops-api.md).

Written from the definitions, favouring obviousness over speed: explicit loops over windows or kernel taps,
float64 throughout. Each function states the PyTorch semantics it follows in one comment line. Backward passes are
not written here: the tests check the ops' ``*_backward`` against finite differences (tests/gradcheck.py).

Nothing here imports visionkit, so a bug in the library cannot leak into its own referee.
"""

import math

import numpy as np

F64 = np.float64


# ----------------------------------------------------------------------------------------------------- helpers


def pair(v):
    """An int or an (h, w) pair -> (h, w) ints."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"expected an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def same_padding(in_hw, kernel, stride=1, dilation=1):
    # TensorFlow "SAME": out = ceil(in/s); total = max((out-1)*s + d*(k-1)+1 - in, 0); top = total//2, the odd
    # pixel goes to the bottom/right.
    (h, w), (kh, kw), (sh, sw), (dh, dw) = pair(in_hw), pair(kernel), pair(stride), pair(dilation)
    pads = []
    for n, k, s, d in ((h, kh, sh, dh), (w, kw, sw, dw)):
        out = -(-n // s)
        total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)  # (top, bottom, left, right)


def conv_output_size(in_size, kernel, stride=1, pad_total=0, dilation=1):
    # torch conv: floor((in + pad_total - d*(k-1) - 1)/s) + 1
    return (in_size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def resolve_pads(padding, in_hw, kernel, stride, dilation=1):
    """int / (ph, pw) / "same" / "valid" -> (top, bottom, left, right)."""
    if isinstance(padding, str):
        p = padding.lower()
        if p == "valid":
            return (0, 0, 0, 0)
        if p == "same":
            return same_padding(in_hw, kernel, stride, dilation)
        raise ValueError(f"unknown padding {padding!r}")
    ph, pw = pair(padding)
    return (ph, ph, pw, pw)


def _f64(a):
    return None if a is None else np.asarray(a, dtype=F64)


def pad_constant(x, pads, value=0.0):
    """Pad the last two dims of x by (top, bottom, left, right) with a constant."""
    pt, pb, pl, pr = pads
    n, c, h, w = x.shape
    out = np.full((n, c, h + pt + pb, w + pl + pr), value, dtype=F64)
    out[:, :, pt:pt + h, pl:pl + w] = x
    return out


# ----------------------------------------------------------------------------------------------------- conv


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    # torch conv2d (cross-correlation): y[n,o,i,j] = b[o] + sum_{c,u,v} w[o,c,u,v] * xpad[n, g(o)*C/G + c,
    # i*sh + u*dh, j*sw + v*dw], with g(o) = o // (O/G): depthwise with multiplier m is groups=C, O=m*C.
    x, weight, bias = _f64(x), _f64(weight), _f64(bias)
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    (sh, sw), (dh, dw) = pair(stride), pair(dilation)
    pads = resolve_pads(padding, (h, w), (kh, kw), (sh, sw), (dh, dw))
    xp = pad_constant(x, pads)
    oh = conv_output_size(h, kh, sh, pads[0] + pads[1], dh)
    ow = conv_output_size(w, kw, sw, pads[2] + pads[3], dw)
    og = o // groups
    y = np.zeros((n, o, oh, ow), dtype=F64)
    for g in range(groups):
        xg = xp[:, g * cg:(g + 1) * cg]
        wg = weight[g * og:(g + 1) * og]
        for u in range(kh):
            for v in range(kw):
                r0, c0 = u * dh, v * dw
                patch = xg[:, :, r0:r0 + sh * (oh - 1) + 1:sh, c0:c0 + sw * (ow - 1) + 1:sw]  # (n, cg, oh, ow)
                y[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, wg[:, :, u, v])
    if bias is not None:
        y += bias[None, :, None, None]
    return y


def conv_transpose2d_output_size(in_size, kernel, stride=1, padding=0, output_padding=0, dilation=1):
    # torch conv_transpose2d: (H-1)*s - 2p + d*(k-1) + output_padding + 1
    return (in_size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    # torch conv_transpose2d (the adjoint of conv2d): scatter x[n,c,i,j]*w[c,o,u,v] to full[n, g(c)*O/G + o,
    # i*sh + u*dh, j*sw + v*dw], then crop p rows/cols at the top/left; output size (H-1)*s - 2p + d*(k-1) + op + 1.
    x, weight, bias = _f64(x), _f64(weight), _f64(bias)
    n, c, h, w = x.shape
    ci, og, kh, kw = weight.shape
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = pair(stride), pair(padding), pair(output_padding), pair(dilation)
    cg = c // groups
    oh = conv_transpose2d_output_size(h, kh, sh, ph, oph, dh)
    ow = conv_transpose2d_output_size(w, kw, sw, pw, opw, dw)
    full = np.zeros((n, og * groups, oh + 2 * ph, ow + 2 * pw), dtype=F64)
    for g in range(groups):
        xg = x[:, g * cg:(g + 1) * cg]
        wg = weight[g * cg:(g + 1) * cg]
        for u in range(kh):
            for v in range(kw):
                contrib = np.einsum("nchw,co->nohw", xg, wg[:, :, u, v])
                r0, c0 = u * dh, v * dw
                full[:, g * og:(g + 1) * og, r0:r0 + sh * (h - 1) + 1:sh, c0:c0 + sw * (w - 1) + 1:sw] += contrib
    y = full[:, :, ph:ph + oh, pw:pw + ow].copy()
    if bias is not None:
        y += bias[None, :, None, None]
    return y


# ----------------------------------------------------------------------------------------------------- pooling


def pool_output_size(in_size, kernel, stride, pad_lo, pad_hi, dilation=1, ceil_mode=False):
    # torch pooling: out = floor_or_ceil((H + pads - d*(k-1) - 1)/s) + 1; with ceil_mode the last window must start
    # inside the input or the left padding: if (out-1)*s >= H + pad_lo then out -= 1.
    span = in_size + pad_lo + pad_hi - dilation * (kernel - 1) - 1
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= in_size + pad_lo:
            out -= 1
    else:
        out = span // stride + 1
    return out


def _pool_geometry(x_shape, kernel_size, stride, padding, dilation, ceil_mode):
    h, w = x_shape[2], x_shape[3]
    kh, kw = pair(kernel_size)
    sh, sw = pair(kernel_size if stride is None else stride)
    dh, dw = pair(dilation)
    pads = resolve_pads(padding, (h, w), (kh, kw), (sh, sw), (dh, dw))
    oh = pool_output_size(h, kh, sh, pads[0], pads[1], dh, ceil_mode)
    ow = pool_output_size(w, kw, sw, pads[2], pads[3], dw, ceil_mode)
    return (kh, kw), (sh, sw), (dh, dw), pads, (oh, ow)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    # torch max_pool2d: padding never wins (-inf); index = h*W + w of the max in its plane; a NaN wins (torch's
    # `val > max || isnan(val)` scan in row-major window order), so NaN propagates.
    x = _f64(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (dh, dw), (pt, pb, pl, pr), (oh, ow) = _pool_geometry(
        x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    y = np.full((n, c, oh, ow), -np.inf, dtype=F64)
    idx = np.full((n, c, oh, ow), -1, dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            for u in range(kh):
                r = i * sh - pt + u * dh
                if not 0 <= r < h:
                    continue
                for v in range(kw):
                    q = j * sw - pl + v * dw
                    if not 0 <= q < w:
                        continue
                    val = x[:, :, r, q]
                    take = (val > y[:, :, i, j]) | np.isnan(val) | (idx[:, :, i, j] < 0)
                    y[:, :, i, j] = np.where(take, val, y[:, :, i, j])
                    idx[:, :, i, j] = np.where(take, r * w + q, idx[:, :, i, j])
    return (y, idx) if return_indices else y


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    # torch avg_pool2d: hstart = i*s - pt, hend = min(hstart + k, H + pb); pool = (hend-hstart)*(wend-wstart) counted
    # before clipping to the input; divisor = divisor_override, else pool (count_include_pad), else the in-input
    # count. "same" (Keras): TensorFlow pads, padding excluded from the average.
    x = _f64(x)
    n, c, h, w = x.shape
    if isinstance(padding, str) and padding.lower() == "same":
        count_include_pad = False
    (kh, kw), (sh, sw), _, (pt, pb, pl, pr), (oh, ow) = _pool_geometry(
        x.shape, kernel_size, stride, padding, 1, ceil_mode)
    y = np.zeros((n, c, oh, ow), dtype=F64)
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * sh - pt, j * sw - pl
            he, we = min(hs + kh, h + pb), min(ws + kw, w + pr)
            pool = (he - hs) * (we - ws)
            hs0, ws0, he0, we0 = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            s = x[:, :, hs0:he0, ws0:we0].sum(axis=(2, 3))
            if divisor_override:
                div = divisor_override
            elif count_include_pad:
                div = pool
            else:
                div = (he0 - hs0) * (we0 - ws0)
            y[:, :, i, j] = s / div
    return y


def _adaptive_bins(in_size, out_size):
    # torch adaptive pooling: bin i spans [floor(i*H/O), ceil((i+1)*H/O))
    return [((i * in_size) // out_size, -((-(i + 1) * in_size) // out_size)) for i in range(out_size)]


def adaptive_avg_pool2d(x, output_size):
    # torch adaptive_avg_pool2d: mean over bin [floor(i*H/O), ceil((i+1)*H/O)) x the same for W
    x = _f64(x)
    n, c, h, w = x.shape
    oh, ow = pair(output_size)
    y = np.zeros((n, c, oh, ow), dtype=F64)
    for i, (h0, h1) in enumerate(_adaptive_bins(h, oh)):
        for j, (w0, w1) in enumerate(_adaptive_bins(w, ow)):
            y[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return y


def adaptive_max_pool2d(x, output_size, return_indices=False):
    # torch adaptive_max_pool2d: max over the adaptive bins; index h*W + w of the first max (NaN wins)
    x = _f64(x)
    n, c, h, w = x.shape
    oh, ow = pair(output_size)
    y = np.zeros((n, c, oh, ow), dtype=F64)
    idx = np.zeros((n, c, oh, ow), dtype=np.int64)
    for i, (h0, h1) in enumerate(_adaptive_bins(h, oh)):
        for j, (w0, w1) in enumerate(_adaptive_bins(w, ow)):
            win = x[:, :, h0:h1, w0:w1].reshape(n, c, -1)
            k = _first_argmax_nan(win)
            y[:, :, i, j] = np.take_along_axis(win, k[..., None], axis=-1)[..., 0]
            ww = w1 - w0
            idx[:, :, i, j] = (h0 + k // ww) * w + (w0 + k % ww)
    return (y, idx) if return_indices else y


def _first_argmax_nan(a):
    """argmax along the last axis; a NaN wins (the first NaN)."""
    nan = np.isnan(a)
    k = np.argmax(np.where(nan, -np.inf, a), axis=-1)
    anynan = nan.any(axis=-1)
    return np.where(anynan, np.argmax(nan, axis=-1), k)


def global_avg_pool2d(x, keepdims=False):
    # Keras GlobalAveragePooling2D = torch adaptive_avg_pool2d(x, 1) (flattened unless keepdims)
    x = _f64(x)
    y = x.mean(axis=(2, 3), keepdims=keepdims)
    return y


def global_max_pool2d(x, keepdims=False):
    # Keras GlobalMaxPooling2D = torch adaptive_max_pool2d(x, 1) (flattened unless keepdims); NaN propagates
    x = _f64(x)
    return x.max(axis=(2, 3), keepdims=keepdims)


def channel_max_pool(x, kernel_size):
    # maxout over channels (torch: x.view(N, C//k, k, H, W).max(dim=2)): y[n,c] = max x[n, c*k : c*k+k]
    x = _f64(x)
    n, c, h, w = x.shape
    k = int(kernel_size)
    if c % k:
        raise ValueError("channels not divisible by kernel_size")
    return x.reshape(n, c // k, k, h, w).max(axis=2)


# ----------------------------------------------------------------------------------------------------- norm


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0):
    # torch local_response_norm: y = x / (k + alpha/size * sum_{c'=c-size//2}^{c+(size-1)//2} x[c']^2)^beta, the
    # window clipped at the channel ends while the divisor stays `size`.
    x = _f64(x)
    c = x.shape[1]
    y = np.empty_like(x)
    for ch in range(c):
        lo, hi = max(ch - size // 2, 0), min(ch + (size - 1) // 2, c - 1)
        s = (x[:, lo:hi + 1] ** 2).sum(axis=1)
        y[:, ch] = x[:, ch] / (k + alpha / size * s) ** beta
    return y


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    # torch batch_norm: y = (x - mean)/sqrt(var + eps)*w + b per channel (axis 1); training uses the batch mean and
    # biased var and updates running = (1-momentum)*running + momentum*batch (unbiased var, n/(n-1)) in place.
    x = _f64(x)
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    shape = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
    if training:
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)
        n = x.size // x.shape[1]
        if running_mean is not None:
            running_mean[...] = (1 - momentum) * running_mean + momentum * mean
        if running_var is not None:
            running_var[...] = (1 - momentum) * running_var + momentum * var * n / max(n - 1, 1)
    else:
        mean, var = _f64(running_mean), _f64(running_var)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    if weight is not None:
        y = y * _f64(weight).reshape(shape)
    if bias is not None:
        y = y + _f64(bias).reshape(shape)
    return y


# ----------------------------------------------------------------------------------------------------- dense


def linear(x, weight, bias=None):
    # torch linear: y = x @ W^T + b, W (out, in)
    y = _f64(x) @ _f64(weight).T
    if bias is not None:
        y = y + _f64(bias)
    return y


# ----------------------------------------------------------------------------------------------------- activations

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def relu(x):
    # torch relu: max(x, 0), NaN stays NaN
    return np.maximum(_f64(x), 0.0)


def leaky_relu(x, negative_slope=0.01):
    # torch leaky_relu: x if x > 0 else negative_slope*x
    x = _f64(x)
    return np.where(x > 0, x, negative_slope * x)


def elu(x, alpha=1.0):
    # torch elu: x if x > 0 else alpha*(exp(x) - 1)
    x = _f64(x)
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def selu(x):
    # torch selu: scale*(x if x > 0 else alpha*(exp(x) - 1)), alpha=1.6732632423543772, scale=1.0507009873554805
    return SELU_SCALE * elu(x, SELU_ALPHA)


def tanh(x):
    # torch tanh
    return np.tanh(_f64(x))


def sigmoid(x):
    # torch sigmoid: 1/(1 + exp(-x))
    x = _f64(x)
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def hardsigmoid(x):
    # torch hardsigmoid: relu6(x + 3)/6 = clip(x/6 + 1/2, 0, 1)
    return np.clip(_f64(x) / 6.0 + 0.5, 0.0, 1.0)


def hardswish(x):
    # torch hardswish: x * relu6(x + 3)/6
    x = _f64(x)
    return x * hardsigmoid(x)


def identity(x):
    # Keras "linear" activation: y = x
    return _f64(x).copy()


def softmax(x, dim=1):
    # torch softmax: exp(x - max) / sum exp(x - max) along dim
    x = _f64(x)
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


def log_softmax(x, dim=1):
    # torch log_softmax: x - max - log(sum exp(x - max)) along dim
    x = _f64(x)
    z = x - x.max(axis=dim, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=dim, keepdims=True))


ACTIVATIONS = {
    "relu": relu, "leaky_relu": leaky_relu, "elu": elu, "selu": selu, "tanh": tanh, "sigmoid": sigmoid,
    "hardsigmoid": hardsigmoid, "hardswish": hardswish, "linear": identity, "softmax": softmax,
    "log_softmax": log_softmax,
}


def activation(x, name, **params):
    return ACTIVATIONS[name](x, **params)


# ----------------------------------------------------------------------------------------------------- resize


def interpolate_output_size(in_hw, size=None, scale_factor=None):
    # torch interpolate: out = size, or floor(in * scale_factor)
    if size is not None:
        return pair(size)
    sh, sw = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor, scale_factor)
    return int(math.floor(in_hw[0] * sh)), int(math.floor(in_hw[1] * sw))


def _source_scale(in_size, out_size, sf):
    # torch: scale = 1/scale_factor when the user gave one, else in/out
    return (1.0 / sf) if sf is not None else in_size / out_size


def _nearest_src(in_size, out_size, sf):
    # torch nearest: src = min(floor(dst*scale), in-1), except torch's shortcuts out == in -> src = dst and
    # out == 2*in -> src = dst//2, taken whatever the scale_factor (they differ from the formula for e.g. 1.3, 2.2)
    if out_size == in_size:
        return np.arange(out_size)
    if out_size == 2 * in_size:
        return np.arange(out_size) // 2
    scale = _source_scale(in_size, out_size, sf)
    return np.array([min(int(math.floor(d * scale)), in_size - 1) for d in range(out_size)])


def _linear_src(in_size, out_size, sf, align_corners):
    # torch bilinear: align_corners -> src = dst*(in-1)/(out-1) (0 if out == 1); else src = (dst+0.5)*scale - 0.5
    # clamped below at 0; i0 = floor(src), i1 = min(i0+1, in-1), weights (1-l, l) with l = src - i0.
    # torch copies a dimension whose output size equals its input size, whatever the scale_factor.
    if out_size == in_size:
        return np.arange(out_size), np.arange(out_size), np.zeros(out_size)
    i0, i1, lam = [], [], []
    for d in range(out_size):
        if align_corners:
            src = d * (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        else:
            src = max((d + 0.5) * _source_scale(in_size, out_size, sf) - 0.5, 0.0)
        a = min(int(math.floor(src)), in_size - 1)
        i0.append(a)
        i1.append(min(a + 1, in_size - 1))
        lam.append(src - a)
    return np.array(i0), np.array(i1), np.array(lam)


def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None):
    # torch interpolate (nearest | bilinear) with the coordinate rules above; scale_factor int/float or pair
    x = _f64(x)
    n, c, h, w = x.shape
    oh, ow = interpolate_output_size((h, w), size, scale_factor)
    if scale_factor is None:
        sfh = sfw = None
    else:
        sfh, sfw = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor, scale_factor)
    if mode == "nearest":
        rows, cols = _nearest_src(h, oh, sfh), _nearest_src(w, ow, sfw)
        return x[:, :, rows][:, :, :, cols]
    if mode == "bilinear":
        r0, r1, lr = _linear_src(h, oh, sfh, bool(align_corners))
        c0, c1, lc = _linear_src(w, ow, sfw, bool(align_corners))
        lr = lr[:, None]
        top = x[:, :, r0][:, :, :, c0] * (1 - lc) + x[:, :, r0][:, :, :, c1] * lc
        bot = x[:, :, r1][:, :, :, c0] * (1 - lc) + x[:, :, r1][:, :, :, c1] * lc
        return top * (1 - lr) + bot * lr
    raise ValueError(mode)


# ----------------------------------------------------------------------------------------------------- tensor


def _pad_source(i, n, mode):
    """Source index in [0, n) of padded position i (in input coordinates); None for constant padding."""
    if 0 <= i < n:
        return i
    if mode == "constant":
        return None
    if mode == "replicate":
        return min(max(i, 0), n - 1)
    if mode == "reflect":  # mirror about the edge pixel, which is not repeated
        while not 0 <= i < n:
            i = -i if i < 0 else 2 * (n - 1) - i
        return i
    raise ValueError(mode)


def pad(x, pad, mode="constant", value=0.0):
    # torch F.pad on a 4-D tensor: pad = (left, right[, top, bottom]); reflect mirrors without repeating the edge
    # pixel, replicate repeats it, constant fills `value`.
    x = _f64(x)
    pl, pr = pad[0], pad[1]
    pt, pb = (pad[2], pad[3]) if len(pad) == 4 else (0, 0)
    n, c, h, w = x.shape
    y = np.full((n, c, h + pt + pb, w + pl + pr), float(value), dtype=F64)
    for i in range(h + pt + pb):
        si = _pad_source(i - pt, h, mode)
        if si is None:
            continue
        for j in range(w + pl + pr):
            sj = _pad_source(j - pl, w, mode)
            if sj is None:
                continue
            y[:, :, i, j] = x[:, :, si, sj]
    return y


def add(*xs):
    # elementwise sum
    out = _f64(xs[0]).copy()
    for a in xs[1:]:
        out = out + _f64(a)
    return out


def concat(xs, dim=1):
    # torch cat
    return np.concatenate([_f64(a) for a in xs], axis=dim)
