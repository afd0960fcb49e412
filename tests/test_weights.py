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


# ---------------------------------------------------------------------------------------------- review fixes


def _write_model_file(path, config, tensors, class_name="Sequential"):
    header = {"format": "visionkit", "format_version": 1, "class_name": class_name, "config": config}
    save_file(tensors, str(path), metadata={"visionkit": json.dumps(header)})


def test_hostile_header_allocates_nothing(tmp_path):
    """A tiny file whose config declares a huge layer is refused before any weight is allocated or drawn."""
    import tracemalloc

    cfg = {
        "name": "huge",
        "input_shape": [100000],
        "layers": [{"class_name": "Dense", "config": {"units": 1000000, "name": "big"}}],
    }
    path = tmp_path / "huge.vk"
    _write_model_file(path, cfg, {"big/kernel": np.zeros((2, 2), np.float32), "big/bias": np.zeros(2, np.float32)})
    assert os.path.getsize(path) < 2048
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"huge\.vk.*'big'.*kernel.*\(1000000, 100000\).*\(2, 2\)"):
            vk.load_model(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20  # the 400 GB kernel was never allocated


def test_loading_draws_no_random_weights(tmp_path, monkeypatch):
    from visionkit.layers import initializers

    model = small_cnn(seed=3)
    model.save(tmp_path / "m.vk")

    def boom(*a, **k):
        raise AssertionError("an initializer ran during load_model")

    monkeypatch.setattr(initializers, "get", boom)
    loaded = vk.load_model(tmp_path / "m.vk")
    for a, b in zip(model.parameters(), loaded.parameters()):
        np.testing.assert_array_equal(a.value, b.value)
        assert b.value.dtype == np.float32 and b.value.flags.c_contiguous


def test_tensors_larger_than_the_file_are_refused(tmp_path):
    """A hand-made safetensors header declaring 4 GB of data in a 200-byte file."""
    header = {
        "big/kernel": {"dtype": "F32", "shape": [1000000000], "data_offsets": [0, 4000000000]},
        "__metadata__": {"visionkit": json.dumps({"format": "visionkit", "format_version": 1, "config": {}})},
    }
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path = tmp_path / "liar.vk"
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + b"\0" * 16)
    with pytest.raises(ValueError, match=r"liar\.vk"):
        vk.load_model(path)
    with pytest.raises(ValueError, match=r"liar\.vk"):
        small_cnn().load_weights(path)


@pytest.mark.parametrize(
    "config, class_name, problem",
    [
        # a node whose inbound reference is too short: IndexError
        ({"name": "m", "layers": [{"class_name": "InputLayer", "config": {"name": "i", "shape": [3]}},
                                  {"class_name": "Dense", "config": {"units": 2, "name": "d"}}],
          "nodes": [{"layer": "d", "inbound": [["i"]]}], "inputs": [["i", 0]], "outputs": [["d", 0]]},
         "Model", "IndexError"),
        # a node given as a string: AttributeError / TypeError
        ({"name": "m", "layers": [{"class_name": "InputLayer", "config": {"name": "i", "shape": [3]}}],
          "nodes": ["d"], "inputs": [["i", 0]], "outputs": [["i", 0]]}, "Model", "Error"),
        # layer config of the wrong type
        ({"name": "m", "layers": [{"class_name": "Dense", "config": {"units": "many"}}], "input_shape": [3]},
         "Sequential", "Error"),
        # layers is not a list
        ({"name": "m", "layers": 7, "input_shape": [3]}, "Sequential", "TypeError"),
        # a class that is not a model
        ({"units": 3}, "Dense", "not a model class"),
    ],
)
def test_corrupt_configs_are_reported_with_the_file(tmp_path, config, class_name, problem):
    path = tmp_path / "corrupt.vk"
    _write_model_file(path, config, {"x": np.zeros(1, np.float32)}, class_name=class_name)
    with pytest.raises(ValueError, match=rf"corrupt\.vk: cannot rebuild the architecture .*{problem}"):
        vk.load_model(path)


