"""Activations, softmax, dropout, linear, interpolate, pad, add and concat: reference, finite differences, torch."""

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
    return None if a is None else torch.from_numpy(np.asarray(a, dtype=np.float64))


def _away_from_kinks(x, kinks=(0.0, -3.0, 3.0), gap=1e-3):
    """Move values off the points where an activation is not differentiable (finite differences would straddle)."""
    x = np.array(x)
    for k in kinks:
        x = np.where(np.abs(x - k) < gap, x + 4 * gap, x)
    return x


# ------------------------------------------------------------------------------------------------ activations

# name -> (params, which forward value the backward takes: "x" or "y")
ACTS = {
    "relu": ({}, "x"),
    "leaky_relu": ({"negative_slope": 0.2}, "x"),
    "elu": ({"alpha": 0.7}, "x"),
    "selu": ({}, "x"),
    "tanh": ({}, "y"),
    "sigmoid": ({}, "y"),
    "hardsigmoid": ({}, "x"),
    "hardswish": ({}, "x"),
}


def _torch_act(torch, name, x, **params):
    F = torch.nn.functional
    fn = {"relu": F.relu, "leaky_relu": F.leaky_relu, "elu": F.elu, "selu": F.selu, "tanh": torch.tanh,
          "sigmoid": torch.sigmoid, "hardsigmoid": F.hardsigmoid, "hardswish": F.hardswish,
          "linear": lambda t: t, "softmax": F.softmax, "log_softmax": F.log_softmax}[name]
    if name in ("softmax", "log_softmax"):
        params = {"dim": params.get("dim", 1)}
    return fn(_t(torch, x), **params).numpy()


@SETTINGS
@given(st.sampled_from(sorted(ACTS)), st.lists(st.integers(1, 4), min_size=1, max_size=4),
       st.integers(0, 2**16), st.booleans())
def test_activations_random_vs_reference(name, shape, seed, default_params):
    x = _rand(np.random.default_rng(seed), shape) * 4
    params = {} if default_params else ACTS[name][0]
    assert_close(getattr(ops, name)(x, **params), getattr(ref, name)(x, **params))
    assert_close(ops.activation(x, name, **params), getattr(ref, name)(x, **params))


@pytest.mark.parametrize("name", sorted(ACTS))
@pytest.mark.parametrize("default_params", [True, False])
def test_activation_backward_gradcheck(name, default_params):
    params, takes = ACTS[name]
    params = {} if default_params else params
    x = _away_from_kinks(_rand(np.random.default_rng(1), (2, 3, 2, 2), np.float64) * 4)
    fwd = getattr(ops, name)
    back = getattr(ops, name + "_backward")
    check_gradients(lambda x: fwd(x, **params), [x],
                    lambda g, x: back(g, fwd(x, **params) if takes == "y" else x, **params))
    # the dispatcher takes both x and y
    check_gradients(lambda x: ops.activation(x, name, **params), [x],
                    lambda g, x: ops.activation_backward(g, x, ops.activation(x, name, **params), name, **params))


@pytest.mark.parametrize("name", ["linear", "softmax", "log_softmax"])
def test_activation_dispatch_linear_softmax(name):
    x = _rand(np.random.default_rng(2), (3, 5), np.float64)
    assert_close(ops.activation(x, name), ref.activation(x, name), np.float64)
    check_gradients(lambda x: ops.activation(x, name), [x],
                    lambda g, x: ops.activation_backward(g, x, ops.activation(x, name), name))


@pytest.mark.parametrize("name", sorted(ACTS) + ["linear", "softmax", "log_softmax"])
def test_activations_vs_torch(name):
    torch = _torch()
    x = _rand(np.random.default_rng(3), (2, 4, 3, 3)) * 4
    params = ACTS[name][0] if name in ACTS else {}
    expected = _torch_act(torch, name, x, **params)
    assert_close(ref.activation(x, name, **params), expected, np.float64, err_msg="reference vs torch")
    assert_close(ops.activation(x, name, **params), expected, err_msg="ops vs torch")


