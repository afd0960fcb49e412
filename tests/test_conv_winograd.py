"""The CPU forward's Winograd F(2x2, 3x3) path (visionkit/backends/cpu/conv_winograd.py) against the float64 loop
reference: every padding, odd sizes (tiles cut at the edge), several bands on pool threads, the fused epilogue,
both dtypes, and NaN / inf landing where the direct convolution puts them."""

import numpy as np
import pytest
import reference as ref
from gradcheck import assert_close

from visionkit import ops
from visionkit.backends.cpu import blas
from visionkit.backends.cpu import conv as conv_mod
from visionkit.backends.cpu import conv_winograd as wino
from visionkit.backends.cpu import threads as threads_mod


@pytest.fixture(params=["kernel-blas", "python-pool"])
def small_shapes_take_winograd(monkeypatch, request):
    """Small shapes through the Winograd path, cut into bands of 3 tiles, the bands on several threads (4+ input
    channels: fewer than 32 terms per output would go to the direct kernel first). Both ways of running the
    bands: one Numba kernel calling BLAS itself (where numpy's BLAS allows it), and the Python pool."""
    if request.param == "kernel-blas" and not blas.AVAILABLE:
        pytest.skip("numpy's BLAS has no scipy-openblas ILP64 GEMM symbols: the Python pool runs the bands")
    monkeypatch.setattr(blas, "AVAILABLE", request.param == "kernel-blas")
    monkeypatch.setattr(wino, "MIN_OUTPUT_PIXELS", 1)
    monkeypatch.setattr(wino, "MIN_CHANNELS", 1)
    monkeypatch.setattr(wino, "BAND_TILES", 3)
    monkeypatch.setattr(threads_mod, "PARALLEL_MIN_FLOPS", 0)
    calls = []
    for name in ("_winograd_forward", "_winograd_image_parts"):  # bands, or one image at a time on all threads
        real = getattr(conv_mod, name)
        monkeypatch.setattr(conv_mod, name, lambda *a, real=real: calls.append(1) or real(*a))
    return calls


def _rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,padding", [
    ((2, 4, 8, 8), 1), ((1, 4, 9, 7), 1), ((3, 4, 5, 6), 0), ((1, 5, 7, 10), 2), ((2, 6, 6, 9), "same"),
    ((1, 4, 8, 5), (0, 1)),
], ids=["even", "odd", "valid", "pad2", "same", "uneven"])
@pytest.mark.parametrize("band_tiles", [3, 64], ids=["row-bands", "image-runs"])
def test_winograd_matches_the_reference(small_shapes_take_winograd, monkeypatch, band_tiles, dtype, shape,
                                        padding):
    monkeypatch.setattr(wino, "BAND_TILES", band_tiles)
    rng = np.random.default_rng(3)
    x, w, b = _rand(rng, shape, dtype), _rand(rng, (6, shape[1], 3, 3), dtype), _rand(rng, (6,), dtype)
    y = ops.conv2d(x, w, b, padding=padding)
    assert small_shapes_take_winograd, "the Winograd path was not taken"
    assert y.dtype == dtype
    assert_close(y, ref.conv2d(x, w, b, padding=padding), dtype)


@pytest.mark.parametrize("x_shape,pads", [((2, 5, 8, 8), (1, 1, 1, 1)), ((1, 4, 9, 7), (0, 0, 0, 0)),
                                          ((2, 4, 7, 10), (2, 2, 2, 2)), ((1, 6, 8, 9), (0, 1, 2, 0))],
                         ids=["same", "valid", "pad2", "uneven"])
def test_winograd_input_gradient(small_shapes_take_winograd, monkeypatch, x_shape, pads):
    """The input gradient of a stride-1 3x3 conv runs as a Winograd correlation with the flipped, transposed
    kernel; it must equal the im2col one (which test_ops_conv checks against finite differences)."""
    rng = np.random.default_rng(7)
    x, w = _rand(rng, x_shape, np.float64), _rand(rng, (6, x_shape[1], 3, 3), np.float64)
    oh, ow = x_shape[2] + pads[0] + pads[1] - 2, x_shape[3] + pads[2] + pads[3] - 2
    gy = _rand(rng, (x_shape[0], 6, oh, ow), np.float64)
    got = conv_mod.conv2d_backward_input(gy, w, x.shape, (1, 1), pads, (1, 1), 1)
    assert small_shapes_take_winograd, "the Winograd path was not taken"
    monkeypatch.setattr(conv_mod, "use_winograd", lambda *a: False)
    want = conv_mod.conv2d_backward_input(gy, w, x.shape, (1, 1), pads, (1, 1), 1)
    assert len(small_shapes_take_winograd) == 1
    assert_close(got, want, np.float64)


