"""Fully connected layers: linear (x @ W^T + b, weight (out, in))."""

from ..device import backend_of
from ._args import _arr, _check_bias, _check_rank, _expect_shape, _match


def linear(x, weight, bias=None):
    x = _arr(x)
    _check_rank(x, 2, "linear")
    if len(weight.shape) != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"linear: weight {tuple(weight.shape)} expects {tuple(weight.shape)[-1]} input features, "
                         f"got {x.shape[1]}")
    _check_bias(bias, weight.shape[0], "linear")
    return backend_of(x).dense.linear_forward(x, _match(weight, x, "weight"), _match(bias, x, "bias"))


def linear_backward(grad_out, x, weight, bias=None):
    x = _arr(x)
    gy = _match(_arr(grad_out), x, "grad_out")
    _expect_shape(gy.shape, (x.shape[0], weight.shape[0]), "linear backward")
    gx, gw, gb = backend_of(x).dense.linear_backward(gy, x, _match(weight, x, "weight"))
    return gx, gw, (gb if bias is not None else None)
