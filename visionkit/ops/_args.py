"""Argument handling shared by the ops: array coercion, pairs, padding rules, output-size formulas."""

import numpy as np

from ..backends import conv_output_size  # noqa: F401  (re-exported by visionkit.ops)
from ..device import backend_of, get_backend, is_device_array, resolve_device


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
    if type(a) is np.ndarray and type(like) is np.ndarray:  # the common case first: a fused block matches 18 arrays
        return a if a.dtype == like.dtype and a.flags.c_contiguous else np.ascontiguousarray(a, dtype=like.dtype)
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


def _check_bias(bias, n, op):
    if bias is not None and tuple(bias.shape) != (n,):
        raise ValueError(f"{op}: bias has shape {tuple(bias.shape)}, expected ({n},)")


def _expect_shape(got, want, op, what="grad_out"):
    """Backward passes index arrays by shapes they are told: a wrong one must stop here, not in a kernel."""
    if tuple(got) != tuple(want):
        raise ValueError(f"{op}: {what} has shape {tuple(got)}, expected {tuple(want)}")


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


def pool_output_size(n, k, s, pb, pe, d=1, ceil_mode=False):
    """PyTorch's pooling output size over n + pb + pe; with ceil_mode the last window must start inside the input
    or the left padding."""
    span = n + pb + pe - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + pb:
        out -= 1
    return out


class _Shape:
    """Stands in for an array where only the shape is needed (backward passes get x_shape, not x)."""

    def __init__(self, shape):
        self.shape = shape


def _reshape(a, shape):
    return a.reshape(shape)


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
