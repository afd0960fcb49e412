"""Normalisation: local response normalisation (AlexNet) and batch normalisation."""

from ..device import backend_of, is_device_array
from ._args import _arr, _check_rank, _expect_shape, _match


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
    _expect_shape(gy.shape, x.shape, "local_response_norm backward")
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
    B = backend_of(mean)
    rm, rv = running_mean, running_var
    if is_device_array(mean) and not is_device_array(rm):
        raise ValueError("batch_norm: the running statistics must live on the same device as the input")
    B.norm.batch_norm_update_running(rm, rv, _match(mean, rm, "mean"), _match(var, rv, "var"), float(momentum), n)


def batch_norm_backward(grad_out, x, running_mean, running_var, weight=None, training=False, eps=1e-5):
    x = _arr(x)
    gy = _match(_arr(grad_out), x, "grad_out")
    _expect_shape(gy.shape, x.shape, "batch_norm backward")
    B = backend_of(x)
    if training:
        mean, var = B.norm.batch_norm_stats(x)
    else:
        mean, var = _match(running_mean, x, "running_mean"), _match(running_var, x, "running_var")
    return B.norm.batch_norm_backward(gy, x, mean, var, _match(weight, x, "weight"), float(eps), bool(training))
