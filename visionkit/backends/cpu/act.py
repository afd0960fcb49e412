"""CPU elementwise activations, row softmax and seeded dropout.

Activation codes are ``visionkit.backends.ACTIVATIONS``. Dropout's mask comes from a counter-based hash
(splitmix64 of seed and flat index), so a seed gives the same mask on every backend and in any thread order.
"""

import math

import numpy as np
from numba import njit, prange

from .threads import launch

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


@njit(cache=True, inline="always")
def _act(v, code, a):
    if code == 0:  # relu; "v < 0" keeps NaN
        return 0.0 if v < 0 else v
    if code == 1:  # leaky_relu
        return v if v > 0 else a * v
    if code == 2:  # elu
        return v if v > 0 else a * (math.exp(v) - 1.0)
    if code == 3:  # selu
        return SELU_SCALE * (v if v > 0 else SELU_ALPHA * (math.exp(v) - 1.0))
    if code == 4:
        return math.tanh(v)
    if code == 5:  # sigmoid, stable on both tails
        if v >= 0:
            return 1.0 / (1.0 + math.exp(-v))
        e = math.exp(v)
        return e / (1.0 + e)
    if code == 6:  # hardsigmoid
        if v <= -3.0:
            return 0.0
        if v >= 3.0:
            return 1.0
        return v / 6.0 + 0.5
    if code == 7:  # hardswish
        if v <= -3.0:
            return 0.0
        if v >= 3.0:
            return v
        return v * (v + 3.0) / 6.0
    if code == 9:  # relu6; the comparisons keep NaN
        return 0.0 if v < 0 else (6.0 if v > 6.0 else v)
    return v


@njit(cache=True, inline="always")
def _dact(g, v, out, code, a):
    """Gradient through the activation at input v with output out."""
    if code == 0:
        return g if v > 0 else 0.0
    if code == 1:
        return g if v > 0 else a * g
    if code == 2:
        return g if v > 0 else g * (out + a)
    if code == 3:
        return g * SELU_SCALE if v > 0 else g * (out + SELU_SCALE * SELU_ALPHA)
    if code == 4:
        return g * (1.0 - out * out)
    if code == 5:
        return g * out * (1.0 - out)
    if code == 6:
        return g / 6.0 if -3.0 < v < 3.0 else 0.0
    if code == 7:
        if v < -3.0:
            return 0.0
        if v <= 3.0:
            return g * (v / 3.0 + 0.5)
        return g
    if code == 9:
        return g if 0.0 < v < 6.0 else 0.0
    return g


# One loop per activation, each with its code a constant: with the code switch inside a single loop, LLVM did
# not vectorise it and relu6 ran ~15x slower (MobileNetV2 spent 30% of its time there); the switch now runs
# once per call. Code 8 (linear) and unknown codes copy.
@njit(parallel=True, cache=True)
def _act_forward(x, y, code, a):
    n = x.size
    if code == 0:
        for i in prange(n):
            y[i] = _act(x[i], 0, a)
    elif code == 1:
        for i in prange(n):
            y[i] = _act(x[i], 1, a)
    elif code == 2:
        for i in prange(n):
            y[i] = _act(x[i], 2, a)
    elif code == 3:
        for i in prange(n):
            y[i] = _act(x[i], 3, a)
    elif code == 4:
        for i in prange(n):
            y[i] = _act(x[i], 4, a)
    elif code == 5:
        for i in prange(n):
            y[i] = _act(x[i], 5, a)
    elif code == 6:
        for i in prange(n):
            y[i] = _act(x[i], 6, a)
    elif code == 7:
        for i in prange(n):
            y[i] = _act(x[i], 7, a)
    elif code == 9:
        for i in prange(n):
            y[i] = _act(x[i], 9, a)
    else:
        for i in prange(n):
            y[i] = x[i]