def test_activation_unknown_name():
    with pytest.raises(ValueError, match="(?i)activation|unknown|swishy"):
        ops.activation(np.zeros(3, np.float32), "swishy")


# ------------------------------------------------------------------------------------------------ softmax


@SETTINGS
@given(st.lists(st.integers(1, 4), min_size=2, max_size=4), st.integers(0, 2**16), st.data())
def test_softmax_random_vs_reference(shape, seed, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = _rand(np.random.default_rng(seed), shape) * 5
    assert_close(ops.softmax(x, dim), ref.softmax(x, dim), err_msg=f"dim={dim}")
    assert_close(ops.log_softmax(x, dim), ref.log_softmax(x, dim), err_msg=f"dim={dim}")


def test_softmax_default_dim_and_large_logits():
    x = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1000.0, -1002.0]], np.float32)  # overflow without the max shift
    assert_close(ops.softmax(x), ref.softmax(x))
    assert_close(ops.log_softmax(x), ref.log_softmax(x))


@pytest.mark.parametrize("shape,dim", [((3, 5), 1), ((3, 5), 0), ((2, 3, 2, 2), 1), ((2, 3, 2, 2), -1)])
def test_softmax_backward_gradcheck(shape, dim):
    x = _rand(np.random.default_rng(4), shape, np.float64)
    check_gradients(lambda x: ops.softmax(x, dim), [x],
                    lambda g, x: ops.softmax_backward(g, ops.softmax(x, dim), dim))
    check_gradients(lambda x: ops.log_softmax(x, dim), [x],
                    lambda g, x: ops.log_softmax_backward(g, ops.log_softmax(x, dim), dim))


@pytest.mark.parametrize("shape,dim", [((3, 5), 1), ((3, 5), 0), ((2, 3, 2, 2), 1), ((2, 3, 2, 2), 2)])
def test_softmax_vs_torch(shape, dim):
    torch = _torch()
    x = _rand(np.random.default_rng(5), shape) * 3
    for name in ("softmax", "log_softmax"):
        expected = getattr(torch.nn.functional, name)(_t(torch, x), dim=dim).numpy()
        assert_close(getattr(ref, name)(x, dim), expected, np.float64, err_msg="reference vs torch")
        assert_close(getattr(ops, name)(x, dim), expected, err_msg="ops vs torch")


# ------------------------------------------------------------------------------------------------ dropout


def test_dropout_inverted_scaling_and_mask():
    x = _rand(np.random.default_rng(6), (4, 3, 5, 5))
    p = 0.3
    y, mask = ops.dropout(x, p, training=True, seed=123, return_mask=True)
    assert y.shape == x.shape and y.dtype == np.float32 and mask.shape == x.shape
    m = np.asarray(mask).astype(np.float64)
    assert set(np.unique(m)) <= {0.0, 1.0} and 0 < m.mean() < 1
    np.testing.assert_allclose(y, x * m / (1 - p), rtol=1e-6, atol=1e-7)
    assert_close(ops.dropout(x, p, training=True, seed=123), x * m / (1 - p))
    g = _rand(np.random.default_rng(7), x.shape)
    assert_close(ops.dropout_backward(g, mask, p), g * m / (1 - p))


def test_dropout_seeds():
    x = np.ones((2, 3, 8, 8), np.float32)
    _, m1 = ops.dropout(x, 0.5, seed=7, return_mask=True)
    _, m2 = ops.dropout(x, 0.5, seed=7, return_mask=True)
    _, m3 = ops.dropout(x, 0.5, seed=8, return_mask=True)
    np.testing.assert_array_equal(m1, m2)
    assert not np.array_equal(m1, m3)
    # seed None draws from numpy's global RNG: reseeding it reproduces the mask
    np.random.seed(99)
    _, a = ops.dropout(x, 0.5, return_mask=True)
    np.random.seed(99)
    _, b = ops.dropout(x, 0.5, return_mask=True)
    np.testing.assert_array_equal(a, b)
    _, c = ops.dropout(x, 0.5, return_mask=True)
    assert not np.array_equal(a, c)


