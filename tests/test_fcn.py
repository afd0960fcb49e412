"""The fully convolutional conversion: one pass over a large image gives, at every position, exactly the scores
the classifier gives the window there (the textbooks' sliding-window detector made efficient)."""

import numpy as np
import pytest

import visionkit as vk
from visionkit import layers as L


def _windows_match(model, fcn, x, window, stride):
    scores = fcn(x)
    worst = 0.0
    for i in range(scores.shape[2]):
        for j in range(scores.shape[3]):
            crop = x[:, :, i * stride:i * stride + window, j * stride:j * stride + window]
            worst = max(worst, float(np.abs(model(crop) - scores[:, :, i, j]).max()))
    return scores, worst


def test_dense_head_becomes_convolutions_with_equal_window_scores():
    model = vk.Sequential([
        L.Conv2D(8, 3, activation="relu", input_shape=(1, 20, 20)), L.MaxPool2D(2),
        L.Conv2D(16, 3, activation="relu"), L.MaxPool2D(2),
        L.Flatten(), L.Dropout(0.5), L.Dense(32, activation="relu"), L.Dense(5, activation="softmax"),
    ], seed=0)
    fcn = model.to_fully_convolutional()
    assert [type(l).__name__ for l in fcn.layers].count("Dense") == 0
    x = np.random.default_rng(0).random((2, 1, 36, 44), dtype=np.float32)
    scores, worst = _windows_match(model, fcn, x, window=20, stride=4)
    assert scores.shape == (2, 5, 5, 7)  # (36-20)/4+1 rows, (44-20)/4+1 columns
    assert worst < 1e-5
    np.testing.assert_allclose(scores.sum(axis=1), 1, rtol=1e-5)  # softmax over classes at every position
    assert fcn(x[:, :, :20, :20]).shape == (2, 5, 1, 1)


def test_global_average_pooling_head_becomes_a_window_average():
    inp = vk.Input((3, 12, 12))
    h = L.Conv2D(6, 3, activation="relu")(inp)
    h = L.BatchNorm()(h)
    out = L.Dense(4)(L.GlobalAvgPool2D()(h))
    model = vk.Model(inp, out, seed=1)
    x = np.random.default_rng(1).random((1, 3, 17, 15), dtype=np.float32)
    scores, worst = _windows_match(model, model.to_fully_convolutional(), x, window=12, stride=1)
    assert scores.shape == (1, 4, 6, 4)
    assert worst < 1e-5


def test_layers_without_a_convolutional_form_are_refused():
    model = vk.Sequential([L.Conv2D(4, 3, input_shape=(1, 8, 8)), L.Flatten(), L.BatchNorm(), L.Dense(3)], seed=0)
    with pytest.raises(ValueError, match="between Flatten and Dense"):
        model.to_fully_convolutional()
