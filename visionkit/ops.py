"""visionkit.ops: the functional API (stateless), with the semantics of the PyTorch functional op of each name.

Every differentiable op ``f`` has ``f_backward``. Arrays may be numpy (CPU backend) or Numba CUDA device arrays
(CUDA backend); each op runs where its input lives. float32 and float64 are preserved; other dtypes and
non-contiguous arrays are converted to contiguous float32. The contract is written out in docs/ops-api.md; the
kernels behind it in visionkit/backends/.
"""

import math

import numpy as np

from .backends import ACTIVATIONS
from .device import backend_of, get_backend, is_device_array, resolve_device

__all__ = [
    "conv2d", "conv2d_backward", "conv_transpose2d", "conv_transpose2d_backward",
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward", "adaptive_max_pool2d",
    "global_avg_pool2d", "global_avg_pool2d_backward", "global_max_pool2d", "global_max_pool2d_backward",
    "channel_max_pool", "channel_max_pool_backward",
    "local_response_norm", "local_response_norm_backward", "batch_norm", "batch_norm_backward",
    "linear", "linear_backward",
    "relu", "leaky_relu", "elu", "selu", "tanh", "sigmoid", "hardsigmoid", "hardswish",
    "relu_backward", "leaky_relu_backward", "elu_backward", "selu_backward", "tanh_backward", "sigmoid_backward",
    "hardsigmoid_backward", "hardswish_backward", "activation", "activation_backward",
    "softmax", "log_softmax", "softmax_backward", "log_softmax_backward",
    "dropout", "dropout_backward", "interpolate", "interpolate_backward", "pad", "pad_backward",
    "add", "concat", "concat_backward", "same_padding", "conv_output_size", "pool_output_size", "to_device", "to_numpy",
]


# ----------------------------------------------------------------------------------------------- argument helpers


def _arr(a, name="input"):
    """Contiguous float32/float64 array on its own device."""
    if is_device_array(a):
        if a.dtype not in (np.float32, np.float64):
            raise ValueError(f"{name}: device arrays must be float32 or float64, got {a.dtype}")
        return a
    a = np.asarray(a)
    if a.dtype != np.float32 and a.dtype != np.float64:
        a = a.astype(np.float32)
    return np.ascontiguousarray(a)


def _match(a, like, name):
    """Bring a parameter array to the dtype (and device) of the activation it combines with."""
    if a is None:
        return None
    if is_device_array(like):
        if not is_device_array(a):
            a = backend_of(like).tensor.to_device(np.ascontiguousarray(a, dtype=like.dtype))
        return a
    if is_device_array(a):
        raise ValueError(f"{name} lives on the GPU but the input is a numpy array")
    return np.ascontiguousarray(a, dtype=like.dtype)


def _pair(v, name):
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _check_rank(x, rank, op):
    if len(x.shape) != rank:
        raise ValueError(f"{op}: expected a {rank}-D input "
                         f"({'N, C, H, W' if rank == 4 else 'N, features'}), got shape {tuple(x.shape)}")


