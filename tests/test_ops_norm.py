"""local_response_norm and batch_norm against the numpy reference, finite differences and torch."""

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


# ------------------------------------------------------------------------------------------------ LRN


@st.composite
def lrn_cases(draw):
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 7)), draw(st.integers(1, 4)),
                       draw(st.integers(1, 4))),
                size=draw(st.integers(1, 6)), alpha=draw(st.sampled_from([1e-4, 1e-2, 0.5])),
                beta=draw(st.sampled_from([0.5, 0.75, 1.0])), k=draw(st.sampled_from([1.0, 2.0, 0.5])),
                scale=draw(st.sampled_from([1.0, 3.0])), seed=draw(st.integers(0, 2**16)))


LRN_EDGE = {
    "alexnet": dict(shape=(2, 7, 3, 3), size=5, alpha=1e-4, beta=0.75, k=2.0, scale=10.0),
    "size_even": dict(shape=(1, 6, 2, 3), size=4, alpha=0.3, beta=0.75, k=1.0, scale=1.0),
    "size_gt_channels": dict(shape=(1, 3, 2, 2), size=7, alpha=0.5, beta=0.6, k=1.0, scale=2.0),
    "size1": dict(shape=(1, 4, 2, 2), size=1, alpha=0.9, beta=1.0, k=1.0, scale=1.0),
    "strong": dict(shape=(1, 5, 3, 2), size=3, alpha=2.0, beta=0.75, k=0.5, scale=2.0),
}


def _lrn_input(case, dtype=np.float32):
    return (_rand(np.random.default_rng(case.get("seed", 0)), case["shape"]) * case["scale"]).astype(dtype)


def _lrn_kw(case):
    return {k: case[k] for k in ("size", "alpha", "beta", "k")}


@SETTINGS
@given(lrn_cases())
def test_lrn_random_vs_reference(case):
    x = _lrn_input(case)
    assert_close(ops.local_response_norm(x, **_lrn_kw(case)), ref.local_response_norm(x, **_lrn_kw(case)),
                 err_msg=str(case))


@pytest.mark.parametrize("name", list(LRN_EDGE))
def test_lrn_edge_vs_reference(name):
    case = LRN_EDGE[name]
    x = _lrn_input(case)
    assert_close(ops.local_response_norm(x, **_lrn_kw(case)), ref.local_response_norm(x, **_lrn_kw(case)))


def test_lrn_defaults():
    x = _rand(np.random.default_rng(1), (1, 5, 2, 2)) * 30
    assert_close(ops.local_response_norm(x, 3), ref.local_response_norm(x, 3))


@pytest.mark.parametrize("name", list(LRN_EDGE))
def test_lrn_backward_gradcheck(name):
    case = dict(LRN_EDGE[name])
    case["shape"] = (1,) + case["shape"][1:]
    x = _lrn_input(case, np.float64)
    kw = _lrn_kw(case)
    check_gradients(lambda x: ops.local_response_norm(x, **kw), [x],
                    lambda g, x: ops.local_response_norm_backward(g, x, **kw))


@pytest.mark.parametrize("name", list(LRN_EDGE))
def test_lrn_vs_torch(name):
    torch = _torch()
    case = LRN_EDGE[name]
    x = _lrn_input(case)
    expected = torch.nn.functional.local_response_norm(_t(torch, x), **_lrn_kw(case)).numpy()
    assert_close(ref.local_response_norm(x, **_lrn_kw(case)), expected, np.float64, err_msg="reference vs torch")
    assert_close(ops.local_response_norm(x, **_lrn_kw(case)), expected, err_msg="ops vs torch")


# ------------------------------------------------------------------------------------------------ batch_norm


@st.composite
def bn_cases(draw):
    four_d = draw(st.booleans())
    c = draw(st.integers(1, 4))
    shape = ((draw(st.integers(1, 3)), c, draw(st.integers(1, 3)), draw(st.integers(1, 3))) if four_d
             else (draw(st.integers(2, 5)), c))
    if np.prod(shape) == c:  # one value per channel: torch refuses training mode, so give the batch two
        shape = (2,) + shape[1:]
    return dict(shape=shape, affine=draw(st.sampled_from(["both", "weight", "bias", "none"])),
                training=draw(st.booleans()), momentum=draw(st.sampled_from([0.1, 0.3, 1.0])),
                eps=draw(st.sampled_from([1e-5, 1e-3])), seed=draw(st.integers(0, 2**16)))