def test_dropout_eval_and_p0_identity():
    x = _rand(np.random.default_rng(8), (2, 3, 4))
    for kw in (dict(p=0.5, training=False), dict(p=0.0, training=True)):
        y, mask = ops.dropout(x, seed=1, return_mask=True, **kw)
        np.testing.assert_array_equal(y, x)
        assert y.dtype == x.dtype
        assert np.all(np.asarray(mask) == 1)
        np.testing.assert_array_equal(ops.dropout(x, seed=1, **kw), x)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_preserves_mean_statistically(p):
    x = np.ones((4, 8, 32, 32), np.float32)  # 32768 elements
    y, mask = ops.dropout(x, p, seed=2024, return_mask=True)
    keep = np.asarray(mask).astype(np.float64).mean()
    n = x.size
    assert abs(keep - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n), keep
    assert abs(y.astype(np.float64).mean() - 1.0) < 5 * np.sqrt(p / (1 - p) / n)
    # no structure: each channel keeps roughly the same fraction
    per_channel = np.asarray(mask).astype(np.float64).mean(axis=(0, 2, 3))
    assert np.all(np.abs(per_channel - (1 - p)) < 6 * np.sqrt(p * (1 - p) / (n / 8)))


def test_dropout_float64_and_gradcheck():
    x = _rand(np.random.default_rng(9), (2, 3, 3), np.float64)
    y, mask = ops.dropout(x, 0.4, seed=3, return_mask=True)
    assert y.dtype == np.float64
    check_gradients(lambda x: ops.dropout(x, 0.4, seed=3), [x], lambda g, x: ops.dropout_backward(g, mask, 0.4))


def test_dropout_bad_p():
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError):
            ops.dropout(np.ones(4, np.float32), p, seed=0)


def test_dropout_p1_gives_zeros_like_torch():
    y = ops.dropout(np.ones((2, 3), np.float32), 1.0, seed=0)
    np.testing.assert_array_equal(y, np.zeros((2, 3), np.float32))


# ------------------------------------------------------------------------------------------------ linear


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 6), st.integers(1, 5), st.booleans(), st.integers(0, 2**16))
def test_linear_random_vs_reference(n, fin, fout, bias, seed):
    rng = np.random.default_rng(seed)
    x, w = _rand(rng, (n, fin)), _rand(rng, (fout, fin))
    b = _rand(rng, (fout,)) if bias else None
    assert_close(ops.linear(x, w, b), ref.linear(x, w, b))


@pytest.mark.parametrize("bias", [True, False])
def test_linear_backward_gradcheck(bias):
    rng = np.random.default_rng(10)
    x, w = _rand(rng, (3, 4), np.float64), _rand(rng, (5, 4), np.float64)
    if bias:
        b = _rand(rng, (5,), np.float64)
        check_gradients(ops.linear, [x, w, b], lambda g, x, w, b: ops.linear_backward(g, x, w, b))
    else:
        check_gradients(lambda x, w: ops.linear(x, w), [x, w], lambda g, x, w: ops.linear_backward(g, x, w)[:2])
        assert ops.linear_backward(np.ones((3, 5)), x, w)[2] is None


def test_linear_vs_torch():
    torch = _torch()
    rng = np.random.default_rng(11)
    x, w, b = _rand(rng, (3, 7)), _rand(rng, (4, 7)), _rand(rng, (4,))
    expected = torch.nn.functional.linear(_t(torch, x), _t(torch, w), _t(torch, b)).numpy()
    assert_close(ref.linear(x, w, b), expected, np.float64)
    assert_close(ops.linear(x, w, b), expected)


@pytest.mark.parametrize("xs,ws,bs", [((2, 3), (4, 5), None), ((2, 3), (4, 3), (5,)), ((3,), (4, 3), None)])
def test_linear_bad_inputs(xs, ws, bs):
    with pytest.raises(ValueError):
        ops.linear(np.zeros(xs, np.float32), np.zeros(ws, np.float32), None if bs is None else np.zeros(bs))


# ------------------------------------------------------------------------------------------------ interpolate


