"""The modern ImageNet architectures: ResNet-18/34/50/101/152, GoogLeNet, MobileNetV2, Xception, SE-ResNet-50.

What is asserted, per network:
  - the trainable parameter count of the reference implementation (torchvision; keras.applications for Xception),
    both from the parameters and from ``summary``'s "Trainable params" line;
  - the multiply-accumulates of the convolutions and fully connected layers at 224x224, against the "GFLOPS"
    torchvision documents for its weights (its figures are MACs, rounded to two decimals). A stride in the wrong
    place (ResNet v1 against v1.5) or a wrong padding changes this figure while leaving the parameter count alone;
  - the shape of the last feature map (before the global pool), which pins every stride;
  - that a few parameters carry the reference's module names and shapes, so converted weights map one to one.
Each full-size network is built once per module (a cache); only small inputs run forwards.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import visionkit as vk
from visionkit import layers as L
from visionkit.builtins.architectures import googlenet, mobilenet, resnet, senet, xception
from visionkit.builtins.architectures._registry import ARCHITECTURES
from visionkit.layers import initializers
from visionkit.model import node_shapes

BUILDERS = {
    "resnet18": resnet.resnet18,
    "resnet34": resnet.resnet34,
    "resnet50": resnet.resnet50,
    "resnet101": resnet.resnet101,
    "resnet152": resnet.resnet152,
    "googlenet": googlenet.googlenet,
    "mobilenet_v2": mobilenet.mobilenet_v2,
    "xception": xception.xception,
    "se_resnet50": senet.se_resnet50,
}

# trainable parameters: torchvision's counts (ResNets, GoogLeNet without aux classifiers, MobileNetV2),
# keras.applications' (Xception), ResNet-50 + 2,530,992 SE parameters (SE-ResNet-50)
TRAINABLE = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "googlenet": 6_624_904,
    "mobilenet_v2": 3_504_872,
    "xception": 22_855_952,
    "se_resnet50": 28_088_024,
}

# torchvision's documented GFLOPS (conv + linear multiply-accumulates at 224x224, two decimals)
TORCHVISION_GMACS = {
    "resnet18": 1.81,
    "resnet34": 3.66,
    "resnet50": 4.09,
    "resnet101": 7.80,
    "resnet152": 11.51,
    "googlenet": 1.50,
    "mobilenet_v2": 0.30,
}

# the feature map the global average pool reduces, at the default input size
LAST_FEATURES = {
    "resnet18": (512, 7, 7),
    "resnet34": (512, 7, 7),
    "resnet50": (2048, 7, 7),
    "resnet101": (2048, 7, 7),
    "resnet152": (2048, 7, 7),
    "googlenet": (1024, 7, 7),
    "mobilenet_v2": (1280, 7, 7),
    "xception": (2048, 10, 10),
    "se_resnet50": (2048, 7, 7),
}

_CACHE: dict = {}
BUILD_SECONDS: dict = {}


def built(name):
    """The full-size network, seed 0, built once per test module."""
    if name not in _CACHE:
        t0 = time.perf_counter()
        _CACHE[name] = BUILDERS[name](seed=0)
        BUILD_SECONDS[name] = time.perf_counter() - t0
    return _CACHE[name]


@pytest.fixture(scope="module", autouse=True)
def _drop_cache():
    yield
    _CACHE.clear()


def trainable_count(model):
    return sum(p.size for p in model.parameters() if p.trainable)


def params_by_name(model):
    return {p.name: p for p in model.parameters()}


def image(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _node(model, layer_name):
    for node in model._order:
        if node.layer.name == layer_name:
            return node
    raise KeyError(layer_name)


# ------------------------------------------------------------------------------------------------ counts and shapes


@pytest.mark.parametrize("name", list(BUILDERS))
def test_trainable_parameter_count(name):
    model = built(name)
    assert trainable_count(model) == TRAINABLE[name]
    text = model.summary(print_fn=lambda s: None)
    assert f"Trainable params: {TRAINABLE[name]:,}" in text
    assert f"Total params: {model.count_params():,}" in text


def test_xception_totals_match_keras():
    """Keras counts BatchNormalization's moving mean and variance as non-trainable parameters; so does visionkit."""
    text = built("xception").summary(print_fn=lambda s: None)
    assert "Total params: 22,910,480" in text
    assert "Trainable params: 22,855,952" in text
    assert "Non-trainable params: 54,528" in text


def test_se_blocks_add_exactly_their_parameters():
    assert TRAINABLE["se_resnet50"] - TRAINABLE["resnet50"] == 2_530_992
    se = [p for p in built("se_resnet50").parameters() if ".se." in p.name]
    assert sum(p.size for p in se) == 2_530_992
    names = {p.name for p in se}
    assert "layer1.0.se.fc1/kernel" in names and "layer4.2.se.fc2/bias" in names
    assert len(names) == 16 * 4  # 16 bottlenecks, two convs with kernel and bias each