@pytest.mark.parametrize("band_tiles", [3, 64], ids=["row-bands", "image-runs"])
@pytest.mark.parametrize("x_shape,pads", [((2, 5, 8, 8), (1, 1, 1, 1)), ((3, 4, 5, 7), (0, 0, 0, 0)),
                                          ((2, 4, 7, 10), (2, 2, 2, 2)), ((1, 6, 8, 9), (0, 1, 2, 0))],
                         ids=["same", "valid", "pad2", "uneven"])
def test_winograd_weight_gradient(small_shapes_take_winograd, monkeypatch, band_tiles, x_shape, pads):
    """The weight gradient through the transforms (dU = sum of DY @ V^T per band and worker, then G^T dU G) equals
    the im2col one, in float64 to rounding and in float32 to float32's."""
    monkeypatch.setattr(wino, "BAND_TILES", band_tiles)
    rng = np.random.default_rng(8)
    oh, ow = x_shape[2] + pads[0] + pads[1] - 2, x_shape[3] + pads[2] + pads[3] - 2
    for dtype in (np.float64, np.float32):
        x, gy = _rand(rng, x_shape, dtype), _rand(rng, (x_shape[0], 6, oh, ow), dtype)
        got = conv_mod.conv2d_backward_weight(x, gy, (6, x_shape[1], 3, 3), (1, 1), pads, (1, 1), 1)
        assert got.dtype == dtype and got.shape == (6, x_shape[1], 3, 3)
        want = ref_weight_gradient(x, gy, pads)
        assert_close(got, want, dtype)
    assert small_shapes_take_winograd == []  # the weight gradient has its own entry, not the forward's


def ref_weight_gradient(x, gy, pads):
    """d sum(conv2d(x, w) * gy) / d w by the loop definition, in float64."""
    x64 = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[1]), (pads[2], pads[3])))
    oh, ow = gy.shape[2], gy.shape[3]
    gw = np.zeros((gy.shape[1], x.shape[1], 3, 3))
    for i in range(3):
        for j in range(3):
            gw[:, :, i, j] = np.einsum("nohw,nchw->oc", gy.astype(np.float64), x64[:, :, i:i + oh, j:j + ow])
    return gw


def test_winograd_weight_gradient_with_nan_and_inf_takes_im2col(small_shapes_take_winograd):
    rng = np.random.default_rng(9)
    x, gy = _rand(rng, (2, 4, 8, 8), np.float32), _rand(rng, (2, 5, 8, 8), np.float32)
    x[1, 2, 3, 3] = np.inf
    gy[0, 1, 7, 7] = np.nan
    got = conv_mod.conv2d_backward_weight(x, gy, (5, 4, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1)
    want = ref_weight_gradient(x, gy, (1, 1, 1, 1))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    fin = np.isfinite(want)
    assert_close(got[fin], want[fin], np.float32)


def test_winograd_fused_epilogue(small_shapes_take_winograd):
    rng = np.random.default_rng(4)
    x, w, b = _rand(rng, (2, 4, 9, 8), np.float64), _rand(rng, (5, 4, 3, 3), np.float64), _rand(rng, (5,), np.float64)
    mean, var, gamma, beta = (_rand(rng, (5,), np.float64) for _ in range(4))
    var = np.abs(var) + 0.5
    conv = ref.conv2d(x, w, b, padding=1)
    want = np.clip((conv - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5) * gamma[:, None, None]
                   + beta[:, None, None], 0, 6)
    assert_close(ops.conv2d_bn_act(x, w, b, padding=1, bn=(mean, var, gamma, beta, 1e-5), activation="relu6"),
                 want, np.float64)
    assert_close(ops.conv2d_relu(x, w, b, padding=1), np.maximum(conv, 0), np.float64)
    assert len(small_shapes_take_winograd) == 2


@pytest.mark.parametrize("band_tiles", [3, 64], ids=["row-bands", "image-parts"])
def test_winograd_keeps_the_direct_nan_and_inf_pattern(small_shapes_take_winograd, monkeypatch, band_tiles):
    """A transform spreads one NaN over its whole tile, and inf - inf makes NaN: an input holding either is
    convolved the im2col way, so the output has NaN and inf exactly where the direct sum has them."""
    monkeypatch.setattr(wino, "BAND_TILES", band_tiles)
    rng = np.random.default_rng(5)
    x, w = _rand(rng, (2, 4, 10, 10), np.float32), _rand(rng, (4, 4, 3, 3), np.float32)
    x[0, 1, 4, 5] = np.nan
    x[1, 2, 9, 0] = np.inf
    x[1, 0, 0, 9] = -np.inf
    y = ops.conv2d(x, w, padding=1)
    assert small_shapes_take_winograd, "the Winograd path was not taken"
    expect = ref.conv2d(x, w, padding=1)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expect))
    np.testing.assert_array_equal(np.isposinf(y), np.isposinf(expect))
    np.testing.assert_array_equal(np.isneginf(y), np.isneginf(expect))
    fin = np.isfinite(expect)
    assert_close(y[fin], expect[fin], np.float32)