@st.composite
def interp_cases(draw):
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    mode = draw(st.sampled_from(["nearest", "bilinear"]))
    align = draw(st.sampled_from([None, False, True])) if mode == "bilinear" else None
    if draw(st.booleans()):
        size = draw(st.one_of(st.integers(1, 9), st.tuples(st.integers(1, 9), st.integers(1, 9))))
        kw = dict(size=size)
    else:
        factors = st.sampled_from([0.5, 0.6, 1.0, 1.3, 1.7, 2.0, 2.5, 3.0])
        sf = draw(st.one_of(factors, st.tuples(factors, factors)))
        sh, sw = sf if isinstance(sf, tuple) else (sf, sf)
        h, w = max(h, int(np.ceil(1 / sh))), max(w, int(np.ceil(1 / sw)))  # non-empty output
        kw = dict(scale_factor=sf)
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 2)), h, w), mode=mode, align_corners=align,
                seed=draw(st.integers(0, 2**16)), **kw)


def _ikw(case):
    return {k: v for k, v in case.items() if k not in ("shape", "seed")}


def _icase(shape, mode="nearest", align_corners=None, **kw):
    return dict(shape=shape, mode=mode, align_corners=align_corners, seed=0, **kw)


INTERP_EDGE = {
    "nearest_x2": _icase((1, 2, 3, 4), scale_factor=2),
    "nearest_sf1.7": _icase((1, 2, 4, 5), scale_factor=1.7),
    "nearest_sf_pair": _icase((1, 1, 4, 5), scale_factor=(1.7, 2.5)),
    "nearest_down_0.6": _icase((1, 1, 7, 6), scale_factor=0.6),
    "nearest_size_up": _icase((1, 2, 3, 4), size=(7, 5)),
    "nearest_size_down": _icase((1, 1, 7, 8), size=(3, 5)),
    "nearest_size1": _icase((1, 1, 4, 3), size=1),
    "nearest_same_size_sf1.3": _icase((1, 1, 3, 3), scale_factor=(1.3, 1.0)),  # 3*1.3 -> 3: torch copies
    "bilinear_x2_false": _icase((1, 2, 3, 4), "bilinear", False, scale_factor=2),
    "bilinear_x2_true": _icase((1, 2, 3, 4), "bilinear", True, scale_factor=2),
    "bilinear_sf1.7_false": _icase((1, 2, 4, 5), "bilinear", False, scale_factor=1.7),
    "bilinear_sf1.7_true": _icase((1, 2, 4, 5), "bilinear", True, scale_factor=1.7),
    "bilinear_down_false": _icase((1, 1, 7, 8), "bilinear", False, size=(3, 5)),
    "bilinear_down_true": _icase((1, 1, 7, 8), "bilinear", True, size=(3, 5)),
    "bilinear_down_sf0.6": _icase((1, 1, 7, 6), "bilinear", False, scale_factor=0.6),
    "bilinear_size1_true": _icase((1, 1, 4, 3), "bilinear", True, size=1),
    "bilinear_size1_false": _icase((1, 1, 4, 3), "bilinear", False, size=1),
    "bilinear_from1": _icase((1, 2, 1, 1), "bilinear", False, size=(3, 4)),
    "bilinear_from1_true": _icase((1, 2, 1, 2), "bilinear", True, size=(3, 4)),
    "bilinear_align_none": _icase((1, 1, 3, 3), "bilinear", None, size=(5, 6)),
}


@SETTINGS
@given(interp_cases())
def test_interpolate_random_vs_reference(case):
    x = _rand(np.random.default_rng(case["seed"]), case["shape"])
    assert_close(ops.interpolate(x, **_ikw(case)), ref.interpolate(x, **_ikw(case)), err_msg=str(case))


@pytest.mark.parametrize("name", list(INTERP_EDGE))
def test_interpolate_edge_vs_reference(name):
    case = INTERP_EDGE[name]
    x = _rand(np.random.default_rng(case["seed"]), case["shape"])
    assert_close(ops.interpolate(x, **_ikw(case)), ref.interpolate(x, **_ikw(case)))


