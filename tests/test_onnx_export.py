"""ONNX export: every built-in architecture and every layer configuration runs in onnxruntime with visionkit's
outputs (max |diff| <= 1e-4 * max(1, output scale)), with a dynamic batch; unsupported layers are named."""

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import visionkit as vk
from visionkit import layers as L
from visionkit import (
    ops,
    registry,
)
from visionkit.layers import initializers
from visionkit.layers.activation import ACTIVATION_NAMES
from visionkit.onnx import build_onnx, export_onnx

# sizes small enough to keep the file fast, large enough for each architecture's downsampling
ARCH_SIZES = {
    "lenet5": None,
    "keras-mnist-cnn": None,
    "cifar10-small": None,
    "cifar10-lrn": None,
    "cifar10-bn": None,
    "fashion-cnn": None,
    "alexnet": (67, 67),
    "vgg16": (32, 32),
    "vgg19": (32, 32),
    "googlenet": (64, 64),
    "resnet18": (64, 64),
    "resnet34": (64, 64),
    "resnet50": (64, 64),
    "resnet101": (32, 32),
    "resnet152": (32, 32),
    "mobilenet_v2": (64, 64),
    "xception": (71, 71),
    "se_resnet50": (64, 64),
    "digits-detector": None,     # two outputs: classes and box
    "digits-fcn": None,          # FCN-8s: transposed convolutions and skip sums
    "digits-fcn16s": None,
    "digits-fcn32s": None,
}


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def assert_close(got, want, what=""):
    scale = max(1.0, float(np.abs(want).max()))
    diff = float(np.abs(got - want).max())
    assert got.shape == want.shape, what
    assert diff <= 1e-4 * scale, f"{what}: max |diff| {diff:.3g} (output scale {scale:.3g})"
    return diff


def check(model, x, tmp_path, opset=17, **kwargs):
    """Export, run in onnxruntime at batch len(x) and at batch 1 (dynamic batch), compare with visionkit."""
    path = tmp_path / f"{model.name}.onnx"
    export_onnx(model, path, opset=opset, **kwargs)
    s = session(path)
    name = s.get_inputs()[0].name
    want = model.predict(x, batch_size=len(x))
    want = want if isinstance(want, list) else [want]
    got, one = s.run(None, {name: x}), s.run(None, {name: x[:1]})
    assert len(got) == len(want), f"{model.name}: {len(got)} ONNX outputs for {len(want)} model outputs"
    diffs = [assert_close(g, w, f"{model.name} output {k}") for k, (g, w) in enumerate(zip(got, want))]
    for k, (g, w) in enumerate(zip(one, want)):
        assert_close(g, w[:1], f"{model.name} output {k} batch 1")
    return max(diffs)


def fill_weights(model, seed=0):
    """Weights drawn fast (VGG has 138M): fan-in-scaled kernels, and BatchNorm statistics that are not the
    identity (so epsilon, mean and variance all matter)."""
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        shape = p.shape
        if p.short_name.endswith("kernel"):
            fan_in = int(np.prod(shape[1:])) or 1
            v = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(1.0 / fan_in))
        elif p.short_name in ("gamma", "running_var"):
            v = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:  # bias, beta, running_mean
            v = (0.1 * rng.standard_normal(shape)).astype(np.float32)
        p.value = v
    return model