def _bn_inputs(case, dtype=np.float32):
    rng = np.random.default_rng(case["seed"])
    c = case["shape"][1]
    x = (_rand(rng, case["shape"], dtype) * 2 + 0.5).astype(dtype)
    rm = _rand(rng, (c,), dtype)
    rv = (rng.random(c) + 0.5).astype(dtype)
    w = _rand(rng, (c,), dtype) if case["affine"] in ("both", "weight") else None
    b = _rand(rng, (c,), dtype) if case["affine"] in ("both", "bias") else None
    return x, rm, rv, w, b


BN_EDGE = {
    "eval_4d": dict(shape=(2, 3, 2, 3), affine="both", training=False, momentum=0.1, eps=1e-5, seed=0),
    "train_4d": dict(shape=(2, 3, 2, 3), affine="both", training=True, momentum=0.1, eps=1e-5, seed=1),
    "train_4d_n1": dict(shape=(1, 2, 3, 2), affine="both", training=True, momentum=0.1, eps=1e-5, seed=2),
    "train_2d": dict(shape=(5, 3), affine="both", training=True, momentum=0.1, eps=1e-5, seed=3),
    "eval_2d": dict(shape=(4, 3), affine="both", training=False, momentum=0.1, eps=1e-5, seed=4),
    "train_no_affine": dict(shape=(2, 2, 2, 2), affine="none", training=True, momentum=0.1, eps=1e-5, seed=5),
    "train_momentum_0.5": dict(shape=(3, 2, 2, 1), affine="weight", training=True, momentum=0.5, eps=1e-3, seed=6),
    "eval_bias_only": dict(shape=(2, 2, 2, 2), affine="bias", training=False, momentum=0.1, eps=1e-5, seed=7),
}


def _bn_call(mod, case, x, rm, rv, w, b):
    return mod.batch_norm(x, rm, rv, w, b, training=case["training"], momentum=case["momentum"], eps=case["eps"])


@SETTINGS
@given(bn_cases())
def test_batch_norm_random_vs_reference(case):
    x, rm, rv, w, b = _bn_inputs(case)
    rm_ref, rv_ref = rm.astype(np.float64), rv.astype(np.float64)
    y = _bn_call(ops, case, x, rm, rv, w, b)
    expected = _bn_call(ref, case, x, rm_ref, rv_ref, w, b)
    assert_close(y, expected, err_msg=str(case))
    # running stats: updated in place (training) or untouched (eval)
    assert rm.dtype == np.float32 and rv.dtype == np.float32
    assert_close(rm, rm_ref, err_msg="running_mean")
    assert_close(rv, rv_ref, err_msg="running_var")


@pytest.mark.parametrize("name", list(BN_EDGE))
def test_batch_norm_edge_vs_reference(name):
    case = BN_EDGE[name]
    x, rm, rv, w, b = _bn_inputs(case)
    rm_ref, rv_ref = rm.astype(np.float64), rv.astype(np.float64)
    assert_close(_bn_call(ops, case, x, rm, rv, w, b), _bn_call(ref, case, x, rm_ref, rv_ref, w, b))
    assert_close(rm, rm_ref, err_msg="running_mean")
    assert_close(rv, rv_ref, err_msg="running_var")


@pytest.mark.parametrize("name", list(BN_EDGE))
def test_batch_norm_backward_gradcheck(name):
    case = BN_EDGE[name]
    x, rm, rv, w, b = _bn_inputs(case, np.float64)
    train, eps = case["training"], case["eps"]
    b = b if b is not None else np.zeros(x.shape[1])  # bias is additive: check its gradient either way

    def backward(g, x, w_):
        return ops.batch_norm_backward(g, x, rm.copy(), rv.copy(), w_, training=train, eps=eps)

    if w is None:
        check_gradients(lambda x, b_: ops.batch_norm(x, rm.copy(), rv.copy(), None, b_, training=train, eps=eps),
                        [x, b], lambda g, x, b_: [backward(g, x, None)[i] for i in (0, 2)])
    else:
        check_gradients(lambda x, w_, b_: ops.batch_norm(x, rm.copy(), rv.copy(), w_, b_, training=train, eps=eps),
                        [x, w, b], lambda g, x, w_, b_: backward(g, x, w_))


