"""ONNX import: real torch-exported CNNs against onnxruntime, weights in Constant nodes, the unsupported-operator
error, external data that escapes the model's folder, and a .vk round trip of an imported model.

torch and onnxruntime are reference engines (the ``reference`` extra); the tests that need them skip without them.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper

from visionkit.onnx import layers as onnx_layers  # noqa: F401  (registers the generic layers)
from visionkit.onnx.importer import load_onnx

# --------------------------------------------------------------------------------------------------------------
# torch models written out here (torchvision is not installable): ResNet-18 and MobileNetV2, random weights


def _torch_models():
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Basic(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return torch.relu(y + (x if self.down is None else self.down(x)))

    class ResNet18(nn.Module):
        def __init__(self, classes=1000):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                      nn.MaxPool2d(3, 2, 1))
            blocks, cin = [], 64
            for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
                blocks += [Basic(cin, cout, stride), Basic(cout, cout, 1)]
                cin = cout
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(512, classes)

        def forward(self, x):
            x = self.blocks(self.stem(x))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    def cbr(cin, cout, k, s, groups=1):
        return [nn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU6()]

    class Inverted(nn.Module):
        def __init__(self, cin, cout, stride, t):
            super().__init__()
            hid = cin * t
            layers = [] if t == 1 else cbr(cin, hid, 1, 1)
            layers += cbr(hid, hid, 3, stride, groups=hid)
            layers += [nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
            self.body = nn.Sequential(*layers)
            self.res = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.body(x) if self.res else self.body(x)

    class MobileNetV2(nn.Module):
        def __init__(self, classes=1000):
            super().__init__()
            cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                   (6, 320, 1, 1)]
            layers, cin = cbr(3, 32, 3, 2), 32
            for t, c, n, s in cfg:
                for i in range(n):
                    layers.append(Inverted(cin, c, s if i == 0 else 1, t))
                    cin = c
            layers += cbr(cin, 1280, 1, 1)
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

        def forward(self, x):
            x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
            return self.classifier(torch.flatten(x, 1))

    return torch, ResNet18, MobileNetV2


def _randomize_bn(torch, net, seed):
    """Non-trivial BatchNorm statistics, so the folding of mean/var/gamma/beta is actually tested."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def _export(torch, net, path, shape):
    net.eval()
    x = torch.zeros(shape)
    kw = dict(opset_version=17, input_names=["input"], output_names=["logits"],
              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    try:
        torch.onnx.export(net, (x,), str(path), dynamo=False, **kw)
    except TypeError:  # a torch without the dynamo switch
        torch.onnx.export(net, (x,), str(path), **kw)


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2"])
def test_torch_exported_cnn_matches_onnxruntime(tmp_path, arch):
    ort = pytest.importorskip("onnxruntime")
    torch, ResNet18, MobileNetV2 = _torch_models()
    torch.manual_seed(0)
    net = ResNet18() if arch == "resnet18" else MobileNetV2()
    _randomize_bn(torch, net, 1)
    path = tmp_path / f"{arch}.onnx"
    _export(torch, net, path, (1, 3, 224, 224))

    model = load_onnx(path)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"Conv2D", "Dense"} <= kinds  # mapped onto visionkit's own layers (torch folds BatchNorm into Conv)
    assert not any(k.startswith("Onnx") for k in kinds), kinds  # nothing left to the generic numpy layers
    if arch == "mobilenet_v2":  # grouped Conv + Clip(0, 6) chains fuse into blocks as the built-in model's do
        from visionkit import fusion

        blocks = [c for c in model._fusion_plan()[0].values() if type(c) is fusion.Block]
        assert len(blocks) == 17 and sum(b.residual for b in blocks) == 10

    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"input": x})[0]
    got = model.predict(x)
    assert got.shape == want.shape == (2, 1000)
    scale = float(np.abs(want).max())
    err = float(np.abs(got - want).max())
    print(f"{arch}: max abs diff {err:.3g}, output scale {scale:.3g}, relative {err / scale:.3g}")
    assert err <= 1e-4 * scale


# --------------------------------------------------------------------------------------------------------------
# small hand-written graphs