def rand(shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ---- every built-in architecture ---------------------------------------------------------------------------------


def test_every_builtin_architecture_is_covered():
    from visionkit.builtins.architectures import ARCHITECTURES

    assert set(registry.architectures()) >= set(ARCH_SIZES)
    missing = sorted(set(ARCHITECTURES) - set(ARCH_SIZES))
    assert not missing, f"add these built-in architectures to ARCH_SIZES: {missing}"


@pytest.mark.parametrize("arch", list(ARCH_SIZES))
def test_architecture_parity(arch, tmp_path):
    spec = registry.get_architecture(arch)
    with initializers.deferred():
        model = spec.build(input_size=ARCH_SIZES[arch], num_classes=10)
    fill_weights(model)
    x = rand((2,) + tuple(model.inputs[0].shape[1:]))
    check(model, x, tmp_path)


def test_names_and_dynamic_batch(tmp_path):
    model = registry.get_architecture("keras-mnist-cnn").build(seed=0)
    path = export_onnx(model, tmp_path / "m.onnx")
    m = onnx.load(path)
    assert [i.name for i in m.graph.input] == [model.inputs[0].node.layer.name]
    assert [o.name for o in m.graph.output] == ["predictions"]
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    inits = {t.name for t in m.graph.initializer}
    assert {"conv1/kernel", "conv1/bias", "fc1/kernel", "predictions/bias"} <= inits
    assert m.producer_name == "visionkit"
    assert {op.domain: op.version for op in m.opset_import}[""] == 17
    x = rand((5, 1, 28, 28))
    assert_close(session(path).run(None, {"input": x})[0], model.predict(x))


def test_fixed_batch(tmp_path):
    model = registry.get_architecture("lenet5").build(seed=0)
    m = build_onnx(model, batch=3)
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 3


# ---- layer by layer ----------------------------------------------------------------------------------------------


def seq(layers, input_shape, seed=0, name=None):
    inp = vk.Input(input_shape)
    x = inp
    for layer in layers:
        x = layer(x)
    return vk.Model(inp, x, seed=seed, name=name)


@pytest.mark.parametrize(
    "kwargs,hw",
    [
        ({"filters": 4, "kernel_size": 3, "strides": 2}, (5, 6)),
        ({"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"}, (5, 6)),  # odd crop at bottom/right
        ({"filters": 4, "kernel_size": 4, "strides": 2, "padding": "same"}, (5, 5)),
        ({"filters": 4, "kernel_size": 1, "strides": 3, "padding": "same"}, (4, 4)),  # kernel < stride
        ({"filters": 4, "kernel_size": 2, "strides": 3}, (4, 4)),  # "valid" with kernel < stride: Keras' output pad
        ({"filters": 4, "kernel_size": 3, "strides": 2, "padding": 1, "output_padding": 1}, (5, 7)),
        ({"filters": 6, "kernel_size": 3, "strides": (2, 1), "padding": (1, 0), "groups": 2, "activation": "relu"}, (6, 5)),
        ({"filters": 4, "kernel_size": 3, "strides": 2, "dilation_rate": 2, "padding": 2, "activation": "sigmoid"}, (5, 5)),
    ],
)
def test_conv2d_transpose(kwargs, hw, tmp_path):
    model = seq([L.Conv2DTranspose(**kwargs)], (4,) + hw)
    check(model, rand((2, 4) + hw), tmp_path)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 2},
        {"size": (2, 3)},
        {"size": 2, "interpolation": "bilinear"},
        {"size": (3, 2), "interpolation": "bilinear"},
        {"size": 2, "interpolation": "bilinear", "align_corners": True},
    ],
)
def test_upsampling(kwargs, tmp_path):
    model = seq([L.UpSampling2D(**kwargs)], (3, 5, 4))
    check(model, rand((2, 3, 5, 4)), tmp_path)


@pytest.mark.parametrize(
    "layer,hw",
    [
        (lambda: L.Conv2D(5, 3, strides=2, padding="same"), (7, 8)),
        (lambda: L.Conv2D(5, 4, strides=3, padding="same", dilation_rate=2), (11, 9)),
        (lambda: L.Conv2D(5, 3, padding=(2, 1), dilation_rate=(1, 2)), (6, 7)),
        (lambda: L.Conv2D(6, 3, padding=1, groups=3, use_bias=False), (6, 6)),
        (lambda: L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2), (7, 7)),
        (lambda: L.SeparableConv2D(5, 3, strides=2, padding="same", depth_multiplier=2, activation="relu"), (7, 6)),
        (lambda: L.MaxPool2D(3, strides=2, padding="same"), (8, 7)),
        (lambda: L.MaxPool2D(3, strides=2, padding=1), (8, 7)),
        (lambda: L.MaxPool2D(3, strides=2, ceil_mode=True), (8, 7)),
        (lambda: L.MaxPool2D(3, strides=2, padding=1, ceil_mode=True), (10, 9)),
        (lambda: L.MaxPool2D(2, strides=1, dilation=2), (7, 7)),
        (lambda: L.AvgPool2D(3, strides=2, padding="same"), (8, 7)),
        (lambda: L.AvgPool2D(3, strides=2, padding=1), (8, 7)),
        (lambda: L.AvgPool2D(3, strides=2, padding=1, count_include_pad=False), (8, 7)),
        (lambda: L.AvgPool2D(3, strides=2, ceil_mode=True), (8, 7)),
        (lambda: L.AvgPool2D(3, strides=2, padding=1, ceil_mode=True), (10, 9)),
        (lambda: L.AvgPool2D(3, strides=2, padding=1, ceil_mode=True, count_include_pad=False), (10, 9)),
        (lambda: L.GlobalMaxPool2D(), (5, 4)),
        (lambda: L.GlobalAvgPool2D(keepdims=True), (5, 4)),
        (lambda: L.ChannelMaxPool(2), (5, 4)),
        (lambda: L.Reshape((3, -1)), (4, 5)),
    ],
)
def test_padding_pooling_and_shapes(layer, hw, tmp_path):
    model = seq([layer()], (6,) + hw)
    check(model, rand((2, 6) + hw), tmp_path)


