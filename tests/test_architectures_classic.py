"""The classic built-in architectures (visionkit.builtins.architectures: classic, alexnet, vgg).

Parameter counts are those of the sources: the Keras model summaries of the tutorials (220,234; 528,054), the
textbook's LeNet-5 and AlexNet tables (derived layer by layer in the builders' docstrings) and torchvision's VGG.
The big models are counted from declared shapes (``initializers.deferred()``: nothing allocated); VGG-16 and
AlexNet are also built for real once.
"""

import numpy as np
import pytest

import visionkit as vk
from visionkit.builtins.architectures import ARCHITECTURES, register_architectures
from visionkit.layers import initializers

# name -> (trainable, total); total - trainable = BatchNorm running statistics
EXPECTED = {
    "lenet5": (61_706, 61_706),
    "keras-mnist-cnn": (220_234, 220_234),
    "cifar10-small": (528_054, 528_054),
    "cifar10-lrn": (1_068_298, 1_068_298),
    "cifar10-bn": (1_756_682, 1_756_938),
    "fashion-cnn": (1_413_834, 1_413_834),
    "alexnet": (62_378_344, 62_378_344),
    "vgg16": (138_357_544, 138_357_544),
    "vgg19": (143_667_240, 143_667_240),
}
SMALL = ["lenet5", "keras-mnist-cnn", "cifar10-small", "cifar10-lrn", "cifar10-bn", "fashion-cnn"]
BIG = ["alexnet", "vgg16", "vgg19"]

# name -> (units feeding the output layer, first conv's filters, its kernel area)
HEAD_STEM = {
    "lenet5": (84, 6, 25),
    "keras-mnist-cnn": (64, 32, 9),
    "cifar10-small": (500, 16, 4),
    "cifar10-lrn": (192, 64, 25),
    "cifar10-bn": (192, 64, 25),
    "fashion-cnn": (64, 64, 49),
    "alexnet": (4096, 96, 121),
    "vgg16": (4096, 64, 9),
    "vgg19": (4096, 64, 9),
}


def summary_counts(model):
    """(trainable, total) as the summary table reports them."""
    text = model.summary(print_fn=lambda s: None)
    found = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("Total params", "Trainable params"):
            found[key] = int(value.replace(",", ""))
    return found["Trainable params"], found["Total params"]


def declared(name, **kwargs):
    """The architecture with its parameters declared only (shapes, no arrays)."""
    with initializers.deferred():
        return ARCHITECTURES[name].builder(**kwargs)


def trainable_count(model):
    return sum(p.size for p in model.parameters() if p.trainable)


# ---- the registry ------------------------------------------------------------------------------------------------


def test_registry_holds_every_classic_architecture_with_its_card():
    for name in EXPECTED:
        spec = ARCHITECTURES[name]
        assert spec.name == name and spec.task == "classify"
        assert spec.description and spec.reference
        assert f"{EXPECTED[name][0]:,}" in spec.description  # the card states the count the tests assert
    assert ARCHITECTURES["lenet5"].input_shape == (1, 32, 32)
    assert ARCHITECTURES["cifar10-lrn"].input_shape == (3, 24, 24)
    assert ARCHITECTURES["alexnet"].input_shape == (3, 227, 227)
    assert ARCHITECTURES["vgg16"].num_classes == 1000


def test_hookimpl_registers_every_spec():
    got = {}

    def register(name, builder, **kw):
        got[name] = (builder, kw)

    register_architectures(register)
    assert set(got) == set(ARCHITECTURES)
    builder, kw = got["alexnet"]
    assert builder is ARCHITECTURES["alexnet"].builder
    assert kw["input_shape"] == (3, 227, 227) and kw["num_classes"] == 1000 and kw["task"] == "classify"


def test_plugin_manager_sees_the_builtins():
    plugins = pytest.importorskip("visionkit.plugins")
    registry = pytest.importorskip("visionkit.registry")
    import visionkit.builtins.architectures as builtin_archs

    with plugins.using_plugins(("builtin-architectures", builtin_archs)):
        registry.reset()
        try:
            spec = registry.get_architecture("lenet5")
            assert spec.count_params() == (61_706, 61_706)
            model = registry.build("keras-mnist-cnn", num_classes=5, seed=0)
            assert model.outputs[0].shape == (None, 5)
        finally:
            registry.reset()


# ---- counts ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SMALL)
def test_small_models_count_and_forward(name):
    spec = ARCHITECTURES[name]
    model = spec.builder(seed=0)
    assert summary_counts(model) == EXPECTED[name]
    assert model.count_params() == EXPECTED[name][1]
    assert tuple(model.built_input_shape) == spec.input_shape
    assert model.metadata["architecture"] == name and model.metadata["input_shape"] == list(spec.input_shape)
    x = np.random.default_rng(1).standard_normal((1,) + spec.input_shape).astype(np.float32)
    y = model.predict(x)
    assert y.shape == (1, 10) and np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(), 1.0, rtol=1e-5)  # softmax output


