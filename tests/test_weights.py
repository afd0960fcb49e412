"""Model files: one safetensors file, JSON metadata, atomic writes, clear errors for files that don't fit."""

import json
import os

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

import visionkit as vk
from visionkit import layers as L
from visionkit import ops
from visionkit.layers.base import Layer, register_layer
from visionkit.model import Model


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def small_cnn(seed=0):
    return vk.Sequential(
        [
            L.Conv2D(4, 3, padding="same", activation="relu", input_shape=(1, 8, 8), name="w_conv"),
            L.BatchNorm(name="w_bn"),
            L.MaxPool2D(2, name="w_pool"),
            L.Flatten(name="w_flat"),
            L.Dense(3, activation="softmax", name="w_dense"),
        ],
        seed=seed,
        name="w_model",
    )


def _read(path):
    with safe_open(str(path), framework="numpy") as f:
        return f.metadata(), {k: f.get_tensor(k) for k in f.keys()}


def test_save_load_round_trip(tmp_path):
    model = small_cnn()
    model(rand(6, 1, 8, 8), training=True)  # move the BN running stats off their initial values
    path = tmp_path / "cnn.vk"
    meta = {
        "task": "classify",
        "class_names": ["a", "b", "c"],
        "preprocess": {"size": [8, 8], "mean": [0.5], "std": [0.25]},
        "provenance": {"cmd": "test"},
    }
    model.save(path, metadata=meta)
    assert sorted(os.listdir(tmp_path)) == ["cnn.vk"]  # no temporary file left behind

    header, tensors = _read(path)
    doc = json.loads(header["visionkit"])
    assert doc["format"] == "visionkit" and doc["format_version"] == 1 and doc["class_name"] == "Sequential"
    assert doc["metadata"] == meta
    assert set(tensors) == {p.name for p in model.parameters()}
    assert tensors["w_conv/kernel"].shape == (4, 1, 3, 3) and tensors["w_conv/kernel"].dtype == np.float32

    loaded = vk.load_model(path)
    assert loaded.metadata == meta
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    for p, q in zip(model.parameters(), loaded.parameters()):
        assert p.name == q.name and p.trainable == q.trainable
        np.testing.assert_array_equal(p.value, q.value)
    x = rand(2, 1, 8, 8, seed=1)
    np.testing.assert_array_equal(loaded(x), model(x))
    # saving again keeps the metadata
    loaded.save(tmp_path / "again.vk")
    assert vk.load_model(tmp_path / "again.vk", device="cpu").metadata == meta


def test_functional_model_round_trip(tmp_path):
    inp = vk.Input((2, 6, 6), name="f_in")
    a = L.Conv2D(3, 3, padding="same", name="f_a")(inp)
    b = L.SeparableConv2D(3, 3, padding="same", name="f_b")(inp)
    x = L.Add(name="f_add")([a, b])
    up = L.Conv2DTranspose(2, 3, strides=2, padding="same", name="f_up")(x)
    seg = L.Concat(name="f_cat")([up, L.UpSampling2D(2, name="f_us")(inp)])
    cls = L.Dense(4, name="f_cls")(L.GlobalAvgPool2D(name="f_gap")(x))
    model = Model(inp, [seg, cls], seed=0, name="two_heads")
    model.save(tmp_path / "g.vk")
    loaded = vk.load_model(tmp_path / "g.vk")
    assert isinstance(loaded, Model) and loaded.metadata == {}
    xin = rand(2, 2, 6, 6)
    for y, z in zip(model(xin), loaded(xin)):
        np.testing.assert_array_equal(y, z)


def test_custom_layer_survives_save_and_load(tmp_path):
    @register_layer
    class Scale(Layer):
        def __init__(self, factor=2.0, **kw):
            super().__init__(**kw)
            self.factor = float(factor)

        def build(self, input_shape):
            self.add_weight("alpha", (1,), "ones")

        def forward(self, x, training=False):
            return x * (self.alpha.value[0] * self.factor), x

        def backward(self, grad_out, ctx):
            self.alpha.accumulate(np.array([(grad_out * ctx).sum() * self.factor], np.float32))
            return grad_out * (self.alpha.value[0] * self.factor)

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    model = vk.Sequential([L.Dense(2, input_shape=(3,), name="c_dense"), Scale(3.0, name="c_scale")], seed=0)
    model.get_layer("c_scale").alpha.value = np.array([0.5], np.float32)
    model.save(tmp_path / "c.vk")
    loaded = vk.load_model(tmp_path / "c.vk")
    x = rand(2, 3)
    np.testing.assert_allclose(loaded(x), model(x))


