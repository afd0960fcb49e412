"""Regression tests for the model-level review fixes: independent outputs, trainable=False at construction,
inference without a tape, summary memory figures, the device argument, and the module split's public imports."""

import numpy as np
import pytest

import visionkit as vk
from visionkit import layers as L
from visionkit import ops


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ---------------------------------------------------------------------------------------------- 1. outputs


def _grads(model):
    return [None if p.grad is None else p.grad.copy() for p in model.parameters()]


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "softmax", None])
def test_editing_the_output_in_place_does_not_change_backward(activation):
    model = vk.Sequential([L.Dense(3, activation=activation, input_shape=(4,))], seed=0)
    x, g = rand(5, 4), rand(5, 3, seed=1)
    model(x)
    gx1, grads1 = model.backward(g), _grads(model)
    y = model(x)
    y -= 100.0  # the user's loss code reuses the output buffer
    y *= 3.0
    gx2, grads2 = model.backward(g), _grads(model)
    np.testing.assert_array_equal(gx1, gx2)
    for a, b in zip(grads1, grads2):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "layers",
    [
        [L.Flatten(input_shape=(2, 3, 3))],
        [L.Dropout(0.5, input_shape=(2, 3, 3))],
        [L.Activation("linear", input_shape=(2, 3, 3))],
        [L.Reshape((-1,), input_shape=(2, 3, 3))],
    ],
)
def test_identity_like_models_return_independent_arrays(layers):
    model = vk.Sequential(layers)
    x = rand(4, 2, 3, 3)
    keep = x.copy()
    for y in (model(x), model(x, keep_tape=False), model.predict(x), model.predict(x, batch_size=3)):
        assert not np.shares_memory(y, x)
        y[...] = 0
        np.testing.assert_array_equal(x, keep)


def test_two_outputs_of_one_tensor_are_independent():
    inp = vk.Input((3,))
    t = L.Dense(2)(inp)
    model = vk.Model(inp, [t, t])
    a, b = model(rand(2, 3))
    assert not np.shares_memory(a, b)
    c, d = model.predict(rand(2, 3))
    assert not np.shares_memory(c, d)


# ---------------------------------------------------------------------------------------------- 2. trainable


def test_trainable_false_at_construction_freezes_everything():
    inp = vk.Input((1, 8, 8))
    x = L.Conv2D(2, 3, activation="relu")(inp)
    x = L.BatchNorm()(x)
    out = L.Dense(3)(L.Flatten()(x))
    model = vk.Model(inp, out, trainable=False)
    assert not model.trainable and model.parameters()
    assert not any(p.trainable for p in model.parameters())
    assert all(not layer.trainable for layer in model.layers if not isinstance(layer, vk.model.InputLayer))
    model(rand(2, 1, 8, 8), training=True)
    model.backward(rand(2, 3))
    assert all(p.grad is None for p in model.parameters())

    seq = vk.Sequential([L.Dense(4, input_shape=(3,)), L.Dense(2)], trainable=False)
    assert not any(p.trainable for p in seq.parameters())
    seq.add(L.Dense(1))  # added later: frozen too
    assert not any(p.trainable for p in seq.parameters())
    lazy = vk.Sequential([L.Dense(4), L.Dense(2)], trainable=False)  # built on its first call
    lazy(rand(2, 3))
    assert lazy.parameters() and not any(p.trainable for p in lazy.parameters())
    # the default does not unfreeze a layer the user froze
    frozen = L.Dense(4, input_shape=(3,), trainable=False)
    assert not vk.Sequential([frozen, L.Dense(2)]).layers[0].trainable
    # and unfreezing later works
    seq.trainable = True
    assert all(p.trainable for p in seq.parameters())


# ---------------------------------------------------------------------------------------------- 6. no tape


def _pool_model():
    return vk.Sequential(
        [
            L.Conv2D(2, 3, padding="same", activation="relu", input_shape=(1, 8, 8)),
            L.MaxPool2D(2),
            L.Flatten(),
            L.Dense(3),
        ],
        seed=0,
    )


