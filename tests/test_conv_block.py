"""ops.expand_depthwise_project (a 1x1 conv, a depthwise conv and a 1x1 conv for inference; on the CPU one kernel
with channels-last intermediates, visionkit/backends/cpu/conv_block.py) against a float64 numpy reference and the
three conv2d_bn_act calls it stands for, over both work splits, pixel chunks, strides, paddings and kernels; and
the inference fusion that runs MobileNetV2's blocks through it."""

import numpy as np
import pytest
import reference as ref

import visionkit as vk
from visionkit import fusion, ops
from visionkit import layers as L
from visionkit.backends.cpu import blas, conv_block, threads


def _stage(rng, o, c, k, dtype, bias=True, bn=True, activation="relu6"):
    w = (rng.standard_normal((o, c, k, k)) / np.sqrt(c * k * k)).astype(dtype)
    b = (0.1 * rng.standard_normal(o)).astype(dtype) if bias else None
    stats = None
    if bn:
        stats = ((0.2 * rng.standard_normal(o)).astype(dtype), (rng.random(o) + 0.5).astype(dtype),
                 rng.standard_normal(o).astype(dtype), rng.standard_normal(o).astype(dtype), 1e-3)
    return w, b, stats, activation


def _reference(x, stages, stride, padding, first=None):
    """The three convolutions, each with its BatchNorm and activation, in float64 numpy; first: the first conv's
    conv2d keyword arguments."""
    y = x.astype(np.float64)
    for i, (w, b, bn, act) in enumerate(stages):
        kw = {"stride": stride, "padding": padding, "groups": y.shape[1]} if i == 1 else (first or {}) if i == 0 else {}
        y = ref.conv2d(y, w.astype(np.float64), None if b is None else b.astype(np.float64), **kw)
        if bn is not None:
            mean, var, gamma, beta, eps = (np.asarray(v, np.float64).reshape(1, -1, 1, 1) for v in bn)
            y = (y - mean) / np.sqrt(var + eps) * gamma + beta
        if act is not None:
            y = np.clip(y, 0, 6 if act == "relu6" else None)
    return y


def _three_calls(x, stages, stride, padding):
    (we, b1, bn1, a1), (wd, b2, bn2, a2), (wp, b3, bn3, a3) = stages
    y = ops.conv2d_bn_act(x, we, b1, bn=bn1, activation=a1)
    y = ops.conv2d_bn_act(y, wd, b2, stride=stride, padding=padding, groups=y.shape[1], bn=bn2, activation=a2)
    return ops.conv2d_bn_act(y, wp, b3, bn=bn3, activation=a3)


CASES = {
    # name: (n, c, ce, p, h, w, k, stride, padding, chunk_bytes, by_channels_below)
    "mobilenet_s1": (1, 8, 24, 8, 9, 9, 3, 1, 1, 1 << 19, 0),
    "residual_by_channels": (2, 6, 18, 6, 5, 4, 3, 1, "same", 1 << 19, 1 << 30),
    "mobilenet_s2_same": (1, 6, 20, 10, 10, 9, 3, 2, "same", 1 << 19, 0),
    "small_image_by_channels": (1, 8, 30, 12, 5, 6, 3, 1, 1, 1 << 19, 1 << 30),
    "by_channels_odd_split": (2, 3, 7, 5, 4, 4, 3, 2, 1, 1 << 19, 1 << 30),
    "pixel_chunks_with_tails": (2, 5, 16, 6, 11, 7, 3, 1, 1, 64 * 4, 0),
    "kernel5_asymmetric_pad": (1, 4, 12, 4, 8, 7, 5, (1, 2), (2, 1), 1 << 19, 0),
    "kernel1_unpadded": (3, 4, 9, 5, 3, 5, 1, 1, 0, 1 << 19, 0),
    "one_pixel": (2, 4, 8, 3, 1, 1, 3, 1, 1, 1 << 19, 0),
}


