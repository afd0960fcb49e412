"""Activations, softmax and dropout."""

import numpy as np

from ..backends import ACTIVATIONS
from ..device import backend_of
from ._args import _arr, _expect_shape, _match, _reshape


def _act(x, name, a=0.0):
    x = _arr(x)
    return backend_of(x).act.act_forward(x, ACTIVATIONS[name], a)


def _act_back(grad_out, x, y, name, a=0.0):
    ref = x if x is not None else y
    ref = _arr(ref)
    gy = _match(_arr(grad_out), ref, "grad_out")
    _expect_shape(gy.shape, ref.shape, f"{name} backward")
    x = _match(_arr(x), ref, "x") if x is not None else None
    y = _match(_arr(y), ref, "y") if y is not None else None
    return backend_of(gy).act.act_backward(gy, x, y, ACTIVATIONS[name], a)


def relu(x):
    return _act(x, "relu")


def relu6(x):
    return _act(x, "relu6")


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


def relu6_backward(grad_out, x):
    return _act_back(grad_out, x, None, "relu6")


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


# the one parameter each activation takes, with its PyTorch name and default
ACTIVATION_PARAMETERS = {"leaky_relu": ("negative_slope", 0.01), "elu": ("alpha", 1.0), "softmax": ("dim", 1),
                         "log_softmax": ("dim", 1)}


def _act_args(name, params):
    """Validated (name, parameter) for a named activation; an unknown or misspelled parameter is an error."""
    n = str(name).lower()
    if n not in ACTIVATIONS and n not in ("softmax", "log_softmax"):
        known = ", ".join(sorted(list(ACTIVATIONS) + ["softmax", "log_softmax"]))
        raise ValueError(f"unknown activation {name!r}; known: {known}")
    key, default = ACTIVATION_PARAMETERS.get(n, (None, None))
    extra = set(params) - {key}
    if extra:
        takes = f"takes only {key!r}" if key else "takes no parameters"
        raise ValueError(f"activation {n!r} {takes}, got {', '.join(sorted(extra))}")
    return n, params.get(key, default)


def activation(x, name, **params):
    """Apply an activation by name ("relu", ..., "softmax", "log_softmax", "linear")."""
    name, a = _act_args(name, params)
    if name in ("softmax", "log_softmax"):
        return _softmax(x, int(a), name == "log_softmax")
    if name == "linear":
        return _arr(x)
    return _act(x, name, float(a or 0.0))


def activation_backward(grad_out, x, y, name, **params):
    """Gradient through a named activation; x is its input and y its output (either may be None where unused)."""
    name, a = _act_args(name, params)
    if name in ("softmax", "log_softmax"):
        return _softmax_back(grad_out, y, int(a), name == "log_softmax")
    if name == "linear":
        return _arr(grad_out)
    if name in ("elu", "selu") and y is None:
        y = activation(x, name, **params)
    return _act_back(grad_out, x, y, name, float(a or 0.0))


def _rows(x, dim):
    """View x as (outer, classes, inner) with the softmax axis in the middle (no copy: x is C-contiguous);
    returns the view and a function giving a result back x's shape."""
    shape = tuple(x.shape)  # a plain tuple: the CUDA simulator's shape rejects negative indices
    nd = len(shape)
    dim = dim % nd
    outer = int(np.prod(shape[:dim], dtype=np.int64))
    inner = int(np.prod(shape[dim + 1:], dtype=np.int64))
    return _reshape(x, (outer, shape[dim], inner)), lambda r: _reshape(r, shape)


def _softmax(x, dim, log):
    x = _arr(x)
    rows, back = _rows(x, dim)
    return back(backend_of(x).act.softmax_forward(rows, log))


def _softmax_back(grad_out, y, dim, log):
    y = _arr(y)
    gy = _match(_arr(grad_out), y, "grad_out")
    _expect_shape(gy.shape, y.shape, "softmax backward")
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
        return (x, B.tensor.to_device(np.ones(x.shape, np.uint8))) if return_mask else x
    if p == 1.0:
        y = B.tensor.to_device(np.zeros(x.shape, x.dtype))
        return (y, B.tensor.to_device(np.zeros(x.shape, np.uint8))) if return_mask else y
    if seed is None:
        seed = int(np.random.randint(0, 2**63 - 1, dtype=np.int64))
    y, mask = B.act.dropout_forward(x, p, int(seed) & (2**64 - 1))
    return (y, mask) if return_mask else y


def dropout_backward(grad_out, mask, p):
    gy = _arr(grad_out)
    _expect_shape(mask.shape, gy.shape, "dropout backward", "mask")
    p = float(p)
    if p >= 1.0:  # everything was dropped: no gradient reaches the input
        return backend_of(gy).tensor.to_device(np.zeros(gy.shape, gy.dtype))
    return backend_of(gy).act.dropout_backward(gy, mask, p)