@njit(parallel=True, cache=True)
def _act_backward(gy, x, y, gx, code, a):
    n = gy.size
    if code == 0:
        for i in prange(n):
            gx[i] = _dact(gy[i], x[i], y[i], 0, a)
    elif code == 1:
        for i in prange(n):
            gx[i] = _dact(gy[i], x[i], y[i], 1, a)
    elif code == 2:
        for i in prange(n):
            gx[i] = _dact(gy[i], x[i], y[i], 2, a)
    elif code == 3:
        for i in prange(n):
            gx[i] = _dact(gy[i], x[i], y[i], 3, a)
    elif code == 4:
        for i in prange(n):
            gx[i] = _dact(gy[i], x[i], y[i], 4, a)
    elif code == 5:
        for i in prange(n):
            gx[i] = _dact(gy[i], x[i], y[i], 5, a)
    elif code == 6:
        for i in prange(n):
            gx[i] = _dact(gy[i], x[i], y[i], 6, a)
    elif code == 7:
        for i in prange(n):
            gx[i] = _dact(gy[i], x[i], y[i], 7, a)
    elif code == 9:
        for i in prange(n):
            gx[i] = _dact(gy[i], x[i], y[i], 9, a)
    else:
        for i in prange(n):
            gx[i] = gy[i]


# tanh of float32 values as an odd rational function x * P(x^2) / Q(x^2) on [-9, 9] (beyond 9, tanh is 1 in float32),
# fitted for this file by iterated least squares on the relative error: at most 3.4e-7 from the true value (~5 ulp
# near +-1, 3e-7 relative near 0). math.tanh does not vectorise (20 ns a value: LeNet-5's tanh layers took a fifth
# of its time); float64 arrays keep math.tanh.
_P0, _P1, _P2, _P3, _P4 = (np.float32(1.0), np.float32(0.13392432034015656), np.float32(0.0035091335885226727),
                           np.float32(2.0831937945331447e-05), np.float32(1.3663396636331981e-08))
_Q1, _Q2, _Q3, _Q4 = (np.float32(0.4672574996948242), np.float32(0.025928517803549767),
                      np.float32(0.00033077847911044955), np.float32(7.902930860836932e-07))
_NINE = np.float32(9.0)
_ONE = np.float32(1.0)


@njit(parallel=True, cache=True)
def _tanh_f32(x, y):
    for i in prange(x.size):
        v = x[i]
        c = _NINE if v > _NINE else (-_NINE if v < -_NINE else v)  # NaN falls through and stays NaN
        z = c * c
        num = (((_P4 * z + _P3) * z + _P2) * z + _P1) * z + _P0
        den = (((_Q4 * z + _Q3) * z + _Q2) * z + _Q1) * z + _ONE
        r = c * num / den
        y[i] = _ONE if r > _ONE else (-_ONE if r < -_ONE else r)


def act_forward(x, code, a):
    y = np.empty_like(x)
    if code == 4 and x.dtype == np.float32:
        launch(_tanh_f32, x.size, x.reshape(-1), y.reshape(-1))
        return y
    launch(_act_forward, x.size, x.reshape(-1), y.reshape(-1), code, float(a))
    return y


@njit(parallel=True, cache=True)
def _add_act(a, b, y, code):
    n = y.size
    if code == 0:
        for i in prange(n):
            y[i] = _act(a[i] + b[i], 0, 0.0)
    else:
        for i in prange(n):
            y[i] = _act(a[i] + b[i], 9, 0.0)


def add_act(a, b, code):
    """relu or relu6 (code 0 or 9) of a + b in one pass: a residual block's sum and activation, which ran as two
    passes over the activations and two layer calls (ResNet-18: 16 steps, 0.76 ms at batch 1). The sum is
    rounded to the dtype first, as a separate add would, so the result is the same to the bit."""
    y = np.empty_like(a)
    launch(_add_act, y.size, a.reshape(-1), b.reshape(-1), y.reshape(-1), int(code))
    return y


def act_backward(gy, x, y, code, a):
    gx = np.empty_like(gy)
    xf = x.reshape(-1) if x is not None else gy.reshape(-1)
    yf = y.reshape(-1) if y is not None else gy.reshape(-1)
    launch(_act_backward, gy.size, gy.reshape(-1), xf, yf, gx.reshape(-1), code, float(a))
    return gx


@njit(parallel=True, cache=True)
def _softmax(x, y, log):
    R, K = x.shape
    for r in prange(R):
        m = -np.inf
        for k in range(K):
            if x[r, k] > m or x[r, k] != x[r, k]:
                m = x[r, k]
        s = 0.0
        for k in range(K):
            s += math.exp(x[r, k] - m)
        if log:
            ls = math.log(s)
            for k in range(K):
                y[r, k] = x[r, k] - m - ls
        else:
            for k in range(K):
                y[r, k] = math.exp(x[r, k] - m) / s