class ZeroPadding2D(L.Layer):
    """A Keras-style padding layer (not registered: visionkit has none of its own); the exporter's Pad mapping."""

    def __init__(self, padding=1, name=None):
        super().__init__(name=name)
        self.padding = padding

    def _pads(self):
        (t, b), (le, r) = self.padding
        return (le, r, t, b)

    def compute_output_shape(self, s):
        (t, b), (le, r) = self.padding
        return (s[0], s[1] + t + b, s[2] + le + r)

    def forward(self, x, training=False):
        return ops.pad(x, self._pads()), None


def test_padding_layer(tmp_path):
    model = seq([ZeroPadding2D(((1, 2), (0, 3))), L.Conv2D(2, 3)], (3, 4, 5))
    check(model, rand((2, 3, 4, 5)), tmp_path)


ACT_CASES = [(a, {}) for a in ACTIVATION_NAMES] + [
    ("leaky_relu", {"negative_slope": 0.2}),
    ("elu", {"alpha": 0.5}),
    ("softmax", {"dim": 2}),
    ("log_softmax", {"dim": -1}),
]


@pytest.mark.parametrize("act,params", ACT_CASES, ids=[f"{a}{p or ''}" for a, p in ACT_CASES])
@pytest.mark.parametrize("opset", [13, 17])
def test_every_activation(act, params, opset, tmp_path):
    model = seq([L.Activation(act, **params)], (3, 4, 5))
    x = rand((2, 3, 4, 5)) * 4  # reaches the saturations of relu6 / hardsigmoid / hardswish
    check(model, x, tmp_path, opset=opset)


@pytest.mark.parametrize("act", [a for a in ACTIVATION_NAMES if a != "linear"])
def test_fused_activations(act, tmp_path):
    model = seq([L.Conv2D(4, 3, activation=act), L.Flatten(), L.Dense(5, activation=act)], (2, 6, 6))
    check(model, rand((2, 2, 6, 6)) * 3, tmp_path)


@pytest.mark.parametrize("size", [1, 4, 5, 9])
def test_lrn_odd_and_even_sizes(size, tmp_path):
    # an even size is where ONNX's LRN window differs from visionkit's (PyTorch's)
    model = seq([L.LocalResponseNorm(size=size, alpha=0.5, beta=0.75, k=2.0)], (7, 3, 4))
    check(model, rand((2, 7, 3, 4)) * 3, tmp_path)


def test_batchnorm_variants(tmp_path):
    inp = vk.Input((4, 5, 5))
    x = L.BatchNormalization(epsilon=0.3, center=False, name="bn_keras")(inp)
    x = L.BatchNorm(eps=0.01, affine=False, name="bn_noaffine")(x)
    x = L.Flatten()(x)
    x = L.Dense(6, use_bias=False)(x)
    out = L.BatchNorm(eps=0.2, name="bn_1d")(x)
    model = fill_weights(vk.Model(inp, out, name="bn"))
    check(model, rand((3, 4, 5, 5)), tmp_path)