def test_transformed_weights_are_g_g_gt():
    rng = np.random.default_rng(6)
    w = rng.standard_normal((3, 2, 3, 3))
    G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    U = wino.transformed_weights(w)
    for o in range(3):
        for c in range(2):
            np.testing.assert_allclose(U[:, o, c].reshape(4, 4), G @ w[o, c] @ G.T, rtol=1e-14, atol=1e-14)


def test_which_convolutions_take_winograd():
    """The measured choice: wide 3x3 stride-1 layers with at least 400 output pixels over the batch; not one
    14x14 image (slower there), not strided, dilated, grouped, or few-channel ones."""
    take = wino.use_winograd
    assert take(1, 64, 64, 3, 3, 56, 56, (1, 1), (1, 1), 1, np.float32)
    assert take(32, 32, 64, 3, 3, 28, 28, (1, 1), (1, 1), 1, np.float64)
    assert take(128, 32, 64, 3, 3, 14, 14, (1, 1), (1, 1), 1, np.float32)  # many small images: multi-image bands
    assert not take(1, 256, 256, 3, 3, 14, 14, (1, 1), (1, 1), 1, np.float32)
    assert not take(1, 64, 64, 3, 3, 56, 56, (2, 2), (1, 1), 1, np.float32)
    assert not take(1, 64, 64, 3, 3, 56, 56, (1, 1), (2, 2), 1, np.float32)
    assert not take(1, 64, 64, 3, 3, 56, 56, (1, 1), (1, 1), 2, np.float32)
    assert not take(1, 3, 64, 3, 3, 56, 56, (1, 1), (1, 1), 1, np.float32)
    assert not take(1, 64, 64, 5, 5, 56, 56, (1, 1), (1, 1), 1, np.float32)


@pytest.mark.skipif(not blas.AVAILABLE, reason="one image on all threads needs BLAS callable from Numba")
def test_which_convolutions_run_image_by_image():
    """Images that make a single band run one at a time on all threads (ResNet's 14x14 stage at batch 1), while
    their transformed weights stay small: not 512x512 channels (16.8 MB), not images that make several bands."""
    take = wino.use_image_parts
    assert take(1, 256, 256, 3, 3, 14, 14, (1, 1), (1, 1), 1, np.float32)
    assert take(1, 256, 256, 3, 3, 7, 7, (1, 1), (1, 1), 1, np.float32)
    assert take(2, 64, 64, 3, 3, 14, 14, (1, 1), (1, 1), 1, np.float32)
    assert not take(1, 512, 512, 3, 3, 7, 7, (1, 1), (1, 1), 1, np.float32)
    assert not take(1, 64, 64, 3, 3, 56, 56, (1, 1), (1, 1), 1, np.float32)
    assert not take(1, 256, 256, 3, 3, 14, 14, (2, 2), (1, 1), 1, np.float32)


@pytest.mark.skipif(not blas.AVAILABLE, reason="one image on all threads needs BLAS callable from Numba")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(1, 32, 14, 14), (2, 16, 7, 7), (1, 17, 5, 9)], ids=["14x14", "7x7-two", "odd"])
def test_image_parts_match_the_reference(shape, dtype):
    """The real thresholds, real thread count: more input channels than output ones and the other way round (the
    weight and input transforms are cut differently), odd channel counts and sizes, the fused epilogue."""
    rng = np.random.default_rng(7)
    for o in (shape[1] + 8, 16):
        assert wino.use_image_parts(shape[0], shape[1], o, 3, 3, shape[2], shape[3], (1, 1), (1, 1), 1, dtype)
        x, w, b = _rand(rng, shape, dtype), _rand(rng, (o, shape[1], 3, 3), dtype), _rand(rng, (o,), dtype)
        assert_close(ops.conv2d(x, w, b, padding=1), ref.conv2d(x, w, b, padding=1), dtype)
        assert_close(ops.conv2d_relu(x, w, b, padding=1), np.maximum(ref.conv2d(x, w, b, padding=1), 0), dtype)


def test_the_weight_gradient_is_bitwise_repeatable(small_shapes_take_winograd):
    """Each worker sums a fixed run of bands in order, and the runs are added in order: the same call gives the
    same bits every time, whichever thread ran which run (training repeats bit for bit)."""
    rng = np.random.default_rng(5)
    x, w = _rand(rng, (2, 6, 10, 9), np.float32), _rand(rng, (5, 6, 3, 3), np.float32)
    gy = _rand(rng, (2, 5, 10, 9), np.float32)
    first = ops.conv2d_backward(gy, x, w, None, padding=1)[1]
    for _ in range(5):
        np.testing.assert_array_equal(ops.conv2d_backward(gy, x, w, None, padding=1)[1], first)
