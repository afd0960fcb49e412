"""conv2d and conv_transpose2d (and the padding helpers) against the numpy reference, finite differences and torch."""

import warnings

import numpy as np
import pytest
import reference as ref
from gradcheck import assert_close, check_gradients
from hypothesis import given, settings
from hypothesis import strategies as st

ops = pytest.importorskip("visionkit.ops")

SETTINGS = settings(max_examples=25, deadline=None)


def _rand(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def _torch():
    return pytest.importorskip("torch")


# ------------------------------------------------------------------------------------------------ conv2d cases


@st.composite
def conv_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    # up to 5 channels per group both ways: wide enough for the im2col+GEMM path as well as the direct kernels
    cg, og = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    padding = draw(st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2)),
                             st.sampled_from(["same", "valid"])))
    if isinstance(padding, str):
        stride, dilation = draw(st.sampled_from([((sh, sw), 1), (1, (dh, dw)), ((sh, sw), (dh, dw))]))
    else:
        stride, dilation = (sh, sw), (dh, dw)
    # make the (padded) input at least as large as the dilated kernel
    ph, pw = (0, 0) if isinstance(padding, str) else ref.pair(padding)
    dh, dw = ref.pair(dilation)
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 8))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 8))
    return dict(n=draw(st.integers(1, 2)), c=cg * groups, h=h, w=w, o=og * groups, k=(kh, kw), stride=stride,
                padding=padding, dilation=dilation, groups=groups, bias=draw(st.booleans()),
                seed=draw(st.integers(0, 2**16)))