def test_merge_layers_and_nested_model(tmp_path):
    sub_in = vk.Input((4, 6, 6))
    sub = vk.Model(sub_in, L.Conv2D(4, 3, padding="same", activation="relu")(sub_in), name="block", seed=3)
    inp = vk.Input((4, 6, 6))
    a = sub(inp)
    b = L.Conv2D(4, 1)(inp)
    c = L.Add()([a, b, inp])
    s = L.Dense(8, activation="sigmoid")(L.GlobalAvgPool2D()(c))
    m = L.Multiply()([L.Concat()([c, a]), s])
    d = L.Dropout(0.5)(m)
    model = vk.Model(inp, d, seed=1, name="merge")
    check(model, rand((2, 4, 6, 6)), tmp_path)


def test_two_outputs_and_output_names(tmp_path):
    inp = vk.Input((2, 4, 4), name="image")
    x = L.Conv2D(3, 3, name="features")(inp)
    y = L.Dropout(0.1, name="drop")(x)  # an output that is an identity of another tensor
    model = vk.Model(inp, [x, L.Flatten(name="flat")(y)], seed=0)
    path = export_onnx(model, tmp_path / "two.onnx")
    s = session(path)
    assert [i.name for i in s.get_inputs()] == ["image"]
    assert [o.name for o in s.get_outputs()] == ["features", "flat"]
    xin = rand((2, 2, 4, 4))
    for got, want in zip(s.run(None, {"image": xin}), model.predict(xin)):
        assert_close(got, want)


def test_unknown_spatial_size(tmp_path):
    """A fully convolutional model: "same" padding and ceil_mode without a known size (auto_pad, ceil_mode)."""
    model = seq([L.Conv2D(4, 3, strides=2, padding="same"), L.MaxPool2D(3, strides=2, padding="same"),
                 L.AvgPool2D(2, strides=2, padding="same"), L.ChannelMaxPool(2),
                 L.MaxPool2D(2, ceil_mode=True), L.UpSampling2D(2, interpolation="bilinear")], (3, None, None))
    path = export_onnx(model, tmp_path / "fcn.onnx")
    s = session(path)
    for hw in [(29, 35), (40, 24)]:
        x = rand((2, 3) + hw)
        assert_close(s.run(None, {s.get_inputs()[0].name: x})[0], model.predict(x), str(hw))
    # input_shape fixes the open sizes (explicit pads then)
    m = build_onnx(model, input_shape=(3, 29, 35))
    assert [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim[1:]] == [3, 29, 35]
    with pytest.raises(ValueError, match="does not fit"):
        build_onnx(model, input_shape=(4, 29, 35))


@pytest.mark.parametrize("opset", [13, 18, onnx.defs.onnx_opset_version()])
def test_opsets(opset, tmp_path):
    model = seq([L.Conv2D(4, 3, activation="hardswish"), L.ChannelMaxPool(2), L.LocalResponseNorm(4),
                 L.UpSampling2D(2)], (3, 6, 6))
    check(model, rand((2, 3, 6, 6)), tmp_path, opset=opset)


def test_bad_opset_and_batch():
    model = seq([L.Flatten()], (1, 2, 2))
    with pytest.raises(ValueError, match="opset"):
        build_onnx(model, opset=9)
    with pytest.raises(ValueError, match="batch"):
        build_onnx(model, batch=0)


# ---- errors and file handling ------------------------------------------------------------------------------------


class _Swirl(L.Layer):
    def forward(self, x, training=False):
        return x, None


class _Twirl(L.Layer):
    def forward(self, x, training=False):
        return x, None


def test_unsupported_layers_are_all_named(tmp_path):
    model = seq([L.Conv2D(2, 3), _Swirl(name="swirl_a"), L.Flatten(), _Twirl(name="twirl_b")], (1, 5, 5))
    target = tmp_path / "x.onnx"
    target.write_bytes(b"old")
    with pytest.raises(NotImplementedError) as e:
        export_onnx(model, target)
    msg = str(e.value)
    assert "'swirl_a' (_Swirl)" in msg and "'twirl_b' (_Twirl)" in msg and "2 layer(s)" in msg
    assert target.read_bytes() == b"old"  # nothing written, nothing half-written
    assert os.listdir(tmp_path) == ["x.onnx"]


def test_atomic_write_leaves_no_temp_file(tmp_path, monkeypatch):
    model = seq([L.Flatten()], (1, 2, 2))
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        export_onnx(model, target)
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["m.onnx"]
    export_onnx(model, target)
    assert onnx.load(str(target)).graph.node[0].op_type == "Flatten"