def _rewrite(path, out, change):
    header, tensors = _read(path)
    change(tensors)
    save_file(tensors, str(out), metadata=header)


def test_wrong_shape_file_names_layer_and_shapes(tmp_path):
    small_cnn().save(tmp_path / "ok.vk")

    def shrink(t):
        t["w_conv/kernel"] = np.zeros((2, 1, 3, 3), np.float32)

    _rewrite(tmp_path / "ok.vk", tmp_path / "bad.vk", shrink)
    with pytest.raises(ValueError) as e:
        vk.load_model(tmp_path / "bad.vk")
    msg = str(e.value)
    assert "bad.vk" in msg and "'w_conv'" in msg and "(4, 1, 3, 3)" in msg and "(2, 1, 3, 3)" in msg


def test_missing_and_extra_tensors_fail_clearly(tmp_path):
    small_cnn().save(tmp_path / "ok.vk")
    _rewrite(tmp_path / "ok.vk", tmp_path / "missing.vk", lambda t: t.pop("w_dense/bias"))
    with pytest.raises(ValueError, match=r"missing\.vk.*lacks.*w_dense/bias"):
        vk.load_model(tmp_path / "missing.vk")
    _rewrite(tmp_path / "ok.vk", tmp_path / "extra.vk", lambda t: t.update({"stray/kernel": np.zeros(3, np.float32)}))
    with pytest.raises(ValueError, match=r"extra\.vk.*stray/kernel"):
        vk.load_model(tmp_path / "extra.vk")


def test_files_that_are_not_models(tmp_path):
    text = tmp_path / "notes.vk"
    text.write_text("hello, I am not a model\n")
    with pytest.raises(ValueError, match=r"notes\.vk.*not a visionkit model file"):
        vk.load_model(text)
    empty = tmp_path / "empty.vk"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.vk.*not a visionkit model file"):
        vk.load_model(empty)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": np.zeros(2, np.float32)}, str(plain))
    with pytest.raises(ValueError, match=r"plain\.safetensors.*without visionkit metadata"):
        vk.load_model(plain)
    broken = tmp_path / "broken.vk"
    save_file({"w": np.zeros(2, np.float32)}, str(broken), metadata={"visionkit": "{not json"})
    with pytest.raises(ValueError, match=r"broken\.vk.*invalid JSON"):
        vk.load_model(broken)
    future = tmp_path / "future.vk"
    save_file(
        {"w": np.zeros(2, np.float32)},
        str(future),
        metadata={"visionkit": json.dumps({"format": "visionkit", "format_version": 99, "config": {}})},
    )
    with pytest.raises(ValueError, match=r"future\.vk.*version 99"):
        vk.load_model(future)
    unknown = tmp_path / "unknown.vk"
    cfg = {"name": "m", "layers": [{"class_name": "Wibble", "config": {}}], "input_shape": [3]}
    save_file(
        {"w": np.zeros(2, np.float32)},
        str(unknown),
        metadata={
            "visionkit": json.dumps(
                {"format": "visionkit", "format_version": 1, "class_name": "Sequential", "config": cfg}
            )
        },
    )
    with pytest.raises(ValueError, match=r"unknown\.vk.*Wibble"):
        vk.load_model(unknown)
    with pytest.raises(FileNotFoundError, match="nowhere.vk"):
        vk.load_model(tmp_path / "nowhere.vk")


def test_failed_save_leaves_the_old_file(tmp_path):
    model = small_cnn()
    path = tmp_path / "m.vk"
    model.save(path)
    before = path.read_bytes()
    with pytest.raises(TypeError):
        model.save(path, metadata={"bad": object()})
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["m.vk"]


def test_load_weights_into_an_existing_model(tmp_path):
    a, b = small_cnn(seed=0), small_cnn(seed=1)
    a.save(tmp_path / "a.vk")
    b.load_weights(tmp_path / "a.vk")
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(ops.to_numpy(p.value), ops.to_numpy(q.value))