@pytest.mark.parametrize("name", list(BN_EDGE))
def test_batch_norm_vs_torch(name):
    torch = _torch()
    case = BN_EDGE[name]
    x, rm, rv, w, b = _bn_inputs(case)
    trm, trv = _t(torch, rm).clone(), _t(torch, rv).clone()
    expected = torch.nn.functional.batch_norm(_t(torch, x), trm, trv, _t(torch, w), _t(torch, b),
                                              training=case["training"], momentum=case["momentum"],
                                              eps=case["eps"]).numpy()
    rm_ref, rv_ref = rm.astype(np.float64), rv.astype(np.float64)
    assert_close(_bn_call(ref, case, x, rm_ref, rv_ref, w, b), expected, np.float64, err_msg="reference vs torch")
    assert_close(rm_ref, trm.numpy(), np.float64, err_msg="reference running_mean vs torch")
    assert_close(rv_ref, trv.numpy(), np.float64, err_msg="reference running_var vs torch")
    assert_close(_bn_call(ops, case, x, rm, rv, w, b), expected, err_msg="ops vs torch")
    assert_close(rm, trm.numpy(), err_msg="ops running_mean vs torch")
    assert_close(rv, trv.numpy(), err_msg="ops running_var vs torch")


def test_batch_norm_training_updates_running_stats_like_torch_over_steps():
    torch = _torch()
    rng = np.random.default_rng(11)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    trm, trv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    for _ in range(4):
        x = _rand(rng, (4, 3, 2, 2)) * 3 + 1
        ops.batch_norm(x, rm, rv, training=True)
        torch.nn.functional.batch_norm(_t(torch, x), trm, trv, training=True)  # momentum 0.1, unbiased var
    assert_close(rm, trm.numpy())
    assert_close(rv, trv.numpy())


def test_batch_norm_training_uses_unbiased_running_var():
    x = np.array([[1.0], [3.0]], np.float32)  # batch var: biased 1, unbiased 2
    rm, rv = np.zeros(1, np.float32), np.zeros(1, np.float32)
    y = ops.batch_norm(x, rm, rv, training=True, momentum=1.0, eps=0.0)
    np.testing.assert_allclose(y[:, 0], [-1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(rm, [2.0])
    np.testing.assert_allclose(rv, [2.0])


# ------------------------------------------------------------------------------------------------ bad inputs, dtypes


@pytest.mark.parametrize("call", [
    lambda: ops.local_response_norm(np.zeros((3, 4, 4), np.float32), 3),
    lambda: ops.batch_norm(np.zeros((2, 3, 4), np.float32), np.zeros(3, np.float32), np.ones(3, np.float32)),
    lambda: ops.batch_norm(np.zeros((2, 3, 2, 2), np.float32), np.zeros(4, np.float32), np.ones(4, np.float32)),
    lambda: ops.batch_norm(np.zeros((2, 3, 2, 2), np.float32), np.zeros(3, np.float32), np.ones(3, np.float32),
                           np.ones(2, np.float32)),
    lambda: ops.batch_norm(np.zeros((1, 3, 1, 1), np.float32), np.zeros(3, np.float32), np.ones(3, np.float32),
                           training=True),
])
def test_norm_bad_inputs(call):
    # wrong rank, running stats / weight of the wrong length, one value per channel in training (torch refuses)
    with pytest.raises(ValueError):
        call()


def test_norm_float64_int_noncontiguous_nan():
    rng = np.random.default_rng(12)
    x64 = _rand(rng, (2, 5, 2, 3), np.float64) * 5
    assert_close(ops.local_response_norm(x64, 3, 0.1), ref.local_response_norm(x64, 3, 0.1), np.float64)
    rm, rv = np.zeros(5), np.ones(5)
    y = ops.batch_norm(x64, rm, rv, training=True)
    rm_r, rv_r = np.zeros(5), np.ones(5)
    assert_close(y, ref.batch_norm(x64, rm_r, rv_r, training=True), np.float64)
    xi = rng.integers(-4, 5, size=(1, 4, 2, 2))
    assert_close(ops.local_response_norm(xi, 3, 0.1), ref.local_response_norm(xi, 3, 0.1))
    xnc = _rand(rng, (3, 8, 2, 2))[:, ::2].transpose(0, 1, 3, 2)
    assert not xnc.flags.c_contiguous
    assert_close(ops.local_response_norm(xnc, 3, 0.1), ref.local_response_norm(xnc, 3, 0.1))
    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    rm_r, rv_r = np.zeros(4), np.ones(4)
    assert_close(ops.batch_norm(xnc, rm, rv, training=True), ref.batch_norm(xnc, rm_r, rv_r, training=True))
    # NaN: LRN spreads it to the channels whose window holds it; eval batch_norm keeps it in place
    x = _rand(rng, (1, 5, 2, 2))
    x[0, 2, 1, 0] = np.nan
    y, e = ops.local_response_norm(x, 3), ref.local_response_norm(x, 3)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(e))
    y = ops.batch_norm(x, np.zeros(5, np.float32), np.ones(5, np.float32))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(x))
