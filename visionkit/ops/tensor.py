"""Padding, residual adds, channel concatenation, and moving arrays between devices."""

import numpy as np

from ..device import backend_of, is_device_array
from ._args import _arr, _expect_shape, _match
from .conv import FUSABLE_ACTIVATIONS


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
    x_shape = tuple(x_shape)
    _expect_shape(gy.shape, x_shape[:2] + (x_shape[2] + pads[0] + pads[1], x_shape[3] + pads[2] + pads[3]),
                  "pad backward")
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


def add_act(a, b, activation):
    """activation(a + b) in one pass, activation "relu" or "relu6": a residual block's sum and activation, which
    inference runs fuse (visionkit/fusion.py). Equal to ``add`` then the activation, to the bit."""
    if activation not in FUSABLE_ACTIVATIONS:
        raise ValueError(f"add_act: activation must be one of {sorted(FUSABLE_ACTIVATIONS)}, got {activation!r}")
    a = _arr(a)
    b = _match(_arr(b), a, "input")
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"add_act: shapes differ: {tuple(a.shape)} and {tuple(b.shape)}")
    return backend_of(a).act.add_act(a, b, FUSABLE_ACTIVATIONS[activation])


def _scale_args(x, scale, op):
    x = _arr(x)
    s = _match(_arr(scale), x, "scale")
    if len(x.shape) < 2 or tuple(s.shape[:2]) != tuple(x.shape[:2]) or any(d != 1 for d in s.shape[2:]):
        raise ValueError(f"{op}: scale must be (N, C) or (N, C, 1, 1) for an input {tuple(x.shape)}, "
                         f"got {tuple(s.shape)}")
    return x, s.reshape(x.shape[0], x.shape[1]) if len(s.shape) != 2 else s


def scale_channels(x, scale):
    """x * scale per channel, scale (N, C) or (N, C, 1, 1): the multiply of a squeeze-and-excitation block."""
    x, s = _scale_args(x, scale, "scale_channels")
    return backend_of(x).tensor.scale_channels(x, s)


def scale_channels_backward(grad_out, x, scale):
    """(grad_x, grad_scale), grad_scale shaped like scale."""
    x, s = _scale_args(x, scale, "scale_channels backward")
    gy = _match(_arr(grad_out), x, "grad_out")
    _expect_shape(gy.shape, x.shape, "scale_channels backward")
    gx, gs = backend_of(x).tensor.scale_channels_backward(gy, x, s)
    return gx, gs.reshape(tuple(scale.shape))


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
    if sum(int(n) for n in sizes) != gy.shape[dim]:
        raise ValueError(f"concat backward: sizes {list(sizes)} do not add up to grad_out's {gy.shape[dim]} "
                         f"along dim {dim}")
    if dim != 1:
        return [np.ascontiguousarray(p) for p in np.split(gy, np.cumsum(sizes)[:-1], axis=dim)]
    return backend_of(gy).tensor.split_channels(gy, list(sizes))