@pytest.mark.parametrize("threads_forced", [False, True], ids=["default-threads", "all-threads"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_the_reference_and_the_three_calls(monkeypatch, name, dtype, threads_forced):
    n, c, ce, p, h, w, k, stride, padding, chunk_bytes, by_channels_below = CASES[name]
    monkeypatch.setattr(conv_block, "CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(conv_block, "BY_CHANNELS_BELOW", by_channels_below)
    if threads_forced:  # tiny shapes would run on one thread
        monkeypatch.setattr(threads, "KERNEL_MIN_FLOPS", 0)
        monkeypatch.setattr(threads, "PARALLEL_MIN_WORK", 0)
    rng = np.random.default_rng(len(name))
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    stages = [_stage(rng, ce, c, 1, dtype), _stage(rng, ce, 1, k, dtype, bias=False),
              _stage(rng, p, ce, 1, dtype, activation=None)]
    got = ops.expand_depthwise_project(x, *stages, stride=stride, padding=padding)
    want = _reference(x, stages, stride, padding)
    assert got.dtype == dtype and got.shape == want.shape
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
    np.testing.assert_allclose(got, _three_calls(x, stages, stride, padding), rtol=tol, atol=tol * np.abs(want).max())
    if got.shape == x.shape:  # the residual block: + x, to the bit of adding x to the block's output
        np.testing.assert_array_equal(
            ops.expand_depthwise_project(x, *stages, stride=stride, padding=padding, residual=True), got + x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ce, stride, padding, by_channels, residual", [
    (16, 1, 1, False, False),  # one vector of float32 channels
    (37, 1, 1, False, True),  # vectors, then a last one moved back over channels already done; + x
    (40, 2, 1, False, False),  # stride 2
    (24, 1, (0, 2), False, False),  # no padding above: the first output row is inside the input
    (45, 1, 1, True, True),  # the channel split: each thread's vectors stay in its own channels
    (7, 1, 1, False, False),  # fewer channels than a vector: pixel by pixel
])
def test_explicit_vectors_give_the_bits_of_the_per_pixel_loops(monkeypatch, ce, stride, padding, by_channels,
                                                               residual, dtype):
    """The explicit-vector paths (the expansion's epilogue, the 3x3 depthwise conv's rows, the projection's
    transposed tiles) compute each output as the per-pixel loops do, so their outputs are bitwise equal, wherever
    a thread's pixels start (mid-row here), however many channels, with or without the residual."""
    monkeypatch.setattr(threads, "KERNEL_MIN_FLOPS", 0)
    monkeypatch.setattr(threads, "PARALLEL_MIN_WORK", 0)
    monkeypatch.setattr(conv_block, "BY_CHANNELS_BELOW", 1 << 30 if by_channels else 0)
    rng = np.random.default_rng(ce)
    c = 20 if residual else 5
    x = rng.standard_normal((2, c, 13, 11)).astype(dtype)
    stages = [_stage(rng, ce, c, 1, dtype), _stage(rng, ce, 1, 3, dtype),
              _stage(rng, 20, ce, 1, dtype, activation=None)]  # 20 outputs: vector tiles and channels left over
    kw = {"stride": stride, "padding": padding, "residual": residual}
    got = ops.expand_depthwise_project(x, *stages, **kw)
    monkeypatch.setattr(conv_block, "EXPLICIT_VECTORS", False)
    np.testing.assert_array_equal(got, ops.expand_depthwise_project(x, *stages, **kw))
    want = _reference(x, stages, stride, padding) + (x if residual else 0)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("threads_forced", [False, True], ids=["default-threads", "all-threads"])
@pytest.mark.parametrize("first", [
    {"k": 3, "stride": 2, "padding": 1, "dilation": 1},  # MobileNetV2's stem before its first block
    {"k": 3, "stride": 1, "padding": "same", "dilation": 2},
    {"k": 2, "stride": (1, 2), "padding": (0, 1), "dilation": 1},
    {"k": 1, "stride": 2, "padding": 0, "dilation": 1},  # a strided 1x1 goes through im2col too
], ids=["stem", "dilated", "asymmetric", "strided1x1"])
def test_a_first_conv_that_is_not_pointwise(monkeypatch, first, threads_forced):
    monkeypatch.setattr(conv_block, "CHUNK_BYTES", 0)  # the smallest chunks: several bands per thread
    if threads_forced:
        monkeypatch.setattr(threads, "KERNEL_MIN_FLOPS", 0)
        monkeypatch.setattr(threads, "PARALLEL_MIN_WORK", 0)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 29, 50)).astype(np.float32)  # bands of 64 pixels: 1-2 rows
    first = dict(first)
    k = first.pop("k")
    stages = [_stage(rng, 16, 3, k, np.float32), _stage(rng, 16, 1, 3, np.float32),
              _stage(rng, 8, 16, 1, np.float32, activation=None)]
    got = ops.expand_depthwise_project(x, *stages, stride=1, padding=1, expand_stride=first["stride"],
                                       expand_padding=first["padding"], expand_dilation=first["dilation"])
    want = _reference(x, stages, 1, 1, first)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("acts", [(None, None, None), ("relu", "relu", "relu"), ("relu6", None, "relu6")])