def test_missing_onnx_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match="pip install onnx"):
        build_onnx(seq([L.Flatten()], (1, 2, 2)))


def test_declared_only_weights_are_refused():
    with initializers.deferred():
        model = registry.get_architecture("lenet5").build()
    with pytest.raises(ValueError, match="no value"):
        build_onnx(model)


# ---- the torch reference (used by `visionkit bench`) -------------------------------------------------------------


@pytest.mark.parametrize("arch", ["cifar10-lrn", "googlenet", "mobilenet_v2", "xception", "se_resnet50"])
def test_torch_reference(arch):
    torch = pytest.importorskip("torch")
    from visionkit.onnx.torch_ref import to_torch

    with initializers.deferred():
        model = registry.get_architecture(arch).build(input_size=ARCH_SIZES[arch], num_classes=10)
    fill_weights(model)
    x = rand((2,) + tuple(model.inputs[0].shape[1:]))
    with torch.no_grad():
        got = to_torch(model)(torch.from_numpy(x)).numpy()
    assert_close(got, model.predict(x), arch)


def test_torch_reference_layers():
    torch = pytest.importorskip("torch")
    from visionkit.onnx.torch_ref import to_torch

    model = seq([L.Conv2DTranspose(4, 3, strides=2, padding="same"), L.AvgPool2D(3, strides=2, padding="same"),
                 L.MaxPool2D(3, strides=2, padding="same"), L.UpSampling2D(2, interpolation="bilinear"),
                 L.LocalResponseNorm(4), L.Activation("hardswish")], (3, 7, 6))
    x = rand((2, 3, 7, 6))
    with torch.no_grad():
        assert_close(to_torch(model)(torch.from_numpy(x)).numpy(), model.predict(x))
    with pytest.raises(NotImplementedError, match="swirl"):
        to_torch(seq([_Swirl(name="swirl_t")], (1, 2, 2)))


# ---- the command --------------------------------------------------------------------------------------------------


def test_export_command(tmp_path):
    from click.testing import CliRunner

    from visionkit.commands.export import export

    out = tmp_path / "lenet.onnx"
    r = CliRunner().invoke(export, ["lenet5", str(out), "--opset", "13"])
    assert r.exit_code == 0, r.output
    assert "random weights" in r.output and out.is_file()
    assert {op.domain: op.version for op in onnx.load(str(out)).opset_import}[""] == 13

    model_file = tmp_path / "m.vk"
    model = registry.get_architecture("keras-mnist-cnn").build(seed=0)
    model.save(str(model_file))
    r = CliRunner().invoke(export, [str(model_file), str(tmp_path / "m.onnx")])
    assert r.exit_code == 0, r.output
    x = rand((2, 1, 28, 28))
    s = session(tmp_path / "m.onnx")
    assert_close(s.run(None, {s.get_inputs()[0].name: x})[0], model.predict(x))

    r = CliRunner().invoke(export, ["no-such-model", str(tmp_path / "n.onnx")])
    assert r.exit_code == 2 and "no-such-model" in r.output
    r = CliRunner().invoke(export, ["lenet5", str(tmp_path / "n.onnx"), "--input", "1,2"])
    assert r.exit_code == 2


def test_prelu(tmp_path):
    prelu = pytest.importorskip("visionkit.layers.prelu")
    inp = vk.Input((3, 5, 5))
    x = prelu.PReLU(alpha_initializer="glorot_uniform", name="p4d")(L.Conv2D(4, 3)(inp))
    x = L.Dense(6)(L.Flatten()(x))
    out = prelu.PReLU(channelwise=False, alpha_initializer="glorot_uniform", name="p2d")(x)
    model = vk.Model(inp, out, seed=0, name="prelu")
    for p in model.parameters():
        if p.short_name == "alpha":
            p.value = np.abs(p.value) + 0.1
    check(model, rand((2, 3, 5, 5)), tmp_path)
    torch = pytest.importorskip("torch")
    from visionkit.onnx.torch_ref import to_torch

    x = rand((2, 3, 5, 5))
    with torch.no_grad():
        assert_close(to_torch(model)(torch.from_numpy(x)).numpy(), model.predict(x))