def _tensor_value(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _const_node(name, arr):
    return helper.make_node("Constant", [], [name], name=f"const_{name}", value=numpy_helper.from_array(arr, name))


def _constant_weight_model(rng):
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    fc = rng.standard_normal((4 * 4 * 4, 5)).astype(np.float32)
    fcb = rng.standard_normal(5).astype(np.float32)
    nodes = [
        _const_node("w", w), _const_node("b", b), _const_node("fc", fc), _const_node("fcb", fcb),
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        # the flatten-by-shape chain exporters write: Shape -> Gather -> Unsqueeze -> Concat -> Reshape
        helper.make_node("Shape", ["p"], ["s"], name="shape"),
        _const_node("zero", np.array(0, np.int64)),
        helper.make_node("Gather", ["s", "zero"], ["n"], name="gather", axis=0),
        _const_node("ax0", np.array([0], np.int64)),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"], name="unsq"),
        _const_node("m1", np.array([-1], np.int64)),
        helper.make_node("Concat", ["n1", "m1"], ["shape2"], name="cat", axis=0),
        helper.make_node("Reshape", ["p", "shape2"], ["f"], name="reshape"),
        helper.make_node("MatMul", ["f", "fc"], ["mm"], name="matmul"),
        helper.make_node("Add", ["mm", "fcb"], ["y"], name="bias"),
    ]
    graph = helper.make_graph(nodes, "constant_weights", [_tensor_value("x", [1, 3, 8, 8])],
                              [_tensor_value("y", [1, 5])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_weights_in_constant_nodes(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    m = _constant_weight_model(np.random.default_rng(0))
    onnx.checker.check_model(m)
    path = tmp_path / "const.onnx"
    onnx.save(m, str(path))
    model = load_onnx(path)
    # the shape chain was folded: no Shape/Gather/Concat layers remain
    names = [type(layer).__name__ for layer in model.layers]
    assert "Conv2D" in names and "Dense" in names
    assert not any(n in ("OnnxGather", "OnnxConcat", "OnnxUnsqueeze") for n in names), names
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(model(x), want, rtol=1e-4, atol=1e-5)


def test_unsupported_ops_listed_in_one_error(tmp_path):
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Erf", ["a"], ["b"], name="erf_1"),
        helper.make_node("Erf", ["b"], ["c"], name="erf_2"),
        helper.make_node("ReduceMean", ["c"], ["d"], name="mean", keepdims=1),
        helper.make_node("Einsum", ["d", "d"], ["y"], name="ein", equation="ij,ij->ij"),
    ]
    graph = helper.make_graph(nodes, "bad", [_tensor_value("x", [1, 4])], [_tensor_value("y", [1, 4])])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "bad.onnx"
    onnx.save(m, str(path))
    with pytest.raises(ValueError) as e:
        load_onnx(path)
    msg = str(e.value)
    assert "3 unsupported ONNX operator types" in msg
    for needle in ("Erf", "'erf_1'", "'erf_2'", "ReduceMean", "'mean'", "Einsum", "'ein'"):
        assert needle in msg
    assert "'relu'" not in msg


def _external_model(location):
    w = numpy_helper.from_array(np.ones((2, 4), np.float32), "w")
    w.data_location = TensorProto.EXTERNAL
    w.ClearField("raw_data")
    for k, v in (("location", location), ("offset", "0"), ("length", "32")):
        e = w.external_data.add()
        e.key, e.value = k, v
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    graph = helper.make_graph(nodes, "ext", [_tensor_value("x", [1, 2])], [_tensor_value("y", [1, 4])],
                              initializer=[w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("location", ["../secret.bin", "sub/../../secret.bin", "/etc/passwd"])
def test_external_data_outside_the_folder_is_refused(tmp_path, location):
    (tmp_path / "secret.bin").write_bytes(np.ones(8, np.float32).tobytes())
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "m.onnx"
    path.write_bytes(_external_model(location).SerializeToString())
    with pytest.raises(ValueError, match="outside the model's folder"):
        load_onnx(path)


def test_external_data_inside_the_folder_loads(tmp_path):
    (tmp_path / "w.bin").write_bytes(np.full(8, 2.0, np.float32).tobytes())
    path = tmp_path / "m.onnx"
    path.write_bytes(_external_model("w.bin").SerializeToString())
    model = load_onnx(path)
    y = model(np.ones((1, 2), np.float32))
    np.testing.assert_allclose(y, np.full((1, 4), 4.0, np.float32))


def test_vk_round_trip_of_an_imported_model(tmp_path):
    from visionkit.weights import load_model

    rng = np.random.default_rng(0)
    # a graph mixing visionkit layers and generic ONNX layers (Transpose, broadcasting Mul by a constant, Softmax
    # on a non-channel axis at opset 11, Resize with a coordinate mode UpSampling2D does not have)
    scale = rng.standard_normal((1, 4, 1, 1)).astype(np.float32)
    nodes = [
        _const_node("w", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
        _const_node("scale", scale),
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[0, 1, 1, 0]),  # asymmetric pads
        helper.make_node("Mul", ["c", "scale"], ["m"], name="mul"),
        helper.make_node("Transpose", ["m"], ["t"], name="tr", perm=[0, 2, 3, 1]),
        helper.make_node("Softmax", ["t"], ["s"], name="sm", axis=2),
        helper.make_node("Upsample", ["s", "ups"], ["y"], name="up", mode="nearest"),
    ]
    ups = numpy_helper.from_array(np.array([1, 1, 2, 1.5], np.float32), "ups")
    graph = helper.make_graph(nodes, "mixed", [_tensor_value("x", [1, 3, 6, 6])], [_tensor_value("y", None)],
                              initializer=[ups])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    path = tmp_path / "mixed.onnx"
    onnx.save(m, str(path))
    model = load_onnx(path)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"Conv2D", "OnnxPad", "OnnxBinary", "OnnxTranspose", "OnnxSoftmax", "OnnxResize"} <= kinds, kinds
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    y = model(x)
    ort = pytest.importorskip("onnxruntime")
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)

    vk = tmp_path / "mixed.vk"
    model.save(str(vk))
    again = load_model(str(vk))
    np.testing.assert_array_equal(again(x), y)
    assert [type(a).__name__ for a in again.layers] == [type(b).__name__ for b in model.layers]


def test_generic_layers_are_inference_only():
    from visionkit.onnx.layers import OnnxTranspose

    layer = OnnxTranspose(attrs={"perm": [0, 2, 1]}, output_shape=(None, 3, 2))
    y = layer(np.zeros((1, 2, 3), np.float32))
    assert y.shape == (1, 3, 2)
    with pytest.raises(NotImplementedError, match="inference only"):
        layer.backward(y, None)


def test_unreadable_file_and_symbolic_dims(tmp_path):
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"not a protobuf at all \xff\xfe")
    with pytest.raises(ValueError, match="junk.onnx"):
        load_onnx(bad)
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "sym", [_tensor_value("x", ["N", 3, "H", "W"])], [_tensor_value("y", None)])
    path = tmp_path / "sym.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(ValueError, match="input_shape"):
        load_onnx(path)
    model = load_onnx(path, input_shape=(1, 3, 8, 8))
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 7)).astype(np.float32)  # other sizes run too
    np.testing.assert_array_equal(model(x), np.maximum(x, 0))


def test_load_model_and_run_classify_take_an_onnx_file_with_its_side_card(tmp_path, monkeypatch):
    """visionkit.load_model("m.onnx") imports the file; m.onnx.json is its card; `run classify` uses both."""
    import json

    from click.testing import CliRunner

    import visionkit as vk
    from visionkit import registry
    from visionkit.cli import cli
    from visionkit.onnx import export_onnx

    net = registry.build("keras-mnist-cnn", seed=0)
    export_onnx(net, tmp_path / "digits.onnx")
    card = {"class_names": [f"digit {i}" for i in range(10)], "preprocessing": {"channels": 1}}
    (tmp_path / "digits.onnx.json").write_text(json.dumps(card))
    model = vk.load_model(tmp_path / "digits.onnx")
    assert model.metadata == card
    x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x), net.predict(x), atol=1e-6)

    import cv2

    cv2.imwrite(str(tmp_path / "seven.png"), np.random.default_rng(1).integers(0, 256, (40, 30), dtype=np.uint8))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["run", "classify", "seven.png", "--model", "digits.onnx", "--json"])
    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout)["results"][0]["classes"][0]
    assert top["name"].startswith("digit ") and 0 < top["score"] <= 1
