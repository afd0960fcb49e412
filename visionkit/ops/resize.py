"""Interpolation (nearest, bilinear) with PyTorch's size and coordinate rules."""

import math

from ..device import backend_of
from ._args import _arr, _pair


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
    if tuple(gy.shape) != tuple(x_shape[:2]) + tuple(out):
        raise ValueError(f"interpolate backward: grad_out has shape {tuple(gy.shape)}, expected "
                         f"{tuple(x_shape[:2]) + tuple(out)}")
    return backend_of(gy).resize.interpolate_backward(gy, tuple(x_shape), m, ac, scale)