@pytest.mark.parametrize("name", BIG)
def test_big_models_count_from_declared_shapes(name):
    model = declared(name)
    assert all(not p.materialized for p in model.parameters())  # nothing allocated
    assert summary_counts(model) == EXPECTED[name]
    assert model.count_params() == EXPECTED[name][1]


def test_alexnet_builds_and_runs_at_227():
    model = ARCHITECTURES["alexnet"].builder(seed=0)
    assert summary_counts(model) == EXPECTED["alexnet"]
    text = model.summary(print_fn=lambda s: None)
    for layer, shape in [("c1", "(None, 96, 55, 55)"), ("s2", "(None, 96, 27, 27)"), ("s4", "(None, 256, 13, 13)"),
                         ("s8", "(None, 256, 6, 6)"), ("flatten", "(None, 9216)")]:  # the textbook table's sizes
        assert any(ln.split()[:1] == [layer] and shape in ln for ln in text.splitlines()), layer
    y = model.predict(np.random.default_rng(2).standard_normal((1, 3, 227, 227)).astype(np.float32))
    assert y.shape == (1, 1000) and np.all(np.isfinite(y))


def test_vgg16_builds_for_real():
    model = ARCHITECTURES["vgg16"].builder(seed=0)
    params = model.parameters()
    assert all(p.materialized and p.value.dtype == np.float32 for p in params)
    assert sum(p.value.size for p in params) == EXPECTED["vgg16"][1]
    assert [p.shape for p in params][-6:] == [(4096, 25088), (4096,), (4096, 4096), (4096,), (1000, 4096), (1000,)]


# ---- overrides ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(EXPECTED))
def test_num_classes_and_in_channels_change_head_and_stem(name):
    spec = ARCHITECTURES[name]
    head_in, stem_filters, stem_area = HEAD_STEM[name]
    base = trainable_count(declared(name))
    m = declared(name, num_classes=3)
    assert m.outputs[0].shape == (None, 3)
    assert trainable_count(m) - base == (head_in + 1) * (3 - spec.num_classes)
    c = spec.input_shape[0] + 2
    m = declared(name, in_channels=c)
    assert tuple(m.built_input_shape) == (c,) + spec.input_shape[1:]
    assert trainable_count(m) - base == stem_filters * stem_area * 2


def test_input_size_resizes_the_dense_head():
    # cifar10-lrn on full 32x32 images: the pools leave 8x8x64 = 4,096 features instead of 6x6x64 = 2,304
    m = declared("cifar10-lrn", input_size=(32, 32))
    assert trainable_count(m) - EXPECTED["cifar10-lrn"][0] == (4096 - 2304) * 384
    # AlexNet at 67x67: 15 -> 7 -> 3 -> 1, so F9 sees 256 features instead of 9,216
    m = declared("alexnet", input_size=67)
    assert trainable_count(m) - EXPECTED["alexnet"][0] == (256 - 9216) * 4096
    # LeNet-5 on unpadded 28x28 digits: C5's 5x5 window no longer fits
    with pytest.raises(ValueError):
        declared("lenet5", input_size=(28, 28))
    with pytest.raises(ValueError):
        declared("lenet5", input_size=(0, 32))


@pytest.mark.parametrize("size", [32, 224, 448])
def test_vgg_classifier_is_independent_of_input_size(size):
    # torchvision's adaptive 7x7 average pool: the classifier always sees 512*7*7 features
    m = declared("vgg16", input_size=size)
    assert trainable_count(m) == EXPECTED["vgg16"][0]


def test_vgg_adaptive_pool_equivalent_is_exact():
    """The fixed-size stand-ins for AdaptiveAvgPool2d(7) agree with the op on the sizes they accept."""
    from visionkit import layers as L
    from visionkit import ops

    if hasattr(L, "AdaptiveAvgPool2D"):
        pytest.skip("the real adaptive layer is used")
    rng = np.random.default_rng(3)
    for size in (1, 7, 14):
        x = rng.standard_normal((1, 4, size, size)).astype(np.float32)
        inp = vk.Input((4, size, size))
        from visionkit.builtins.architectures.vgg import _adaptive_avg_pool_7

        out = _adaptive_avg_pool_7(inp, "vgg16", (size * 32, size * 32))
        if out is inp:
            got = x
        else:
            got = vk.Model(inp, out).predict(x)
        np.testing.assert_allclose(got, ops.adaptive_avg_pool2d(x, 7), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="adaptive"):
        declared("vgg16", input_size=100)


# ---- determinism, saving -----------------------------------------------------------------------------------------


def _weights(model):
    return [np.array(p.value) for p in model.parameters()]


@pytest.mark.parametrize("name", ["lenet5", "cifar10-bn", "cifar10-small"])
def test_builders_are_deterministic_for_a_seed(name):
    build = ARCHITECTURES[name].builder
    a, b, c = build(seed=7), build(seed=7), build(seed=8)
    for wa, wb in zip(_weights(a), _weights(b)):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(_weights(a), _weights(c)))
    assert [p.name for p in a.parameters()] == [p.name for p in b.parameters()]  # stable names across builds
    # without a seed: visionkit's global generator
    vk.set_seed(5)
    d = build()
    vk.set_seed(5)
    e = build()
    for wd, we in zip(_weights(d), _weights(e)):
        np.testing.assert_array_equal(wd, we)