@pytest.mark.parametrize("name", list(INTERP_EDGE))
def test_interpolate_backward_gradcheck(name):
    case = INTERP_EDGE[name]
    x = _rand(np.random.default_rng(case["seed"]), (1,) + case["shape"][1:], np.float64)
    kw = _ikw(case)
    check_gradients(lambda x: ops.interpolate(x, **kw), [x], lambda g, x: ops.interpolate_backward(g, x.shape, **kw))


@pytest.mark.parametrize("name", list(INTERP_EDGE))
def test_interpolate_vs_torch(name):
    torch = _torch()
    case = INTERP_EDGE[name]
    x = _rand(np.random.default_rng(case["seed"]), case["shape"])
    kw = _ikw(case)
    expected = torch.nn.functional.interpolate(_t(torch, x), **kw).numpy()
    assert_close(ref.interpolate(x, **kw), expected, np.float64, err_msg="reference vs torch")
    assert_close(ops.interpolate(x, **kw), expected, err_msg="ops vs torch")


@pytest.mark.parametrize("kw", [dict(), dict(size=3, scale_factor=2), dict(size=3, mode="bicubic"),
                                dict(size=3, mode="nearest", align_corners=True)])
def test_interpolate_bad_arguments(kw):
    with pytest.raises(ValueError):
        ops.interpolate(np.zeros((1, 1, 3, 3), np.float32), **kw)


# ------------------------------------------------------------------------------------------------ pad


@st.composite
def pad_cases(draw):
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    mode = draw(st.sampled_from(["constant", "reflect", "replicate"]))
    lim_h, lim_w = (h - 1, w - 1) if mode == "reflect" else (3, 3)  # torch: reflect padding < the dimension
    p = [draw(st.integers(0, min(3, lim_w))), draw(st.integers(0, min(3, lim_w)))]
    if draw(st.booleans()):
        p += [draw(st.integers(0, min(3, lim_h))), draw(st.integers(0, min(3, lim_h)))]
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 2)), h, w), pad=tuple(p), mode=mode,
                value=draw(st.sampled_from([0.0, 1.5, -2.0])), seed=draw(st.integers(0, 2**16)))


PAD_EDGE = {
    "constant_lrtb": dict(shape=(1, 2, 3, 4), pad=(1, 2, 0, 3), mode="constant", value=0.0),
    "constant_value": dict(shape=(1, 2, 3, 4), pad=(2, 1, 1, 1), mode="constant", value=-1.25),
    "constant_lr_only": dict(shape=(2, 1, 3, 3), pad=(1, 2), mode="constant", value=0.0),
    "reflect_lrtb": dict(shape=(1, 2, 4, 5), pad=(3, 2, 1, 3), mode="reflect", value=0.0),
    "reflect_lr_only": dict(shape=(1, 1, 3, 4), pad=(3, 1), mode="reflect", value=0.0),
    "replicate_lrtb": dict(shape=(1, 2, 3, 2), pad=(3, 1, 2, 4), mode="replicate", value=0.0),
    "replicate_single_pixel": dict(shape=(1, 1, 1, 1), pad=(2, 1, 1, 2), mode="replicate", value=0.0),
}


def _pkw(case, with_value=True):
    kw = {"mode": case["mode"]}
    if with_value and case["mode"] == "constant":
        kw["value"] = case["value"]
    return kw


@SETTINGS
@given(pad_cases())
def test_pad_random_vs_reference(case):
    x = _rand(np.random.default_rng(case["seed"]), case["shape"])
    assert_close(ops.pad(x, case["pad"], **_pkw(case)), ref.pad(x, case["pad"], **_pkw(case)), err_msg=str(case))


@pytest.mark.parametrize("name", list(PAD_EDGE))
def test_pad_edge_vs_reference_and_gradcheck(name):
    case = PAD_EDGE[name]
    x = _rand(np.random.default_rng(0), case["shape"])
    assert_close(ops.pad(x, case["pad"], **_pkw(case)), ref.pad(x, case["pad"], **_pkw(case)))
    x64 = x.astype(np.float64)
    check_gradients(lambda x: ops.pad(x, case["pad"], **_pkw(case)), [x64],
                    lambda g, x: ops.pad_backward(g, x.shape, case["pad"], **_pkw(case, False)))


