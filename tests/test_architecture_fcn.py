"""The textbook's FCN-8s (``digits-fcn``): shapes through the skips, bilinear upsampling that starts as
``ops.interpolate``, zero skip scores, backward, save/load, the segment task, and ONNX parity with onnxruntime."""

import numpy as np
import pytest

from visionkit import ops
from visionkit.builtins.architectures import ARCHITECTURES
from visionkit.builtins.architectures.fcn import bilinear_filter, bilinear_kernel
from visionkit.layers import initializers

RNG = np.random.default_rng(11)


@pytest.fixture(scope="module")
def model():
    return ARCHITECTURES["digits-fcn"].builder(seed=0)


def _summary(model):
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    rows = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[1].startswith("(") and parts[1].endswith(")") and "(None" in line:
            shape = line[line.index("(None"):line.index(")", line.index("(None")) + 1]
            rows[parts[0]] = shape
    return rows, text


# ---- the card and the graph ---------------------------------------------------------------------------------------


def test_card():
    spec = ARCHITECTURES["digits-fcn"]
    assert spec.task == "segment" and spec.input_shape == (1, 64, 64) and spec.num_classes == 11
    assert spec.family == "fcn" and "857,377" in spec.description and "Long" in spec.reference
    for name in ("digits-fcn16s", "digits-fcn32s"):
        assert ARCHITECTURES[name].task == "segment"


def test_summary_shapes_and_count(model):
    rows, text = _summary(model)
    want = {
        "pool3": "(None, 64, 8, 8)",
        "pool4": "(None, 96, 4, 4)",
        "pool5": "(None, 128, 2, 2)",
        "score_fr": "(None, 11, 2, 2)",
        "upscore2": "(None, 11, 4, 4)",
        "score_pool4": "(None, 11, 4, 4)",
        "fuse_pool4": "(None, 11, 4, 4)",
        "upscore_pool4": "(None, 11, 8, 8)",
        "score_pool3": "(None, 11, 8, 8)",
        "fuse_pool3": "(None, 11, 8, 8)",
        "upscore8": "(None, 11, 64, 64)",
    }
    for layer, shape in want.items():
        assert rows[layer] == shape, (layer, text)
    assert model.count_params() == 857_377 and "857,377" in text
    assert model.metadata["task"] == "segment" and model.metadata["class_names"][0] == "background"
    assert model.metadata["background_class"] == 0 and model.metadata["input_shape"] == [1, 64, 64]


def test_output_is_per_pixel_logits_at_the_input_size(model):
    x = RNG.random((2, 1, 64, 64), dtype=np.float32)
    y = model.predict(x)
    assert y.shape == (2, 11, 64, 64) and y.dtype == np.float32 and np.isfinite(y).all()
    # FCN-8s starts as FCN-32s: the skip scores are zero, so the skips add nothing yet
    a = ARCHITECTURES["digits-fcn"].builder(seed=0)
    b = ARCHITECTURES["digits-fcn32s"].builder(seed=0)
    assert not a.get_layer("score_pool4").kernel.value.any() and not a.get_layer("score_pool3").kernel.value.any()
    assert b.predict(x).shape == (2, 11, 64, 64)


@pytest.mark.parametrize("name,size,classes,channels", [
    ("digits-fcn", (96, 128), 3, 3), ("digits-fcn16s", (32, 64), 5, 1), ("digits-fcn32s", 32, 2, 1)])
def test_other_sizes_classes_channels(name, size, classes, channels):
    with initializers.deferred():  # shapes only
        m = ARCHITECTURES[name].builder(num_classes=classes, in_channels=channels, input_size=size)
    hw = (size, size) if isinstance(size, int) else size
    assert tuple(m.outputs[0].shape[1:]) == (classes,) + hw
    assert "class_names" not in m.metadata


def test_sizes_not_multiple_of_32_are_refused():
    with pytest.raises(ValueError, match="multiple of 32.*60 -> 32 or 64"):
        ARCHITECTURES["digits-fcn"].builder(input_size=60)


# ---- bilinear upsampling ------------------------------------------------------------------------------------------


def test_bilinear_kernel():
    np.testing.assert_allclose(bilinear_filter(4), np.outer([.25, .75, .75, .25], [.25, .75, .75, .25]))
    taps = 1 - np.abs(np.arange(16) - 7.5) / 8  # 1/16, 3/16, ..., 15/16, 15/16, ..., 1/16
    np.testing.assert_allclose(bilinear_filter(16), np.outer(taps, taps), rtol=1e-6)
    np.testing.assert_allclose(bilinear_filter(3), np.outer([.5, 1, .5], [.5, 1, .5]))  # odd: centred on a tap
    w = bilinear_kernel(3, 4)
    assert w.shape == (3, 3, 4, 4) and w.dtype == np.float32
    for i in range(3):
        for o in range(3):
            np.testing.assert_array_equal(w[i, o], bilinear_filter(4) if i == o else 0)


