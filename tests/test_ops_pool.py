"""Pooling ops (max, avg, adaptive, global, channel max) against the numpy reference, finite differences and torch."""

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


def _t(torch, a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


# ------------------------------------------------------------------------------------------------ max / avg cases


@st.composite
def pool_cases(draw, dilation=True):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = draw(st.one_of(st.none(), st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilation else (1, 1)
    ekh, ekw = dil[0] * (kh - 1) + 1, dil[1] * (kw - 1) + 1
    # torch: padding at most half the (effective) kernel
    padding = draw(st.one_of(st.tuples(st.integers(0, kh // 2), st.integers(0, kw // 2)),
                             st.sampled_from(["same", "valid"])))
    ph, pw = (0, 0) if isinstance(padding, str) else padding
    ceil_mode = draw(st.booleans()) if not isinstance(padding, str) else False
    h = draw(st.integers(max(1, ekh - 2 * ph), 8))
    w = draw(st.integers(max(1, ekw - 2 * pw), 8))
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w), kernel_size=(kh, kw),
                stride=stride, padding=padding, dilation=dil, ceil_mode=ceil_mode, seed=draw(st.integers(0, 2**16)))


def _x(case, dtype=np.float32):
    return _rand(np.random.default_rng(case.get("seed", 0)), case["shape"], dtype)


def _mp(shape, k, stride=None, padding=0, dilation=1, ceil_mode=False, seed=0):
    return dict(shape=shape, kernel_size=k, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode,
                seed=seed)


MAXPOOL_EDGE = {
    "k2s2": _mp((2, 3, 6, 6), 2),
    "k3s2p1": _mp((1, 2, 7, 6), 3, 2, 1),
    "stride_gt_kernel": _mp((1, 2, 8, 7), 2, 3),
    "stride_lt_kernel": _mp((1, 2, 5, 5), 3, 1),
    "dilation2": _mp((1, 2, 7, 8), 3, 1, 1, dilation=2),
    "dilation_pair": _mp((1, 2, 7, 8), (2, 3), (2, 1), 0, dilation=(2, 1)),
    "ceil_partial_window": _mp((1, 2, 5, 5), 2, 2, ceil_mode=True),  # last window half outside
    "ceil_window_in_pad_dropped": _mp((1, 2, 5, 5), 2, 2, 1, ceil_mode=True),  # would start in right padding
    "ceil_k3s2p1": _mp((1, 2, 6, 6), 3, 2, 1, ceil_mode=True),
    "ceil_stride3": _mp((1, 1, 7, 8), 2, 3, ceil_mode=True),
    "ceil_dilation": _mp((1, 1, 8, 6), 2, 3, 1, dilation=2, ceil_mode=True),
    "rect_kernel": _mp((1, 2, 6, 7), (1, 3), (1, 2), (0, 1)),
    "same_even_k2_s2": _mp((1, 2, 5, 7), 2, 2, "same"),
    "same_even_k4_s2": _mp((1, 2, 7, 6), 4, 2, "same"),
    "same_k3_s1": _mp((1, 2, 5, 4), 3, 1, "same"),
    "valid": _mp((1, 2, 7, 5), 3, 2, "valid"),
    "global_window": _mp((1, 2, 3, 4), (3, 4)),
}


@SETTINGS
@given(pool_cases())
def test_max_pool2d_random_vs_reference(case):
    x = _x(case)
    kw = {k: v for k, v in case.items() if k not in ("shape", "seed")}
    y, idx = ops.max_pool2d(x, return_indices=True, **kw)
    ey, eidx = ref.max_pool2d(x, return_indices=True, **kw)
    assert_close(y, ey, err_msg=str(case))
    assert idx.dtype == np.int32
    np.testing.assert_array_equal(idx, eidx)
    assert_close(ops.max_pool2d(x, **kw), ey)  # return_indices=False gives the array alone


@pytest.mark.parametrize("name", list(MAXPOOL_EDGE))
def test_max_pool2d_edge_vs_reference(name):
    case = MAXPOOL_EDGE[name]
    x = _x(case)
    kw = {k: v for k, v in case.items() if k not in ("shape", "seed")}
    y, idx = ops.max_pool2d(x, return_indices=True, **kw)
    ey, eidx = ref.max_pool2d(x, return_indices=True, **kw)
    assert_close(y, ey)
    np.testing.assert_array_equal(idx, eidx)


@pytest.mark.parametrize("name", list(MAXPOOL_EDGE))
def test_max_pool2d_backward_gradcheck(name):
    case = dict(MAXPOOL_EDGE[name])
    case["shape"] = (1,) + case["shape"][1:]
    x = _x(case, np.float64)
    kw = {k: v for k, v in case.items() if k not in ("shape", "seed")}
    _, idx = ops.max_pool2d(x, return_indices=True, **kw)
    check_gradients(lambda x: ops.max_pool2d(x, **kw), [x],
                    lambda g, x: ops.max_pool2d_backward(g, idx, x.shape))


def _torch_max_pool(torch, x, kernel_size, stride, padding, dilation, ceil_mode):
    F = torch.nn.functional
    t = _t(torch, x)
    if isinstance(padding, str):  # TensorFlow padding as explicit -inf padding
        s = kernel_size if stride is None else stride
        pt, pb, pl, pr = ref.same_padding(x.shape[2:], kernel_size, s, dilation) if padding == "same" else (0,) * 4
        t = F.pad(t, (pl, pr, pt, pb), value=-np.inf)
        return F.max_pool2d(t, kernel_size, stride, 0, dilation, ceil_mode).numpy(), None
    y, i = F.max_pool2d(t, kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)
    return y.numpy(), i.numpy()


@pytest.mark.parametrize("name", list(MAXPOOL_EDGE))
def test_max_pool2d_vs_torch(name):
    torch = _torch()
    case = MAXPOOL_EDGE[name]
    x = _x(case)
    kw = {k: v for k, v in case.items() if k not in ("shape", "seed")}
    ty, ti = _torch_max_pool(torch, x, **kw)
    ry, ri = ref.max_pool2d(x, return_indices=True, **kw)
    y, i = ops.max_pool2d(x, return_indices=True, **kw)
    assert_close(ry, ty, np.float64, err_msg="reference vs torch")
    assert_close(y, ty, err_msg="ops vs torch")
    if ti is not None:
        np.testing.assert_array_equal(ri, ti)
        np.testing.assert_array_equal(i, ti)


# ------------------------------------------------------------------------------------------------ avg_pool2d


@st.composite
def avg_cases(draw):
    case = draw(pool_cases(dilation=False))
    del case["dilation"]
    case["count_include_pad"] = draw(st.booleans())
    case["divisor_override"] = draw(st.one_of(st.none(), st.integers(1, 5)))
    return case


def _ap(shape, k, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None, seed=0):
    return dict(shape=shape, kernel_size=k, stride=stride, padding=padding, ceil_mode=ceil_mode,
                count_include_pad=count_include_pad, divisor_override=divisor_override, seed=seed)


AVGPOOL_EDGE = {
    "k2s2": _ap((2, 3, 6, 6), 2),
    "k2s2_odd_sizes": _ap((1, 2, 7, 5), 2),  # the 2x2 fast path drops the last row and column, as floor mode does
    "k2s2_divisor": _ap((1, 2, 6, 4), 2, divisor_override=3),
    "k3s2p1_include": _ap((1, 2, 7, 6), 3, 2, 1, count_include_pad=True),
    "k3s2p1_exclude": _ap((1, 2, 7, 6), 3, 2, 1, count_include_pad=False),
    "stride_gt_kernel": _ap((1, 2, 8, 7), 2, 3),
    "ceil_partial_include": _ap((1, 2, 5, 5), 2, 2, ceil_mode=True, count_include_pad=True),
    "ceil_partial_exclude": _ap((1, 2, 5, 5), 2, 2, ceil_mode=True, count_include_pad=False),
    "ceil_pad_include": _ap((1, 2, 6, 5), 3, 2, 1, ceil_mode=True, count_include_pad=True),
    "ceil_pad_exclude": _ap((1, 2, 6, 5), 3, 2, 1, ceil_mode=True, count_include_pad=False),
    "ceil_window_in_pad_dropped": _ap((1, 2, 5, 5), 2, 2, 1, ceil_mode=True),
    "ceil_stride3_p1": _ap((1, 1, 7, 8), 3, 3, 1, ceil_mode=True, count_include_pad=True),
    "divisor_override": _ap((1, 2, 5, 6), 3, 2, 1, divisor_override=2),
    "divisor_override_ceil": _ap((1, 2, 5, 5), 2, 2, ceil_mode=True, divisor_override=3),
    "rect": _ap((1, 2, 6, 7), (1, 3), (1, 2), (0, 1), count_include_pad=False),
    "same_even_k2_s2": _ap((1, 2, 5, 7), 2, 2, "same"),
    "same_even_k4_s2": _ap((1, 2, 7, 6), 4, 2, "same"),
    "same_k3_s1": _ap((1, 2, 5, 4), 3, 1, "same"),
    "valid": _ap((1, 2, 7, 5), 3, 2, "valid"),
}


def _avg_kw(case):
    return {k: v for k, v in case.items() if k not in ("shape", "seed")}


@SETTINGS
@given(avg_cases())
def test_avg_pool2d_random_vs_reference(case):
    x = _x(case)
    kw = _avg_kw(case)
    assert_close(ops.avg_pool2d(x, **kw), ref.avg_pool2d(x, **kw), err_msg=str(case))


@pytest.mark.parametrize("name", list(AVGPOOL_EDGE))
def test_avg_pool2d_edge_vs_reference(name):
    case = AVGPOOL_EDGE[name]
    x = _x(case)
    assert_close(ops.avg_pool2d(x, **_avg_kw(case)), ref.avg_pool2d(x, **_avg_kw(case)))


def test_avg_pool2d_same_excludes_padding():
    # Keras: the average of a corner window is over the in-image pixels only
    x = np.ones((1, 1, 5, 5), np.float32)
    np.testing.assert_allclose(ops.avg_pool2d(x, 2, 2, "same"), np.ones((1, 1, 3, 3)))
    np.testing.assert_allclose(ops.avg_pool2d(x, 4, 2, "same"), np.ones((1, 1, 3, 3)))


@pytest.mark.parametrize("name", list(AVGPOOL_EDGE))
def test_avg_pool2d_backward_gradcheck(name):
    case = dict(AVGPOOL_EDGE[name])
    case["shape"] = (1,) + case["shape"][1:]
    x = _x(case, np.float64)
    kw = _avg_kw(case)
    check_gradients(lambda x: ops.avg_pool2d(x, **kw), [x],
                    lambda g, x: ops.avg_pool2d_backward(g, x.shape, **kw))


@pytest.mark.parametrize("name", list(AVGPOOL_EDGE))
def test_avg_pool2d_vs_torch(name):
    torch = _torch()
    F = torch.nn.functional
    case = AVGPOOL_EDGE[name]
    x = _x(case)
    kw = _avg_kw(case)
    if isinstance(kw["padding"], str):  # Keras "same": sum over the window / count of in-image pixels
        s = kw["kernel_size"] if kw["stride"] is None else kw["stride"]
        pt, pb, pl, pr = ref.same_padding(x.shape[2:], kw["kernel_size"], s) if kw["padding"] == "same" else (0,) * 4

        def window_sum(a):
            return F.avg_pool2d(F.pad(_t(torch, a), (pl, pr, pt, pb)), kw["kernel_size"], s, divisor_override=1)

        expected = (window_sum(x) / window_sum(np.ones_like(x))).numpy()
    else:
        expected = F.avg_pool2d(_t(torch, x), **kw).numpy()
    assert_close(ref.avg_pool2d(x, **kw), expected, np.float64, err_msg="reference vs torch")
    assert_close(ops.avg_pool2d(x, **kw), expected, err_msg="ops vs torch")


# ------------------------------------------------------------------------------------------------ adaptive


@st.composite
def adaptive_cases(draw):
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    out = draw(st.one_of(st.integers(1, 4), st.tuples(st.integers(1, h + 2), st.integers(1, w + 2))))
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w), output_size=out,
                seed=draw(st.integers(0, 2**16)))


ADAPTIVE_EDGE = {
    "to1": dict(shape=(2, 3, 5, 7), output_size=1),
    "7to3": dict(shape=(1, 2, 7, 7), output_size=3),
    "overlapping_bins": dict(shape=(1, 2, 5, 7), output_size=(3, 4)),
    "identity": dict(shape=(1, 2, 4, 5), output_size=(4, 5)),
    "upsampling": dict(shape=(1, 2, 3, 2), output_size=(5, 4)),
    "10to4": dict(shape=(1, 1, 10, 10), output_size=(4, 6)),
}


@SETTINGS
@given(adaptive_cases())
def test_adaptive_pools_random_vs_reference(case):
    x = _x(case)
    o = case["output_size"]
    assert_close(ops.adaptive_avg_pool2d(x, o), ref.adaptive_avg_pool2d(x, o), err_msg=str(case))
    y, idx = ops.adaptive_max_pool2d(x, o, return_indices=True)
    ey, eidx = ref.adaptive_max_pool2d(x, o, return_indices=True)
    assert_close(y, ey, err_msg=str(case))
    np.testing.assert_array_equal(idx, eidx)
    assert_close(ops.adaptive_max_pool2d(x, o), ey)


@pytest.mark.parametrize("name", list(ADAPTIVE_EDGE))
def test_adaptive_pools_backward_gradcheck(name):
    case = ADAPTIVE_EDGE[name]
    x = _x(dict(case, shape=(1,) + case["shape"][1:]), np.float64)
    o = case["output_size"]
    check_gradients(lambda x: ops.adaptive_avg_pool2d(x, o), [x],
                    lambda g, x: ops.adaptive_avg_pool2d_backward(g, x.shape))
    _, idx = ops.adaptive_max_pool2d(x, o, return_indices=True)
    check_gradients(lambda x: ops.adaptive_max_pool2d(x, o), [x],
                    lambda g, x: ops.max_pool2d_backward(g, idx, x.shape))


@pytest.mark.parametrize("name", list(ADAPTIVE_EDGE))
def test_adaptive_pools_vs_torch(name):
    torch = _torch()
    F = torch.nn.functional
    case = ADAPTIVE_EDGE[name]
    x = _x(case)
    o = case["output_size"]
    expected = F.adaptive_avg_pool2d(_t(torch, x), o).numpy()
    assert_close(ref.adaptive_avg_pool2d(x, o), expected, np.float64, err_msg="reference vs torch")
    assert_close(ops.adaptive_avg_pool2d(x, o), expected, err_msg="ops vs torch")
    ty, ti = F.adaptive_max_pool2d(_t(torch, x), o, return_indices=True)
    ry, ri = ref.adaptive_max_pool2d(x, o, return_indices=True)
    y, i = ops.adaptive_max_pool2d(x, o, return_indices=True)
    assert_close(ry, ty.numpy(), np.float64, err_msg="reference vs torch")
    assert_close(y, ty.numpy(), err_msg="ops vs torch")
    np.testing.assert_array_equal(ri, ti.numpy())
    np.testing.assert_array_equal(i, ti.numpy())


# ------------------------------------------------------------------------------------------------ global pools


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pools_vs_reference_and_gradcheck(keepdims):
    rng = np.random.default_rng(4)
    x = _rand(rng, (2, 3, 4, 5))
    y = ops.global_avg_pool2d(x, keepdims=keepdims)
    assert_close(y, ref.global_avg_pool2d(x, keepdims))
    assert y.shape == ((2, 3, 1, 1) if keepdims else (2, 3))
    y = ops.global_max_pool2d(x, keepdims=keepdims)
    assert_close(y, ref.global_max_pool2d(x, keepdims))
    y2, idx = ops.global_max_pool2d(x, keepdims=keepdims, return_indices=True)
    assert_close(y2, y)

    x64 = _rand(rng, (2, 2, 3, 4), np.float64)
    check_gradients(lambda x: ops.global_avg_pool2d(x, keepdims=keepdims), [x64],
                    lambda g, x: ops.global_avg_pool2d_backward(g, x.shape))
    _, idx = ops.global_max_pool2d(x64, keepdims=keepdims, return_indices=True)
    check_gradients(lambda x: ops.global_max_pool2d(x, keepdims=keepdims), [x64],
                    lambda g, x: ops.global_max_pool2d_backward(g, idx, x.shape))


def test_global_pools_vs_torch():
    torch = _torch()
    F = torch.nn.functional
    x = _rand(np.random.default_rng(5), (2, 3, 4, 5))
    assert_close(ops.global_avg_pool2d(x, keepdims=True), F.adaptive_avg_pool2d(_t(torch, x), 1).numpy())
    assert_close(ops.global_max_pool2d(x), F.adaptive_max_pool2d(_t(torch, x), 1).numpy()[:, :, 0, 0])


# ------------------------------------------------------------------------------------------------ channel max pool


@pytest.mark.parametrize("shape,k", [((2, 6, 3, 4), 2), ((1, 6, 2, 3), 3), ((1, 4, 3, 3), 4), ((1, 3, 2, 2), 1)])
def test_channel_max_pool_vs_reference_and_gradcheck(shape, k):
    rng = np.random.default_rng(6)
    x = _rand(rng, shape)
    assert_close(ops.channel_max_pool(x, k), ref.channel_max_pool(x, k))
    y, idx = ops.channel_max_pool(x, k, return_indices=True)
    assert_close(y, ref.channel_max_pool(x, k))
    x64 = _rand(rng, (1,) + shape[1:], np.float64)
    _, idx = ops.channel_max_pool(x64, k, return_indices=True)
    check_gradients(lambda x: ops.channel_max_pool(x, k), [x64],
                    lambda g, x: ops.channel_max_pool_backward(g, idx, x.shape))


def test_channel_max_pool_vs_torch():
    torch = _torch()
    x = _rand(np.random.default_rng(7), (2, 6, 3, 4))
    expected = _t(torch, x).view(2, 2, 3, 3, 4).amax(dim=2).numpy()  # maxout over runs of 3 channels
    assert_close(ops.channel_max_pool(x, 3), expected)


# ------------------------------------------------------------------------------------------------ bad inputs


@pytest.mark.parametrize("call,match", [
    (lambda: ops.max_pool2d(np.zeros((2, 3, 5), np.float32), 2), "dim|rank|4-D|4D|shape"),
    (lambda: ops.avg_pool2d(np.zeros((3, 5), np.float32), 2), "dim|rank|4-D|4D|shape"),
    (lambda: ops.adaptive_avg_pool2d(np.zeros((3, 5, 5), np.float32), 2), "dim|rank|4-D|4D|shape"),
    (lambda: ops.global_avg_pool2d(np.zeros((3, 5, 5), np.float32)), "dim|rank|4-D|4D|shape"),
    (lambda: ops.channel_max_pool(np.zeros((3, 5, 5), np.float32), 1), "dim|rank|4-D|4D|shape"),
    (lambda: ops.max_pool2d(np.zeros((1, 1, 3, 3), np.float32), 4), "kernel|input|size|larger"),
    (lambda: ops.max_pool2d(np.zeros((1, 1, 3, 3), np.float32), 3, dilation=2), "kernel|input|size|larger"),
    (lambda: ops.avg_pool2d(np.zeros((1, 1, 1, 5), np.float32), 4, padding=1), "kernel|input|size|larger"),
    (lambda: ops.channel_max_pool(np.zeros((1, 5, 2, 2), np.float32), 2), "divis|channel|kernel"),
    (lambda: ops.channel_max_pool(np.zeros((1, 6, 2, 2), np.float32), 4), "divis|channel|kernel"),
])
def test_pool_bad_inputs(call, match):
    with pytest.raises(ValueError, match=f"(?i){match}"):
        call()


# ------------------------------------------------------------------------------------------------ dtypes, NaN


def test_pool_float64_preserved_int_and_noncontiguous_converted():
    rng = np.random.default_rng(8)
    x64 = _rand(rng, (1, 2, 5, 6), np.float64)
    assert_close(ops.max_pool2d(x64, 3, 2, 1), ref.max_pool2d(x64, 3, 2, 1), np.float64)
    assert_close(ops.avg_pool2d(x64, 3, 2, 1), ref.avg_pool2d(x64, 3, 2, 1), np.float64)
    assert_close(ops.adaptive_avg_pool2d(x64, 3), ref.adaptive_avg_pool2d(x64, 3), np.float64)
    assert_close(ops.global_avg_pool2d(x64), ref.global_avg_pool2d(x64), np.float64)
    xi = rng.integers(-5, 6, size=(1, 2, 5, 6))
    assert_close(ops.max_pool2d(xi, 2), ref.max_pool2d(xi, 2))
    assert_close(ops.avg_pool2d(xi, 2), ref.avg_pool2d(xi, 2))
    xnc = _rand(rng, (1, 6, 4, 8))[:, ::2, :, ::-1].transpose(0, 1, 3, 2)
    assert not xnc.flags.c_contiguous
    assert_close(ops.max_pool2d(xnc, 2), ref.max_pool2d(xnc, 2))
    assert_close(ops.avg_pool2d(xnc, 3, 1, 1), ref.avg_pool2d(xnc, 3, 1, 1))
    assert_close(ops.adaptive_max_pool2d(xnc, 3), ref.adaptive_max_pool2d(xnc, 3))
    assert_close(ops.channel_max_pool(xnc, 3), ref.channel_max_pool(xnc, 3))


@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
                                "global_avg_pool2d", "global_max_pool2d", "channel_max_pool"])