@pytest.mark.parametrize("depth", [300, 5000])
def test_runaway_nesting_is_reported_with_the_file(tmp_path, depth):
    """Sequential in Sequential in ...: 300 levels build (then the weights don't match), 5000 overflow the JSON
    parser's recursion."""
    head = '{"class_name": "Sequential", "config": {"name": null, "input_shape": [2], "layers": ['
    inner = head * (depth - 1) + '{"class_name": "Dense", "config": {"units": 2}}' + "]}}" * (depth - 1)
    text = (
        '{"format": "visionkit", "format_version": 1, "class_name": "Sequential", "config": '
        '{"name": null, "input_shape": [2], "layers": [' + inner + "]}}"
    )
    path = tmp_path / "deep.vk"
    save_file({"x": np.zeros(1, np.float32)}, str(path), metadata={"visionkit": text})
    problem = "corrupt visionkit metadata .*nested too deeply" if depth > 1000 else "the file lacks weight"
    with pytest.raises(ValueError, match=r"deep\.vk: " + problem):
        vk.load_model(path)


@pytest.mark.parametrize("error", [RecursionError, IndexError, AttributeError, KeyError, TypeError])
def test_from_config_errors_become_value_errors_naming_the_file(tmp_path, error):
    class Exploding(Layer):
        @classmethod
        def from_config(cls, config):
            raise error("boom")

    cfg = {"name": "m", "layers": [{"class_name": "Exploding", "config": {}}], "input_shape": [3]}
    path = tmp_path / "explodes.vk"
    _write_model_file(path, cfg, {"x": np.zeros(1, np.float32)})
    want = "config nested too deeply" if error is RecursionError else error.__name__
    with pytest.raises(ValueError, match=rf"explodes\.vk: cannot rebuild the architecture \({want}"):
        vk.load_model(path, custom_objects={"Exploding": Exploding})


def test_loaded_names_advance_the_automatic_names(tmp_path):
    vk.reset_names()
    model = vk.Sequential([L.Conv2D(2, 3, input_shape=(1, 6, 6)), L.Conv2D(2, 3), L.Flatten(), L.Dense(2)])
    assert [layer.name for layer in model.layers] == ["conv2d", "conv2d_1", "flatten", "dense"]
    model.save(tmp_path / "names.vk")
    vk.reset_names()  # a new session
    loaded = vk.load_model(tmp_path / "names.vk")
    taken = {layer.name for layer in loaded.layers} | {loaded.name}
    fresh = [L.Conv2D(2, 3), L.Dense(2), L.Flatten(), vk.Sequential([L.Dense(1)])]
    assert [f.name for f in fresh] == ["conv2d_2", "dense_1", "flatten_1", "sequential_1"]
    assert not taken & {f.name for f in fresh}
    # and the new layers combine with the loaded model without a name clash
    inp = vk.Input((1, 6, 6))
    vk.Model(inp, fresh[1](fresh[2](fresh[0](inp))))


def named_init(shape, fans, rng):
    return np.full(shape, 0.5, np.float32)


def test_callable_initializers_and_save(tmp_path):
    ok = vk.Sequential([L.Dense(2, kernel_initializer=named_init, input_shape=(3,), name="d_named")])
    np.testing.assert_array_equal(ok.layers[0].kernel.value, 0.5)
    ok.save(tmp_path / "named.vk")
    cfg = json.loads(_read(tmp_path / "named.vk")[0]["visionkit"])["config"]
    assert cfg["layers"][0]["config"]["kernel_initializer"] == "named_init"
    loaded = vk.load_model(tmp_path / "named.vk")  # weights come from the file: the name need not be known
    np.testing.assert_array_equal(loaded.layers[0].kernel.value, 0.5)

    bad = vk.Sequential([L.Dense(2, bias_initializer=lambda s, f, r: np.ones(s, np.float32), input_shape=(3,),
                                 name="d_lambda")])
    with pytest.raises(ValueError, match=r"layer 'd_lambda'.*bias_initializer.*without a name"):
        bad.save(tmp_path / "lambda.vk")
    assert not (tmp_path / "lambda.vk").exists()
    with pytest.raises(ValueError, match="unknown initializer"):
        L.Dense(2, kernel_initializer="glorot_unifrom")


def test_load_model_device_argument(tmp_path):
    small_cnn().save(tmp_path / "d.vk")
    assert vk.load_model(tmp_path / "d.vk", device="cpu").device == "cpu"
    with pytest.raises(ValueError, match="device"):
        vk.load_model(tmp_path / "d.vk", device="tpu")