@pytest.mark.parametrize("layer,factor", [("upscore2", 2), ("upscore_pool4", 2), ("upscore8", 8)])
def test_upsampling_starts_as_bilinear_interpolation(model, layer, factor):
    up = model.get_layer(layer)
    assert up.trainable and up.bias is None
    np.testing.assert_array_equal(up.kernel.value, bilinear_kernel(11, 2 * factor))
    inner = (Ellipsis, slice(factor // 2, -(factor // 2)), slice(factor // 2, -(factor // 2)))
    const = np.full((1, 11, 5, 6), 2.5, np.float32)
    y = up(const)
    assert y.shape == (1, 11, 5 * factor, 6 * factor)
    np.testing.assert_allclose(y[inner], 2.5, rtol=1e-6)
    assert y[0, 0, 0, 0] < 2.5  # the border sees the zero padding
    yy, xx = np.mgrid[0:5, 0:6].astype(np.float32)
    ramp = np.broadcast_to(0.7 * yy - 0.3 * xx + 1.0, (1, 11, 5, 6)).astype(np.float32)
    rand = RNG.standard_normal((1, 11, 5, 6)).astype(np.float32)
    for x in (ramp, rand):  # bilinear interpolation of any map, not only of ramps
        ref = ops.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
        np.testing.assert_allclose(up(x)[inner], ref[inner], atol=1e-5)
    # the ramp continues on the fine grid: output pixel o sits at (o + 0.5) / factor - 0.5 in the input
    fy, fx = (np.mgrid[0:5 * factor, 0:6 * factor] + 0.5) / factor - 0.5
    np.testing.assert_allclose(up(ramp)[0, 3][inner[1:]], (0.7 * fy - 0.3 * fx + 1.0)[inner[1:]], atol=1e-5)


# ---- training -----------------------------------------------------------------------------------------------------


def test_backward_reaches_every_parameter():
    m = ARCHITECTURES["digits-fcn"].builder(seed=1)
    x = RNG.random((2, 1, 64, 64), dtype=np.float32)
    y = m(x, training=True)
    g = RNG.standard_normal(y.shape).astype(np.float32)
    gx = m.backward(g)
    assert gx.shape == x.shape and np.isfinite(gx).all()
    for p in m.parameters():
        assert p.grad is not None and p.grad.shape == p.value.shape, p.name
        assert np.isfinite(p.grad).all() and np.abs(p.grad).max() > 0, p.name  # zero weights, live gradients
    # one finite difference on a skip score (zero at the start) and one on the final upsampling kernel
    m2 = ARCHITECTURES["digits-fcn"].builder(seed=1)
    m2(x)  # inference mode (no dropout) keeps the tape too, so predict() below computes the same function
    m2.backward(g)
    for name, idx in (("score_pool3", (2, 5, 0, 0)), ("upscore8", (4, 4, 7, 8))):
        p = m2.get_layer(name).kernel
        analytic = float(p.grad[idx])
        base = p.value.copy()
        eps = 1e-2
        p.value = base.copy()
        p.value[idx] += eps
        up = float((m2.predict(x) * g).sum(dtype=np.float64))
        p.value = base.copy()
        p.value[idx] -= eps
        down = float((m2.predict(x) * g).sum(dtype=np.float64))
        p.value = base
        assert abs((up - down) / (2 * eps) - analytic) < 2e-2 * max(1.0, abs(analytic)), name


def test_save_and_load_roundtrip(model, tmp_path):
    import visionkit as vk

    path = tmp_path / "fcn.vk"
    model.save(path)
    back = vk.load_model(path)
    x = RNG.random((1, 1, 64, 64), dtype=np.float32)
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
    assert back.get_layer("upscore8").kernel_initializer == "bilinear"


def test_segment_task_gives_a_mask_per_pixel(model):
    from visionkit.builtins.tasks.segment import SegmentTask

    img = (RNG.random((90, 70)) * 255).astype(np.uint8)
    (res,) = SegmentTask().run(model, [img])
    assert res.mask.shape == (90, 70) and res.mask.max() < 11
    assert res.mask_classes == ["background"] + [str(d) for d in range(10)]


# ---- ONNX ---------------------------------------------------------------------------------------------------------


def test_onnx_export_agrees_with_onnxruntime(model, tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from visionkit.onnx import export_onnx

    path = export_onnx(model, tmp_path / "fcn.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = RNG.random((3, 1, 64, 64), dtype=np.float32)
    (got,) = sess.run(None, {sess.get_inputs()[0].name: x})
    assert got.shape == (3, 11, 64, 64)
    np.testing.assert_allclose(got, model.predict(x), rtol=1e-4, atol=1e-4)
