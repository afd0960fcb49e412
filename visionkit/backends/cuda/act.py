"""CUDA elementwise activations (one thread per element over the flat index), row softmax (one block per row,
shared-memory max and sum reductions) and seeded dropout.

Dropout's mask is a pure function of (seed, flat index): splitmix64 of ``seed * golden + i`` mapped to [0, 1)
with 53 bits, exactly the integers of the CPU twin (``cpu.act.uniform_hash``), so a seed gives the same mask on
both backends, in any thread order.
"""

import math
import warnings

import numpy as np
from numba import config, cuda, float64

from .tensor import RED_TPB, block_sum, empty, flat, grid1d, red_threads

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0


@cuda.jit(device=True, inline=True)
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
    return v


@cuda.jit(device=True, inline=True)
def _dact(g, v, out, code, a):
    """Gradient through the activation at input v with output out (tanh/sigmoid use out)."""
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
    return g


@cuda.jit
def _act_forward(x, y, code, a):
    i = cuda.grid(1)
    if i < x.size:
        y[i] = _act(x[i], code, a)


@cuda.jit
def _act_backward(gy, x, y, gx, code, a):
    i = cuda.grid(1)
    if i < gy.size:
        gx[i] = _dact(gy[i], x[i], y[i], code, a)


def act_forward(x, code, a):
    y = empty(x.shape, x.dtype)
    if x.size:
        b, t = grid1d(x.size)
        _act_forward[b, t](flat(x), flat(y), int(code), float(a))
    return y


def act_backward(gy, x, y, code, a):
    gx = empty(gy.shape, gy.dtype)
    if gy.size:
        xf = flat(x) if x is not None else flat(gy)
        yf = flat(y) if y is not None else flat(gy)
        b, t = grid1d(gy.size)
        _act_backward[b, t](flat(gy), xf, yf, flat(gx), int(code), float(a))
    return gx


# ----------------------------------------------------------------------------------------------- softmax


@cuda.jit(device=True, inline=True)
def _nanmax(a, b):
    if a != a:
        return a
    if b != b or b > a:
        return b
    return a


@cuda.jit(device=True, inline=True)
def _block_max(buf, tid, nt, v):
    """NaN-propagating max of v over the block (the shape of tensor.block_sum)."""
    cuda.syncthreads()
    buf[tid] = v
    cuda.syncthreads()
    s = nt // 2
    while s >= 32:
        if tid < s:
            buf[tid] = _nanmax(buf[tid], buf[tid + s])
        cuda.syncthreads()
        s //= 2
    if tid == 0:
        m = buf[0]
        for i in range(1, min(nt, 32)):
            m = _nanmax(m, buf[i])
        buf[0] = m
    cuda.syncthreads()
    return buf[0]


@cuda.jit
def _softmax(x, y, log):
    r = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    K = x.shape[1]
    buf = cuda.shared.array(RED_TPB, float64)
    m = -math.inf
    for k in range(tid, K, nt):
        m = _nanmax(m, float64(x[r, k]))
    m = _block_max(buf, tid, nt, m)
    acc = 0.0
    for k in range(tid, K, nt):
        acc += math.exp(x[r, k] - m)
    tot = block_sum(buf, tid, nt, acc)
    if log:
        ls = math.log(tot)
        for k in range(tid, K, nt):
            y[r, k] = x[r, k] - m - ls
    else:
        for k in range(tid, K, nt):
            y[r, k] = math.exp(x[r, k] - m) / tot


@cuda.jit
def _softmax_backward(gy, y, gx, log):
    r = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    K = y.shape[1]
    buf = cuda.shared.array(RED_TPB, float64)
    acc = 0.0
    for k in range(tid, K, nt):
        if log:
            acc += gy[r, k]
        else:
            acc += gy[r, k] * y[r, k]
    tot = block_sum(buf, tid, nt, acc)
    for k in range(tid, K, nt):
        if log:
            gx[r, k] = gy[r, k] - math.exp(y[r, k]) * tot
        else:
            gx[r, k] = y[r, k] * (gy[r, k] - tot)


def softmax_forward(x, log):
    y = empty(x.shape, x.dtype)
    if x.size:
        _softmax[int(x.shape[0]), red_threads(x.shape[1])](x, y, bool(log))
    return y


def softmax_backward(gy, y, log):
    gx = empty(gy.shape, gy.dtype)
    if gy.size:
        _softmax_backward[int(y.shape[0]), red_threads(y.shape[1])](gy, y, gx, bool(log))
    return gx


# ----------------------------------------------------------------------------------------------- dropout


@cuda.jit(device=True, inline=True)
def uniform_hash(seed, i):
    """splitmix64(seed * golden + i) mapped to [0, 1) with 53 bits (seed, i: uint64); the CPU twin's integers."""
    z = seed * _GOLDEN + i
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    z = z ^ (z >> _S31)
    return (z >> _S11) * _INV53


@cuda.jit
def _dropout(x, p, seed, y, mask, scale, zero):
    i = cuda.grid(1)
    if i < x.size:
        keep = uniform_hash(seed, np.uint64(i)) >= p
        mask[i] = 1 if keep else 0
        y[i] = x[i] * scale if keep else zero


@cuda.jit
def _dropout_backward(gy, mask, gx, scale, zero):
    i = cuda.grid(1)
    if i < gy.size:
        gx[i] = gy[i] * scale if mask[i] else zero


def _scale(p):
    return 1.0 / (1.0 - p) if p < 1 else 0.0


def dropout_forward(x, p, seed):
    y = empty(x.shape, x.dtype)
    mask = empty(x.shape, np.uint8)
    if x.size:
        b, t = grid1d(x.size)
        with warnings.catch_warnings():
            if config.ENABLE_CUDASIM:  # the simulator runs the hash on numpy uint64 scalars, which warn on wrap
                warnings.simplefilter("ignore", RuntimeWarning)
            _dropout[b, t](flat(x), float(p), np.uint64(seed), flat(y), flat(mask), x.dtype.type(_scale(p)),
                           x.dtype.type(0))
    return y, mask


def dropout_backward(gy, mask, p):
    gx = empty(gy.shape, gy.dtype)
    if gy.size:
        b, t = grid1d(gy.size)
        _dropout_backward[b, t](flat(gy), flat(mask), flat(gx), gy.dtype.type(_scale(p)), gy.dtype.type(0))
    return gx
