"""PReLU, the activation with a learned negative slope per channel (``torch.nn.functional.prelu``).

    y = x           where x > 0
    y = alpha * x   elsewhere

``x`` is (N, C, ...) (NCHW feature maps or (N, C) dense outputs); ``alpha`` holds C slopes, one per channel, or a
single slope shared by every channel. The kernels are ``visionkit.backends.{cpu,cuda}.prelu``; the backend is the
one that owns ``x``.
"""

from ..device import backend_of
from ._args import _arr, _expect_shape, _match


def _args(x, alpha, op):
    x = _arr(x)
    if len(x.shape) < 2:
        raise ValueError(f"{op}: expected an input (N, C, ...) of rank >= 2, got shape {tuple(x.shape)}")
    a = _match(_arr(alpha, "alpha"), x, "alpha")
    if len(a.shape) != 1 or a.shape[0] not in (1, x.shape[1]):
        raise ValueError(
            f"{op}: alpha must hold 1 or {x.shape[1]} (the channels) slopes, got shape {tuple(a.shape)}"
        )
    return x, a


def prelu(x, alpha):
    """y = x where x > 0, else alpha[c] * x (alpha: (C,) per channel or (1,) shared)."""
    x, a = _args(x, alpha, "prelu")
    return backend_of(x).prelu.prelu_forward(x, a)


def prelu_backward(grad_out, x, alpha):
    """(grad_x, grad_alpha) of prelu at ``x``; grad_alpha has alpha's shape (summed over batch and space)."""
    x, a = _args(x, alpha, "prelu backward")
    gy = _match(_arr(grad_out, "grad_out"), x, "grad_out")
    _expect_shape(gy.shape, x.shape, "prelu backward")
    return backend_of(x).prelu.prelu_backward(gy, x, a)
