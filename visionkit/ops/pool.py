"""Pooling: max, average, adaptive, global and across channels."""

import numpy as np

from ..device import backend_of, is_device_array
from ._args import _Shape, _arr, _check_rank, _expect_shape, _pair, _reshape, _resolve_padding, pool_output_size


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


def _check_indices(gy, indices, x_shape, limit, op):
    """The backward scatters gy at these indices: they must match gy and point inside the input."""
    if len(x_shape) != 4 or len(gy.shape) != 4 or tuple(gy.shape[:2]) != tuple(x_shape[:2]):
        raise ValueError(f"{op}: grad_out {tuple(gy.shape)} does not belong to an input of shape {tuple(x_shape)}")
    _expect_shape(indices.shape, gy.shape, op, "indices")
    if not is_device_array(indices) and indices.size:
        lo, hi = int(np.min(indices)), int(np.max(indices))
        if lo < -1 or hi >= limit:
            raise ValueError(f"{op}: indices range over [{lo}, {hi}], outside the input's [0, {limit})")


def max_pool2d_backward(grad_out, indices, x_shape):
    gy = _arr(grad_out)
    x_shape = tuple(x_shape)
    _check_indices(gy, indices, x_shape, x_shape[2] * x_shape[3] if len(x_shape) == 4 else 0, "max_pool2d backward")
    return backend_of(gy).pool.max_pool2d_backward(gy, indices, x_shape)


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
    _expect_shape(gy.shape, tuple(x_shape[:2]) + out, "avg_pool2d backward")
    return backend_of(gy).pool.avg_pool2d_backward(gy, tuple(x_shape), kernel, stride, pads, cip, div)


def adaptive_avg_pool2d(x, output_size):
    x = _arr(x)
    _check_rank(x, 4, "adaptive_avg_pool2d")
    out = _adaptive_size(output_size, x.shape)
    return backend_of(x).pool.adaptive_avg_pool2d_forward(x, out)


def adaptive_avg_pool2d_backward(grad_out, x_shape):
    gy = _arr(grad_out)
    if len(gy.shape) != 4 or len(x_shape) != 4 or tuple(gy.shape[:2]) != tuple(x_shape[:2]):
        raise ValueError(f"adaptive_avg_pool2d backward: grad_out {tuple(gy.shape)} does not belong to an input "
                         f"of shape {tuple(x_shape)}")
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


def global_avg_pool2d(x, keepdims=False):
    y = adaptive_avg_pool2d(x, 1)
    return y if keepdims else _reshape(y, y.shape[:2])


def _global_grad(gy, x_shape, op):
    if gy.size != x_shape[0] * x_shape[1]:
        raise ValueError(f"{op}: grad_out {tuple(gy.shape)} does not match ({x_shape[0]}, {x_shape[1]})")


def global_avg_pool2d_backward(grad_out, x_shape):
    gy = _arr(grad_out)
    _global_grad(gy, x_shape, "global_avg_pool2d backward")
    return adaptive_avg_pool2d_backward(_reshape(gy, (x_shape[0], x_shape[1], 1, 1)), x_shape)


def global_max_pool2d(x, keepdims=False, return_indices=False):
    y, idx = adaptive_max_pool2d(x, 1, return_indices=True)
    if not keepdims:
        y = _reshape(y, y.shape[:2])
    return (y, idx) if return_indices else y


def global_max_pool2d_backward(grad_out, indices, x_shape):
    gy = _arr(grad_out)
    _global_grad(gy, x_shape, "global_max_pool2d backward")
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
    x_shape = tuple(x_shape)
    if len(x_shape) != 4 or len(gy.shape) != 4 or gy.shape[0] != x_shape[0] or gy.shape[2:] != x_shape[2:]:
        raise ValueError(f"channel_max_pool backward: grad_out {tuple(gy.shape)} does not belong to an input "
                         f"of shape {x_shape}")
    _expect_shape(indices.shape, gy.shape, "channel_max_pool backward", "indices")
    if not is_device_array(indices) and indices.size and (np.min(indices) < 0 or np.max(indices) >= x_shape[1]):
        raise ValueError("channel_max_pool backward: indices point outside the input's channels")
    return backend_of(gy).pool.channel_max_pool_backward(gy, indices, tuple(x_shape))