@pytest.mark.parametrize("name", list(TORCHVISION_GMACS))
def test_macs_match_torchvision(name):
    model = built(name)
    macs = 0
    for node in model._order:
        if isinstance(node.layer, (L.Conv2D, L.DepthwiseConv2D, L.SeparableConv2D, L.Dense)):
            macs += node.layer.count_macs(*node_shapes(node))
    assert round(macs / 1e9, 2) == TORCHVISION_GMACS[name]


@pytest.mark.parametrize("name", list(BUILDERS))
def test_last_feature_map_and_head(name):
    model = built(name)
    pool = "avg_pool" if name == "xception" else "avgpool"
    assert tuple(node_shapes(_node(model, pool))[0]) == LAST_FEATURES[name]
    assert tuple(model.outputs[0].shape) == (None, 1000)
    spec = ARCHITECTURES[name]
    assert spec.task == "classify" and spec.num_classes == 1000
    assert spec.input_shape == ((3, 299, 299) if name == "xception" else (3, 224, 224))
    assert tuple(model.inputs[0].shape[1:]) == spec.input_shape
    assert spec.builder is BUILDERS[name]
    assert model.metadata["architecture"] == name and model.metadata["num_classes"] == 1000


# reference module names -> shapes (torchvision's state_dict keys, Keras' layer names for Xception)
NAMED_SHAPES = {
    "resnet18": {
        "conv1/kernel": (64, 3, 7, 7),
        "layer1.0.conv1/kernel": (64, 64, 3, 3),
        "layer2.0.downsample.0/kernel": (128, 64, 1, 1),
        "layer4.1.bn2/running_var": (512,),
        "fc/kernel": (1000, 512),
    },
    "resnet50": {
        "layer1.0.downsample.0/kernel": (256, 64, 1, 1),
        "layer2.0.conv2/kernel": (128, 128, 3, 3),  # the 3x3 of a v1.5 bottleneck (it carries the stride)
        "layer4.2.conv3/kernel": (2048, 512, 1, 1),
        "fc/kernel": (1000, 2048),
        "fc/bias": (1000,),
    },
    "googlenet": {
        "conv1.conv/kernel": (64, 3, 7, 7),
        "conv1.bn/gamma": (64,),
        "inception3a.branch3.1.conv/kernel": (32, 16, 3, 3),  # torchvision's "5x5" branch is a 3x3
        "inception5b.branch4.1.conv/kernel": (128, 832, 1, 1),
        "fc/kernel": (1000, 1024),
    },
    "mobilenet_v2": {
        "features.0.0/kernel": (32, 3, 3, 3),
        "features.1.conv.0.0/depthwise_kernel": (32, 1, 3, 3),
        "features.1.conv.1/kernel": (16, 32, 1, 1),
        "features.2.conv.0.0/kernel": (96, 16, 1, 1),
        "features.17.conv.2/kernel": (320, 960, 1, 1),
        "features.18.0/kernel": (1280, 320, 1, 1),
        "classifier.1/kernel": (1000, 1280),
    },
    "xception": {
        "block1_conv1/kernel": (32, 3, 3, 3),
        "block2_sepconv1/depthwise_kernel": (64, 1, 3, 3),
        "block2_sepconv1/pointwise_kernel": (128, 64, 1, 1),
        "block2_residual/kernel": (128, 64, 1, 1),
        "block14_sepconv2/pointwise_kernel": (2048, 1536, 1, 1),
        "predictions/kernel": (1000, 2048),
    },
}


@pytest.mark.parametrize("name", list(NAMED_SHAPES))
def test_parameters_carry_reference_names(name):
    params = params_by_name(built(name))
    for pname, shape in NAMED_SHAPES[name].items():
        assert pname in params, pname
        assert params[pname].shape == shape, pname


def test_batchnorm_conventions():
    gn, mb, xc = built("googlenet"), built("mobilenet_v2"), built("xception")
    assert _node(gn, "inception4a.branch2.1.bn").layer.eps == pytest.approx(1e-3)
    assert _node(mb, "features.0.1").layer.eps == pytest.approx(1e-5)
    bn = _node(xc, "block1_conv1_bn").layer
    assert isinstance(bn, L.BatchNormalization) and bn.epsilon == pytest.approx(1e-3) and bn.keras_momentum == 0.99
    # ceil-mode pools, as torchvision's GoogLeNet
    assert all(n.layer.ceil_mode for n in gn._order if isinstance(n.layer, L.MaxPool2D))
    # bias-free convolutions wherever BatchNorm follows
    for model in (built("resnet50"), gn, mb, xc):
        for n in model._order:
            if isinstance(n.layer, (L.Conv2D, L.DepthwiseConv2D, L.SeparableConv2D)) and ".se." not in n.layer.name:
                assert not n.layer.use_bias, n.layer.name


def test_builders_are_fast():
    for name in BUILDERS:
        built(name)
    # generous bounds (tests never assert timings tightly): resnet152 draws 60M weights once
    assert BUILD_SECONDS.get("resnet152", 0.0) < 20.0


# ------------------------------------------------------------------------------------------------ forwards (small)


