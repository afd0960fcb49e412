"""The CUDA backend under Numba's simulator (tests/conftest.py sets NUMBA_ENABLE_CUDASIM=1): every contract function
on tiny random inputs, checked against the CPU twin and, for the key ones, against independent numpy references
(loops, adjoint identities <A x, y> = <x, A^T y>, finite differences).

The simulator runs each CUDA thread as a Python thread (~0.15 ms each, more at every barrier), so shapes are tiny.
"""


import numpy as np
import pytest

cuda = pytest.importorskip("numba.cuda")

from visionkit.backends import ACTIVATIONS
from visionkit.backends import cpu as C
from visionkit.backends import cuda as G


# No sys.setswitchinterval trick here: a very short GIL switch interval made barriers cheaper but let Numba's
# simulator release a thread from syncthreads() early now and then (seen as NaN from unwritten shared memory in
# about 1 GEMM in 30; none in 80 runs at the default interval).


RNG = np.random.default_rng(1234)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def D(a):
    return cuda.to_device(np.ascontiguousarray(a))


def H(a):
    return a.copy_to_host()


def tol(dtype):
    return {"rtol": 1e-4, "atol": 1e-5} if np.dtype(dtype) == np.float32 else {"rtol": 1e-10, "atol": 1e-12}


def close(a, b, dtype=np.float32, **kw):
    opts = tol(dtype)
    opts.update(kw)
    np.testing.assert_allclose(a, b, **opts)


def test_package_mirrors_cpu():
    """Same modules, same public functions, same parameter lists as the CPU twin."""
    import inspect

    for mod in ("conv", "pool", "norm", "dense", "act", "resize", "tensor"):
        cm, gm = getattr(C, mod), getattr(G, mod)
        for name, f in vars(cm).items():
            if name.startswith("_") or not inspect.isfunction(f) or f.__module__ != cm.__name__:
                continue
            assert hasattr(gm, name), f"cuda.{mod}.{name} missing"
            assert list(inspect.signature(getattr(gm, name)).parameters) == list(inspect.signature(f).parameters), name


# ----------------------------------------------------------------------------------------------- gemm


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_transposes_and_tails(ta, tb):
    M, N, K = 70, 5, 19  # M spans two row tiles, K two K-steps, all with tails
    A = rand(K, M) if ta else rand(M, K)
    B = rand(N, K) if tb else rand(K, N)
    bias = rand(M)
    Cm = rand(M, N)
    a = (0, 0, 0, 1, M) if ta else (0, 0, 0, K, 1)
    b = (0, 0, 0, 1, K) if tb else (0, 0, 0, N, 1)
    dC = D(Cm.ravel())
    G.gemm.gemm(D(A.ravel()), a, D(B.ravel()), b, dC, (0, 0, 0, N), M, N, K, bias=D(bias), bias_mode=1,
                accumulate=True)
    ref = (A.T if ta else A) @ (B.T if tb else B) + Cm + bias[:, None]
    close(H(dC).reshape(M, N), ref, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------- conv


def conv_ref(x, w, b, stride, pads, dil, groups):
    """Plain numpy loops over the kernel taps (independent of both backends)."""
    N, _, Hh, Ww = x.shape
    O, Cg, KH, KW = w.shape
    sh, sw = stride
    dh, dw = dil
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[1]), (pads[2], pads[3])))
    OH = (Hh + pads[0] + pads[1] - dh * (KH - 1) - 1) // sh + 1
    OW = (Ww + pads[2] + pads[3] - dw * (KW - 1) - 1) // sw + 1
    y = np.zeros((N, O, OH, OW))
    Og = O // groups
    for o in range(O):
        g = o // Og
        for c in range(Cg):
            for i in range(KH):
                for j in range(KW):
                    win = xp[:, g * Cg + c, i * dh:i * dh + sh * (OH - 1) + 1:sh, j * dw:j * dw + sw * (OW - 1) + 1:sw]
                    y[:, o] += w[o, c, i, j] * win
    if b is not None:
        y += b[None, :, None, None]
    return y