def test_predict_keeps_no_tape_and_uses_the_index_free_pool(monkeypatch):
    model = _pool_model()
    calls = []
    real = ops.max_pool2d

    def spy(*args, **kwargs):
        calls.append(kwargs.get("return_indices"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ops, "max_pool2d", spy)
    x = rand(5, 1, 8, 8)
    y_tape = model(x)  # keeps the tape, even with training=False
    assert calls == [True]
    gx = model.backward(np.ones_like(y_tape))  # e.g. a saliency map w.r.t. the input
    assert gx.shape == x.shape and np.abs(gx).sum() > 0
    calls.clear()
    np.testing.assert_allclose(model.predict(x, batch_size=2), y_tape, rtol=1e-5, atol=1e-6)
    assert calls == [False, False, False]
    calls.clear()
    np.testing.assert_allclose(model(x, keep_tape=False), y_tape, rtol=1e-5, atol=1e-6)
    assert calls == [False]
    with pytest.raises(RuntimeError, match="keep_tape=False"):
        model.backward(np.ones_like(y_tape))


def test_predict_does_not_disturb_a_pending_backward():
    model = _pool_model()
    x, g = rand(3, 1, 8, 8), rand(3, 3, seed=2)
    model(x)
    gx1 = model.backward(g)
    model(x)
    model.predict(rand(7, 1, 8, 8, seed=5))
    np.testing.assert_array_equal(model.backward(g), gx1)


def test_no_tape_reaches_custom_layers_and_nested_models():
    seen = []

    class Probe(L.Layer):
        def forward(self, x, training=False):
            seen.append(L.recording())
            return ops.relu(x), x

        def backward(self, grad_out, ctx):
            return ops.relu_backward(grad_out, ctx)

    inner = vk.Sequential([Probe(input_shape=(3,))])
    inp = vk.Input((3,))
    outer = vk.Model(inp, L.Dense(2)(inner(inp)))
    x = rand(2, 3)
    outer(x)
    outer.predict(x)
    outer(x, keep_tape=False)
    assert seen == [True, False, False]
    assert L.recording()


# ---------------------------------------------------------------------------------------------- 7. summary memory


def _memory(text):
    inf = int(text.split("inference (batch 1): ")[1].split(" bytes")[0].replace(",", ""))
    train = int(text.split("training (batch 1): ")[1].split(" bytes")[0].replace(",", ""))
    return inf, train


def test_inference_memory_holds_the_skip_across_a_block():
    inp = vk.Input((2, 4, 4))  # 32 values per tensor
    a = L.Conv2D(2, 3, padding="same")(inp)
    b = L.Conv2D(2, 3, padding="same")(a)
    c = L.Conv2D(2, 3, padding="same")(b)
    out = L.Add()([a, c])
    model = vk.Model(inp, out)
    inf, _ = _memory(model.summary(print_fn=None))
    # while c runs: the input, a (held for the Add), b (c's input) and c are live
    assert inf == 4 * 32 * 4
    text8 = model.summary(batch=8, print_fn=None)
    assert f"inference (batch 8): {8 * inf:,} bytes" in text8


@pytest.mark.parametrize("activation", ["elu", "relu"])
def test_training_memory_counts_what_backward_keeps(activation):
    model = vk.Sequential(
        [
            L.Conv2D(4, 3, padding="same", activation=activation, input_shape=(1, 6, 6)),  # 144 values out
            L.BatchNorm(),
            L.MaxPool2D(2),  # 36 values out
            L.Dropout(0.5),
            L.Flatten(),
            L.Dense(3),
        ]
    )
    _, train = _memory(model.summary(print_fn=None))
    # input 36 + conv z 144 + conv y 144 (BatchNorm's x) + pool int32 indices 36 + dropout output 36 (Dense's x,
    # through the Flatten view) + dense output 3, all 4 bytes; plus the dropout mask, 36 bytes of uint8.
    # BatchNorm's output is not kept (max-pool keeps indices, not its input). The ReLU is fused into the
    # convolution, which then keeps no pre-activation z.
    z = 144 if activation == "elu" else 0
    assert train == 4 * (36 + z + 144 + 36 + 36 + 3) + 36


def test_summary_of_a_nested_model_and_unknown_sizes():
    inner = vk.Sequential([L.Conv2D(2, 3, padding="same", activation="relu", input_shape=(1, 5, 5))])
    inp = vk.Input((1, 5, 5))
    outer = vk.Model(inp, L.Flatten()(inner(inp)))
    inf, train = _memory(outer.summary(print_fn=None))
    assert inf > 0 and train > 0
    inp = vk.Input((3, None, None))
    fcn = vk.Model(inp, L.Conv2D(2, 3)(inp))
    text = fcn.summary(print_fn=None)
    assert "inference (batch 1): ? (depends on the input size)" in text


# ---------------------------------------------------------------------------------------------- 10. device


def test_constructors_take_a_device():
    inp = vk.Input((3,))
    out = L.Dense(2)(inp)
    assert vk.Model(inp, out, device="cpu").device == "cpu"
    assert vk.Model(inp, out, device="auto").device in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device"):
        vk.Model(inp, out, device="tpu")
    assert vk.Sequential([L.Dense(2, input_shape=(3,))], device="cpu").device == "cpu"
    with pytest.raises(ValueError, match="device"):
        vk.Sequential([L.Dense(2)], device="gpu0")


def test_sequential_device_cuda_under_the_simulator():
    pytest.importorskip("numba.cuda")
    try:
        import visionkit.backends.cuda
    except Exception as e:  # pragma: no cover
        pytest.skip(f"CUDA backend unavailable: {e}")
    from visionkit.device import is_device_array

    model = vk.Sequential([L.Dense(2, input_shape=(3,))], seed=0, device="cuda")
    assert model.device == "cuda" and all(is_device_array(p.value) for p in model.parameters())
    cpu = vk.Sequential([L.Dense(2, input_shape=(3,))], seed=0)
    x = rand(2, 3)
    np.testing.assert_allclose(model(x), cpu(x), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- 12. public imports


def test_public_imports_survive_the_split():
    from visionkit.layers.base import (
        Layer,
        Node,
        Parameter,
        SymbolicTensor,
        as_input_array,
        batch_shape_str,
        fmt_shape,
        get_layer_class,
        is_symbolic,
        layer_from_config,
        norm_padding,
        pair,
        register_layer,
        registered_layers,
        reset_names,
        unique_name,
    )
    from visionkit.layers.initializers import set_seed
    from visionkit.model import Input, InputLayer, Model, Sequential, node_shapes
    from visionkit.sequential import Sequential as S2
    from visionkit.weights import load_model

    assert S2 is Sequential and issubclass(Sequential, Model) and vk.Sequential is Sequential
    model = vk.Sequential([L.Conv2D(2, 3, input_shape=(1, 5, 5)), L.Flatten(), L.Dense(2)])
    names = [p.name.split("/")[-1] for layer in model.layers for p in layer.parameters()]
    assert names == ["kernel", "bias", "kernel", "bias"]


def test_backward_without_input_grads_skips_the_first_layers_input_gradient(monkeypatch):
    """The trainer's backward (input_grads=False): the same parameter gradients, no gradient of the image, and
    the layers reading the input never compute one."""
    model = vk.Sequential([
        L.Conv2D(8, 3, padding="same", activation="relu", input_shape=(2, 8, 8)),
        L.DepthwiseConv2D(3, padding="same"),
        L.Flatten(),
        L.Dense(3),
    ])
    x = np.random.default_rng(0).standard_normal((4, 2, 8, 8)).astype(np.float32)
    g = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    model(x, training=True)
    gx = model.backward(g)
    assert gx.shape == x.shape
    want = [p.grad.copy() for p in model.parameters()]

    from visionkit.backends.cpu import conv as cpu_conv
    calls = []
    real = cpu_conv.conv2d_backward_input
    monkeypatch.setattr(cpu_conv, "conv2d_backward_input", lambda *a: calls.append(a[2]) or real(*a))
    model(x, training=True)
    assert model.backward(g, input_grads=False) is None
    for p, w in zip(model.parameters(), want):
        np.testing.assert_array_equal(p.grad, w)
    assert calls == [(4, 8, 8, 8)]  # the depthwise layer's input gradient only, not the first conv's
