"""CUDA elementwise activations (one thread per element over the flat index), row softmax (one block per row,
shared-memory max and sum reductions) and seeded dropout.

Activation and softmax kernels are built per dtype (``_act_kernels``, ``_softmax_kernels``) with constants of
that dtype, so float32 tensors are computed in float32 (only softmax's row sums accumulate in float64).

Dropout's mask is a pure function of (seed, flat index): splitmix64 of ``seed * golden + i`` mapped to [0, 1)
with 53 bits, exactly the integers of the CPU twin (``cpu.act.uniform_hash``), so a seed gives the same mask on
both backends, in any thread order.
"""

import functools
import math
import warnings

import numba
import numpy as np
from numba import config, cuda, float64

from .tensor import RED_TPB, add, block_sum, empty, flat, grid1d, red_threads

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


@functools.cache
def _act_kernels(dtype):
    """Forward and backward elementwise kernels for one float dtype: every constant is of that dtype, so a
    float32 tensor is computed in float32 arithmetic (Numba promotes float32 op Python-float to float64)."""
    f = np.dtype(dtype).type
    z, one, half, three, six = f(0), f(1), f(0.5), f(3), f(6)
    s_alpha, s_scale, s_prod = f(SELU_ALPHA), f(SELU_SCALE), f(SELU_SCALE * SELU_ALPHA)

    @cuda.jit(device=True, inline=True)
    def act(v, code, a):
        if code == 0:  # relu; "v < 0" keeps NaN
            return z if v < z else v
        if code == 1:  # leaky_relu
            return v if v > z else a * v
        if code == 2:  # elu
            return v if v > z else a * (math.exp(v) - one)
        if code == 3:  # selu
            return s_scale * (v if v > z else s_alpha * (math.exp(v) - one))
        if code == 4:
            return math.tanh(v)
        if code == 5:  # sigmoid, stable on both tails
            if v >= z:
                return one / (one + math.exp(-v))
            e = math.exp(v)
            return e / (one + e)
        if code == 6:  # hardsigmoid
            if v <= -three:
                return z
            if v >= three:
                return one
            return v / six + half
        if code == 7:  # hardswish
            if v <= -three:
                return z
            if v >= three:
                return v
            return v * (v + three) / six
        if code == 9:  # relu6; the comparisons keep NaN
            return z if v < z else (six if v > six else v)
        return v

    @cuda.jit(device=True, inline=True)
    def dact(g, v, out, code, a):
        """Gradient through the activation at input v with output out (tanh/sigmoid use out)."""
        if code == 0:
            return g if v > z else z
        if code == 1:
            return g if v > z else a * g
        if code == 2:
            return g if v > z else g * (out + a)
        if code == 3:
            return g * s_scale if v > z else g * (out + s_prod)
        if code == 4:
            return g * (one - out * out)
        if code == 5:
            return g * out * (one - out)
        if code == 6:
            return g / six if -three < v < three else z
        if code == 7:
            if v < -three:
                return z
            if v <= three:
                return g * (v / three + half)
            return g
        if code == 9:
            return g if z < v < six else z
        return g

    @cuda.jit
    def forward(x, y, code, a):
        i = cuda.grid(1)
        if i < x.size:
            y[i] = act(x[i], code, a)

    @cuda.jit
    def backward(gy, x, y, gx, code, a):
        i = cuda.grid(1)
        if i < gy.size:
            gx[i] = dact(gy[i], x[i], y[i], code, a)

    return forward, backward


def act_forward(x, code, a):
    y = empty(x.shape, x.dtype)
    if x.size:
        b, t = grid1d(x.size)
        _act_kernels(x.dtype)[0][b, t](flat(x), flat(y), int(code), x.dtype.type(a))
    return y


def add_act(a, b, code):
    """act(a + b), code 0 (relu) or 9 (relu6): the CPU twin's fused residual add, here the two kernels."""
    return act_forward(add(a, b), code, 0.0)


def act_backward(gy, x, y, code, a):
    gx = empty(gy.shape, gy.dtype)
    if gy.size:
        xf = flat(x) if x is not None else flat(gy)
        yf = flat(y) if y is not None else flat(gy)
        b, t = grid1d(gy.size)
        _act_kernels(gy.dtype)[1][b, t](flat(gy), xf, yf, flat(gx), int(code), gy.dtype.type(a))
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