@pytest.mark.parametrize(
    "name, size",
    [("resnet18", 64), ("mobilenet_v2", 64), ("googlenet", 96), ("se_resnet50", 64), ("xception", 71)],
)
def test_forward_small_input(name, size):
    model = BUILDERS[name](input_size=size, seed=1)
    assert model.metadata["input_shape"] == [3, size, size]
    y = model.predict(image(1, 3, size, size))
    assert y.shape == (1, 1000)
    assert np.all(np.isfinite(y))
    if name == "xception":  # keras.applications' head ends in a softmax
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-4)
    # the registered defaults, through the spec
    other = ARCHITECTURES[name].build(input_size=size, seed=1, num_classes=7)
    assert other.predict(image(2, 3, size, size)).shape == (2, 7)


def test_training_step_runs_through_the_residuals_and_se_blocks():
    """A training forward and backward on a small SE-ResNet-50 input: gradients reach the stem and the SE convs."""
    model = senet.se_resnet50(num_classes=5, input_size=32, seed=0)
    y = model(image(2, 3, 32, 32), training=True)
    assert y.shape == (2, 5)
    gx = model.backward(np.ones_like(y))
    assert gx.shape == (2, 3, 32, 32) and np.all(np.isfinite(gx))
    params = params_by_name(model)
    for pname in ("conv1/kernel", "layer1.0.se.fc1/kernel", "layer4.2.se.fc2/bias", "fc/kernel"):
        g = params[pname].grad
        assert g is not None and np.all(np.isfinite(g)) and np.any(g != 0), pname


# ------------------------------------------------------------------------------------------------ builder arguments


@pytest.mark.parametrize("name", ["mobilenet_v2", "googlenet", "resnet18"])
def test_num_classes_changes_only_the_head(name):
    full = params_by_name(built(name))
    small = params_by_name(BUILDERS[name](num_classes=10, seed=0))
    head = {"mobilenet_v2": "classifier.1", "googlenet": "fc", "resnet18": "fc"}[name]
    assert set(full) == set(small)
    for pname, p in full.items():
        if pname.startswith(head + "/"):
            assert p.shape[0] == 1000 and small[pname].shape[0] == 10
        else:
            assert small[pname].shape == p.shape, pname
    assert trainable_count(BUILDERS[name](num_classes=10, seed=0)) == TRAINABLE[name] - 990 * (
        full[head + "/kernel"].shape[1] + 1
    )


def test_in_channels_changes_only_the_first_conv():
    gray = params_by_name(resnet.resnet18(in_channels=1, seed=0))
    full = params_by_name(built("resnet18"))
    assert gray["conv1/kernel"].shape == (64, 1, 7, 7)
    assert all(gray[k].shape == p.shape for k, p in full.items() if k != "conv1/kernel")


def test_same_seed_same_weights_and_outputs():
    a, b = mobilenet.mobilenet_v2(seed=3, input_size=32), mobilenet.mobilenet_v2(seed=3, input_size=32)
    c = mobilenet.mobilenet_v2(seed=4, input_size=32)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert pa.name == pb.name
        np.testing.assert_array_equal(pa.value, pb.value)
    assert any(not np.array_equal(pa.value, pc.value) for pa, pc in zip(a.parameters(), c.parameters()))
    x = image(1, 3, 32, 32)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    # the seed fixes the dropout masks too
    g1, g2 = googlenet.googlenet(seed=5, input_size=64), googlenet.googlenet(seed=5, input_size=64)
    np.testing.assert_array_equal(g1(image(1, 3, 64, 64), training=True), g2(image(1, 3, 64, 64), training=True))


def test_seed_gives_what_a_seeded_model_draws():
    """``builder(seed=s)`` draws the weights ``vk.Model(..., seed=s)`` would (default_rng(s), graph order)."""
    model = resnet.resnet18(seed=11, input_size=32)
    first = model.parameters()[0]
    expected = initializers.get(first.initializer)(first.shape, first.fans, np.random.default_rng(11))
    np.testing.assert_array_equal(first.value, expected)


def test_without_seed_the_global_generator_decides():
    vk.set_seed(123)
    a = mobilenet.mobilenet_v2(input_size=32)
    vk.set_seed(123)
    b = mobilenet.mobilenet_v2(input_size=32)
    np.testing.assert_array_equal(a.parameters()[0].value, b.parameters()[0].value)


def test_deferred_build_declares_without_allocating():
    """Inside ``initializers.deferred()`` (how a model file is loaded) a builder allocates nothing."""
    with initializers.deferred():
        model = resnet.resnet152()
    assert trainable_count(model) == TRAINABLE["resnet152"]
    assert all(p.value is None for p in model.parameters())


def test_input_size_and_bad_arguments():
    model = xception.xception(input_size=(96, 128), num_classes=3, seed=0)
    assert tuple(model.inputs[0].shape[1:]) == (3, 96, 128)
    assert model.predict(image(1, 3, 96, 128)).shape == (1, 3)
    with pytest.raises(ValueError):
        resnet.resnet18(num_classes=0)
    with pytest.raises(ValueError):
        mobilenet.mobilenet_v2(in_channels=0)
    with pytest.raises(ValueError):  # too small for the stem and five halvings
        googlenet.googlenet(input_size=8)
