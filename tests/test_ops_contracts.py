"""What the backward ops refuse, and edge cases the reviews found: a wrong shape given to a backward pass must
stop with a ValueError before any kernel indexes memory with it."""

import numpy as np
import pytest

from visionkit import ops

F32 = np.float32


def _ones(*shape):
    return np.ones(shape, F32)


def test_conv2d_backward_rejects_wrong_grad_shape():
    x, w = _ones(1, 1, 6, 6), _ones(2, 1, 3, 3)
    with pytest.raises(ValueError, match=r"grad_out has shape \(1, 2, 9, 6\), expected \(1, 2, 6, 6\)"):
        ops.conv2d_backward(_ones(1, 2, 9, 6), x, w, None, 1, 1)


def test_conv_transpose2d_backward_rejects_wrong_grad_shape():
    x, w = _ones(1, 2, 3, 3), _ones(2, 4, 3, 3)
    with pytest.raises(ValueError, match="conv_transpose2d backward"):
        ops.conv_transpose2d_backward(_ones(1, 4, 4, 4), x, w)


def test_max_pool2d_backward_rejects_foreign_indices():
    x = _ones(1, 1, 6, 6)
    y, idx = ops.max_pool2d(x, 2, return_indices=True)
    with pytest.raises(ValueError, match="indices range"):
        ops.max_pool2d_backward(np.ones_like(y), idx, (1, 1, 2, 2))
    with pytest.raises(ValueError, match="indices has shape"):
        ops.max_pool2d_backward(np.ones_like(y), idx[:, :, :2], x.shape)


def test_other_backwards_check_their_grad_shape():
    x = _ones(2, 3, 6, 6)
    with pytest.raises(ValueError):
        ops.avg_pool2d_backward(_ones(2, 3, 2, 2), x.shape, 2)
    with pytest.raises(ValueError):
        ops.local_response_norm_backward(_ones(2, 3, 6, 5), x, 3)
    with pytest.raises(ValueError):
        ops.batch_norm_backward(_ones(2, 3, 6, 5), x, _ones(3), _ones(3), training=True)
    with pytest.raises(ValueError):
        ops.linear_backward(_ones(4, 2), _ones(4, 5), _ones(3, 5))
    with pytest.raises(ValueError):
        ops.relu_backward(_ones(2, 3), _ones(3, 2))
    with pytest.raises(ValueError):
        ops.pad_backward(_ones(2, 3, 6, 6), x.shape, (1, 1, 1, 1))
    with pytest.raises(ValueError):
        ops.concat_backward(_ones(2, 5, 2, 2), [2, 2])
    with pytest.raises(ValueError):
        ops.interpolate_backward(_ones(2, 3, 11, 12), x.shape, scale_factor=2)
    with pytest.raises(ValueError):
        ops.dropout_backward(_ones(2, 3), np.ones((3, 2), np.uint8), 0.5)


def test_nearest_interpolation_keeps_infinities():
    x = np.array([[[[1, np.inf], [-np.inf, 4]]]], F32)
    y = ops.interpolate(x, scale_factor=2)
    np.testing.assert_array_equal(y[0, 0, 0], [1, 1, np.inf, np.inf])
    np.testing.assert_array_equal(y[0, 0, 3], [-np.inf, -np.inf, 4, 4])


def test_batch_norm_on_an_empty_batch():
    x = np.zeros((0, 3, 4, 4), F32)
    y = ops.batch_norm(x, np.zeros(3, F32), np.ones(3, F32))
    assert y.shape == x.shape
    gx, gw, gb = ops.batch_norm_backward(x, x, np.zeros(3, F32), np.ones(3, F32), _ones(3))
    assert gx.shape == x.shape and np.all(gw == 0) and np.all(gb == 0)


def test_activation_parameters_are_checked():
    x = _ones(2, 3)
    np.testing.assert_allclose(ops.activation(-x, "leaky_relu", negative_slope=0.2), -0.2 * x)
    with pytest.raises(ValueError, match="takes only 'negative_slope'"):
        ops.activation(x, "leaky_relu", alpha=0.2)
    with pytest.raises(ValueError, match="takes no parameters"):
        ops.activation(x, "relu", alpha=0.2)
    np.testing.assert_allclose(ops.activation(x, "softmax", dim=0).sum(axis=0), 1, rtol=1e-6)


def test_dropout_backward_with_everything_dropped():
    gy = np.full((2, 3), np.nan, F32)
    y, mask = ops.dropout(_ones(2, 3), p=1.0, return_mask=True)
    assert np.all(y == 0)
    np.testing.assert_array_equal(ops.dropout_backward(gy, mask, 1.0), np.zeros((2, 3), F32))


def test_relu6_matches_its_definition_and_keeps_nan():
    x = np.array([-1, 0, 3, 6, 7, np.nan], F32)
    np.testing.assert_array_equal(ops.relu6(x), [0, 0, 3, 6, 6, np.nan])
    np.testing.assert_array_equal(ops.relu6_backward(np.ones(6, F32), x), [0, 0, 1, 0, 0, 0])


def test_scale_channels_forward_and_gradients():
    from gradcheck import check_gradients

    rng = np.random.default_rng(3)
    x, s = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 1, 1))
    np.testing.assert_allclose(ops.scale_channels(x, s), x * s)
    g = rng.standard_normal(x.shape)
    gx, gs = ops.scale_channels_backward(g, x, s)
    np.testing.assert_allclose(gx, g * s)
    np.testing.assert_allclose(gs, (g * x).sum(axis=(2, 3), keepdims=True))
    assert gs.shape == s.shape
    with pytest.raises(ValueError, match="scale must be"):
        ops.scale_channels(x, rng.standard_normal((2, 3, 2, 1)))
    check_gradients(ops.scale_channels, [x, s], lambda r, a, b: ops.scale_channels_backward(r, a, b))


def test_conv_where_a_kernel_column_sees_no_output_column():
    """Dilation and padding that leave some kernel columns with an empty range of output columns (found by
    hypothesis: the clamp on that range once let a slice wrap around and add into the wrong pixels)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 1, 1, 1)), rng.standard_normal((1, 2, 4, 4))
    for stride in ((2, 1), (1, 1)):
        y = ops.conv_transpose2d(x, w, None, stride, (0, 2), 0, 1, (1, 2))
        ref = F.conv_transpose2d(torch.tensor(x), torch.tensor(w), None, stride, (0, 2), 0, 1, (1, 2)).numpy()
        np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    xs, ws = rng.standard_normal((2, 4, 3, 5)), rng.standard_normal((8, 4, 3, 3))  # 7 wide with dilation 3
    y = ops.conv2d(xs, ws, None, (1, 2), 1, (1, 3))
    g = rng.standard_normal(y.shape)
    xt = torch.tensor(xs, requires_grad=True)
    F.conv2d(xt, torch.tensor(ws), None, (1, 2), 1, (1, 3)).backward(torch.tensor(g))
    gx, _, _ = ops.conv2d_backward(g, xs, ws, None, (1, 2), 1, (1, 3))
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
