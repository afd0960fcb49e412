"""Layers: shapes, parameter counts (Keras'), config round trips, freezing, dropout, and parity with PyTorch."""

import json

import numpy as np
import pytest

import visionkit as vk
from visionkit import layers as L
from visionkit import ops
from visionkit.layers.base import (
    Layer,
    get_layer_class,
    layer_from_config,
    register_layer,
)


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def built(layer, input_shape):
    layer(vk.Input(input_shape))
    return layer


# ---------------------------------------------------------------------------------------------- param counts


def test_param_counts_match_keras():
    # Keras: SeparableConv2D(64, 3) on 32 channels: 3*3*32 + 32*64 + 64 = 2,400 (the depthwise step has no bias)
    assert built(L.SeparableConv2D(64, 3), (32, 16, 16)).count_params() == 2400
    assert built(L.SeparableConv2D(64, 3, depth_multiplier=2), (32, 16, 16)).count_params() == 3 * 3 * 64 + 64 * 64 + 64
    assert built(L.SeparableConv2D(64, 3, use_bias=False), (32, 16, 16)).count_params() == 2336
    # DepthwiseConv2D(3) on 32 channels: 3*3*32 + 32; depth_multiplier=2 doubles both
    assert built(L.DepthwiseConv2D(3), (32, 16, 16)).count_params() == 320
    assert built(L.DepthwiseConv2D(3, depth_multiplier=2), (32, 16, 16)).count_params() == 640
    # BatchNorm: gamma, beta trainable; running mean/var non-trainable (Keras' "non-trainable params")
    bn = built(L.BatchNorm(), (64, 8, 8))
    assert bn.count_params() == 256
    assert sum(p.size for p in bn.parameters() if not p.trainable) == 128
    assert built(L.BatchNorm(affine=False), (10,)).count_params() == 20
    assert built(L.Conv2D(32, 3), (3, 8, 8)).count_params() == 3 * 9 * 32 + 32
    assert built(L.Conv2D(32, 3, groups=4, use_bias=False), (8, 8, 8)).count_params() == 32 * 2 * 9
    assert built(L.Conv2DTranspose(16, 3), (8, 5, 5)).count_params() == 8 * 16 * 9 + 16
    assert built(L.Dense(10), (64,)).count_params() == 650


def test_weight_layouts_are_pytorch():
    c = built(L.Conv2D(6, (3, 5), groups=2), (4, 9, 9))
    assert c.kernel.shape == (6, 2, 3, 5) and c.bias.shape == (6,)
    t = built(L.Conv2DTranspose(6, 3, groups=2), (4, 5, 5))
    assert t.kernel.shape == (4, 3, 3, 3)
    d = built(L.Dense(7), (5,))
    assert d.kernel.shape == (7, 5)
    s = built(L.SeparableConv2D(8, 3, depth_multiplier=2), (3, 6, 6))
    assert s.depthwise_kernel.shape == (6, 1, 3, 3) and s.pointwise_kernel.shape == (8, 6, 1, 1)
    assert [p.name for p in c.parameters()] == [f"{c.name}/kernel", f"{c.name}/bias"]