def _make_conv(case, dtype=np.float32):
    rng = np.random.default_rng(case["seed"])
    x = _rand(rng, (case["n"], case["c"], case["h"], case["w"]), dtype)
    wt = _rand(rng, (case["o"], case["c"] // case["groups"]) + tuple(case["k"]), dtype)
    b = _rand(rng, (case["o"],), dtype) if case["bias"] else None
    kw = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"], groups=case["groups"])
    return x, wt, b, kw


def _case(n, c, h, w, o, k, stride=1, padding=0, dilation=1, groups=1, bias=True, seed=0):
    return dict(n=n, c=c, h=h, w=w, o=o, k=ref.pair(k), stride=stride, padding=padding, dilation=dilation,
                groups=groups, bias=bias, seed=seed)


CONV_EDGE = {
    "basic3x3": _case(2, 3, 6, 5, 4, 3, padding=1),
    "1x1": _case(1, 4, 3, 3, 2, 1),
    # strided 1x1 (ResNet's shortcuts): a 1x1 conv of the subsampled input, odd sizes keep the last row/column
    "1x1_s2": _case(2, 4, 7, 6, 5, 1, stride=2),
    "1x1_s_pair": _case(1, 3, 5, 8, 4, 1, stride=(3, 2), bias=False),
    # one image widened: output channels split between the threads (several pixel chunks: see below)
    "1x1_widen": _case(1, 8, 9, 7, 24, 1),
    # strided GEMM convs: im2col through phase planes (a ResNet-like 7x7/2 stem, uneven strides and padding)
    "stem_7x7_s2": _case(1, 3, 13, 10, 16, 7, stride=2, padding=3),
    "phases_s32_rect": _case(2, 5, 9, 12, 16, (3, 2), stride=(3, 2), padding="same"),
    "phases_s23_k5": _case(3, 2, 8, 8, 16, 5, stride=(2, 3), padding=(2, 1)),
    "stride_gt_kernel": _case(1, 2, 9, 8, 3, 2, stride=3),
    "stride_pair": _case(1, 2, 7, 8, 3, (3, 2), stride=(2, 3), padding=(1, 0)),
    "dilation2": _case(1, 2, 8, 7, 3, 3, dilation=2, padding=2),
    "dilation_pair": _case(1, 2, 8, 7, 2, (2, 3), dilation=(3, 1)),
    "same_even_k4_s2": _case(1, 2, 7, 8, 3, 4, stride=2, padding="same"),
    "same_even_k2_s2": _case(2, 2, 5, 6, 2, 2, stride=2, padding="same"),
    "same_k2_s1": _case(1, 2, 5, 4, 3, 2, padding="same"),
    "same_k3_s2_dil2": _case(1, 2, 7, 6, 2, 3, stride=2, dilation=2, padding="same"),
    "same_rect_kernel": _case(1, 3, 6, 5, 2, (1, 4), stride=(1, 2), padding="same"),
    "valid": _case(1, 2, 5, 6, 3, 3, stride=2, padding="valid"),
    "groups2": _case(2, 4, 5, 5, 6, 3, padding=1, groups=2),
    "depthwise": _case(1, 3, 5, 6, 3, 3, padding=1, groups=3),
    "depthwise_mult2": _case(2, 3, 5, 6, 6, 3, stride=2, padding=1, groups=3),
    "depthwise_mult2_nobias": _case(1, 4, 6, 5, 8, (3, 2), groups=4, bias=False),
    # strided 3x3 depthwise, one output per channel: MobileNet's downsampling kernel (_dw3x3_forward)
    "depthwise_s2": _case(2, 5, 8, 7, 5, 3, stride=2, padding=1, groups=5),
    "depthwise_s2_same_even": _case(1, 4, 8, 6, 4, 3, stride=2, padding="same", groups=4, bias=False),
    "depthwise_s21_dil2": _case(1, 3, 9, 8, 3, 3, stride=(2, 1), dilation=2, padding=(2, 1), groups=3),
    "depthwise_s3_valid": _case(2, 2, 10, 11, 2, 3, stride=3, padding="valid", groups=2),
    "kernel_equals_input": _case(1, 2, 3, 3, 2, 3),
    "no_bias": _case(1, 3, 4, 4, 2, 2, bias=False),
    # wide enough (C/groups * KH * KW >= 32 terms, 4+ outputs per group) for im2col + GEMM rather than direct loops
    "wide_s1": _case(2, 4, 5, 5, 5, 3, padding=1),
    "wide_s1_nobias_n1": _case(1, 4, 5, 4, 4, 3, padding=1, bias=False),
    "wide_s2_dil2": _case(2, 5, 7, 8, 4, 3, stride=2, dilation=2, padding=1),
    "wide_groups2": _case(2, 8, 5, 6, 8, 3, stride=(1, 2), padding=1, groups=2),
    "wide_same_even_s2": _case(1, 4, 7, 6, 4, 4, stride=2, padding="same", bias=False),
    # few terms (1 channel x 3x3) but 16 filters sharing each column: the GEMM path, as MNIST's first conv
    "few_terms_many_filters": _case(2, 1, 6, 7, 16, 3, padding=1),
    "few_terms_many_filters_s2": _case(1, 3, 7, 6, 16, 3, stride=2, padding="same"),
}


@SETTINGS
@given(conv_cases())
def test_conv2d_random_vs_reference(case):
    x, w, b, kw = _make_conv(case)
    assert_close(ops.conv2d(x, w, b, **kw), ref.conv2d(x, w, b, **kw), err_msg=str(case))


@pytest.mark.parametrize("shape", [(1, 8, 9, 15), (1, 8, 11, 13), (3, 8, 9, 15)], ids=["one", "odd", "batch"])
def test_pointwise_over_several_pixel_chunks(monkeypatch, shape):
    """A 1x1 conv cut into pixel chunks (small chunks forced): one widening image's chunks within each thread's
    output channels, and the chunk count rounded up to the workers; several images as before."""
    from visionkit.backends.cpu import conv as conv_mod

    monkeypatch.setattr(conv_mod, "POINTWISE_CHUNK_BYTES", 4096)
    monkeypatch.setattr(conv_mod.threads, "KERNEL_MIN_FLOPS", 0)  # every thread, however small
    monkeypatch.setattr(conv_mod.threads, "PARALLEL_MIN_WORK", 0)
    rng = np.random.default_rng(9)
    x, w, b = rng.standard_normal(shape), rng.standard_normal((24, 8, 1, 1)), rng.standard_normal(24)
    assert_close(ops.conv2d(x, w, b), ref.conv2d(x, w, b), np.float64)
    assert_close(ops.conv2d_relu(x, w, b), np.maximum(ref.conv2d(x, w, b), 0), np.float64)


@pytest.mark.parametrize("name", list(CONV_EDGE))
def test_conv2d_edge_vs_reference(name):
    x, w, b, kw = _make_conv(CONV_EDGE[name])
    assert_close(ops.conv2d(x, w, b, **kw), ref.conv2d(x, w, b, **kw))


@pytest.mark.parametrize("name", list(CONV_EDGE))
def test_conv2d_relu_edge_vs_reference(name):
    """The fused conv + ReLU on every path (direct, strided direct, GEMM): relu of the reference."""
    x, w, b, kw = _make_conv(CONV_EDGE[name])
    assert_close(ops.conv2d_relu(x, w, b, **kw), np.maximum(ref.conv2d(x, w, b, **kw), 0))


def _check_bn_act(x, w, b, kw, activation, seed):
    """conv2d_bn_act with a random inference BatchNorm against conv2d, batch_norm and the activation one after
    the other (to float32 rounding); returns the fused result."""
    rng = np.random.default_rng(seed)
    O = w.shape[0]
    mean, var = _rand(rng, (O,)), np.abs(_rand(rng, (O,))) + 0.1
    gamma, beta = _rand(rng, (O,)) * 3, _rand(rng, (O,))
    got = ops.conv2d_bn_act(x, w, b, **kw, bn=(mean, var, gamma, beta, 1e-3), activation=activation)
    want = ops.batch_norm(ops.conv2d(x, w, b, **kw), mean, var, gamma, beta, training=False, eps=1e-3)
    if activation:
        want = ops.activation(want, activation)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)
    return got


@pytest.mark.parametrize("activation", [None, "relu", "relu6"])
@pytest.mark.parametrize("name", ["basic3x3", "stride_pair", "depthwise_mult2", "depthwise_s2", "wide_s1",
                                  "wide_s2_dil2", "1x1", "few_terms_many_filters", "no_bias"])
def test_conv2d_bn_act_matches_the_separate_ops(name, activation):
    """The inference fusion of conv + BatchNorm + activation on every path gives what the three ops give."""
    x, w, b, kw = _make_conv(CONV_EDGE[name])
    assert _check_bn_act(x, w, b, kw, activation, seed=7).dtype == np.float32
    # without BatchNorm it is conv + activation
    got = ops.conv2d_bn_act(x, w, b, **kw, activation=activation)
    want = ops.conv2d(x, w, b, **kw)
    np.testing.assert_allclose(got, ops.activation(want, activation) if activation else want, rtol=2e-6, atol=2e-6)


def test_conv2d_bn_act_refuses_what_it_cannot_fuse():
    x, w = np.zeros((1, 2, 5, 5), np.float32), np.zeros((3, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="activation must be one of"):
        ops.conv2d_bn_act(x, w, activation="sigmoid")
    with pytest.raises(ValueError, match=r"running_var must have shape \(3,\)"):
        ops.conv2d_bn_act(x, w, bn=(np.zeros(3), np.ones(4), None, None, 1e-5))


@pytest.mark.parametrize("c,k", [(1, 3), (2, 3), (8, 3), (40, 1)], ids=["direct", "direct-strided", "gemm", "pointwise"])
def test_conv2d_relu_keeps_nan_as_relu_does(c, k):
    rng = np.random.default_rng(3)
    x, w = _rand(rng, (2, c, 6, 7)), _rand(rng, (4, c, k, k))
    x[0, 0, 2, 3] = np.nan
    stride = 2 if c == 2 else 1
    got = ops.conv2d_relu(x, w, None, stride=stride, padding=k // 2)
    want = ops.relu(ops.conv2d(x, w, None, stride=stride, padding=k // 2))
    assert np.isnan(got).any()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", list(CONV_EDGE))
def test_conv2d_backward_gradcheck(name):
    case = dict(CONV_EDGE[name], n=1)
    x, w, b, kw = _make_conv(case, np.float64)

    def fwd(x, w, b):
        return ops.conv2d(x, w, b, **kw)

    if b is None:
        check_gradients(lambda x, w: fwd(x, w, None), [x, w],
                        lambda g, x, w: ops.conv2d_backward(g, x, w, None, **kw)[:2])
        assert ops.conv2d_backward(np.ones_like(fwd(x, w, None)), x, w, None, **kw)[2] is None
    else:
        check_gradients(fwd, [x, w, b], lambda g, x, w, b: ops.conv2d_backward(g, x, w, b, **kw))


def _torch_conv2d(torch, x, w, b, stride, padding, dilation, groups):
    F = torch.nn.functional
    t = torch.from_numpy(x.astype(np.float64))
    if isinstance(padding, str):  # TensorFlow rule, done as an explicit F.pad (torch's "same" is stride-1 only)
        pt, pb, pl, pr = ref.same_padding(x.shape[2:], w.shape[2:], stride, dilation) \
            if padding == "same" else (0, 0, 0, 0)
        t, padding = F.pad(t, (pl, pr, pt, pb)), 0
    return F.conv2d(t, torch.from_numpy(w.astype(np.float64)),
                    None if b is None else torch.from_numpy(b.astype(np.float64)),
                    stride=stride, padding=padding, dilation=dilation, groups=groups).numpy()


@pytest.mark.parametrize("name", list(CONV_EDGE))
def test_conv2d_vs_torch(name):
    torch = _torch()
    x, w, b, kw = _make_conv(CONV_EDGE[name])
    expected = _torch_conv2d(torch, x, w, b, **kw)
    assert_close(ref.conv2d(x, w, b, **kw), expected, np.float64, err_msg="reference vs torch")
    assert_close(ops.conv2d(x, w, b, **kw), expected, err_msg="ops vs torch")


def test_conv2d_same_with_torch_same_stride1():
    torch = _torch()
    rng = np.random.default_rng(3)
    x, w = _rand(rng, (1, 2, 5, 6)), _rand(rng, (3, 2, 4, 3))  # even kernel: torch puts the odd pixel bottom/right
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that an even kernel needs a padded copy
        expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding="same").numpy()
    assert_close(ops.conv2d(x, w, padding="same"), expected)


# ------------------------------------------------------------------------------------------------ conv_transpose2d


@st.composite
def convt_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg, og = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    # torch: output_padding < max(stride, dilation); the output must be non-empty
    oph, opw = draw(st.integers(0, max(sh, dh) - 1)), draw(st.integers(0, max(sw, dw) - 1))
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    ph = draw(st.integers(0, max(0, ((h - 1) * sh + dh * (kh - 1) + oph) // 2)))
    pw = draw(st.integers(0, max(0, ((w - 1) * sw + dw * (kw - 1) + opw) // 2)))
    return dict(n=draw(st.integers(1, 2)), c=cg * groups, h=h, w=w, og=og, k=(kh, kw), stride=(sh, sw),
                padding=(ph, pw), output_padding=(oph, opw), dilation=(dh, dw), groups=groups,
                bias=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


def _make_convt(case, dtype=np.float32):
    rng = np.random.default_rng(case["seed"])
    x = _rand(rng, (case["n"], case["c"], case["h"], case["w"]), dtype)
    wt = _rand(rng, (case["c"], case["og"]) + tuple(case["k"]), dtype)
    b = _rand(rng, (case["og"] * case["groups"],), dtype) if case["bias"] else None
    kw = dict(stride=case["stride"], padding=case["padding"], output_padding=case["output_padding"],
              groups=case["groups"], dilation=case["dilation"])
    return x, wt, b, kw


def _tcase(n, c, h, w, og, k, stride=1, padding=0, output_padding=0, groups=1, dilation=1, bias=True, seed=0):
    return dict(n=n, c=c, h=h, w=w, og=og, k=ref.pair(k), stride=stride, padding=padding,
                output_padding=output_padding, groups=groups, dilation=dilation, bias=bias, seed=seed)


CONVT_EDGE = {
    "basic": _tcase(2, 3, 4, 3, 2, 3),
    "stride2_k2": _tcase(1, 2, 3, 4, 3, 2, stride=2),
    "stride2_pad1_outpad1": _tcase(1, 2, 3, 3, 2, 3, stride=2, padding=1, output_padding=1),
    "stride_gt_kernel": _tcase(1, 2, 3, 2, 2, 2, stride=3, output_padding=2),
    "outpad_pair": _tcase(1, 2, 3, 3, 2, (3, 2), stride=(2, 3), padding=(1, 0), output_padding=(1, 2)),
    "dilation2": _tcase(1, 2, 3, 3, 2, 3, dilation=2, padding=1),
    "dilation2_outpad1": _tcase(1, 2, 2, 3, 2, 2, stride=1, dilation=2, output_padding=1),
    "groups2": _tcase(1, 4, 3, 3, 3, 3, stride=2, padding=1, groups=2),
    "depthwise_mult2": _tcase(2, 3, 3, 4, 2, 3, stride=2, groups=3),
    "no_bias": _tcase(1, 2, 3, 3, 3, 4, stride=2, padding=1, bias=False),
    "1x1_stride2": _tcase(1, 3, 3, 3, 2, 1, stride=2, output_padding=1),
    # wide: the input-gradient GEMM + col2im path
    "wide_s2": _tcase(2, 4, 3, 3, 4, 3, stride=2, padding=1, output_padding=1),
    "wide_s1_nobias": _tcase(1, 5, 3, 4, 4, 3, padding=1, bias=False),
    "wide_groups2_dil2": _tcase(1, 8, 3, 3, 4, 3, stride=2, groups=2, dilation=2),
}


@SETTINGS
@given(convt_cases())
def test_conv_transpose2d_random_vs_reference(case):
    x, w, b, kw = _make_convt(case)
    assert_close(ops.conv_transpose2d(x, w, b, **kw), ref.conv_transpose2d(x, w, b, **kw), err_msg=str(case))


@pytest.mark.parametrize("name", list(CONVT_EDGE))
def test_conv_transpose2d_edge_vs_reference(name):
    x, w, b, kw = _make_convt(CONVT_EDGE[name])
    assert_close(ops.conv_transpose2d(x, w, b, **kw), ref.conv_transpose2d(x, w, b, **kw))


def test_conv_transpose2d_output_size_formula():
    rng = np.random.default_rng(0)
    x, w = _rand(rng, (1, 2, 5, 4)), _rand(rng, (2, 3, 3, 2))
    y = ops.conv_transpose2d(x, w, stride=(2, 3), padding=(1, 0), output_padding=(1, 2), dilation=(2, 1))
    # (H-1)*s - 2p + d*(k-1) + output_padding + 1
    assert y.shape == (1, 3, 4 * 2 - 2 + 2 * 2 + 1 + 1, 3 * 3 - 0 + 1 * 1 + 2 + 1)


@pytest.mark.parametrize("name", list(CONVT_EDGE))
def test_conv_transpose2d_backward_gradcheck(name):
    case = dict(CONVT_EDGE[name], n=1)
    x, w, b, kw = _make_convt(case, np.float64)

    def fwd(x, w, b):
        return ops.conv_transpose2d(x, w, b, **kw)

    if b is None:
        check_gradients(lambda x, w: fwd(x, w, None), [x, w],
                        lambda g, x, w: ops.conv_transpose2d_backward(g, x, w, None, **kw)[:2])
    else:
        check_gradients(fwd, [x, w, b], lambda g, x, w, b: ops.conv_transpose2d_backward(g, x, w, b, **kw))


@pytest.mark.parametrize("name", list(CONVT_EDGE))
def test_conv_transpose2d_vs_torch(name):
    torch = _torch()
    x, w, b, kw = _make_convt(CONVT_EDGE[name])
    t = lambda a: None if a is None else torch.from_numpy(a.astype(np.float64))  # noqa: E731
    expected = torch.nn.functional.conv_transpose2d(t(x), t(w), t(b), **kw).numpy()
    assert_close(ref.conv_transpose2d(x, w, b, **kw), expected, np.float64, err_msg="reference vs torch")
    assert_close(ops.conv_transpose2d(x, w, b, **kw), expected, err_msg="ops vs torch")


@pytest.mark.parametrize("tile_elems", [1, 36 * 50, 36 * 150], ids=["one-row-bands", "six-row-bands", "two-images"])
@pytest.mark.parametrize("k,kw", [(3, dict(padding=1)), (3, dict(stride=2, padding=1)), (3, dict(dilation=2, padding=2)),
                                  (2, dict(padding="same")), (3, dict(padding=(0, 2))), (1, dict())],
                         ids=["pad1", "stride2", "dilation2", "even-same", "uneven-pad", "pointwise"])
def test_conv_tiles_on_pool_threads(monkeypatch, tile_elems, k, kw):
    """The im2col+GEMM path cuts work into tiles (bands of output rows, or runs of whole images) and runs them on
    pool threads; every tiling, threaded even at tiny sizes, must give the reference's answer, the two-phase
    band order of the input gradient included."""
    conv_mod = pytest.importorskip("visionkit.backends.cpu.conv")
    threads_mod = pytest.importorskip("visionkit.backends.cpu.threads")
    monkeypatch.setattr(conv_mod, "TILE_ELEMS", tile_elems)
    monkeypatch.setattr(conv_mod, "MIN_TILE_COLS", 1)
    monkeypatch.setattr(threads_mod, "PARALLEL_MIN_FLOPS", 0)
    rng = np.random.default_rng(21)
    c = 40 if k == 1 else 8  # enough terms per output (c*k*k >= 32) for the GEMM path rather than direct
    x, w, b = _rand(rng, (5, c, 9, 8), np.float64), _rand(rng, (6, c, k, k), np.float64), _rand(rng, (6,), np.float64)
    y = ops.conv2d(x, w, b, **kw)
    assert_close(y, ref.conv2d(x, w, b, **kw), np.float64)
    assert_close(ops.conv2d_relu(x, w, b, **kw), np.maximum(ref.conv2d(x, w, b, **kw), 0), np.float64)
    mean, var, gamma, beta = (_rand(rng, (6,), np.float64) for _ in range(4))
    var = np.abs(var) + 0.5
    want = np.clip((ref.conv2d(x, w, b, **kw) - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5)
                   * gamma[:, None, None] + beta[:, None, None], 0, 6)
    got = ops.conv2d_bn_act(x, w, b, **kw, bn=(mean, var, gamma, beta, 1e-5), activation="relu6")
    assert_close(got, want, np.float64)
    if not isinstance(kw.get("padding"), str):  # conv_transpose2d takes numeric padding only, as in PyTorch
        wt = _rand(rng, (x.shape[1], 6, k, k), np.float64)
        assert_close(ops.conv_transpose2d(x, wt, **kw), ref.conv_transpose2d(x, wt, **kw), np.float64)
    g = _rand(rng, y.shape, np.float64)
    gx, gw, gb = ops.conv2d_backward(g, x, w, b, **kw)
    monkeypatch.setattr(conv_mod, "TILE_ELEMS", 1 << 18)
    monkeypatch.setattr(threads_mod, "PARALLEL_MIN_FLOPS", float("inf"))
    ex, ew, eb = ops.conv2d_backward(g, x, w, b, **kw)
    assert_close(gx, ex, np.float64)
    assert_close(gw, ew, np.float64)
    assert_close(gb, eb, np.float64)


@pytest.mark.parametrize("kw", [dict(padding=1), dict(stride=2, padding=1), dict()],
                         ids=["pitched", "strided", "valid"])
def test_conv_one_tile_splits_the_gemm_by_output_channels(monkeypatch, kw):
    """One small image makes one tile: its GEMM is cut across the pool by output channels instead."""
    threads_mod = pytest.importorskip("visionkit.backends.cpu.threads")
    monkeypatch.setattr(threads_mod, "PARALLEL_MIN_FLOPS", 0)
    if threads_mod.num_workers() < 2:
        pytest.skip("one numba thread: tiles never split")
    rng = np.random.default_rng(5)
    x, w, b = _rand(rng, (1, 8, 7, 6), np.float64), _rand(rng, (70, 8, 3, 3), np.float64), _rand(rng, (70,), np.float64)
    conv_mod = pytest.importorskip("visionkit.backends.cpu.conv")
    assert len(conv_mod._tiles(1, 7, 6, 72, 70)) == 1
    assert_close(ops.conv2d(x, w, b, **kw), ref.conv2d(x, w, b, **kw), np.float64)
    assert_close(ops.conv2d_relu(x, w, b, **kw), np.maximum(ref.conv2d(x, w, b, **kw), 0), np.float64)


# ------------------------------------------------------------------------------------------------ helpers


@pytest.mark.parametrize("in_hw,kernel,stride,dilation", [
    ((7, 8), 4, 2, 1), ((5, 6), 2, 2, 1), ((5, 4), 2, 1, 1), ((7, 6), 3, 2, 2), ((6, 5), (1, 4), (1, 2), 1),
    ((4, 4), 3, 1, 1), ((4, 4), 1, 3, 1), ((3, 3), 5, 1, 1), ((9, 2), (3, 2), (3, 1), (1, 2)),
])
def test_same_padding_and_output_size(in_hw, kernel, stride, dilation):
    (kh, kw), (sh, sw), (dh, dw) = ref.pair(kernel), ref.pair(stride), ref.pair(dilation)
    pads = tuple(ops.same_padding(in_hw, (kh, kw), (sh, sw), (dh, dw)))
    assert pads == ref.same_padding(in_hw, kernel, stride, dilation)
    # "same" gives ceil(in / stride) outputs
    assert ops.conv_output_size(in_hw[0], kh, sh, pads[0] + pads[1], dh) == -(-in_hw[0] // sh)
    assert ops.conv_output_size(in_hw[1], kw, sw, pads[2] + pads[3], dw) == -(-in_hw[1] // sw)
    for pad_total in (0, 1, 2, 3):
        if in_hw[0] + pad_total >= dh * (kh - 1) + 1:
            assert ops.conv_output_size(in_hw[0], kh, sh, pad_total, dh) == \
                ref.conv_output_size(in_hw[0], kh, sh, pad_total, dh)


def test_same_padding_accepts_ints():
    # the contract: "Ints for size-like arguments may be an int or an (h, w) pair"
    assert tuple(ops.same_padding((7, 8), 4, 2, 1)) == ref.same_padding((7, 8), 4, 2, 1) == (1, 2, 1, 1)


# ------------------------------------------------------------------------------------------------ bad inputs


@pytest.mark.parametrize("xs,ws,kw,match", [
    ((2, 3, 5), (4, 3, 3, 3), {}, "dim|rank|4-D|4D|shape"),                    # x not 4-D
    ((1, 2, 3, 5, 5), (4, 2, 3, 3), {}, "dim|rank|4-D|4D|shape"),
    ((1, 3, 5, 5), (4, 3, 3), {}, "dim|rank|4-D|4D|shape|weight"),             # weight not 4-D
    ((1, 3, 5, 5), (4, 2, 3, 3), {}, "channel|group"),                          # C != C/groups * groups
    ((1, 4, 5, 5), (4, 4, 3, 3), {"groups": 2}, "channel|group"),
    ((1, 4, 5, 5), (3, 2, 3, 3), {"groups": 2}, "channel|group|divisible"),   # O not divisible by groups
    ((1, 3, 5, 5), (4, 1, 3, 3), {"groups": 2}, "channel|group|divisible"),   # C not divisible by groups
    ((1, 2, 3, 3), (4, 2, 5, 5), {}, "kernel|input|size|larger"),            # kernel > input
    ((1, 2, 3, 3), (4, 2, 3, 3), {"dilation": 2}, "kernel|input|size|larger"),  # dilated kernel > input
    ((1, 2, 3, 3), (4, 2, 6, 6), {"padding": 1}, "kernel|input|size|larger"),  # kernel > padded input
])
def test_conv2d_bad_inputs(xs, ws, kw, match):
    with pytest.raises(ValueError, match=f"(?i){match}"):
        ops.conv2d(np.zeros(xs, np.float32), np.zeros(ws, np.float32), **kw)


def test_conv2d_bias_shape_mismatch():
    with pytest.raises(ValueError):
        ops.conv2d(np.zeros((1, 2, 4, 4), np.float32), np.zeros((3, 2, 3, 3), np.float32),
                   np.zeros(4, np.float32))


@pytest.mark.parametrize("xs,ws,kw", [
    ((2, 3, 5), (3, 2, 3, 3), {}),                       # x not 4-D
    ((1, 4, 3, 3), (3, 2, 3, 3), {}),                    # x channels != weight in-channels
    ((1, 3, 3, 3), (3, 2, 3, 3), {"groups": 2}),         # channels not divisible by groups
])
def test_conv_transpose2d_bad_inputs(xs, ws, kw):
    with pytest.raises(ValueError):
        ops.conv_transpose2d(np.zeros(xs, np.float32), np.zeros(ws, np.float32), **kw)


# ------------------------------------------------------------------------------------------------ dtypes, layout, NaN


def test_conv_float64_preserved_and_exact():
    x, w, b, kw = _make_conv(CONV_EDGE["depthwise_mult2"], np.float64)
    y = ops.conv2d(x, w, b, **kw)
    assert_close(y, ref.conv2d(x, w, b, **kw), np.float64)
    assert_close(ops.conv2d_relu(x, w, b, **kw), np.maximum(ref.conv2d(x, w, b, **kw), 0), np.float64)
    x, w, b, kw = _make_convt(CONVT_EDGE["groups2"], np.float64)
    assert_close(ops.conv_transpose2d(x, w, b, **kw), ref.conv_transpose2d(x, w, b, **kw), np.float64)


def test_conv_int_and_noncontiguous_inputs_converted():
    rng = np.random.default_rng(1)
    xi = rng.integers(-3, 4, size=(1, 2, 5, 5))
    wi = rng.integers(-2, 3, size=(3, 2, 3, 3))
    y = ops.conv2d(xi, wi, padding=1)
    assert_close(y, ref.conv2d(xi, wi, padding=1))
    # non-contiguous: a transposed view and a strided slice
    big = _rand(rng, (1, 2, 10, 7))
    x_nc = big[:, :, ::2, :].transpose(0, 1, 3, 2)     # (1, 2, 7, 5), not C-contiguous
    w_nc = _rand(rng, (2, 3, 3, 3)).transpose(1, 0, 2, 3)  # (3, 2, 3, 3)
    assert not x_nc.flags.c_contiguous and not w_nc.flags.c_contiguous
    y = ops.conv2d(x_nc, w_nc, stride=2, padding=1)
    assert_close(y, ref.conv2d(x_nc, w_nc, stride=2, padding=1))
    wt_nc = _rand(rng, (3, 2, 2, 2))[:, :, ::-1, :]
    assert_close(ops.conv_transpose2d(x_nc, wt_nc[:2], stride=2), ref.conv_transpose2d(x_nc, wt_nc[:2], stride=2))


def test_conv_nan_propagates():
    rng = np.random.default_rng(2)
    x, w, b = _rand(rng, (1, 4, 6, 6)), _rand(rng, (4, 2, 3, 3)), _rand(rng, (4,))
    x[0, 1, 2, 3] = np.nan  # group 0 only
    y = ops.conv2d(x, w, b, padding=1, groups=2)
    expected = ref.conv2d(x, w, b, padding=1, groups=2)
    assert np.isnan(expected).any() and not np.isnan(expected).all()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    assert_close(y, expected)
    wt = _rand(rng, (4, 2, 3, 3))
    y = ops.conv_transpose2d(x, wt, stride=2, groups=2)
    expected = ref.conv_transpose2d(x, wt, stride=2, groups=2)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))


@pytest.mark.parametrize("kw", [dict(), dict(padding=1), dict(dilation=2, padding=1), dict(stride=2, padding=1)])
def test_conv2d_backward_nan_stays_local(kw):
    """A NaN in one input channel reaches exactly the weight-gradient taps that multiply it, nothing else."""
    rng = np.random.default_rng(22)
    x, w = _rand(rng, (2, 3, 5, 5)), _rand(rng, (2, 3, 2, 2))
    x[0, 1, 0, 0] = np.nan
    y = ops.conv2d(x, w, **kw)
    g = _rand(rng, y.shape)
    gx, gw, _ = ops.conv2d_backward(g, x, w, **kw)
    # gw[o, c, u, v] = sum_{n, i, j} g[n, o, i, j] * xpad[n, c, i*s + u*d, j*s + v*d]  (the definition)
    s, d = ref.pair(kw.get("stride", 1)), ref.pair(kw.get("dilation", 1))
    xp = ref.pad_constant(x.astype(np.float64), ref.resolve_pads(kw.get("padding", 0), (5, 5), (2, 2), s, d))
    oh, ow = y.shape[2:]
    expected = np.zeros(w.shape)
    for u in range(2):
        for v in range(2):
            patch = xp[:, :, u * d[0]:u * d[0] + s[0] * (oh - 1) + 1:s[0], v * d[1]:v * d[1] + s[1] * (ow - 1) + 1:s[1]]
            expected[:, :, u, v] = np.einsum("nohw,nchw->oc", g.astype(np.float64), patch)
    np.testing.assert_array_equal(np.isnan(gw), np.isnan(expected), err_msg="NaN pattern of the weight gradient")
    assert_close(gw, expected)
    assert not np.isnan(gx[1]).any(), "a NaN in image 0 leaked into image 1's input gradient"


@pytest.mark.parametrize("n,c,o,h,w,chunk_bytes", [
    (1, 24, 40, 7, 7, 1 << 20),     # one block of pixels, so the output channels are split between the threads
    (2, 16, 24, 9, 11, 64 * 40 * 4),  # several blocks per image, the last one short
    (3, 5, 3, 4, 4, 1 << 20),       # fewer output channels than a split would need
])
@pytest.mark.parametrize("activation", [None, "relu6"])
def test_pointwise_conv_in_one_kernel(monkeypatch, n, c, o, h, w, chunk_bytes, activation):
    """1x1 convs run as one Numba kernel calling BLAS per block of pixels (where numpy's BLAS allows it): the
    reference's result, with the fused BatchNorm and activation, whatever the blocks and channel splits."""
    from visionkit.backends.cpu import blas
    from visionkit.backends.cpu import conv as conv_mod
    from visionkit.backends.cpu import threads as threads_mod

    if not blas.AVAILABLE:
        pytest.skip("numpy's BLAS has no scipy-openblas ILP64 GEMM symbols")
    monkeypatch.setattr(threads_mod, "PARALLEL_MIN_FLOPS", 0)
    monkeypatch.setattr(conv_mod, "POINTWISE_CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(n * 7 + c)
    x, wt, b = _rand(rng, (n, c, h, w)), _rand(rng, (o, c, 1, 1)), _rand(rng, (o,))
    assert_close(ops.conv2d(x, wt, b), ref.conv2d(x, wt, b))
    _check_bn_act(x, wt, b, {}, activation, seed=n * 7 + c + 1)


@pytest.mark.parametrize("name", ["wide_s1", "wide_s1_nobias_n1", "wide_s2_dil2", "wide_same_even_s2",
                                  "few_terms_many_filters_s2"])
@pytest.mark.parametrize("activation", [None, "relu6"])
def test_single_image_im2col_in_one_kernel(monkeypatch, name, activation):
    """One small image is one tile: its im2col is shared by the threads (by input channels), then its GEMM (by
    output channels), in one Numba kernel calling BLAS (where numpy's BLAS allows it)."""
    from visionkit.backends.cpu import blas
    from visionkit.backends.cpu import threads as threads_mod

    if not blas.AVAILABLE:
        pytest.skip("numpy's BLAS has no scipy-openblas ILP64 GEMM symbols")
    monkeypatch.setattr(threads_mod, "PARALLEL_MIN_FLOPS", 0)
    x, w, b, kw = _make_conv(CONV_EDGE[name])
    x = x[:1]
    assert_close(ops.conv2d(x, w, b, **kw), ref.conv2d(x, w, b, **kw))
    _check_bn_act(x, w, b, kw, activation, seed=11)