def test_pool_nan_propagates(op):
    rng = np.random.default_rng(9)
    x = _rand(rng, (1, 4, 6, 6))
    x[0, 1, 2, 3] = np.nan
    call = {
        "max_pool2d": lambda m, a: m.max_pool2d(a, 3, 2, 1),
        "avg_pool2d": lambda m, a: m.avg_pool2d(a, 3, 2, 1),
        "adaptive_avg_pool2d": lambda m, a: m.adaptive_avg_pool2d(a, 3),
        "adaptive_max_pool2d": lambda m, a: m.adaptive_max_pool2d(a, 4),
        "global_avg_pool2d": lambda m, a: m.global_avg_pool2d(a),
        "global_max_pool2d": lambda m, a: m.global_max_pool2d(a),
        "channel_max_pool": lambda m, a: m.channel_max_pool(a, 2),
    }[op]
    y, expected = call(ops, x), call(ref, x)
    assert np.isnan(expected).any() and not np.isnan(expected).all()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected), err_msg=f"{op}: NaN pattern")
    assert_close(y, expected)


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=2, stride=1, dilation=2),
                                dict(kernel_size=3, stride=2, ceil_mode=True)])
def test_max_pool2d_ties_pick_the_first_like_torch(kw):
    # integer-valued input: many ties; torch keeps the first maximum in row-major window order
    x = np.random.default_rng(23).integers(0, 2, size=(1, 2, 6, 7)).astype(np.float32)
    y, idx = ops.max_pool2d(x, return_indices=True, **kw)
    ey, eidx = ref.max_pool2d(x, return_indices=True, **kw)
    assert_close(y, ey)
    np.testing.assert_array_equal(idx, eidx)
    g = np.ones_like(y)
    gx = ops.max_pool2d_backward(g, idx, x.shape)
    expected = np.zeros(x.shape)
    for n, c, i, j in np.ndindex(*y.shape):
        expected[n, c].reshape(-1)[eidx[n, c, i, j]] += 1
    assert_close(gx, expected)


def test_adaptive_max_pool2d_ties_pick_the_first():
    x = np.zeros((1, 1, 5, 7), np.float32)
    _, idx = ops.adaptive_max_pool2d(x, (2, 3), return_indices=True)
    np.testing.assert_array_equal(idx, ref.adaptive_max_pool2d(x, (2, 3), return_indices=True)[1])