# ---------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    "layer, in_shape",
    [
        (lambda: L.Conv2D(4, 3), (2, 7, 9)),
        (lambda: L.Conv2D(4, 3, strides=2, padding="same"), (2, 7, 9)),
        (lambda: L.Conv2D(4, (3, 2), strides=(2, 1), padding=(1, 0), dilation_rate=(1, 2)), (2, 7, 9)),
        (lambda: L.Conv2D(4, 4, strides=3, padding="same"), (2, 7, 8)),
        (lambda: L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2), (3, 7, 7)),
        (lambda: L.SeparableConv2D(5, 3, padding="same"), (3, 6, 5)),
        (lambda: L.Conv2DTranspose(3, 3, strides=2), (2, 4, 5)),
        (lambda: L.Conv2DTranspose(3, 3, strides=2, padding="same"), (2, 4, 5)),
        (lambda: L.Conv2DTranspose(3, 4, strides=2, padding="same"), (2, 4, 5)),
        (lambda: L.Conv2DTranspose(3, 2, strides=1, padding="same"), (2, 4, 5)),
        (lambda: L.Conv2DTranspose(3, 1, strides=3, padding="same"), (2, 4, 5)),
        (lambda: L.Conv2DTranspose(3, 1, strides=3), (2, 4, 5)),
        (lambda: L.Conv2DTranspose(3, 3, strides=2, padding=1, output_padding=1), (2, 4, 5)),
        (lambda: L.MaxPool2D(3, strides=2, ceil_mode=True), (2, 8, 7)),
        (lambda: L.MaxPool2D(2, padding="same"), (2, 5, 7)),
        (lambda: L.MaxPool2D(3, strides=1, padding=1, dilation=2), (2, 8, 7)),
        (lambda: L.AvgPool2D(3, strides=2, padding=1, ceil_mode=True, count_include_pad=False), (2, 8, 7)),
        (lambda: L.AvgPool2D(2, padding="same"), (2, 5, 7)),
        (lambda: L.GlobalAvgPool2D(), (3, 4, 5)),
        (lambda: L.GlobalMaxPool2D(keepdims=True), (3, 4, 5)),
        (lambda: L.ChannelMaxPool(2), (6, 3, 3)),
        (lambda: L.LocalResponseNorm(3), (5, 3, 3)),
        (lambda: L.UpSampling2D((2, 3)), (2, 3, 4)),
        (lambda: L.UpSampling2D(2, interpolation="bilinear"), (2, 3, 4)),
        (lambda: L.Flatten(), (2, 3, 4)),
        (lambda: L.Reshape((-1, 4)), (2, 3, 4)),
        (lambda: L.Activation("softmax"), (5,)),
    ],
)
def test_output_shape_matches_forward(layer, in_shape):
    lyr = layer()
    sym = lyr(vk.Input(in_shape))
    y = lyr(rand(2, *in_shape))
    assert y.shape == (2,) + tuple(sym.shape[1:])
    assert tuple(lyr.compute_output_shape(in_shape)) == tuple(sym.shape[1:])


def test_same_padding_output_sizes():
    assert L.Conv2D(1, 3, strides=2, padding="same").compute_output_shape((1, 7, 8)) == (1, 4, 4)
    assert L.Conv2DTranspose(1, 3, strides=2, padding="same").compute_output_shape((1, 7, 8)) == (1, 14, 16)
    assert L.MaxPool2D(2, padding="same").compute_output_shape((1, 7, 8)) == (1, 4, 4)
    assert L.Conv2D(1, 3).compute_output_shape((1, None, 8)) == (1, None, 6)


def test_conv_transpose_same_is_the_gradient_of_conv_same():
    # TensorFlow's rule: Conv2DTranspose(padding="same") is the input-gradient of Conv2D(padding="same")
    for k, s in [(3, 2), (4, 2), (2, 1), (3, 1), (5, 3)]:
        x = rand(2, 3, 4, 5, seed=k * 10 + s)
        t = L.Conv2DTranspose(2, k, strides=s, padding="same", use_bias=False)
        y = t(x)
        assert y.shape == (2, 2, 4 * s, 5 * s)
        gx, _, _ = ops.conv2d_backward(x, np.zeros(y.shape, np.float32), t.kernel.value, None, stride=s, padding="same")
        np.testing.assert_allclose(y, gx, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------- bad arguments


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="activation"):
        L.Conv2D(4, 3, activation="swishy")
    with pytest.raises(ValueError, match="padding"):
        L.Conv2D(4, 3, padding="full")
    with pytest.raises(ValueError, match="initializer"):
        L.Dense(4, kernel_initializer="nope")
    with pytest.raises(ValueError, match="groups"):
        L.Conv2D(5, 3, groups=2)
    with pytest.raises(ValueError, match="groups"):
        L.Conv2D(4, 3, groups=2)(vk.Input((3, 8, 8)))
    with pytest.raises(ValueError, match="rate"):
        L.Dropout(1.5)
    with pytest.raises(ValueError, match="output_padding"):
        L.Conv2DTranspose(4, 3, padding="same", output_padding=1)
    with pytest.raises(ValueError, match="dense"):
        L.Dense(4, name="dense_x")(vk.Input((3, 8, 8)))
    with pytest.raises(ValueError, match="too small"):
        L.Conv2D(4, 5)(vk.Input((3, 3, 3)))
    with pytest.raises(ValueError, match="divisible"):
        L.ChannelMaxPool(4)(vk.Input((6, 3, 3)))
    with pytest.raises(ValueError, match="one shape"):
        L.Add()([vk.Input((3, 4, 4)), vk.Input((2, 4, 4))])


def test_eager_call_checks_channels():
    conv = L.Conv2D(4, 3, name="c_eager")
    conv(rand(1, 3, 6, 6))
    with pytest.raises(ValueError, match="c_eager.*3 channels"):
        conv(rand(1, 2, 6, 6))


# ---------------------------------------------------------------------------------------------- names, registry, config


