"""Finite-difference gradient checker (float64).

The scalar under test is loss = sum(forward(*inputs) * R) for a fixed random projection R of the output, so the
op's backward, called with grad_out = R, must return d loss / d input for each differentiable input. The numerical
gradient uses central differences, (loss(x + eps) - loss(x - eps)) / (2 eps), one element at a time, on float64
copies of the inputs (keep the shapes tiny: two forward calls per element).
"""

import numpy as np


def _as_input(a):
    if isinstance(a, np.ndarray):
        return np.array(a, dtype=np.float64, order="C", copy=True)
    return a


def numerical_gradient(forward, inputs, index, R, eps=1e-6):
    """d sum(forward(*inputs) * R) / d inputs[index], by central differences."""
    inputs = list(inputs)
    x = inputs[index]
    g = np.zeros(x.shape, dtype=np.float64)
    flat = x.reshape(-1)  # a view: x is C-contiguous (see _as_input)
    for k in range(flat.size):
        orig = flat[k]
        flat[k] = orig + eps
        fp = float(np.sum(np.asarray(forward(*inputs), dtype=np.float64) * R))
        flat[k] = orig - eps
        fm = float(np.sum(np.asarray(forward(*inputs), dtype=np.float64) * R))
        flat[k] = orig
        g.reshape(-1)[k] = (fp - fm) / (2.0 * eps)
    return g


def check_gradients(forward, inputs, backward, wrt=None, eps=1e-6, rtol=1e-5, atol=1e-6, seed=0):
    """Compare an op's analytic gradients with central differences.

    forward(*inputs) -> output array (float64 in, float64 out).
    backward(R, *inputs) -> one gradient per entry of ``wrt`` (a sequence, or a single array when wrt has one entry).
    wrt: indices into ``inputs`` to check (default: every ndarray input).
    Returns the list of (analytic, numerical) pairs for further assertions.
    """
    inputs = [_as_input(a) for a in inputs]
    if wrt is None:
        wrt = [i for i, a in enumerate(inputs) if isinstance(a, np.ndarray)]
    wrt = list(wrt)
    out = np.asarray(forward(*inputs))
    assert out.dtype == np.float64, f"forward returned {out.dtype} for float64 inputs"
    rng = np.random.default_rng(seed)
    R = rng.standard_normal(out.shape)
    grads = backward(R.copy(), *[a.copy() if isinstance(a, np.ndarray) else a for a in inputs])
    if len(wrt) == 1 and isinstance(grads, np.ndarray):
        grads = [grads]
    grads = list(grads)
    assert len(grads) == len(wrt), f"backward returned {len(grads)} gradients, expected {len(wrt)}"
    pairs = []
    for i, ga in zip(wrt, grads):
        assert ga is not None, f"gradient of input {i} is None"
        ga = np.asarray(ga)
        assert ga.shape == inputs[i].shape, f"gradient of input {i}: shape {ga.shape} != {inputs[i].shape}"
        assert ga.dtype == np.float64, f"gradient of input {i}: dtype {ga.dtype}, expected float64"
        gn = numerical_gradient(forward, inputs, i, R, eps)
        np.testing.assert_allclose(ga, gn, rtol=rtol, atol=atol, err_msg=f"gradient of input {i}")
        pairs.append((ga, gn))
    return pairs


def assert_close(actual, expected, dtype=np.float32, rtol=None, atol=None, err_msg=""):
    """Forward parity: ``actual`` (an op's output) has ``dtype`` and matches the float64 ``expected``.

    Default tolerances: 1e-4 (relative and absolute) for float32 outputs, 1e-10 for float64 ones. NaNs must match.
    """
    actual = np.asarray(actual)
    assert actual.dtype == dtype, f"{err_msg} dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == np.shape(expected), f"{err_msg} shape {actual.shape}, expected {np.shape(expected)}"
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(actual, expected, rtol=tol if rtol is None else rtol,
                               atol=tol if atol is None else atol, equal_nan=True, err_msg=err_msg)