def conv_output_size(in_size, kernel, stride, pad_total, dilation=1):
    """Output extent of a convolution or pooling window slid over in_size + pad_total."""
    return (in_size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def same_padding(in_hw, kernel, stride, dilation=(1, 1)):
    """TensorFlow's "same": out = ceil(in / stride); the total padding split evenly, the odd pixel at the end."""
    pads = []
    in_hw, kernel = _pair(in_hw, "in_hw"), _pair(kernel, "kernel")
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    for n, k, s, d in zip(in_hw, kernel, stride, dilation):
        out = -(-n // s)
        total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


def _resolve_padding(padding, in_hw, kernel, stride, dilation):
    """User padding (int, pair, "same", "valid") -> (top, bottom, left, right)."""
    if isinstance(padding, str):
        p = padding.lower()
        if p == "valid":
            return (0, 0, 0, 0)
        if p == "same":
            return same_padding(in_hw, kernel, stride, dilation)
        raise ValueError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    ph, pw = _pair(padding, "padding")
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return (ph, ph, pw, pw)


# ----------------------------------------------------------------------------------------------- convolution


def _conv_args(x, weight, stride, padding, dilation, groups, op):
    _check_rank(x, 4, op)
    if len(weight.shape) != 4:
        raise ValueError(f"{op}: weight must be 4-D (out, in/groups, kh, kw), got shape {tuple(weight.shape)}")
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    groups = int(groups)
    if min(stride) < 1 or min(dilation) < 1 or groups < 1:
        raise ValueError(f"{op}: stride, dilation and groups must be >= 1")
    kernel = tuple(weight.shape[2:])
    pads = _resolve_padding(padding, x.shape[2:], kernel, stride, dilation)
    return stride, pads, dilation, groups, kernel


def _check_bias(bias, n, op):
    if bias is not None and tuple(bias.shape) != (n,):
        raise ValueError(f"{op}: bias has shape {tuple(bias.shape)}, expected ({n},)")


def _check_conv(x_shape, w_shape, stride, pads, dilation, groups, op):
    C, (O, Cg) = x_shape[1], w_shape[:2]
    if C % groups or O % groups:
        raise ValueError(f"{op}: in_channels={C} and out_channels={O} must be divisible by groups={groups}")
    if Cg != C // groups:
        raise ValueError(f"{op}: weight {tuple(w_shape)} expects {Cg * groups} input channels "
                         f"(groups={groups}), got {C} (input shape {tuple(x_shape)})")
    for n, k, s, p, d, axis in ((x_shape[2], w_shape[2], stride[0], pads[0] + pads[1], dilation[0], "height"),
                                (x_shape[3], w_shape[3], stride[1], pads[2] + pads[3], dilation[1], "width")):
        if conv_output_size(n, k, s, p, d) < 1:
            raise ValueError(f"{op}: kernel {k} (dilation {d}) is larger than the padded input {axis} {n + p}")


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    x = _arr(x)
    stride, pads, dilation, groups, _ = _conv_args(x, weight, stride, padding, dilation, groups, "conv2d")
    w, b = _match(weight, x, "weight"), _match(bias, x, "bias")
    _check_conv(x.shape, w.shape, stride, pads, dilation, groups, "conv2d")
    _check_bias(b, w.shape[0], "conv2d")
    return backend_of(x).conv.conv2d_forward(x, w, b, stride, pads, dilation, groups)


def conv2d_backward(grad_out, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """(grad_input, grad_weight, grad_bias); grad_bias is None when bias is None."""
    x, gy = _arr(x), _arr(grad_out)
    stride, pads, dilation, groups, _ = _conv_args(x, weight, stride, padding, dilation, groups, "conv2d")
    w, gy = _match(weight, x, "weight"), _match(gy, x, "grad_out")
    B = backend_of(x)
    gx = B.conv.conv2d_backward_input(gy, w, tuple(x.shape), stride, pads, dilation, groups)
    gw = B.conv.conv2d_backward_weight(x, gy, tuple(w.shape), stride, pads, dilation, groups)
    gb = B.tensor.sum_except_channels(gy) if bias is not None else None
    return gx, gw, gb


def _transpose_geometry(x, weight, stride, padding, output_padding, groups, dilation):
    _check_rank(x, 4, "conv_transpose2d")
    if len(weight.shape) != 4:
        raise ValueError(f"conv_transpose2d: weight must be 4-D (in, out/groups, kh, kw), got {tuple(weight.shape)}")
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    ph, pw = _pair(padding, "padding")
    oph, opw = _pair(output_padding, "output_padding")
    groups = int(groups)
    if oph >= max(stride[0], dilation[0]) or opw >= max(stride[1], dilation[1]) or min(oph, opw) < 0:
        raise ValueError(f"conv_transpose2d: output_padding {(oph, opw)} must be smaller than stride or dilation")
    C, (Ci, Og, KH, KW) = x.shape[1], weight.shape
    if C != Ci:
        raise ValueError(f"conv_transpose2d: weight {tuple(weight.shape)} expects {Ci} input channels, got {C}")
    if C % groups:
        raise ValueError(f"conv_transpose2d: in_channels={C} must be divisible by groups={groups}")
    H, W = x.shape[2:]
    OH = (H - 1) * stride[0] - 2 * ph + dilation[0] * (KH - 1) + oph + 1
    OW = (W - 1) * stride[1] - 2 * pw + dilation[1] * (KW - 1) + opw + 1
    if OH < 1 or OW < 1:
        raise ValueError(f"conv_transpose2d: padding {(ph, pw)} leaves an empty output")
    out_shape = (x.shape[0], Og * groups, OH, OW)
    # output_padding only enlarges the output at the bottom/right: rows no window of the adjoint conv reaches
    return out_shape, stride, (ph, ph, pw, pw), dilation, groups


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """The adjoint of conv2d: weight is IOHW (in, out/groups, kh, kw)."""
    x = _arr(x)
    out_shape, stride, pads, dilation, groups = _transpose_geometry(
        x, weight, stride, padding, output_padding, groups, dilation)
    w = _match(weight, x, "weight")
    _check_bias(bias, out_shape[1], "conv_transpose2d")
    B = backend_of(x)
    # the forward of the transposed conv is conv2d's input gradient, with output_padding as extra bottom/right pad
    y = B.conv.conv2d_backward_input(x, w, out_shape, stride, pads, dilation, groups)
    if bias is not None:
        y = _add_channel_bias(y, _match(bias, x, "bias"))
    return y


def conv_transpose2d_backward(grad_out, x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                              dilation=1):
    x, gy = _arr(x), _arr(grad_out)
    out_shape, stride, pads, dilation, groups = _transpose_geometry(
        x, weight, stride, padding, output_padding, groups, dilation)
    w, gy = _match(weight, x, "weight"), _match(gy, x, "grad_out")
    B = backend_of(x)
    gx = B.conv.conv2d_forward(gy, w, None, stride, pads, dilation, groups)
    if tuple(gx.shape) != tuple(x.shape):  # output_padding >= stride (allowed when dilation > stride)
        gx = np.ascontiguousarray(to_numpy(gx)[:, :, : x.shape[2], : x.shape[3]])
    gw = B.conv.conv2d_backward_weight(gy, x, tuple(w.shape), stride, pads, dilation, groups)
    gb = B.tensor.sum_except_channels(gy) if bias is not None else None
    return gx, gw, gb


def _add_channel_bias(y, b):
    if is_device_array(y):
        ones = np.ones(y.shape[1], np.float32)
        # a 1x1 depthwise "conv" adding the bias keeps it on the device without a dedicated kernel
        w = backend_of(y).tensor.to_device(ones.astype(y.dtype).reshape(-1, 1, 1, 1))
        return backend_of(y).conv.conv2d_forward(y, w, b, (1, 1), (0, 0, 0, 0), (1, 1), y.shape[1])
    y += b.reshape(1, -1, 1, 1)
    return y


# ----------------------------------------------------------------------------------------------- pooling


def pool_output_size(n, k, s, pb, pe, d=1, ceil_mode=False):
    """PyTorch's pooling output size over n + pb + pe; with ceil_mode the last window must start inside the input
    or the left padding."""
    span = n + pb + pe - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + pb:
        out -= 1
    return out


def _pool_args(x, kernel_size, stride, padding, dilation, ceil_mode, op):
    _check_rank(x, 4, op)
    kernel = _pair(kernel_size, "kernel_size")
    stride = kernel if stride is None or (isinstance(stride, (tuple, list)) and not stride) else _pair(stride, "stride")
    dilation = _pair(dilation, "dilation")
    if min(kernel) < 1 or min(stride) < 1 or min(dilation) < 1:
        raise ValueError(f"{op}: kernel_size, stride and dilation must be >= 1")
    pads = _resolve_padding(padding, x.shape[2:], kernel, stride, dilation)
    if not isinstance(padding, str) and (pads[0] * 2 > kernel[0] or pads[2] * 2 > kernel[1]):
        raise ValueError(f"{op}: padding {padding!r} must be at most half the kernel size {kernel}")
    out = (pool_output_size(x.shape[2], kernel[0], stride[0], pads[0], pads[1], dilation[0], ceil_mode),
           pool_output_size(x.shape[3], kernel[1], stride[1], pads[2], pads[3], dilation[1], ceil_mode))
    if min(out) < 1:
        raise ValueError(f"{op}: kernel {kernel} is larger than the padded input {tuple(x.shape[2:])}")
    return kernel, stride, pads, dilation, out


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    x = _arr(x)
    kernel, stride, pads, dilation, out = _pool_args(x, kernel_size, stride, padding, dilation, ceil_mode,
                                                     "max_pool2d")
    y, idx = backend_of(x).pool.max_pool2d_forward(x, kernel, stride, pads, dilation, out, bool(return_indices))
    return (y, idx) if return_indices else y


def max_pool2d_backward(grad_out, indices, x_shape):
    gy = _arr(grad_out)
    return backend_of(gy).pool.max_pool2d_backward(gy, indices, tuple(x_shape))


def _avg_args(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    kernel, stride, pads, _, out = _pool_args(x, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d")
    if isinstance(padding, str):
        count_include_pad = False  # TensorFlow/Keras "same" averages only the real pixels
    divisor = int(divisor_override or 0)
    if divisor_override is not None and divisor <= 0:
        raise ValueError("avg_pool2d: divisor_override must be positive")
    return kernel, stride, pads, out, bool(count_include_pad), divisor


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    x = _arr(x)
    kernel, stride, pads, out, cip, div = _avg_args(x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                                                    divisor_override)
    return backend_of(x).pool.avg_pool2d_forward(x, kernel, stride, pads, out, cip, div)


def avg_pool2d_backward(grad_out, x_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    gy = _arr(grad_out)
    shape_only = _Shape(tuple(x_shape))
    kernel, stride, pads, out, cip, div = _avg_args(shape_only, kernel_size, stride, padding, ceil_mode,
                                                    count_include_pad, divisor_override)
    return backend_of(gy).pool.avg_pool2d_backward(gy, tuple(x_shape), kernel, stride, pads, cip, div)


class _Shape:
    """Stands in for an array where only the shape is needed (backward passes get x_shape, not x)."""

    def __init__(self, shape):
        self.shape = shape


def adaptive_avg_pool2d(x, output_size):
    x = _arr(x)
    _check_rank(x, 4, "adaptive_avg_pool2d")
    out = _adaptive_size(output_size, x.shape)
    return backend_of(x).pool.adaptive_avg_pool2d_forward(x, out)


def adaptive_avg_pool2d_backward(grad_out, x_shape):
    gy = _arr(grad_out)
    return backend_of(gy).pool.adaptive_avg_pool2d_backward(gy, tuple(x_shape))


def adaptive_max_pool2d(x, output_size, return_indices=False):
    x = _arr(x)
    _check_rank(x, 4, "adaptive_max_pool2d")
    y, idx = backend_of(x).pool.adaptive_max_pool2d_forward(x, _adaptive_size(output_size, x.shape))
    return (y, idx) if return_indices else y


def _adaptive_size(output_size, shape):
    if isinstance(output_size, (tuple, list)):
        oh, ow = (shape[2] if output_size[0] is None else int(output_size[0]),
                  shape[3] if output_size[1] is None else int(output_size[1]))
    else:
        oh = ow = int(output_size)
    if oh < 1 or ow < 1:
        raise ValueError(f"adaptive pooling: output_size must be positive, got {output_size!r}")
    return oh, ow


def _reshape(a, shape):
    return a.reshape(shape)


def global_avg_pool2d(x, keepdims=False):
    y = adaptive_avg_pool2d(x, 1)
    return y if keepdims else _reshape(y, y.shape[:2])


def global_avg_pool2d_backward(grad_out, x_shape):
    gy = _arr(grad_out)
    return adaptive_avg_pool2d_backward(_reshape(gy, (x_shape[0], x_shape[1], 1, 1)), x_shape)


def global_max_pool2d(x, keepdims=False, return_indices=False):
    y, idx = adaptive_max_pool2d(x, 1, return_indices=True)
    if not keepdims:
        y = _reshape(y, y.shape[:2])
    return (y, idx) if return_indices else y


def global_max_pool2d_backward(grad_out, indices, x_shape):
    gy = _arr(grad_out)
    return max_pool2d_backward(_reshape(gy, (x_shape[0], x_shape[1], 1, 1)), indices, x_shape)


def channel_max_pool(x, kernel_size, return_indices=False):
    """Max over each run of ``kernel_size`` consecutive channels: (N, C, H, W) -> (N, C/k, H, W)."""
    x = _arr(x)
    _check_rank(x, 4, "channel_max_pool")
    k = int(kernel_size)
    if k < 1 or x.shape[1] % k:
        raise ValueError(f"channel_max_pool: kernel_size {k} must divide the channel count {x.shape[1]}")
    y, idx = backend_of(x).pool.channel_max_pool_forward(x, k)
    return (y, idx) if return_indices else y


def channel_max_pool_backward(grad_out, indices, x_shape):
    gy = _arr(grad_out)
    return backend_of(gy).pool.channel_max_pool_backward(gy, indices, tuple(x_shape))


# ----------------------------------------------------------------------------------------------- normalisation


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """PyTorch's LRN: x / (k + alpha/size * sum of squares over `size` neighbouring channels)^beta."""
    x = _arr(x)
    _check_rank(x, 4, "local_response_norm")
    if int(size) < 1:
        raise ValueError("local_response_norm: size must be >= 1")
    return backend_of(x).norm.lrn_forward(x, int(size), float(alpha), float(beta), float(k))


def local_response_norm_backward(grad_out, x, size, alpha=1e-4, beta=0.75, k=1.0):
    x = _arr(x)
    gy = _match(_arr(grad_out), x, "grad_out")
    return backend_of(x).norm.lrn_backward(gy, x, int(size), float(alpha), float(beta), float(k))


def _bn_check(x, running_mean, running_var):
    if len(x.shape) not in (2, 4):
        raise ValueError(f"batch_norm: expected a 2-D or 4-D input, got shape {tuple(x.shape)}")
    C = x.shape[1]
    for name, a in (("running_mean", running_mean), ("running_var", running_var)):
        if a is not None and tuple(a.shape) != (C,):
            raise ValueError(f"batch_norm: {name} has shape {tuple(a.shape)}, expected ({C},)")


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Normalise per channel; in training mode with batch statistics, updating the running ones in place."""
    x = _arr(x)
    _bn_check(x, running_mean, running_var)
    B = backend_of(x)
    w, b = _match(weight, x, "weight"), _match(bias, x, "bias")
    if training:
        n = x.shape[0] * (x.shape[2] * x.shape[3] if len(x.shape) == 4 else 1)
        if n < 2:
            raise ValueError(f"batch_norm: training needs more than 1 value per channel, got input {tuple(x.shape)}")
        mean, var = B.norm.batch_norm_stats(x)
        if running_mean is not None and running_var is not None:
            _update_running(running_mean, running_var, mean, var, n, momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: inference mode needs running_mean and running_var")
        mean, var = _match(running_mean, x, "running_mean"), _match(running_var, x, "running_var")
    return B.norm.batch_norm_forward(x, mean, var, w, b, float(eps))


def _update_running(running_mean, running_var, mean, var, n, momentum):
    m = float(momentum)
    mean_h = to_numpy(mean).astype(np.float64)
    var_h = to_numpy(var).astype(np.float64) * n / (n - 1)  # running_var keeps the unbiased estimate
    if is_device_array(running_mean):
        B = backend_of(running_mean)
        rm = to_numpy(running_mean) * (1 - m) + m * mean_h
        rv = to_numpy(running_var) * (1 - m) + m * var_h
        running_mean.copy_to_device(rm.astype(running_mean.dtype))
        running_var.copy_to_device(rv.astype(running_var.dtype))
        del B
        return
    running_mean *= (1 - m)
    running_mean += (m * mean_h).astype(running_mean.dtype)
    running_var *= (1 - m)
    running_var += (m * var_h).astype(running_var.dtype)


def batch_norm_backward(grad_out, x, running_mean, running_var, weight=None, training=False, eps=1e-5):
    x = _arr(x)
    gy = _match(_arr(grad_out), x, "grad_out")
    B = backend_of(x)
    if training:
        mean, var = B.norm.batch_norm_stats(x)
    else:
        mean, var = _match(running_mean, x, "running_mean"), _match(running_var, x, "running_var")
    return B.norm.batch_norm_backward(gy, x, mean, var, _match(weight, x, "weight"), float(eps), bool(training))


# ----------------------------------------------------------------------------------------------- dense


def linear(x, weight, bias=None):
    x = _arr(x)
    _check_rank(x, 2, "linear")
    if len(weight.shape) != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"linear: weight {tuple(weight.shape)} expects {weight.shape[-1]} input features, "
                         f"got {x.shape[1]}")
    _check_bias(bias, weight.shape[0], "linear")
    return backend_of(x).dense.linear_forward(x, _match(weight, x, "weight"), _match(bias, x, "bias"))


def linear_backward(grad_out, x, weight, bias=None):
    x = _arr(x)
    gy = _match(_arr(grad_out), x, "grad_out")
    gx, gw, gb = backend_of(x).dense.linear_backward(gy, x, _match(weight, x, "weight"))
    return gx, gw, (gb if bias is not None else None)


# ----------------------------------------------------------------------------------------------- activations


def _act(x, name, a=0.0):
    x = _arr(x)
    return backend_of(x).act.act_forward(x, ACTIVATIONS[name], a)


def _act_back(grad_out, x, y, name, a=0.0):
    ref = x if x is not None else y
    ref = _arr(ref)
    gy = _match(_arr(grad_out), ref, "grad_out")
    x = _match(_arr(x), ref, "x") if x is not None else None
    y = _match(_arr(y), ref, "y") if y is not None else None
    return backend_of(gy).act.act_backward(gy, x, y, ACTIVATIONS[name], a)


def relu(x):
    return _act(x, "relu")


def leaky_relu(x, negative_slope=0.01):
    return _act(x, "leaky_relu", float(negative_slope))


def elu(x, alpha=1.0):
    return _act(x, "elu", float(alpha))


def selu(x):
    return _act(x, "selu")


def tanh(x):
    return _act(x, "tanh")


def sigmoid(x):
    return _act(x, "sigmoid")


def hardsigmoid(x):
    return _act(x, "hardsigmoid")


def hardswish(x):
    return _act(x, "hardswish")


def relu_backward(grad_out, x):
    return _act_back(grad_out, x, None, "relu")


def leaky_relu_backward(grad_out, x, negative_slope=0.01):
    return _act_back(grad_out, x, None, "leaky_relu", float(negative_slope))


def elu_backward(grad_out, x, alpha=1.0):
    return _act_back(grad_out, x, elu(x, alpha), "elu", float(alpha))


def selu_backward(grad_out, x):
    return _act_back(grad_out, x, selu(x), "selu")


def tanh_backward(grad_out, y):
    return _act_back(grad_out, None, y, "tanh")


def sigmoid_backward(grad_out, y):
    return _act_back(grad_out, None, y, "sigmoid")


def hardsigmoid_backward(grad_out, x):
    return _act_back(grad_out, x, None, "hardsigmoid")


def hardswish_backward(grad_out, x):
    return _act_back(grad_out, x, None, "hardswish")


_PARAM = {"leaky_relu": ("negative_slope", 0.01), "elu": ("alpha", 1.0)}


def activation(x, name, **params):
    """Apply an activation by name ("relu", ..., "softmax", "log_softmax", "linear")."""
    name = _act_name(name)
    if name in ("softmax", "log_softmax"):
        return (softmax if name == "softmax" else log_softmax)(x, **params)
    if name == "linear":
        return _arr(x)
    key, default = _PARAM.get(name, (None, 0.0))
    return _act(x, name, float(params.get(key, default)) if key else 0.0)


def activation_backward(grad_out, x, y, name, **params):
    """Gradient through a named activation; x is its input and y its output (either may be None where unused)."""
    name = _act_name(name)
    if name == "softmax":
        return softmax_backward(grad_out, y, **params)
    if name == "log_softmax":
        return log_softmax_backward(grad_out, y, **params)
    if name == "linear":
        return _arr(grad_out)
    key, default = _PARAM.get(name, (None, 0.0))
    a = float(params.get(key, default)) if key else 0.0
    if name in ("elu", "selu") and y is None:
        y = activation(x, name, **params)
    return _act_back(grad_out, x, y, name, a)


def _act_name(name):
    n = str(name).lower()
    if n not in ACTIVATIONS and n not in ("softmax", "log_softmax"):
        known = ", ".join(sorted(list(ACTIVATIONS) + ["softmax", "log_softmax"]))
        raise ValueError(f"unknown activation {name!r}; known: {known}")
    return n


def _rows(x, dim):
    """View x as (rows, classes) with `dim` last; returns the view and a function undoing it."""
    nd = len(x.shape)
    dim = dim % nd
    if dim == nd - 1:
        shape = x.shape
        return _reshape(x, (-1, shape[-1]) if nd > 1 else (1, shape[0])), lambda r: _reshape(r, shape)
    if is_device_array(x):
        raise ValueError("softmax on the GPU works along the last axis, or axis 1 of an (N, C) array")
    moved = np.ascontiguousarray(np.moveaxis(x, dim, -1))
    mshape = moved.shape
    return moved.reshape(-1, mshape[-1]), lambda r: np.ascontiguousarray(np.moveaxis(r.reshape(mshape), -1, dim))


def _softmax(x, dim, log):
    x = _arr(x)
    rows, back = _rows(x, dim)
    return back(backend_of(x).act.softmax_forward(rows, log))


def _softmax_back(grad_out, y, dim, log):
    y = _arr(y)
    gy = _match(_arr(grad_out), y, "grad_out")
    yr, back = _rows(y, dim)
    gr, _ = _rows(gy, dim)
    return back(backend_of(y).act.softmax_backward(gr, yr, log))


def softmax(x, dim=1):
    return _softmax(x, dim, False)


def log_softmax(x, dim=1):
    return _softmax(x, dim, True)


def softmax_backward(grad_out, y, dim=1):
    return _softmax_back(grad_out, y, dim, False)


def log_softmax_backward(grad_out, y, dim=1):
    return _softmax_back(grad_out, y, dim, True)


def dropout(x, p=0.5, training=True, seed=None, return_mask=False):
    """Inverted dropout: zero each element with probability p and scale the rest by 1/(1-p)."""
    x = _arr(x)
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    B = backend_of(x)
    if not training or p == 0.0:
        mask = np.ones(x.shape, np.uint8)
        return (x, B.tensor.to_device(mask)) if return_mask else x
    if p == 1.0:
        mask = np.zeros(x.shape, np.uint8)
        y = B.tensor.to_device(np.zeros(x.shape, x.dtype))
        return (y, B.tensor.to_device(mask)) if return_mask else y
    if seed is None:
        seed = int(np.random.randint(0, 2**63 - 1, dtype=np.int64))
    y, mask = B.act.dropout_forward(x, p, int(seed) & (2**64 - 1))
    return (y, mask) if return_mask else y


def dropout_backward(grad_out, mask, p):
    gy = _arr(grad_out)
    p = float(p)
    if p >= 1.0:
        return gy * 0
    return backend_of(gy).act.dropout_backward(gy, mask, p)


# ----------------------------------------------------------------------------------------------- resizing


_MODES = {"nearest": 0, "bilinear": 1}


def _interp_args(x_shape, size, scale_factor, mode, align_corners):
    if mode not in _MODES:
        raise ValueError(f"interpolate: mode must be 'nearest' or 'bilinear', got {mode!r}")
    if len(x_shape) != 4:
        raise ValueError(f"interpolate: expected a 4-D input, got shape {tuple(x_shape)}")
    if mode == "nearest" and align_corners is not None:
        raise ValueError("interpolate: align_corners only applies to mode='bilinear'")
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor")
    H, W = x_shape[2:]
    if size is not None:
        out = _pair(size, "size")
        scale = (H / out[0], W / out[1])
    else:
        sf = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor, scale_factor)
        sf = (float(sf[0]), float(sf[1]))
        if min(sf) <= 0:
            raise ValueError(f"interpolate: scale_factor must be positive, got {scale_factor!r}")
        out = (int(math.floor(H * sf[0])), int(math.floor(W * sf[1])))
        scale = (1.0 / sf[0], 1.0 / sf[1])  # PyTorch maps coordinates with the user's factor, not in/out
        # ... except on an axis whose size does not change, which it copies whatever the factor
        scale = tuple(1.0 if o == n else s for o, n, s in zip(out, (H, W), scale))
    if min(out) < 1:
        raise ValueError(f"interpolate: output size {out} is empty")
    return out, _MODES[mode], bool(align_corners), scale


def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None):
    x = _arr(x)
    out, m, ac, scale = _interp_args(x.shape, size, scale_factor, mode, align_corners)
    return backend_of(x).resize.interpolate_forward(x, out, m, ac, scale)


def interpolate_backward(grad_out, x_shape, size=None, scale_factor=None, mode="nearest", align_corners=None):
    gy = _arr(grad_out)
    out, m, ac, scale = _interp_args(tuple(x_shape), size, scale_factor, mode, align_corners)
    if tuple(gy.shape[2:]) != tuple(out):
        raise ValueError(f"interpolate backward: grad_out spatial size {tuple(gy.shape[2:])} != output {out}")
    return backend_of(gy).resize.interpolate_backward(gy, tuple(x_shape), m, ac, scale)


# ----------------------------------------------------------------------------------------------- padding, merging


_PAD_MODES = {"constant": 0, "reflect": 1, "replicate": 2}


def _pad_args(x_shape, pad, mode):
    if mode not in _PAD_MODES:
        raise ValueError(f"pad: mode must be one of {', '.join(_PAD_MODES)}, got {mode!r}")
    if len(x_shape) != 4:
        raise ValueError(f"pad: expected a 4-D input, got shape {tuple(x_shape)}")
    pad = [int(p) for p in pad]
    if len(pad) not in (2, 4):
        raise ValueError(f"pad: give (left, right) or (left, right, top, bottom), got {pad}")
    left, right = pad[:2]
    top, bottom = pad[2:] if len(pad) == 4 else (0, 0)
    pads = (top, bottom, left, right)
    if min(pads) < 0:
        raise ValueError("pad: negative padding (cropping) is not supported")
    if mode == "reflect" and (max(top, bottom) >= x_shape[2] or max(left, right) >= x_shape[3]):
        raise ValueError(f"pad: reflect padding {pad} must be smaller than the input size {tuple(x_shape[2:])}")
    return pads, _PAD_MODES[mode]


def pad(x, pad, mode="constant", value=0.0):
    x = _arr(x)
    pads, m = _pad_args(x.shape, pad, mode)
    return backend_of(x).tensor.pad_forward(x, pads, m, float(value))


def pad_backward(grad_out, x_shape, pad, mode="constant"):
    gy = _arr(grad_out)
    pads, m = _pad_args(tuple(x_shape), pad, mode)
    return backend_of(gy).tensor.pad_backward(gy, tuple(x_shape), pads, m)


def add(*xs):
    """Elementwise sum of same-shaped arrays (residual connections)."""
    if len(xs) == 1 and isinstance(xs[0], (list, tuple)):
        xs = tuple(xs[0])
    if not xs:
        raise ValueError("add: needs at least one input")
    xs = [_arr(a) for a in xs]
    for a in xs[1:]:
        if tuple(a.shape) != tuple(xs[0].shape):
            raise ValueError(f"add: shapes differ: {tuple(xs[0].shape)} and {tuple(a.shape)}")
    B = backend_of(xs[0])
    y = xs[0]
    for a in xs[1:]:
        y = B.tensor.add(y, _match(a, xs[0], "input"))
    return y


def concat(xs, dim=1):
    """Concatenate along channels (dim=1), as inception blocks and skip connections do."""
    xs = [_arr(a) for a in xs]
    if not xs:
        raise ValueError("concat: needs at least one input")
    nd = len(xs[0].shape)
    dim = dim % nd
    for a in xs[1:]:
        if len(a.shape) != nd or any(a.shape[i] != xs[0].shape[i] for i in range(nd) if i != dim):
            raise ValueError(f"concat: shapes {tuple(xs[0].shape)} and {tuple(a.shape)} differ outside dim {dim}")
    if dim != 1:
        if any(is_device_array(a) for a in xs):
            raise ValueError("concat on the GPU is along channels (dim=1)")
        return np.concatenate(xs, axis=dim)
    return backend_of(xs[0]).tensor.concat_channels([_match(a, xs[0], "input") for a in xs])


def concat_backward(grad_out, sizes, dim=1):
    gy = _arr(grad_out)
    dim = dim % len(gy.shape)
    if dim != 1:
        return [np.ascontiguousarray(p) for p in np.split(gy, np.cumsum(sizes)[:-1], axis=dim)]
    return backend_of(gy).tensor.split_channels(gy, list(sizes))


# ----------------------------------------------------------------------------------------------- devices


def to_device(a, device="auto"):
    """Move an array to "cpu" (numpy) or "cuda" (a Numba device array); "auto" picks CUDA when available."""
    dev = resolve_device(device)
    if dev == "cpu":
        return to_numpy(a)
    if is_device_array(a):
        return a
    return get_backend("cuda").tensor.to_device(np.ascontiguousarray(a))


def to_numpy(a):
    """A numpy array of `a`, copying it back from the GPU when it lives there."""
    if is_device_array(a):
        return a.copy_to_host()
    return np.asarray(a)