def test_auto_names_follow_keras():
    L.reset_names()
    a, b, c = L.Conv2D(1, 1), L.Conv2D(1, 1), L.MaxPool2D()
    assert (a.name, b.name, c.name) == ("conv2d", "conv2d_1", "max_pool2d")
    assert L.BatchNorm().name == "batch_norm"
    assert L.Conv2DTranspose(1, 1).name == "conv2d_transpose"
    assert L.UpSampling2D().name == "up_sampling2d"
    assert L.Dense(1, name="head").name == "head"


ALL_LAYERS = [
    (L.Conv2D(4, 3, strides=2, padding="same", dilation_rate=1, activation="relu", use_bias=False), (2, 6, 6)),
    (L.DepthwiseConv2D((3, 1), depth_multiplier=2, padding=(1, 0), activation="tanh"), (2, 6, 6)),
    (L.SeparableConv2D(3, 3, padding="same", depth_multiplier=2, activation="leaky_relu"), (2, 6, 6)),
    (L.Conv2DTranspose(3, 3, strides=2, padding="same", activation="sigmoid"), (2, 3, 3)),
    (L.Conv2DTranspose(3, 3, strides=2, padding=1, output_padding=1), (2, 3, 3)),
    (L.MaxPool2D(3, 2, padding=1, dilation=1, ceil_mode=True), (2, 6, 6)),
    (L.AvgPool2D(3, 2, padding=1, count_include_pad=False), (2, 6, 6)),
    (L.GlobalAvgPool2D(keepdims=True), (2, 6, 6)),
    (L.GlobalMaxPool2D(), (2, 6, 6)),
    (L.ChannelMaxPool(2), (4, 3, 3)),
    (L.LocalResponseNorm(3, alpha=1e-3, beta=0.5, k=2.0), (4, 3, 3)),
    (L.BatchNorm(momentum=0.2, eps=1e-3), (4, 3, 3)),
    (L.BatchNorm(affine=False), (4,)),
    (L.Dense(5, activation="softmax", use_bias=False), (4,)),
    (L.Dropout(0.3, seed=7), (4,)),
    (L.Flatten(), (2, 3, 3)),
    (L.Reshape((3, -1)), (2, 3, 3)),
    (L.Activation("leaky_relu", negative_slope=0.2), (4,)),
    (L.UpSampling2D(2, interpolation="bilinear", align_corners=True), (2, 3, 3)),
]


@pytest.mark.parametrize("layer, in_shape", ALL_LAYERS, ids=lambda v: type(v).__name__ if isinstance(v, Layer) else "")
def test_config_round_trip(layer, in_shape):
    layer(vk.Input(in_shape))
    cfg = json.loads(json.dumps(layer.get_config()))  # JSON-serialisable
    spec = {"class_name": type(layer).__name__, "config": cfg}
    clone = layer_from_config(spec)
    assert type(clone) is type(layer) and clone.name == layer.name
    assert clone.get_config() == cfg
    clone(vk.Input(in_shape))
    clone.set_weights(layer.get_weights())
    x = rand(2, *in_shape, seed=3)
    np.testing.assert_allclose(clone(x), layer(x), rtol=1e-6)
    assert clone.count_params() == layer.count_params()


def test_register_custom_layer_for_from_config():
    @register_layer
    class Doubler(Layer):
        def forward(self, x, training=False):
            return ops.add(x, x), None

        def backward(self, grad_out, ctx):
            return ops.add(grad_out, grad_out)

    assert get_layer_class("Doubler") is Doubler
    d = layer_from_config({"class_name": "Doubler", "config": Doubler(name="twice").get_config()})
    assert d.name == "twice"
    np.testing.assert_allclose(d(np.ones((1, 2), np.float32)), 2.0)
    with pytest.raises(ValueError, match="register_layer"):
        get_layer_class("NoSuchLayer")


# ---------------------------------------------------------------------------------------------- init, dropout, freezing