@functools.cache
def _softmax_kernels(dtype):
    """Row softmax for one float dtype: the max and the exponentials in the tensor's precision, the row sums
    accumulated in float64 (shared memory), then one rounding of 1/sum (or log sum) per row."""
    f = np.dtype(dtype).type
    ft = numba.from_dtype(np.dtype(dtype))
    ninf = f(-np.inf)
    one = 1.0

    @cuda.jit
    def forward(x, y, log):
        r = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        K = x.shape[1]
        buf = cuda.shared.array(RED_TPB, float64)
        m = ninf
        for k in range(tid, K, nt):
            m = _nanmax(m, x[r, k])
        m = ft(_block_max(buf, tid, nt, float64(m)))
        acc = 0.0
        for k in range(tid, K, nt):
            acc += math.exp(x[r, k] - m)
        tot = block_sum(buf, tid, nt, acc)
        if log:
            ls = ft(math.log(tot))
            for k in range(tid, K, nt):
                y[r, k] = x[r, k] - m - ls
        else:
            inv = ft(one / tot)
            for k in range(tid, K, nt):
                y[r, k] = math.exp(x[r, k] - m) * inv

    @cuda.jit
    def backward(gy, y, gx, log):
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
        tot = ft(block_sum(buf, tid, nt, acc))
        for k in range(tid, K, nt):
            if log:
                gx[r, k] = gy[r, k] - math.exp(y[r, k]) * tot
            else:
                gx[r, k] = y[r, k] * (gy[r, k] - tot)

    return forward, backward


@functools.cache
def _softmax_inner_kernels(dtype):
    """Softmax along axis 1 of an (outer, K, inner) array with inner > 1 (the channels of NCHW scores, as
    MTCNN's P-Net gives): one thread per (outer, inner) position walks its K values, the sum in float64."""
    f = np.dtype(dtype).type
    ft = numba.from_dtype(np.dtype(dtype))
    ninf = f(-np.inf)
    one = 1.0

    @cuda.jit
    def forward(x, y, log):
        t = cuda.grid(1)
        O, K, I = x.shape
        if t >= O * I:
            return
        o = t // I
        i = t - o * I
        m = ninf
        for k in range(K):
            m = _nanmax(m, x[o, k, i])
        acc = 0.0
        for k in range(K):
            acc += math.exp(x[o, k, i] - m)
        if log:
            ls = ft(math.log(acc))
            for k in range(K):
                y[o, k, i] = x[o, k, i] - m - ls
        else:
            inv = ft(one / acc)
            for k in range(K):
                y[o, k, i] = math.exp(x[o, k, i] - m) * inv

    @cuda.jit
    def backward(gy, y, gx, log):
        t = cuda.grid(1)
        O, K, I = y.shape
        if t >= O * I:
            return
        o = t // I
        i = t - o * I
        acc = 0.0
        for k in range(K):
            if log:
                acc += gy[o, k, i]
            else:
                acc += gy[o, k, i] * y[o, k, i]
        tot = ft(acc)
        for k in range(K):
            if log:
                gx[o, k, i] = gy[o, k, i] - math.exp(y[o, k, i]) * tot
            else:
                gx[o, k, i] = y[o, k, i] * (gy[o, k, i] - tot)

    return forward, backward


def _rows_or_inner(a):
    """(2-D rows view, None) when the softmax axis is last (a block per row), else (None, the 3-D array)."""
    if len(a.shape) == 2:
        return a, None
    if int(a.shape[2]) == 1:
        return a.reshape(int(a.shape[0]), int(a.shape[1])), None
    return None, a


def softmax_forward(x, log):
    """Softmax along axis 1 of x: (rows, K), or (outer, K, inner)."""
    y = empty(x.shape, x.dtype)
    if x.size:
        rows, inner = _rows_or_inner(x)
        if inner is None:
            _softmax_kernels(x.dtype)[0][int(rows.shape[0]), red_threads(rows.shape[1])](
                rows, _rows_or_inner(y)[0], bool(log))
        else:
            bl, t = grid1d(int(x.shape[0]) * int(x.shape[2]))
            _softmax_inner_kernels(x.dtype)[0][bl, t](x, y, bool(log))
    return y


def softmax_backward(gy, y, log):
    gx = empty(gy.shape, gy.dtype)
    if gy.size:
        rows, inner = _rows_or_inner(y)
        if inner is None:
            _softmax_kernels(gy.dtype)[1][int(rows.shape[0]), red_threads(rows.shape[1])](
                _rows_or_inner(gy)[0], rows, _rows_or_inner(gx)[0], bool(log))
        else:
            bl, t = grid1d(int(y.shape[0]) * int(y.shape[2]))
            _softmax_inner_kernels(gy.dtype)[1][bl, t](gy, y, gx, bool(log))
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