@pytest.mark.parametrize("name", list(PAD_EDGE))
def test_pad_vs_torch(name):
    torch = _torch()
    case = PAD_EDGE[name]
    x = _rand(np.random.default_rng(0), case["shape"])
    p = tuple(case["pad"]) + ((0, 0) if len(case["pad"]) == 2 else ())  # torch wants 4 values for non-constant 4-D
    expected = torch.nn.functional.pad(_t(torch, x), p, **_pkw(case)).numpy()
    assert_close(ref.pad(x, case["pad"], **_pkw(case)), expected, np.float64, err_msg="reference vs torch")
    assert_close(ops.pad(x, case["pad"], **_pkw(case)), expected, err_msg="ops vs torch")


@pytest.mark.parametrize("shape,p,mode", [
    ((1, 1, 3, 3), (3, 0, 0, 0), "reflect"), ((1, 1, 3, 3), (0, 0, 0, 4), "reflect"),  # reflect pad >= dim
    ((1, 1, 3, 3), (1, 1), "wrap"), ((1, 1, 3, 3), (1, 1, 1), "constant"), ((3, 3), (1, 1), "constant"),
])
def test_pad_bad_inputs(shape, p, mode):
    with pytest.raises(ValueError):
        ops.pad(np.zeros(shape, np.float32), p, mode=mode)


# ------------------------------------------------------------------------------------------------ add, concat


def test_add():
    rng = np.random.default_rng(12)
    a, b, c = (_rand(rng, (2, 3, 2, 2)) for _ in range(3))
    assert_close(ops.add(a, b), ref.add(a, b))
    assert_close(ops.add(a, b, c), ref.add(a, b, c))
    a64 = a.astype(np.float64)
    assert_close(ops.add(a64, b.astype(np.float64)), ref.add(a, b), np.float64)
    with pytest.raises(ValueError):
        ops.add(a, _rand(rng, (2, 4, 2, 2)))


@pytest.mark.parametrize("dim", [1, 0, -1])
def test_concat_and_backward(dim):
    rng = np.random.default_rng(13)
    base = [2, 3, 2, 2]
    xs = []
    for extent in (1, 3, 2):
        s = list(base)
        s[dim] = extent
        xs.append(_rand(rng, tuple(s)))
    y = ops.concat(xs, dim=dim)
    assert_close(y, ref.concat(xs, dim))
    sizes = [a.shape[dim] for a in xs]
    g = _rand(rng, y.shape)
    parts = ops.concat_backward(g, sizes, dim=dim)
    assert len(parts) == 3
    for p_, e in zip(parts, np.split(g, np.cumsum(sizes)[:-1], axis=dim)):
        assert_close(p_, e)
    x64 = [a.astype(np.float64) for a in xs[:2]]
    check_gradients(lambda a, b: ops.concat([a, b], dim=dim), x64,
                    lambda g, a, b: ops.concat_backward(g, [a.shape[dim], b.shape[dim]], dim=dim))


def test_concat_vs_torch_and_bad_inputs():
    torch = _torch()
    rng = np.random.default_rng(14)
    xs = [_rand(rng, (2, c, 3, 2)) for c in (2, 1, 3)]
    assert_close(ops.concat(xs), torch.cat([_t(torch, a) for a in xs], dim=1).numpy())
    with pytest.raises(ValueError):
        ops.concat([_rand(rng, (2, 2, 3, 3)), _rand(rng, (2, 2, 3, 4))])


# ------------------------------------------------------------------------------------------------ dtypes, NaN