def test_initializers_are_seeded_and_scaled():
    a = vk.Sequential([L.Conv2D(8, 3, input_shape=(4, 8, 8)), L.Flatten(), L.Dense(3)], seed=0)
    b = vk.Sequential([L.Conv2D(8, 3, input_shape=(4, 8, 8)), L.Flatten(), L.Dense(3)], seed=0)
    c = vk.Sequential([L.Conv2D(8, 3, input_shape=(4, 8, 8)), L.Flatten(), L.Dense(3)], seed=1)
    for p, q, r in zip(a.parameters(), b.parameters(), c.parameters()):
        np.testing.assert_array_equal(p.value, q.value)
        if p.short_name == "kernel":
            assert not np.array_equal(p.value, r.value)
    L.set_seed(5)
    w1 = built(L.Conv2D(8, 3), (4, 8, 8)).kernel.value
    L.set_seed(5)
    w2 = built(L.Conv2D(8, 3), (4, 8, 8)).kernel.value
    np.testing.assert_array_equal(w1, w2)
    big = built(L.Conv2D(64, 3, kernel_initializer="he_normal"), (32, 4, 4)).kernel.value
    assert abs(big.std() - np.sqrt(2 / (32 * 9))) < 0.1 * np.sqrt(2 / (32 * 9))
    assert np.abs(big).max() <= 2 * np.sqrt(2 / (32 * 9)) / 0.8796 + 1e-6  # truncated at 2 std
    gu = built(L.Dense(200, kernel_initializer="glorot_uniform"), (300,)).kernel.value
    lim = np.sqrt(6 / 500)
    assert np.abs(gu).max() <= lim and np.abs(gu).max() > 0.95 * lim
    bias = built(L.Dense(4, bias_initializer="ones"), (3,)).bias.value
    np.testing.assert_array_equal(bias, 1.0)


def test_dropout_inverted_and_deterministic():
    x = np.ones((4, 1000), np.float32)
    d = L.Dropout(0.25, seed=3)
    np.testing.assert_array_equal(d(x), x)  # inference: identity
    y1, y2 = d(x, training=True), d(x, training=True)
    assert set(np.unique(y1)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((y1 == 0).mean() - 0.25) < 0.03
    assert not np.array_equal(y1, y2)  # a new mask per call
    e = L.Dropout(0.25, seed=3)
    np.testing.assert_array_equal(e(x, training=True), y1)  # same seed, same call count: same mask
    y, mask = d.forward(x, training=True)
    g = d.backward(np.ones_like(x), mask)
    np.testing.assert_array_equal(g, y)


def test_freezing_keeps_weights_out_of_training():
    model = vk.Sequential(
        [
            L.Conv2D(2, 3, input_shape=(1, 5, 5), name="f_conv"),
            L.BatchNorm(name="f_bn"),
            L.Flatten(),
            L.Dense(3, name="f_dense"),
        ],
        seed=0,
    )
    conv = model.get_layer("f_conv")
    conv.trainable = False
    model.get_layer("f_bn").trainable = False
    assert {p.name for p in model.trainable_parameters()} == {"f_dense/kernel", "f_dense/bias"}
    rm = model.get_layer("f_bn").running_mean.value.copy()
    x = rand(4, 1, 5, 5)
    y = model(x, training=True)
    np.testing.assert_array_equal(model.get_layer("f_bn").running_mean.value, rm)  # frozen BN: inference mode
    gx = model.backward(np.ones_like(y))
    assert gx.shape == x.shape and np.abs(gx).sum() > 0  # backward still flows through frozen layers
    assert conv.kernel.grad is None and conv.bias.grad is None
    assert model.get_layer("f_dense").kernel.grad is not None
    counts = model.summary(print_fn=None)
    assert "Trainable params: 57" in counts
    model.trainable = False
    assert model.trainable_parameters() == []
    model.trainable = True
    assert len(model.trainable_parameters()) == 6


def test_batchnorm_running_stats_are_non_trainable_parameters():
    bn = built(L.BatchNorm(name="bn_stats"), (3, 4, 4))
    names = {p.name: p.trainable for p in bn.parameters()}
    assert names == {
        "bn_stats/gamma": True,
        "bn_stats/beta": True,
        "bn_stats/running_mean": False,
        "bn_stats/running_var": False,
    }
    x = rand(8, 3, 4, 4) * 2 + 1
    bn(x, training=True)
    np.testing.assert_allclose(bn.running_mean.value, 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------- parity with torch


def _check_grads_vs_torch(layer, x, torch, torch_fn, params, training=False, rtol=1e-4, atol=1e-5):
    """Forward + backward of a built visionkit layer against ``torch_fn`` on the same weights."""
    y, ctx = layer.forward(x, training)
    g = rand(*y.shape, seed=11)
    for p in layer.parameters():
        p.grad = None
    gx = layer.backward(g, ctx)
    xt = torch.tensor(x, requires_grad=True)
    tparams = [torch.tensor(np.array(p.value), requires_grad=True) for p in params]
    yt = torch_fn(xt, *tparams)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=rtol, atol=atol)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=rtol, atol=atol)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=rtol, atol=atol * 10, err_msg=p.name)