def test_dropout_masks_follow_the_seed():
    a = ARCHITECTURES["cifar10-small"].builder(seed=3)
    b = ARCHITECTURES["cifar10-small"].builder(seed=3)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(a(x, training=True), b(x, training=True))


@pytest.mark.parametrize("name", ["lenet5", "cifar10-bn", "cifar10-lrn"])
def test_saves_and_loads(name, tmp_path):
    model = ARCHITECTURES[name].builder(seed=0)
    x = np.random.default_rng(4).standard_normal((2,) + ARCHITECTURES[name].input_shape).astype(np.float32)
    y = model.predict(x)
    path = tmp_path / f"{name}.vk"
    model.save(path)
    loaded = vk.load_model(path)
    assert loaded.metadata == model.metadata
    assert summary_counts(loaded) == EXPECTED[name]
    np.testing.assert_array_equal(loaded.predict(x), y)


# ---- an independent engine on the same weights -------------------------------------------------------------------


def _torch_forward(name, model, x):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    w = {p.name: torch.from_numpy(np.array(p.value)) for p in model.parameters()}
    t = torch.from_numpy(x)

    def conv(t, n, pad=0, stride=1):
        return F.conv2d(t, w[f"{n}/kernel"], w[f"{n}/bias"], stride=stride, padding=pad)

    def dense(t, n):
        return F.linear(t, w[f"{n}/kernel"], w[f"{n}/bias"])

    def tf_same_pool3x3s2(t):  # TensorFlow "same": the odd pixel of padding goes to the bottom/right
        return F.max_pool2d(F.pad(t, (0, 1, 0, 1), value=float("-inf")), 3, 2)

    with torch.no_grad():
        if name == "lenet5":
            t = torch.tanh(F.avg_pool2d(torch.tanh(conv(t, "c1")), 2))
            t = torch.tanh(F.avg_pool2d(torch.tanh(conv(t, "c3")), 2))
            t = torch.tanh(conv(t, "c5")).flatten(1)
            t = dense(torch.tanh(dense(t, "f6")), "output")
        elif name == "cifar10-lrn":
            t = tf_same_pool3x3s2(F.relu(conv(t, "conv1", 2)))
            t = F.local_response_norm(t, 9, alpha=0.001, beta=0.75, k=1.0)
            t = F.local_response_norm(F.relu(conv(t, "conv2", 2)), 9, alpha=0.001, beta=0.75, k=1.0)
            t = tf_same_pool3x3s2(t).flatten(1)
            t = dense(F.relu(dense(F.relu(dense(t, "local3")), "local4")), "softmax_linear")
        elif name == "cifar10-bn":
            for i in (1, 2):
                t = F.batch_norm(conv(t, f"conv{i}", 2), w[f"bn{i}/running_mean"], w[f"bn{i}/running_var"],
                                 w[f"bn{i}/gamma"], w[f"bn{i}/beta"], training=False, eps=1e-3)
                t = F.max_pool2d(F.relu(t), 2)
            t = dense(F.relu(dense(F.relu(dense(t.flatten(1), "fc1")), "fc2")), "output")
        elif name == "alexnet":
            t = F.local_response_norm(F.relu(conv(t, "c1", 0, 4)), 5, alpha=1e-4, beta=0.75, k=1.0)
            t = F.local_response_norm(F.relu(conv(F.max_pool2d(t, 3, 2), "c3", 2)), 5, alpha=1e-4, beta=0.75, k=1.0)
            t = F.max_pool2d(t, 3, 2)
            for n in ("c5", "c6", "c7"):
                t = F.relu(conv(t, n, 1))
            t = F.max_pool2d(t, 3, 2).flatten(1)
            t = dense(F.relu(dense(F.relu(dense(t, "f9")), "f10")), "output")
        return torch.softmax(t, 1).numpy()


@pytest.mark.parametrize(
    "name, kwargs",
    [("lenet5", {}), ("cifar10-lrn", {}), ("cifar10-bn", {}), ("alexnet", {"input_size": 67, "num_classes": 7})],
)
def test_matches_torch_on_the_same_weights(name, kwargs):
    model = ARCHITECTURES[name].builder(seed=0, **kwargs)
    if name == "cifar10-bn":  # non-trivial running statistics
        rng = np.random.default_rng(9)
        for p in model.parameters():
            if p.name.endswith("running_mean"):
                p.value = rng.standard_normal(p.shape).astype(np.float32) * 0.1
            elif p.name.endswith("running_var"):
                p.value = rng.uniform(0.5, 2.0, p.shape).astype(np.float32)
    shape = model.built_input_shape
    x = np.random.default_rng(5).standard_normal((2,) + tuple(shape)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), _torch_forward(name, model, x), rtol=1e-4, atol=1e-5)