@njit(parallel=True, cache=True)
def _softmax_backward(gy, y, gx, log):
    R, K = y.shape
    for r in prange(R):
        s = 0.0
        if log:
            for k in range(K):
                s += gy[r, k]
            for k in range(K):
                gx[r, k] = gy[r, k] - math.exp(y[r, k]) * s
        else:
            for k in range(K):
                s += gy[r, k] * y[r, k]
            for k in range(K):
                gx[r, k] = y[r, k] * (gy[r, k] - s)


@njit(parallel=True, cache=True)
def _softmax_inner(x, y, log):
    O, K, n_inner = x.shape
    for t in prange(O * n_inner):
        o, i = t // n_inner, t % n_inner
        m = -np.inf
        for k in range(K):
            if x[o, k, i] > m or x[o, k, i] != x[o, k, i]:
                m = x[o, k, i]
        s = 0.0
        for k in range(K):
            s += math.exp(x[o, k, i] - m)
        if log:
            ls = math.log(s)
            for k in range(K):
                y[o, k, i] = x[o, k, i] - m - ls
        else:
            for k in range(K):
                y[o, k, i] = math.exp(x[o, k, i] - m) / s


@njit(parallel=True, cache=True)
def _softmax_inner_backward(gy, y, gx, log):
    O, K, n_inner = y.shape
    for t in prange(O * n_inner):
        o, i = t // n_inner, t % n_inner
        s = 0.0
        for k in range(K):
            s += gy[o, k, i] if log else gy[o, k, i] * y[o, k, i]
        for k in range(K):
            if log:
                gx[o, k, i] = gy[o, k, i] - math.exp(y[o, k, i]) * s
            else:
                gx[o, k, i] = y[o, k, i] * (gy[o, k, i] - s)


def _rows(a):
    """The 2-D rows view when the softmax axis is last, else None (the 3-D kernels walk the middle axis)."""
    if a.ndim == 2:
        return a
    return a.reshape(a.shape[0], a.shape[1]) if a.shape[2] == 1 else None


def softmax_forward(x, log):
    """Softmax along axis 1 of x: (rows, K), or (outer, K, inner)."""
    y = np.empty_like(x)
    if _rows(x) is not None:
        launch(_softmax, x.size, _rows(x), _rows(y), bool(log))
    else:
        launch(_softmax_inner, x.size, x, y, bool(log))
    return y


def softmax_backward(gy, y, log):
    gx = np.empty_like(gy)
    if _rows(y) is not None:
        launch(_softmax_backward, gy.size, _rows(gy), _rows(y), _rows(gx), bool(log))
    else:
        launch(_softmax_inner_backward, gy.size, gy, y, gx, bool(log))
    return gx


@njit(cache=True, inline="always")
def uniform_hash(seed, i):
    """splitmix64(seed * golden + i) mapped to [0, 1) with 53 bits; the CUDA twin uses the same integers."""
    z = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(i)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(parallel=True, cache=True)
def _dropout(x, p, seed, y, mask):
    scale = 1.0 / (1.0 - p)
    for i in prange(x.size):
        keep = uniform_hash(seed, i) >= p
        mask[i] = 1 if keep else 0
        y[i] = x[i] * scale if keep else 0.0


@njit(parallel=True, cache=True)
def _dropout_backward(gy, mask, p, gx):
    scale = 1.0 / (1.0 - p)
    for i in prange(gy.size):
        gx[i] = gy[i] * scale if mask[i] else 0.0


def dropout_forward(x, p, seed):
    y = np.empty_like(x)
    mask = np.empty(x.shape, np.uint8)
    launch(_dropout, x.size, x.reshape(-1), float(p), np.uint64(seed), y.reshape(-1), mask.reshape(-1))
    return y, mask


def dropout_backward(gy, mask, p):
    gx = np.empty_like(gy)
    launch(_dropout_backward, gy.size, gy.reshape(-1), mask.reshape(-1), float(p), gx.reshape(-1))
    return gx