CONV_CASES = [
    # N, C, H, W, O, KH, KW, stride, pads (t, b, l, r), dilation, groups     path
    (2, 4, 5, 4, 5, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),                # GEMM (36 terms), 2 images
    (1, 4, 7, 6, 4, 3, 3, (2, 1), (0, 1, 2, 0), (2, 1), 1),                # GEMM, stride/dilation/asym pads
    (1, 4, 5, 5, 8, 3, 2, (1, 2), (1, 0, 0, 1), (1, 1), 2),                # direct (2*3*2 terms), groups
    (1, 3, 6, 5, 3, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1), 3),                # direct, depthwise, stride 2
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_forward_and_backward(case):
    N, Cin, Hh, Ww, O, KH, KW, stride, pads, dil, groups = case
    x = rand(N, Cin, Hh, Ww)
    w = rand(O, Cin // groups, KH, KW)
    b = rand(O)
    y = H(G.conv.conv2d_forward(D(x), D(w), D(b), stride, pads, dil, groups))
    ref = conv_ref(x, w, b, stride, pads, dil, groups)
    close(y, ref, rtol=1e-4, atol=1e-4)
    close(y, C.conv.conv2d_forward(x, w, b, stride, pads, dil, groups), rtol=1e-4, atol=1e-4)
    # the fused epilogue: BatchNorm (inference) then relu6
    mean, var, g, beta = rand(O), np.abs(rand(O)) + 0.5, rand(O), rand(O)
    bn = (mean, var, g, beta, 1e-5)
    yr = H(G.conv.conv2d_forward(D(x), D(w), D(b), stride, pads, dil, groups, 9, tuple(D(v) for v in bn[:4]) + (1e-5,)))
    close(yr, C.conv.conv2d_forward(x, w, b, stride, pads, dil, groups, 9, bn), rtol=1e-4, atol=1e-4)
    want = (ref - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5) * g[:, None, None] + beta[:, None, None]
    close(yr, np.clip(want, 0, 6), rtol=1e-4, atol=1e-4)
    gy = rand(*y.shape)
    gx = H(G.conv.conv2d_backward_input(D(gy), D(w), x.shape, stride, pads, dil, groups))
    gw = H(G.conv.conv2d_backward_weight(D(x), D(gy), w.shape, stride, pads, dil, groups))
    close(gx, C.conv.conv2d_backward_input(gy, w, x.shape, stride, pads, dil, groups), rtol=1e-4, atol=1e-4)
    close(gw, C.conv.conv2d_backward_weight(x, gy, w.shape, stride, pads, dil, groups), rtol=1e-4, atol=1e-4)
    # adjoint identities against the numpy reference: <conv(x, w), gy> = <x, gx> = <w, gw>
    lin = float((conv_ref(x, w, None, stride, pads, dil, groups) * gy).sum())
    assert np.isclose(float((x.astype(np.float64) * gx).sum()), lin, rtol=1e-4, atol=1e-3)
    assert np.isclose(float((w.astype(np.float64) * gw).sum()), lin, rtol=1e-4, atol=1e-3)


def test_conv2d_float64_and_no_bias():
    x = rand(1, 4, 4, 4, dtype=np.float64)
    w = rand(4, 4, 3, 3, dtype=np.float64)
    y = G.conv.conv2d_forward(D(x), D(w), None, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    assert y.dtype == np.float64
    close(H(y), conv_ref(x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 1), np.float64)
    gy = rand(*y.shape, dtype=np.float64)
    gx = G.conv.conv2d_backward_input(D(gy), D(w), x.shape, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    assert gx.dtype == np.float64
    close(H(gx), C.conv.conv2d_backward_input(gy, w, x.shape, (1, 1), (1, 1, 1, 1), (1, 1), 1), np.float64)


def test_expand_depthwise_project():
    """The inference block (1x1, depthwise 3x3 stride 2, 1x1, each with bias, BatchNorm and ReLU6 or not) against
    the CPU twin, which runs it as one channels-last kernel."""
    x = rand(1, 3, 5, 4)
    bn = (rand(6) * 0.1, np.abs(rand(6)) + 0.5, rand(6), rand(6), 1e-3)
    stages = [(rand(6, 3, 1, 1), rand(6), bn, ACTIVATIONS["relu6"]), (rand(6, 1, 3, 3), None, None, 0),
              (rand(2, 6, 1, 1), rand(2), None, -1)]
    on_gpu = [(D(w), None if b is None else D(b), None if s is None else tuple(D(v) for v in s[:4]) + (s[4],), a)
              for w, b, s, a in stages]
    y = G.conv.expand_depthwise_project(D(x), *on_gpu, (2, 2), (1, 1, 1, 1))
    close(H(y), C.conv.expand_depthwise_project(x, *stages, (2, 2), (1, 1, 1, 1)))
    x = rand(1, 2, 3, 3)  # the residual block: stride 1, as many channels out as in
    stages[0] = (rand(6, 2, 1, 1), None, None, -1)
    on_gpu[0] = (D(stages[0][0]), None, None, -1)
    y = G.conv.expand_depthwise_project(D(x), *on_gpu, (1, 1), (1, 1, 1, 1), True)
    close(H(y), C.conv.expand_depthwise_project(x, *stages, (1, 1), (1, 1, 1, 1), True))


def test_conv_backward_input_larger_x_shape():
    """conv_transpose2d's output_padding: rows/cols that no window touches get zero (both paths)."""
    for cin, groups in ((4, 1), (2, 2)):
        w = rand(4, cin // groups, 3, 3)
        gy = rand(1, 4, 2, 2)
        x_shape = (1, cin, 6, 6)  # the forward from 6x6 with stride 2 would give 2x2 and leave row/col 5 unused
        gx = H(G.conv.conv2d_backward_input(D(gy), D(w), x_shape, (2, 2), (0, 0, 0, 0), (1, 1), groups))
        close(gx, C.conv.conv2d_backward_input(gy, w, x_shape, (2, 2), (0, 0, 0, 0), (1, 1), groups), atol=1e-5)
        assert not gx[:, :, 5, :].any() and not gx[:, :, :, 5].any()


# ----------------------------------------------------------------------------------------------- pool


def test_max_pool_forward_backward():
    x = rand(1, 2, 5, 6)
    x[0, 1, 2, 2] = np.nan
    args = ((3, 2), (2, 2), (1, 0, 1, 1), (1, 2), (3, 3))  # kernel, stride, pads, dilation, out (ceil-mode-like)
    y, idx = G.pool.max_pool2d_forward(D(x), *args)
    yc, ic = C.pool.max_pool2d_forward(x, *args)
    np.testing.assert_array_equal(H(idx), ic)
    np.testing.assert_array_equal(H(y), yc)
    assert H(idx).dtype == np.int32
    y_only, none = G.pool.max_pool2d_forward(D(x), *args, False)
    assert none is None
    np.testing.assert_array_equal(H(y_only), yc)
    # numpy: idx names the max of its window (ignoring NaN planes)
    plane = x[0, 0].ravel()
    for (oh, ow), k in np.ndenumerate(ic[0, 0]):
        assert plane[k] == yc[0, 0, oh, ow]
    gy = rand(*yc.shape)
    gx = H(G.pool.max_pool2d_backward(D(gy), idx, x.shape))
    ref = np.zeros(x.shape, np.float32)
    for (n, c, oh, ow), k in np.ndenumerate(ic):
        if k >= 0:
            ref[n, c, k // 6, k % 6] += gy[n, c, oh, ow]
    close(gx, ref)
    close(gx, C.pool.max_pool2d_backward(gy, ic, x.shape))


def test_max_pool_empty_window_gives_minus_inf():
    x = rand(1, 1, 3, 3)
    y, idx = G.pool.max_pool2d_forward(D(x), (1, 1), (2, 2), (0, 0, 0, 0), (1, 1), (3, 3))
    assert np.isneginf(H(y)[0, 0, 2, 2]) and H(idx)[0, 0, 2, 2] == -1


@pytest.mark.parametrize("cip,div", [(True, 0), (False, 0), (True, 3)])
def test_avg_pool(cip, div):
    x = rand(1, 2, 5, 6)
    kernel, stride, pads, out = (3, 2), (2, 2), (1, 1, 1, 0), (3, 3)
    y = H(G.pool.avg_pool2d_forward(D(x), kernel, stride, pads, out, cip, div))
    close(y, C.pool.avg_pool2d_forward(x, kernel, stride, pads, out, cip, div))
    # numpy reference, PyTorch's rule spelled out
    ref = np.zeros((1, 2) + out)
    for oh in range(out[0]):
        for ow in range(out[1]):
            hs, ws = oh * 2 - 1, ow * 2 - 1
            he, we = min(hs + 3, 5 + 1), min(ws + 2, 6 + 0)
            pool = (he - hs) * (we - ws)
            h0, h1, w0, w1 = max(hs, 0), min(he, 5), max(ws, 0), min(we, 6)
            d = div if div else (pool if cip else (h1 - h0) * (w1 - w0))
            ref[:, :, oh, ow] = x[:, :, h0:h1, w0:w1].sum(axis=(2, 3)) / d
    close(y, ref)
    gy = rand(*y.shape)
    gx = H(G.pool.avg_pool2d_backward(D(gy), x.shape, kernel, stride, pads, cip, div))
    close(gx, C.pool.avg_pool2d_backward(gy, x.shape, kernel, stride, pads, cip, div))
    assert np.isclose((ref * gy).sum(), (x.astype(np.float64) * gx).sum(), rtol=1e-4)


def test_adaptive_pools():
    x = rand(1, 2, 5, 7)
    for out in ((3, 3), (2, 5)):
        y = H(G.pool.adaptive_avg_pool2d_forward(D(x), out))
        close(y, C.pool.adaptive_avg_pool2d_forward(x, out))
        ref = np.zeros((1, 2) + out)
        for i in range(out[0]):
            for j in range(out[1]):
                h0, h1 = (i * 5) // out[0], -(-(i + 1) * 5 // out[0])
                w0, w1 = (j * 7) // out[1], -(-(j + 1) * 7 // out[1])
                ref[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
        close(y, ref)
        gy = rand(*y.shape)
        gx = H(G.pool.adaptive_avg_pool2d_backward(D(gy), x.shape))
        close(gx, C.pool.adaptive_avg_pool2d_backward(gy, x.shape))
        assert np.isclose((ref * gy).sum(), (x.astype(np.float64) * gx).sum(), rtol=1e-4)
        ym, im = G.pool.adaptive_max_pool2d_forward(D(x), out)
        ymc, imc = C.pool.adaptive_max_pool2d_forward(x, out)
        np.testing.assert_array_equal(H(ym), ymc)
        np.testing.assert_array_equal(H(im), imc)


def test_channel_max_pool():
    x = rand(2, 6, 2, 3)
    y, idx = G.pool.channel_max_pool_forward(D(x), 3)
    np.testing.assert_array_equal(H(y), x.reshape(2, 2, 3, 2, 3).max(axis=2))
    np.testing.assert_array_equal(H(idx), x.reshape(2, 2, 3, 2, 3).argmax(axis=2) + np.array([0, 3])[None, :, None, None])
    gy = rand(*H(y).shape)
    gx = H(G.pool.channel_max_pool_backward(D(gy), idx, x.shape))
    close(gx, C.pool.channel_max_pool_backward(gy, H(idx), x.shape))


# ----------------------------------------------------------------------------------------------- norm


def lrn_ref(x, size, alpha, beta, k):
    x = x.astype(np.float64)
    Cn = x.shape[1]
    s = np.zeros_like(x)
    for c in range(Cn):
        lo, hi = max(0, c - size // 2), min(Cn - 1, c + (size - 1) // 2)
        s[:, c] = (x[:, lo:hi + 1] ** 2).sum(axis=1)
    return x / (k + alpha / size * s) ** beta


def test_lrn_forward_backward():
    x = rand(1, 5, 2, 2, dtype=np.float64)
    args = (4, 0.5, 0.75, 2.0)  # even size: the asymmetric window
    y = H(G.norm.lrn_forward(D(x), *args))
    close(y, lrn_ref(x, *args), np.float64)
    close(y, C.norm.lrn_forward(x, *args), np.float64)
    gy = rand(*x.shape, dtype=np.float64)
    gx = H(G.norm.lrn_backward(D(gy), D(x), *args))
    close(gx, C.norm.lrn_backward(gy, x, *args), np.float64)
    # central finite differences of <lrn(x), gy>
    fd = np.zeros_like(x)
    eps = 1e-6
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        fd[i] = ((lrn_ref(xp, *args) - lrn_ref(xm, *args)) * gy).sum() / (2 * eps)
    close(gx, fd, rtol=1e-6, atol=1e-7)


def test_batch_norm_stats_and_forward():
    for shape in ((2, 3, 3, 2), (5, 4)):
        x = rand(*shape) + 3.0
        mean, var = G.norm.batch_norm_stats(D(x))
        axes = (0, 2, 3) if x.ndim == 4 else (0,)
        close(H(mean), x.mean(axis=axes, dtype=np.float64))
        close(H(var), x.var(axis=axes, dtype=np.float64))
        w, b = rand(shape[1]), rand(shape[1])
        y = H(G.norm.batch_norm_forward(D(x), mean, var, D(w), D(b), 1e-5))
        bc = (slice(None),) + (None,) * (x.ndim - 2)
        m, v = x.mean(axis=axes), x.var(axis=axes)
        close(y, (x - m[bc]) / np.sqrt(v[bc] + 1e-5) * w[bc] + b[bc], rtol=1e-4, atol=1e-4)
        y0 = H(G.norm.batch_norm_forward(D(x), mean, var, None, None, 1e-5))
        close(y0, C.norm.batch_norm_forward(x, H(mean), H(var), None, None, 1e-5), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_backward(training):
    x = rand(2, 3, 2, 2, dtype=np.float64)
    w = rand(3, dtype=np.float64)
    gy = rand(*x.shape, dtype=np.float64)
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    gx, gw, gb = (H(a) for a in G.norm.batch_norm_backward(D(gy), D(x), D(mean), D(var), D(w), 1e-5, training))
    cx, cw, cb = C.norm.batch_norm_backward(gy, x, mean, var, w, 1e-5, training)
    close(gx, cx, np.float64)
    close(gw, cw, np.float64)
    close(gb, cb, np.float64)
    close(gb, gy.sum(axis=(0, 2, 3)), np.float64)

    def f(xx):
        m, v = (xx.mean(axis=(0, 2, 3)), xx.var(axis=(0, 2, 3))) if training else (mean, var)
        return ((xx - m[:, None, None]) / np.sqrt(v[:, None, None] + 1e-5) * w[:, None, None] * gy).sum()

    fd = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += 1e-6
        xm[i] -= 1e-6
        fd[i] = (f(xp) - f(xm)) / 2e-6
    close(gx, fd, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------- dense


def test_linear():
    x, w, b = rand(3, 5), rand(4, 5), rand(4)
    y = H(G.dense.linear_forward(D(x), D(w), D(b)))
    close(y, x @ w.T + b)
    close(H(G.dense.linear_forward(D(x), D(w), None)), x @ w.T)
    gy = rand(3, 4)
    gx, gw, gb = (H(a) for a in G.dense.linear_backward(D(gy), D(x), D(w)))
    close(gx, gy @ w)
    close(gw, gy.T @ x)
    close(gb, gy.sum(axis=0))


# ----------------------------------------------------------------------------------------------- act


def act_ref(x, name, a):
    x = x.astype(np.float64)
    return {
        "relu": np.maximum(x, 0),
        "leaky_relu": np.where(x > 0, x, a * x),
        "elu": np.where(x > 0, x, a * np.expm1(np.minimum(x, 0))),
        "selu": 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(np.minimum(x, 0))),
        "tanh": np.tanh(x),
        "sigmoid": 1 / (1 + np.exp(-x)),
        "hardsigmoid": np.clip(x / 6 + 0.5, 0, 1),
        "hardswish": x * np.clip(x + 3, 0, 6) / 6,
        "linear": x,
        "relu6": np.clip(x, 0, 6),
    }[name]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations(dtype):
    x = (rand(2, 3, 2, 3, dtype=dtype) * 3).astype(dtype)
    dx = D(x)
    gy = rand(*x.shape, dtype=dtype)
    for name, code in ACTIVATIONS.items():
        a = 0.2 if name == "leaky_relu" else 1.3
        y = G.act.act_forward(dx, code, a)
        assert y.dtype == dtype
        close(H(y), act_ref(x, name, a), dtype, atol=1e-6)
        gx = H(G.act.act_backward(D(gy), dx, y, code, a))
        close(gx, C.act.act_backward(gy, x, H(y), code, a), dtype, atol=1e-6)
        # one-sided numerical check of the local derivative away from kinks
        h = 1e-3 if dtype == np.float32 else 1e-7
        num = (act_ref(x + h, name, a) - act_ref(x - h, name, a)) / (2 * h) * gy
        ok = np.abs(np.abs(x) - 3) > 0.01
        ok &= np.abs(x) > 0.01
        ok &= np.abs(x - 6) > 0.01
        close(gx[ok], num[ok], rtol=2e-2 if dtype == np.float32 else 1e-5, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_act(dtype):
    """The fused residual add + ReLU/ReLU6, against the CPU twin to the bit."""
    a, b = (rand(2, 3, 4, 5, dtype=dtype) * 5).astype(dtype), rand(2, 3, 4, 5, dtype=dtype)
    for code in (ACTIVATIONS["relu"], ACTIVATIONS["relu6"]):
        np.testing.assert_array_equal(H(G.act.add_act(D(a), D(b), code)), C.act.add_act(a, b, code))


def test_softmax():
    x = rand(3, 7)
    x[1, 2] = 50.0
    for log in (False, True):
        y = G.act.softmax_forward(D(x), log)
        e = np.exp(x - x.max(axis=1, keepdims=True))
        ref = e / e.sum(axis=1, keepdims=True)
        close(H(y), np.log(ref) if log else ref, atol=1e-6)
        gy = rand(3, 7)
        gx = H(G.act.softmax_backward(D(gy), y, log))
        close(gx, C.act.softmax_backward(gy, H(y), log), atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 2, 3, 1)])
def test_softmax_along_the_middle_axis(shape):
    """(outer, K, inner) with inner > 1 (MTCNN's P-Net scores, softmax over the channels of NCHW): one thread per
    position; inner == 1 takes the rows kernel. Both against numpy and the CPU twin, forward and backward."""
    x = rand(shape[0], shape[1], shape[2] * shape[3])
    x[0, 1, 0] = 60.0
    x[-1, 0, -1] = np.nan
    for log in (False, True):
        y = G.act.softmax_forward(D(x), log)
        e = np.exp(x - np.nanmax(x, axis=1, keepdims=True))
        ref = e / e.sum(axis=1, keepdims=True)
        ref[-1, :, -1] = np.nan  # a NaN anywhere along the axis: the whole column is NaN, as in torch
        close(H(y), np.log(ref) if log else ref, atol=1e-6)
        close(H(y), C.act.softmax_forward(x, log), atol=1e-6)
        gy = rand(*x.shape)
        gx = H(G.act.softmax_backward(D(gy), y, log))
        close(gx, C.act.softmax_backward(gy, H(y), log), atol=1e-6)


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_ops_softmax_any_axis_on_the_device(dim):
    from visionkit import ops

    x, gy = rand(2, 3, 2, 4), rand(2, 3, 2, 4)
    for f, fb in ((ops.softmax, ops.softmax_backward), (ops.log_softmax, ops.log_softmax_backward)):
        y = f(D(x), dim=dim)
        close(H(y), f(x, dim=dim), atol=1e-6)
        close(H(fb(D(gy), y, dim=dim)), fb(gy, H(y), dim=dim), atol=1e-6)


def test_dropout_same_mask_as_cpu():
    x = rand(2, 3, 4, 5)
    for p, seed in ((0.5, 7), (0.2, 2 ** 40 + 3)):
        y, mask = G.act.dropout_forward(D(x), p, seed)
        yc, mc = C.act.dropout_forward(x, p, seed)
        assert H(mask).dtype == np.uint8
        np.testing.assert_array_equal(H(mask), mc)
        close(H(y), yc)
        close(H(y), x * H(mask) / (1 - p))
        gy = rand(*x.shape)
        close(H(G.act.dropout_backward(D(gy), mask, p)), C.act.dropout_backward(gy, mc, p))
    assert 0.3 < H(G.act.dropout_forward(D(x), 0.5, 1)[1]).mean() < 0.7


# ----------------------------------------------------------------------------------------------- resize


def interp_matrix(n_in, n_out, mode, align, scale):
    """Dense (n_out, n_in) interpolation matrix along one axis (float64 coordinates)."""
    Mx = np.zeros((n_out, n_in))
    for o in range(n_out):
        if mode == 0:
            Mx[o, min(int(np.floor(o * scale)), n_in - 1)] = 1
            continue
        if align:
            src = o * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        else:
            src = max((o + 0.5) * scale - 0.5, 0.0)
        i0 = min(int(src), n_in - 1)
        i1 = i0 + 1 if i0 < n_in - 1 else i0
        l1 = src - i0
        Mx[o, i0] += 1 - l1
        Mx[o, i1] += l1
    return Mx


@pytest.mark.parametrize("mode,align,in_hw,out_hw", [
    (0, False, (3, 4), (7, 5)),
    (1, False, (3, 4), (7, 5)),
    (1, True, (3, 4), (7, 5)),
    (1, False, (6, 5), (4, 2)),   # downsampling
    (1, True, (5, 1), (3, 4)),    # a 1-wide input
])
def test_interpolate(mode, align, in_hw, out_hw):
    x = rand(1, 2, *in_hw)
    scale = (in_hw[0] / out_hw[0], in_hw[1] / out_hw[1])
    y = H(G.resize.interpolate_forward(D(x), out_hw, mode, align, scale))
    close(y, C.resize.interpolate_forward(x, out_hw, mode, align, scale), atol=1e-6)
    Rh = interp_matrix(in_hw[0], out_hw[0], mode, align, scale[0])
    Rw = interp_matrix(in_hw[1], out_hw[1], mode, align, scale[1])
    close(y, np.einsum("oh,nchw,pw->ncop", Rh, x, Rw), atol=1e-5)
    gy = rand(*y.shape)
    gx = H(G.resize.interpolate_backward(D(gy), x.shape, mode, align, scale))
    close(gx, C.resize.interpolate_backward(gy, x.shape, mode, align, scale), atol=1e-5)
    close(gx, np.einsum("oh,ncop,pw->nchw", Rh, gy, Rw), atol=1e-5)


def test_interpolate_scale_factor():
    """A user scale_factor: the mapping uses 1/scale_factor, not in/out."""
    x = rand(1, 1, 3, 3)
    out, scale = (5, 5), (1 / 1.7, 1 / 1.7)
    for mode in (0, 1):
        y = H(G.resize.interpolate_forward(D(x), out, mode, False, scale))
        close(y, C.resize.interpolate_forward(x, out, mode, False, scale), atol=1e-6)
        gy = rand(*y.shape)
        close(H(G.resize.interpolate_backward(D(gy), x.shape, mode, False, scale)),
              C.resize.interpolate_backward(gy, x.shape, mode, False, scale), atol=1e-5)


# ----------------------------------------------------------------------------------------------- tensor


@pytest.mark.parametrize("mode,np_mode", [(0, "constant"), (1, "reflect"), (2, "edge")])
def test_pad(mode, np_mode):
    x = rand(1, 2, 3, 4)
    pads = (2, 1, 0, 3)  # top, bottom, left, right
    y = G.tensor.pad_forward(D(x), pads, mode, 1.5)
    kw = {"constant_values": 1.5} if mode == 0 else {}
    ref = np.pad(x, ((0, 0), (0, 0), (2, 1), (0, 3)), mode=np_mode, **kw)
    np.testing.assert_array_equal(H(y), ref)
    gy = rand(*ref.shape)
    gx = H(G.tensor.pad_backward(D(gy), x.shape, pads, mode))
    close(gx, C.tensor.pad_backward(gy, x.shape, pads, mode))
    # adjoint of the (linear part of the) pad
    lin = np.pad(x, ((0, 0), (0, 0), (2, 1), (0, 3)), mode=np_mode)
    assert np.isclose((lin * gy).sum(), (x * gx).sum(), rtol=1e-4)


def test_add_concat_split_sum():
    a, b = rand(2, 3, 2, 2), rand(2, 3, 2, 2)
    close(H(G.tensor.add(D(a), D(b))), a + b)
    xs = [rand(2, 1, 2, 3), rand(2, 3, 2, 3), rand(2, 2, 2, 3)]
    y = G.tensor.concat_channels([D(v) for v in xs])
    np.testing.assert_array_equal(H(y), np.concatenate(xs, axis=1))
    parts = G.tensor.split_channels(y, [1, 3, 2])
    for p, v in zip(parts, xs):
        np.testing.assert_array_equal(H(p), v)
    for g in (rand(2, 3, 2, 3), rand(4, 5)):
        s = G.tensor.sum_except_channels(D(g))
        close(H(s), g.sum(axis=tuple(i for i in range(g.ndim) if i != 1), dtype=np.float64))
        close(H(s), C.tensor.sum_except_channels(g))


def test_to_device_to_host_roundtrip():
    a = rand(2, 3)
    d = G.tensor.to_device(a)
    assert not isinstance(d, np.ndarray)
    np.testing.assert_array_equal(G.tensor.to_host(d), a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_to_device_keeps_dtype(dtype):
    a = rand(2, 3, dtype=dtype)
    d = G.tensor.to_device(a)
    assert d.dtype == dtype and G.tensor.to_device(d) is d
    back = G.tensor.to_host(d)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, a)


# ----------------------------------------------------------------------------------------------- new contract functions


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_channel_bias_in_place_any_rank(dtype):
    for shape in ((3, 4), (2, 3, 5), (2, 3, 2, 2)):
        y, b = rand(*shape, dtype=dtype), rand(shape[1], dtype=dtype)
        dy = D(y)
        out = G.tensor.add_channel_bias(dy, D(b))
        assert out is dy and out.dtype == dtype
        ref = C.tensor.add_channel_bias(y.copy(), b)
        np.testing.assert_array_equal(H(dy), ref)  # one rounding per element, as the CPU twin
        close(H(dy), y + b.reshape((1, -1) + (1,) * (len(shape) - 2)), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_update_running_matches_cpu(dtype):
    rm, rv = rand(5, dtype=dtype), np.abs(rand(5, dtype=dtype)) + 0.5
    mean, var = rand(5, dtype=dtype), np.abs(rand(5, dtype=dtype))
    drm, drv = D(rm), D(rv)
    assert G.norm.batch_norm_update_running(drm, drv, D(mean), D(var), 0.1, 12) is None
    crm, crv = rm.copy(), rv.copy()
    C.norm.batch_norm_update_running(crm, crv, mean, var, 0.1, 12)
    # the CPU twin's rounding steps, so equal to the last bit (allow one ulp for a fused multiply-add on a GPU)
    np.testing.assert_array_max_ulp(H(drm), crm, maxulp=1)
    np.testing.assert_array_max_ulp(H(drv), crv, maxulp=1)
    close(H(drv), 0.9 * rv + 0.1 * var * 12 / 11, dtype)


# ----------------------------------------------------------------------------------------------- conv_transpose


@pytest.mark.parametrize("cin,cout,k", [(2, 2, 2), (4, 4, 3)])  # direct path, GEMM path (36 terms, 4 outputs)
def test_conv_transpose_output_padding_ge_stride(cin, cout, k):
    """output_padding >= stride (legal when dilation > stride): the adjoint's gy is smaller than x_shape's forward;
    both backward passes must take OH/OW from gy (as ops calls them for conv_transpose2d and its backward)."""
    x, w = rand(1, cin, 3, 3), rand(cin, cout, k, k)
    stride, pads, dil = (1, 1), (0, 0, 0, 0), (2, 2)
    oh = 2 + 2 * (k - 1) + 1 + 1  # (H-1)*s + d*(k-1) + output_padding + 1
    out_shape = (1, cout, oh, oh)
    y = G.conv.conv2d_backward_input(D(x), D(w), out_shape, stride, pads, dil, 1)
    yc = C.conv.conv2d_backward_input(x, w, out_shape, stride, pads, dil, 1)
    assert tuple(y.shape) == out_shape
    close(H(y), yc, atol=1e-4)
    assert not H(y)[:, :, -1, :].any() and not H(y)[:, :, :, -1].any()  # the output_padding row/column
    gy = rand(*out_shape)
    gw = G.conv.conv2d_backward_weight(D(gy), D(x), w.shape, stride, pads, dil, 1)
    close(H(gw), C.conv.conv2d_backward_weight(gy, x, w.shape, stride, pads, dil, 1), atol=1e-4)
    # <conv_transpose(x), gy> = <x, crop(conv(gy))> = <w, gw>
    lin = float((yc.astype(np.float64) * gy).sum())
    assert np.isclose(float((w.astype(np.float64) * H(gw)).sum()), lin, rtol=1e-4, atol=1e-3)


def test_ops_conv_transpose_repro():
    from visionkit import ops

    x, w = rand(1, 2, 3, 3), rand(2, 2, 2, 2)
    y = ops.conv_transpose2d(D(x), D(w), None, 1, 0, 1, 1, 2)
    close(H(y), ops.conv_transpose2d(x, w, None, 1, 0, 1, 1, 2), atol=1e-5)


# ----------------------------------------------------------------------------------------------- two-stage reductions


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 4 items, so tiny tensors exercise the multi-chunk path (uneven last chunk included)."""
    monkeypatch.setattr(G.tensor, "RED_CHUNK", 4)


def test_two_stage_plan():
    for m in (0, 1, 5, 4096, 4097, 10 ** 7):
        k, length = G.tensor.red_plan(m)
        assert k >= 1 and length >= 1 and k <= G.tensor.RED_MAX_CHUNKS
        assert (k - 1) * length < max(m, 1) <= k * length  # no empty chunk, all covered


def test_two_stage_channel_sums_and_stats(small_chunks):
    assert G.tensor.red_plan(14) == (4, 4)
    g = rand(2, 3, 7)  # 14 items per channel: chunks of 4, 4, 4, 2
    close(H(G.tensor.sum_except_channels(D(g))), g.sum(axis=(0, 2), dtype=np.float64))
    x = rand(2, 3, 7) * 0.01 + 1000.0  # a large mean: the chunk-wise combination must not cancel
    mean, var = G.norm.batch_norm_stats(D(x))
    close(H(mean), x.mean(axis=(0, 2), dtype=np.float64))
    close(H(var), x.astype(np.float64).var(axis=(0, 2)), rtol=1e-3)
    _, cv = C.norm.batch_norm_stats(x)
    close(H(var), cv, rtol=1e-3)
    xd = rand(7, 2, dtype=np.float64)
    m64, v64 = G.norm.batch_norm_stats(D(xd))
    close(H(m64), xd.mean(axis=0), np.float64)
    close(H(v64), xd.var(axis=0), np.float64)


@pytest.mark.parametrize("training", [True, False])
def test_two_stage_batch_norm_backward(small_chunks, training):
    x, gy, w = rand(2, 2, 3, 3), rand(2, 2, 3, 3), rand(2)
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    got = G.norm.batch_norm_backward(D(gy), D(x), D(mean), D(var), D(w), 1e-5, training)
    ref = C.norm.batch_norm_backward(gy, x, mean, var, w, 1e-5, training)
    for a, r in zip(got, ref):
        assert a.dtype == np.float32
        close(H(a), r, atol=1e-5)
    gx0 = H(G.norm.batch_norm_backward(D(gy), D(x), D(mean), D(var), None, 1e-5, training)[0])
    close(gx0, C.norm.batch_norm_backward(gy, x, mean, var, None, 1e-5, training)[0], atol=1e-5)


def test_two_stage_direct_conv_weight_gradient(small_chunks):
    x, w = rand(2, 2, 4, 3), rand(2, 1, 2, 2)  # depthwise: the direct path
    gy = rand(2, 2, 3, 2)
    gw = G.conv.conv2d_backward_weight(D(x), D(gy), w.shape, (1, 1), (0, 0, 0, 0), (1, 1), 2)
    close(H(gw), C.conv.conv2d_backward_weight(x, gy, w.shape, (1, 1), (0, 0, 0, 0), (1, 1), 2), atol=1e-5)


# ----------------------------------------------------------------------------------------------- max-pool determinism


def test_max_pool_backward_non_overlapping_is_exact():
    """stride >= kernel: each pixel gets at most one contribution, so the atomic scatter is exactly a copy."""
    x = rand(1, 2, 4, 4)
    args = ((2, 2), (2, 2), (0, 0, 0, 0), (1, 1), (2, 2))
    _, idx = G.pool.max_pool2d_forward(D(x), *args)
    gy = rand(1, 2, 2, 2)
    gx = H(G.pool.max_pool2d_backward(D(gy), idx, x.shape))
    np.testing.assert_array_equal(gx, C.pool.max_pool2d_backward(gy, H(idx), x.shape))
    np.testing.assert_array_equal(np.sort(gx[gx != 0]), np.sort(gy.ravel()))


# ----------------------------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_function_keeps_the_dtype(dtype):
    x = rand(1, 2, 3, 3, dtype=dtype)
    dx = D(x)
    w = D(rand(2, 2, 2, 2, dtype=dtype))
    v2 = D(np.abs(rand(2, dtype=dtype)) + 0.5)
    s_in = rand(2, 3, dtype=dtype)
    outs = {
        "conv": G.conv.conv2d_forward(dx, w, v2, (1, 1), (0, 0, 0, 0), (1, 1), 1),
        "conv_bi": G.conv.conv2d_backward_input(D(rand(1, 2, 2, 2, dtype=dtype)), w, x.shape, (1, 1), (0,) * 4,
                                                (1, 1), 1),
        "maxpool": G.pool.max_pool2d_forward(dx, (2, 2), (1, 1), (0,) * 4, (1, 1), (2, 2))[0],
        "avgpool": G.pool.avg_pool2d_forward(dx, (2, 2), (1, 1), (0,) * 4, (2, 2), True, 0),
        "adaptive": G.pool.adaptive_avg_pool2d_forward(dx, (2, 2)),
        "lrn": G.norm.lrn_forward(dx, 2, 1e-4, 0.75, 1.0),
        "bn": G.norm.batch_norm_forward(dx, v2, v2, v2, v2, 1e-5),
        "stats": G.norm.batch_norm_stats(dx)[1],
        "act": G.act.act_forward(dx, ACTIVATIONS["sigmoid"], 0.0),
        "softmax": G.act.softmax_forward(D(s_in), True),
        "dropout": G.act.dropout_forward(dx, 0.5, 3)[0],
        "resize": G.resize.interpolate_forward(dx, (4, 5), 1, False, (0.75, 0.6)),
        "pad": G.tensor.pad_forward(dx, (1, 0, 0, 1), 1, 0.0),
        "add": G.tensor.add(dx, dx),
        "bias": G.tensor.add_channel_bias(G.tensor.add(dx, dx), v2),
        "concat": G.tensor.concat_channels([dx, dx]),
        "sum": G.tensor.sum_except_channels(dx),
        "linear": G.dense.linear_forward(D(rand(2, 3, dtype=dtype)), D(rand(2, 3, dtype=dtype)), v2),
    }
    for name, a in outs.items():
        assert a.dtype == dtype, name
    close(H(outs["softmax"]), C.act.softmax_forward(s_in, True), dtype, atol=1e-6)
    close(H(outs["resize"]), C.resize.interpolate_forward(x, (4, 5), 1, False, (0.75, 0.6)), dtype, atol=1e-6)
    close(H(outs["bn"]), C.norm.batch_norm_forward(x, H(v2), H(v2), H(v2), H(v2), 1e-5), dtype, atol=1e-5)


def test_scale_channels_and_relu6_twins():
    from visionkit import ops

    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 2, 3)).astype(np.float32)
    s = rng.standard_normal((2, 3)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_allclose(H(ops.scale_channels(D(x), D(s))), ops.scale_channels(x, s), rtol=1e-6)
    gx, gs = ops.scale_channels_backward(D(g), D(x), D(s))
    ex, es = ops.scale_channels_backward(g, x, s)
    np.testing.assert_allclose(H(gx), ex, rtol=1e-6)
    np.testing.assert_allclose(H(gs), es, rtol=1e-5, atol=1e-6)
    v = np.array([-1, 3, 9, np.nan], np.float32)
    np.testing.assert_array_equal(H(ops.relu6(D(v))), ops.relu6(v))
    np.testing.assert_array_equal(H(ops.relu6_backward(D(np.ones(4, np.float32)), D(v))),
                                  ops.relu6_backward(np.ones(4, np.float32), v))


def test_max_pool_nan_index_matches_the_cpu_twin():
    """Two NaNs in one window: PyTorch (and the CPU twin) report the last one's index."""
    from visionkit import ops

    x = np.array([[[[np.nan, 1.0, np.nan, 0.0]]]], np.float32)
    y, i = ops.max_pool2d(D(x), (1, 4), return_indices=True)
    yc, ic = ops.max_pool2d(x, (1, 4), return_indices=True)
    assert np.isnan(H(y)).all() and np.array_equal(H(i), ic) and ic.ravel().tolist() == [2]
    # adaptive and channel max pooling follow the same rule
    ya, ia = ops.adaptive_max_pool2d(D(x), 1, return_indices=True)
    assert np.array_equal(H(ia), ops.adaptive_max_pool2d(x, 1, return_indices=True)[1])
    xc = np.array([np.nan, 1.0, np.nan, 0.0], np.float32).reshape(1, 4, 1, 1)
    _, ig = ops.channel_max_pool(D(xc), 4, return_indices=True)
    assert np.array_equal(H(ig), ops.channel_max_pool(xc, 4, return_indices=True)[1])