def test_layers_match_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rand(2, 4, 7, 6, seed=1)

    conv = built(L.Conv2D(6, 3, strides=2, padding=1, dilation_rate=1, groups=2, activation="relu"), (4, 7, 6))
    _check_grads_vs_torch(
        conv, x, torch, lambda x, w, b: F.relu(F.conv2d(x, w, b, 2, 1, 1, 2)), [conv.kernel, conv.bias]
    )

    dw = built(L.DepthwiseConv2D(3, padding=(1, 1), depth_multiplier=2, dilation_rate=2), (4, 7, 6))
    _check_grads_vs_torch(dw, x, torch, lambda x, w, b: F.conv2d(x, w, b, 1, 1, 2, 4), [dw.depthwise_kernel, dw.bias])

    sep = built(L.SeparableConv2D(5, 3, padding=1, activation="tanh"), (4, 7, 6))
    _check_grads_vs_torch(
        sep,
        x,
        torch,
        lambda x, d, p, b: torch.tanh(F.conv2d(F.conv2d(x, d, None, 1, 1, 1, 4), p, b)),
        [sep.depthwise_kernel, sep.pointwise_kernel, sep.bias],
    )

    tr = built(L.Conv2DTranspose(4, 3, strides=2, padding=1, output_padding=1, groups=2), (4, 7, 6))
    _check_grads_vs_torch(tr, x, torch, lambda x, w, b: F.conv_transpose2d(x, w, b, 2, 1, 1, 2), [tr.kernel, tr.bias])

    dense = built(L.Dense(5, activation="sigmoid"), (168,))
    xf = x.reshape(2, -1)
    _check_grads_vs_torch(
        dense, xf, torch, lambda x, w, b: torch.sigmoid(F.linear(x, w, b)), [dense.kernel, dense.bias]
    )

    sm = built(L.Dense(5, activation="softmax"), (168,))
    _check_grads_vs_torch(sm, xf, torch, lambda x, w, b: F.softmax(F.linear(x, w, b), 1), [sm.kernel, sm.bias])

    mp = built(L.MaxPool2D(3, strides=2, padding=1, ceil_mode=True), (4, 7, 6))
    _check_grads_vs_torch(mp, x, torch, lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True), [])

    ap = built(L.AvgPool2D(3, strides=2, padding=1, count_include_pad=False), (4, 7, 6))
    _check_grads_vs_torch(ap, x, torch, lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), [])

    gap = built(L.GlobalAvgPool2D(), (4, 7, 6))
    _check_grads_vs_torch(gap, x, torch, lambda x: x.mean((2, 3)), [])

    gmp = built(L.GlobalMaxPool2D(keepdims=True), (4, 7, 6))
    _check_grads_vs_torch(gmp, x, torch, lambda x: x.amax((2, 3), keepdim=True), [])

    cmp_ = built(L.ChannelMaxPool(2), (4, 7, 6))
    _check_grads_vs_torch(cmp_, x, torch, lambda x: x.reshape(2, 2, 2, 7, 6).amax(2), [])

    lrn = built(L.LocalResponseNorm(3, alpha=1e-2, beta=0.75, k=2.0), (4, 7, 6))
    _check_grads_vs_torch(lrn, x, torch, lambda x: F.local_response_norm(x, 3, 1e-2, 0.75, 2.0), [])

    for training in (False, True):
        bn = built(L.BatchNorm(), (4, 7, 6))
        bn.gamma.value = rand(4, seed=5)
        bn.beta.value = rand(4, seed=6)
        bn.running_mean.value = rand(4, seed=7)
        bn.running_var.value = np.abs(rand(4, seed=8)) + 0.5
        rm, rv = torch.tensor(bn.running_mean.value.copy()), torch.tensor(bn.running_var.value.copy())

        def ref_bn(x, g, b, rm=rm, rv=rv, tr=training):
            return F.batch_norm(x, rm, rv, g, b, tr, 0.1, 1e-5)

        _check_grads_vs_torch(bn, x, torch, ref_bn, [bn.gamma, bn.beta], training=training, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(bn.running_mean.value, rm.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bn.running_var.value, rv.numpy(), rtol=1e-5, atol=1e-6)

    bn2 = built(L.BatchNorm(), (5,))
    _check_grads_vs_torch(
        bn2,
        rand(6, 5),
        torch,
        lambda x, g, b: F.batch_norm(x, None, None, g, b, True),
        [bn2.gamma, bn2.beta],
        training=True,
        rtol=1e-3,
        atol=1e-4,
    )

    up = built(L.UpSampling2D(2), (4, 7, 6))
    _check_grads_vs_torch(up, x, torch, lambda x: F.interpolate(x, scale_factor=2, mode="nearest"), [])
    upb = built(L.UpSampling2D((2, 3), interpolation="bilinear"), (4, 7, 6))
    _check_grads_vs_torch(
        upb, x, torch, lambda x: F.interpolate(x, scale_factor=(2, 3), mode="bilinear", align_corners=False), []
    )

    act = built(L.Activation("leaky_relu", negative_slope=0.2), (4, 7, 6))
    _check_grads_vs_torch(act, x, torch, lambda x: F.leaky_relu(x, 0.2), [])
    act = built(L.Activation("hardswish"), (4, 7, 6))
    _check_grads_vs_torch(act, x, torch, F.hardswish, [])

    cat = L.Concat()
    a, b = rand(2, 3, 4, 4, seed=1), rand(2, 2, 4, 4, seed=2)
    y = cat([a, b])
    np.testing.assert_array_equal(y, np.concatenate([a, b], 1))
    ga, gb = cat.backward(y, cat.forward([a, b])[1])
    np.testing.assert_array_equal(ga, a)
    np.testing.assert_array_equal(gb, b)


@pytest.mark.parametrize(
    "make",
    [
        lambda: L.Conv2DTranspose(2, 3, strides=2, padding="same", activation="tanh"),  # crops an odd pixel
        lambda: L.Conv2DTranspose(2, 1, strides=3, padding="same"),  # output_padding fills the gap
        lambda: L.SeparableConv2D(3, 3, strides=2, padding="same", depth_multiplier=2, activation="elu"),
        lambda: L.DepthwiseConv2D(3, padding="same", activation="selu"),
    ],
)
def test_layer_gradients_by_finite_differences(make):
    layer = make()
    layer(vk.Input((3, 5, 4)))
    for p in layer.parameters():
        p.value = np.random.default_rng(1).standard_normal(p.shape)  # float64: ops keep it
    x = np.random.default_rng(2).standard_normal((2, 3, 5, 4))
    y, ctx = layer.forward(x)
    w = np.random.default_rng(3).standard_normal(y.shape)
    gx = layer.backward(w, ctx)

    def loss():
        return float((layer.forward(x)[0] * w).sum())

    def numeric(arr, idx, eps=1e-6):
        old = arr[idx]
        arr[idx] = old + eps
        up = loss()
        arr[idx] = old - eps
        down = loss()
        arr[idx] = old
        return (up - down) / (2 * eps)

    rng = np.random.default_rng(4)
    for _ in range(8):
        idx = tuple(rng.integers(0, s) for s in x.shape)
        np.testing.assert_allclose(gx[idx], numeric(x, idx), rtol=1e-5, atol=1e-7)
    for p in layer.parameters():
        for _ in range(4):
            idx = tuple(rng.integers(0, s) for s in p.shape)
            np.testing.assert_allclose(p.grad[idx], numeric(p.value, idx), rtol=1e-5, atol=1e-7, err_msg=p.name)


# ---------------------------------------------------------------------------------------------- review fixes


def test_pool_shape_inference_uses_the_ops_geometry():
    """MaxPool2D(2, ceil_mode=True) on a 1x7 input: torch gives (1, 1, 1, 4); the layer used to raise."""
    y = L.MaxPool2D(2, ceil_mode=True)(np.zeros((1, 1, 1, 7), np.float32))
    assert y.shape == (1, 1, 1, 4)
    assert L.MaxPool2D(2, ceil_mode=True)(vk.Input((1, 1, 7))).shape == (None, 1, 1, 4)
    # layer shape inference == what the ops produce, over a sweep (and both refuse the same inputs)
    for h in range(1, 8):
        for k in (1, 2, 3):
            for s in (1, 2, 3):
                for pad in ("valid", "same", 0, 1):
                    if not isinstance(pad, str) and 2 * pad > k:
                        continue
                    for ceil in (False, True):
                        layer = L.MaxPool2D(k, s, padding=pad, ceil_mode=ceil)
                        try:
                            want = ops.max_pool2d(np.zeros((1, 1, h, 5), np.float32), k, s, pad, 1, ceil).shape
                        except ValueError:
                            want = None
                        if want is None:
                            with pytest.raises(ValueError):
                                layer(vk.Input((1, h, 5)))
                        else:
                            assert layer.compute_output_shape((1, h, 5)) == tuple(want[1:]), (h, k, s, pad, ceil)
                for pad in ("valid", "same", 1):
                    for d in (1, 2):
                        conv = L.Conv2D(1, k, strides=s, padding=pad, dilation_rate=d, use_bias=False)
                        try:
                            want = ops.conv2d(
                                np.zeros((1, 1, h, 6), np.float32), np.zeros((1, 1, k, k), np.float32), None, s,
                                pad, d,
                            ).shape
                        except ValueError:
                            want = None
                        if want is None or min(want[2:]) < 1:
                            with pytest.raises(ValueError):
                                conv(vk.Input((1, h, 6)))
                        else:
                            assert conv.compute_output_shape((1, h, 6)) == tuple(want[1:]), (h, k, s, pad, d)


def test_pool_ceil_mode_matches_torch():
    torch = pytest.importorskip("torch")
    for shape, k, s, p in [((1, 1, 1, 7), 2, 2, 0), ((1, 2, 5, 9), 3, 2, 1), ((1, 1, 6, 6), 2, 3, 1)]:
        x = rand(*shape)
        want = torch.nn.functional.max_pool2d(torch.from_numpy(x), k, s, p, ceil_mode=True).numpy()
        layer = L.MaxPool2D(k, s, padding=p, ceil_mode=True)
        np.testing.assert_array_equal(layer(x), want)
        assert layer.compute_output_shape(shape[1:]) == want.shape[1:]


def test_duplicated_geometry_helpers_are_gone():
    import visionkit.layers.base as base

    for name in ("window_out", "same_pads", "spatial_pads"):
        assert not hasattr(base, name)


def test_dtype_checks_name_the_layer():
    d = L.Dense(2, name="dense_dtype")
    with pytest.raises(ValueError, match=r"layer 'dense_dtype' \(Dense\).*float, int, uint or bool.*complex64"):
        d(np.ones((1, 3), np.complex64))
    with pytest.raises(ValueError, match=r"layer 'dense_dtype' \(Dense\).*got dtype <U1"):
        d(np.array([["a", "b", "c"]]))
    with pytest.raises(ValueError, match=r"layer 'dense_dtype'.*object"):
        d(np.array([[None, 1, 2]], dtype=object))
    for dt in (bool, np.int8, np.uint16, np.int64, np.float16, np.float64):
        y = d(np.ones((1, 3), dt))
        assert y.dtype == np.float32 and y.shape == (1, 2)
    add = L.Add(name="add_dtype")
    with pytest.raises(ValueError, match=r"layer 'add_dtype' \(Add\).*complex128"):
        add([np.ones((1, 2)), np.ones((1, 2), np.complex128)])


def test_eager_shape_errors_print_the_real_array_shape():
    with pytest.raises(ValueError, match=r"rank 4 .*got shape \(1, 8, 8\)$") as e:
        L.Conv2D(4, 3, name="conv_rank")(np.zeros((1, 8, 8), np.float32))
    assert "None" not in str(e.value)
    with pytest.raises(ValueError, match=r"got shape \(2, 5, 7\)"):
        L.MaxPool2D(2)(np.zeros((2, 5, 7), np.float32))
    with pytest.raises(ValueError, match=r"got shape \(3, 4, 2, 2\)"):
        L.Dense(2)(np.zeros((3, 4, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"spatial size \(2, 2\)"):
        L.Conv2D(1, 3)(np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"\[\(1, 3\), \(1, 4\)\]"):
        L.Add()([np.zeros((1, 3)), np.zeros((1, 4))])
    # symbolic calls keep the Keras form with the batch as None
    with pytest.raises(ValueError, match=r"got shape \(None, 8, 8\)"):
        L.Conv2D(4, 3)(vk.Input((8, 8)))


def test_eager_outputs_do_not_alias_the_input():
    x = rand(2, 3, 4, 4)
    for layer in (L.Flatten(), L.Dropout(0.5), L.Activation("linear"), L.Reshape((-1,))):
        y = layer(x)
        assert not np.shares_memory(y, x), layer


def test_batchnormalization_is_keras_faithful():
    bn = L.BatchNormalization()
    assert bn.keras_momentum == 0.99 and bn.epsilon == 1e-3
    assert bn.momentum == pytest.approx(0.01) and bn.torch_momentum == pytest.approx(0.01)
    assert isinstance(bn, L.BatchNorm) and L.BatchNorm().momentum == 0.1
    built(bn, (3, 4, 4))
    assert [p.short_name for p in bn.parameters()] == ["gamma", "beta", "running_mean", "running_var"]
    x = rand(8, 3, 4, 4) + 5.0
    bn(x, training=True)
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3), ddof=1)  # PyTorch's unbiased rule (documented)
    np.testing.assert_allclose(bn.running_mean.value, 0.01 * mean, rtol=1e-4)
    np.testing.assert_allclose(bn.running_var.value, 0.99 + 0.01 * var, rtol=1e-4)
    # inference: epsilon 1e-3 is used
    y = bn(x)
    rm, rv = bn.running_mean.value, bn.running_var.value
    want = (x - rm[None, :, None, None]) / np.sqrt(rv[None, :, None, None] + 1e-3)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    # center / scale independently
    assert [p.short_name for p in built(L.BatchNormalization(center=False), (3,)).parameters()] == [
        "gamma", "running_mean", "running_var"
    ]
    assert [p.short_name for p in built(L.BatchNormalization(scale=False), (3,)).parameters()] == [
        "beta", "running_mean", "running_var"
    ]
    b2 = L.BatchNormalization(momentum=0.9, epsilon=0.01, scale=False, name="bnk")
    cfg = b2.get_config()
    assert cfg["momentum"] == 0.9 and cfg["epsilon"] == 0.01 and cfg["scale"] is False and cfg["center"] is True
    again = layer_from_config({"class_name": "BatchNormalization", "config": json.loads(json.dumps(cfg))})
    assert type(again) is L.BatchNormalization and again.momentum == pytest.approx(0.1) and again.eps == 0.01
    with pytest.raises(ValueError, match="momentum"):
        L.BatchNormalization(momentum=1.5)


def test_batchnormalization_matches_keras_formula_against_torch():
    torch = pytest.importorskip("torch")
    x = rand(6, 4, 3, 3)
    bn = L.BatchNormalization(momentum=0.9, epsilon=1e-3)
    tb = torch.nn.BatchNorm2d(4, eps=1e-3, momentum=0.1)
    bn(x, training=True)
    tb.train()(torch.from_numpy(x))
    np.testing.assert_allclose(bn.running_mean.value, tb.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.value, tb.running_var.numpy(), rtol=1e-5, atol=1e-6)


def test_activation_params_are_checked():
    with pytest.raises(ValueError, match=r"'alpha'.*leaky_relu.*negative_slope"):
        L.Activation("leaky_relu", alpha=0.2)
    with pytest.raises(ValueError, match="takes no parameters"):
        L.Activation("relu", negative_slope=0.1)
    with pytest.raises(ValueError, match="negative_slop"):
        L.Activation("elu", negative_slop=0.1)
    with pytest.raises(ValueError, match="must be a number"):
        L.Activation("elu", alpha="big")
    a = L.Activation("leaky_relu", negative_slope=0.2)
    np.testing.assert_allclose(a(np.array([[-1.0, 2.0]], np.float32)), [[-0.2, 2.0]], rtol=1e-6)
    again = layer_from_config({"class_name": "Activation", "config": a.get_config()})
    assert again.params == {"negative_slope": 0.2}
    assert L.Activation("softmax", dim=1).params == {"dim": 1}


def test_maxpool_without_a_tape_asks_for_no_indices(monkeypatch):
    calls = []
    real = ops.max_pool2d

    def spy(*args, **kwargs):
        calls.append(kwargs.get("return_indices"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ops, "max_pool2d", spy)
    x = rand(2, 3, 8, 8)
    pool = L.MaxPool2D(2)
    y = pool(x)  # eager: nobody can backprop through it
    y2, ctx = pool.forward(x)  # the layer protocol records by default
    with L.no_tape():
        y3, ctx3 = pool.forward(x)
    assert calls == [False, True, False] and ctx is not None and ctx3 is None
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(y, y3)


def test_multiply_rescales_channels_like_a_squeeze_and_excitation_block():
    torch = pytest.importorskip("torch")
    import visionkit as vk

    inp = vk.Input((6, 4, 4))
    s = L.Dense(6, activation="sigmoid")(L.Dense(2, activation="relu")(L.GlobalAvgPool2D()(inp)))
    model = vk.Model(inp, L.Multiply()([inp, s]), seed=0)
    x = np.random.default_rng(0).standard_normal((2, 6, 4, 4)).astype(np.float32)
    y = model(x, training=True)
    d1, d2 = [l for l in model.layers if isinstance(l, L.Dense)]
    xt = torch.tensor(x, requires_grad=True)
    w1, b1 = (torch.tensor(p.value, requires_grad=True) for p in d1.parameters())
    w2, b2 = (torch.tensor(p.value, requires_grad=True) for p in d2.parameters())
    st = torch.sigmoid(torch.relu(xt.mean(dim=(2, 3)) @ w1.T + b1) @ w2.T + b2)
    yt = xt * st[:, :, None, None]
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-6)
    g = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    gx = model.backward(g)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(list(d1.parameters())[0].grad, w1.grad.numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="Multiply"):
        vk.Model(inp, L.Multiply()([inp, L.Conv2D(6, 3, padding="same")(inp)]))
