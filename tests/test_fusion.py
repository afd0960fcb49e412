"""Inference fusion of conv -> BatchNorm -> activation chains (visionkit/fusion.py): which chains fuse, and that a
fused run gives what the separate layers give."""

import numpy as np
import pytest

import visionkit as vk
from visionkit import fusion
from visionkit import layers as L


def _randomise_bn(model, seed=0):
    """Non-trivial running statistics and affine parameters, so the fused scale and shift matter."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNorm):
            c = layer.channels
            layer.running_mean.value = rng.standard_normal(c).astype(np.float32)
            layer.running_var.value = (rng.random(c) + 0.2).astype(np.float32)
            if layer.gamma is not None:
                layer.gamma.value = (2 * rng.standard_normal(c)).astype(np.float32)
                layer.beta.value = rng.standard_normal(c).astype(np.float32)


def _chains(model):
    """{head layer: (absorbed layers, the chain's activation, or "block" for a conv -> depthwise -> 1x1 Block)}"""
    return {model._order[k].layer.name: (tuple(model._order[j].layer.name for j in c.absorbed),
                                         "block" if type(c) is fusion.Block else c.activation)
            for k, c in model._fusion_plan()[0].items()}


def _graph():
    x = vk.Input((3, 12, 11))
    a = L.Conv2D(8, 3, padding="same", use_bias=False, name="c1")(x)
    a = L.BatchNorm(name="bn1")(a)
    a = L.Activation("relu6", name="act1")(a)
    b = L.DepthwiseConv2D(3, strides=2, padding="same", name="dw")(a)
    b = L.BatchNorm(name="bn2")(b)                     # BN without an activation after it
    c = L.Conv2D(16, 1, name="c3")(b)
    c = L.Activation("relu", name="act3")(c)           # activation without a BN
    d = L.Conv2D(16, 3, padding="same", name="c4")(c)
    d1 = L.BatchNorm(name="bn4")(d)                    # the chain may end in a model output (bn4)
    e = L.Conv2D(16, 3, padding="same", name="c5")(d1)
    f = L.Activation("relu", name="act5a")(e)          # c5 has two consumers: no fusion
    g = L.Activation("sigmoid", name="act5b")(e)
    h = L.Add(name="add")([f, g])
    k = L.Conv2D(4, 3, padding="same", activation="relu", name="c6")(h)  # its own fused ReLU: nothing more
    k = L.BatchNorm(name="bn6")(k)
    m = L.Conv2D(4, 1, name="c7")(k)                   # c7's own output is a model output: nothing fuses
    m2 = L.BatchNorm(name="bn7")(m)
    r = L.Add(name="res")([c, d1])                     # a residual sum and its ReLU6: one add_act call
    r = L.Activation("relu6", name="res_act")(r)
    r3 = L.Add(name="res3")([c, d1, c])                # three inputs: not fused
    r3 = L.Activation("relu", name="res3_act")(r3)
    return vk.Model(x, [k, d1, m, m2, r, r3], name="fusion_graph")


def test_the_plan_fuses_exactly_the_safe_chains():
    model = _graph()
    assert _chains(model) == {
        # c1 -> dw -> c3 is a Block (tests/test_conv_block.py): one call, its stages the chains c1 + bn1 + act1
        # (relu6), dw + bn2 (a BatchNorm without an activation after it), c3 + act3 (relu without a BatchNorm)
        "c1": (("bn1", "act1", "dw", "bn2", "c3", "act3"), "block"),
        "c4": (("bn4",), None),
        "res": (("res_act",), "relu6"),
    }


def test_fused_inference_matches_the_separate_layers():
    model = _graph()
    _randomise_bn(model)
    x = np.random.default_rng(1).standard_normal((3, 3, 12, 11)).astype(np.float32)
    taped = model(x)                       # keeps a tape: every layer runs on its own
    fused = model.predict(x, batch_size=3)  # no tape: the chains run fused
    for a, b in zip(taped, fused):  # float32 rounding differences, carried through up to six layers
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * np.abs(a).max())
    untaped = model(x, keep_tape=False)
    for a, b in zip(fused, untaped):
        np.testing.assert_array_equal(a, b)


def test_training_runs_never_fuse(monkeypatch):
    model = _graph()
    calls = []
    monkeypatch.setattr(fusion, "run", lambda chain, x: calls.append(chain) or pytest.fail("fused in training"))
    x = np.random.default_rng(2).standard_normal((4, 3, 12, 11)).astype(np.float32)
    model(x, training=True)
    model(x, training=True, keep_tape=False)
    assert calls == []


def test_resnet_block_fuses_and_matches():
    """The architectures' conv -> BN -> ReLU stems and blocks (ResNet-18 here) fuse, outputs unchanged."""
    from visionkit import registry

    model = registry.get_architecture("resnet18").build(seed=0, input_size=(64, 64))
    _randomise_bn(model, seed=3)
    chains = _chains(model)
    assert chains["conv1"] == (("bn1", "relu"), "relu")
    assert sum(1 for absorbed, _ in chains.values() if len(absorbed) == 2) >= 9
    x = np.random.default_rng(4).standard_normal((1, 3, 64, 64)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("activation,ref", [("relu", lambda v: np.maximum(v, 0)),
                                            ("relu6", lambda v: np.clip(v, 0, 6))])
def test_add_act_is_the_add_then_the_activation_to_the_bit(activation, ref):
    rng = np.random.default_rng(3)
    a, b = (4 * rng.standard_normal((2, 3, 5, 7))).astype(np.float32), rng.standard_normal((2, 3, 5, 7)).astype(
        np.float32)
    a[0, 1, 2, 3] = np.nan  # NaN passes through, as the activation kernels keep it
    got = vk.ops.add_act(a, b, activation)
    want = vk.ops.activation(vk.ops.add(a, b), activation)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, ref(a + b))
    with pytest.raises(ValueError, match="add_act: activation must be one of"):
        vk.ops.add_act(a, b, "tanh")
    with pytest.raises(ValueError, match="shapes differ"):
        vk.ops.add_act(a, b[:1], "relu")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", [True, False])
def test_the_fused_batchnorm_fold_is_batchnorms_own_to_the_bit(dtype, affine):
    """The conv epilogue's scale and shift (one compiled loop) against BatchNorm's own (numpy), a zero variance
    with eps 0 included (inf, as numpy gives)."""
    from visionkit.backends.cpu.conv_epilogue import _epilogue
    from visionkit.backends.cpu.norm import _affine

    rng = np.random.default_rng(4)
    mean, var = (3 * rng.standard_normal(33)).astype(dtype), (2 * rng.random(33) + 1e-7).astype(dtype)
    var[0] = 0
    gamma, beta = (rng.standard_normal(33).astype(dtype) for _ in range(2)) if affine else (None, None)
    for eps in (1e-5, 1e-3, 0.0):
        ep, fused = _epilogue(None, (mean, var, gamma, beta, eps), 33, dtype)
        with np.errstate(divide="ignore"):
            scale, shift, _ = _affine(mean, var, gamma, beta, eps, dtype)
        assert fused and ep.dtype == dtype
        np.testing.assert_array_equal(ep[1], scale)
        np.testing.assert_array_equal(ep[2], shift)