def test_misc_float64_int_noncontiguous():
    rng = np.random.default_rng(15)
    x64 = _rand(rng, (2, 3, 4, 4), np.float64)
    for name in ACTS:
        y = getattr(ops, name)(x64)
        assert_close(y, getattr(ref, name)(x64), np.float64, err_msg=name)
    assert_close(ops.softmax(x64), ref.softmax(x64), np.float64)
    assert_close(ops.interpolate(x64, scale_factor=1.7, mode="bilinear"),
                 ref.interpolate(x64, scale_factor=1.7, mode="bilinear"), np.float64)
    assert_close(ops.pad(x64, (1, 2, 2, 1), mode="reflect"), ref.pad(x64, (1, 2, 2, 1), mode="reflect"), np.float64)
    assert_close(ops.linear(x64[:, :, 0, 0], x64[0, :, 1, :3]), ref.linear(x64[:, :, 0, 0], x64[0, :, 1, :3]),
                 np.float64)
    xi = rng.integers(-3, 4, size=(2, 3, 2, 2))
    assert_close(ops.relu(xi), ref.relu(xi))
    assert_close(ops.linear(xi.reshape(2, -1), np.ones((2, 12), np.int64)),
                 ref.linear(xi.reshape(2, -1), np.ones((2, 12))))
    assert_close(ops.interpolate(xi, scale_factor=2), ref.interpolate(xi, scale_factor=2))
    xnc = _rand(rng, (2, 6, 4, 5))[:, ::2].transpose(0, 1, 3, 2)
    assert not xnc.flags.c_contiguous
    assert_close(ops.sigmoid(xnc), ref.sigmoid(xnc))
    assert_close(ops.softmax(xnc, 1), ref.softmax(xnc, 1))
    assert_close(ops.interpolate(xnc, size=(7, 3), mode="bilinear", align_corners=True),
                 ref.interpolate(xnc, size=(7, 3), mode="bilinear", align_corners=True))
    assert_close(ops.pad(xnc, (1, 1, 2, 0), mode="replicate"), ref.pad(xnc, (1, 1, 2, 0), mode="replicate"))
    assert_close(ops.concat([xnc, xnc]), ref.concat([xnc, xnc]))
    wnc = _rand(rng, (3, 4)).T
    assert_close(ops.linear(xnc[:, :, 0, 0], wnc), ref.linear(xnc[:, :, 0, 0], wnc))


@pytest.mark.parametrize("op", sorted(ACTS) + ["softmax", "log_softmax", "linear", "interpolate_nearest",
                                               "interpolate_bilinear", "pad_reflect", "add", "concat"])
def test_misc_nan_propagates(op):
    rng = np.random.default_rng(16)
    x = _rand(rng, (2, 3, 4, 4))
    x[1, 2, 1, 2] = np.nan
    w = _rand(rng, (5, 3))
    call = {
        "softmax": lambda m, a: m.softmax(a, 1),
        "log_softmax": lambda m, a: m.log_softmax(a, 1),
        "linear": lambda m, a: m.linear(a[:, :, 1, 2].copy(), w),
        "interpolate_nearest": lambda m, a: m.interpolate(a, scale_factor=1.7),
        "interpolate_bilinear": lambda m, a: m.interpolate(a, size=(6, 5), mode="bilinear", align_corners=False),
        "pad_reflect": lambda m, a: m.pad(a, (2, 1, 1, 2), mode="reflect"),
        "add": lambda m, a: m.add(a, a),
        "concat": lambda m, a: m.concat([a, a]),
    }.get(op, lambda m, a: getattr(m, op)(a))
    y, expected = call(ops, x), call(ref, x)
    assert np.isnan(expected).any() and not np.isnan(expected).all()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected), err_msg=f"{op}: NaN pattern")
    assert_close(y, expected)


def test_float32_tanh_is_accurate_everywhere():
    """float32 tanh runs a rational approximation (vectorised): within 4e-7 of the true value, signs, infinities
    and NaN kept; float64 keeps the libm tanh."""
    x = np.concatenate([np.linspace(-12, 12, 200001), np.logspace(-30, 1, 500), -np.logspace(-30, 1, 500),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 3e38, -3e38]]).astype(np.float32)
    y = ops.tanh(x)
    want = np.tanh(x.astype(np.float64))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, want, rtol=0, atol=4e-7, equal_nan=True)
    assert np.nanmax(np.abs(y)) <= 1 and np.signbit(y[-6]) and np.isnan(y[-3])
    near0 = np.abs(x) < 1e-3
    np.testing.assert_allclose(y[near0], want[near0], rtol=4e-7, atol=0)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(ops.tanh(x64), np.tanh(x64), rtol=1e-15, atol=0)