def test_every_stage_without_bias_or_batchnorm_and_any_activation(acts):
    rng = np.random.default_rng(5)
    x = (3 * rng.standard_normal((1, 6, 7, 8))).astype(np.float32)
    stages = [_stage(rng, 18, 6, 1, np.float32, bias=False, bn=False, activation=acts[0]),
              _stage(rng, 18, 1, 3, np.float32, bias=True, bn=False, activation=acts[1]),
              _stage(rng, 5, 18, 1, np.float32, bias=False, bn=True, activation=acts[2])]
    got = ops.expand_depthwise_project(x, *stages, stride=1, padding=1)
    np.testing.assert_allclose(got, _reference(x, stages, 1, 1), rtol=1e-5, atol=1e-5)


def test_nan_spreads_as_through_the_three_calls():
    """A NaN pixel reaches every expansion channel of that pixel, then its depthwise window, as the separate convs
    carry it (NaN survives ReLU6 as the activation kernels keep it)."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 4, 9, 9)).astype(np.float32)
    x[0, 2, 4, 4] = np.nan
    stages = [_stage(rng, 16, 4, 1, np.float32), _stage(rng, 16, 1, 3, np.float32),
              _stage(rng, 4, 16, 1, np.float32, activation=None)]
    got = ops.expand_depthwise_project(x, *stages, stride=1, padding=1)
    want = _three_calls(x, stages, 1, 1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got[0, :, 3:6, 3:6]).all() and not np.isnan(got[0, :, 0]).any()


def test_bad_arguments_name_the_stage():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    e, d, p = _stage(rng, 8, 4, 1, np.float32), _stage(rng, 8, 1, 3, np.float32), _stage(rng, 3, 8, 1, np.float32)
    with pytest.raises(ValueError, match=r"weight \(8, 5, 1, 1\) expects 5 input channels \(groups=1\), got 4"):
        ops.expand_depthwise_project(x, _stage(rng, 8, 5, 1, np.float32), d, p)
    with pytest.raises(ValueError, match=r"the depthwise weight must have shape \(8, 1, \*, \*\)"):
        ops.expand_depthwise_project(x, e, _stage(rng, 8, 2, 3, np.float32), p)
    with pytest.raises(ValueError, match=r"the projection weight must have shape \(\*, 8, 1, 1\)"):
        ops.expand_depthwise_project(x, e, d, _stage(rng, 3, 6, 1, np.float32))
    with pytest.raises(ValueError, match="activation must be one of"):
        ops.expand_depthwise_project(x, e, d, p[:3] + ("tanh",))
    with pytest.raises(ValueError, match=r"output \(1, 3, 6, 6\) must have the input's shape \(1, 4, 6, 6\)"):
        ops.expand_depthwise_project(x, e, d, p, padding=1, residual=True)
    with pytest.raises(ValueError, match="larger than the padded input"):
        ops.expand_depthwise_project(x[:, :, :2, :2], e, d, p, padding=0)


def test_without_kernel_blas_it_is_the_three_calls(monkeypatch):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 5, 6, 7)).astype(np.float32)
    stages = [_stage(rng, 10, 5, 1, np.float32), _stage(rng, 10, 1, 3, np.float32),
              _stage(rng, 4, 10, 1, np.float32, activation=None)]
    monkeypatch.setattr(blas, "AVAILABLE", False)
    np.testing.assert_array_equal(ops.expand_depthwise_project(x, *stages, stride=2, padding=1),
                                  _three_calls(x, stages, 2, 1))
    stages[2] = _stage(rng, 5, 10, 1, np.float32)
    np.testing.assert_array_equal(ops.expand_depthwise_project(x, *stages, padding=1, residual=True),
                                  _three_calls(x, stages, 1, 1) + x)


# ----------------------------------------------------------------------------------------------- the fusion


def _inverted_residual_graph():
    x = vk.Input((8, 10, 9))
    a = L.Conv2D(24, 1, use_bias=False, name="expand")(x)
    a = L.BatchNorm(name="expand_bn")(a)
    a = L.Activation("relu6", name="expand_act")(a)
    a = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(a)
    a = L.BatchNorm(name="dw_bn")(a)
    a = L.Activation("relu6", name="dw_act")(a)
    a = L.Conv2D(8, 1, use_bias=False, name="project")(a)
    a = L.BatchNorm(name="project_bn")(a)
    r = L.Add(name="residual")([x, a])                          # the residual Add joins the block
    b = L.Conv2D(16, 1, name="expand2")(r)                       # no BatchNorm, no activation: still a stage
    b = L.DepthwiseConv2D(3, strides=2, padding=1, name="dw2")(b)
    b = L.Conv2D(6, 1, name="project2")(b)
    c = L.Conv2D(12, 1, name="expand3")(b)
    c = L.DepthwiseConv2D(3, padding=2, dilation_rate=2, name="dw_dilated")(c)  # dilated: not a block
    c = L.Conv2D(6, 1, name="project3")(c)
    s = L.Add(name="not_residual")([b, c])                      # adds another tensor, not the block's input
    return vk.Model(x, [r, s], name="inverted_residuals")


def test_the_plan_makes_blocks_of_exactly_the_inverted_residuals():
    model = _inverted_residual_graph()
    plan = model._fusion_plan()[0]
    names = {model._order[k].layer.name: (type(c).__name__, tuple(model._order[j].layer.name for j in c.absorbed))
             for k, c in plan.items()}
    assert names == {
        "expand": ("Block", ("expand_bn", "expand_act", "dw", "dw_bn", "dw_act", "project", "project_bn", "residual")),
        "expand2": ("Block", ("dw2", "project2")),
    }
    assert fusion.describe(plan[next(k for k, c in plan.items() if model._order[k].layer.name == "expand")]) == \
        "Conv2D+BatchNorm+relu6 > DepthwiseConv2D+BatchNorm+relu6 > Conv2D+BatchNorm > Add"


def test_fused_blocks_match_the_separate_layers():
    from test_fusion import _randomise_bn

    model = _inverted_residual_graph()
    _randomise_bn(model, seed=9)
    x = np.random.default_rng(10).standard_normal((2, 8, 10, 9)).astype(np.float32)
    for a, b in zip(model(x), model.predict(x, batch_size=2)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * np.abs(a).max())


def test_mobilenet_v2_runs_its_seventeen_blocks_fused():
    from visionkit import registry

    model = registry.get_architecture("mobilenet_v2").build(seed=0)
    blocks = [c for c in model._fusion_plan()[0].values() if type(c) is fusion.Block]
    # the first block does not expand: the 3x3/2 stem before it is its first conv
    assert len(blocks) == 17 and model._order[blocks[0].head].layer.name == "features.0.0"
    assert sum(b.residual for b in blocks) == 10  # those with stride 1 and as many channels out as in
    x = np.random.default_rng(12).standard_normal((1, 3, 224, 224)).astype(np.float32)
    want = model(x)
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
