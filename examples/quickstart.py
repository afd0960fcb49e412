"""The textbook's MNIST CNN built, summarised, run, saved and loaded again: the core engine end to end."""

import os
import tempfile

import numpy as np

import visionkit as vk
from visionkit import layers as L

model = vk.Sequential([
    L.Conv2D(32, 3, padding="same", activation="relu", input_shape=(1, 28, 28)),
    L.MaxPool2D(2),
    L.Conv2D(64, 3, padding="same", activation="relu"),
    L.MaxPool2D(2),
    L.Flatten(),
    L.Dense(64, activation="relu"),
    L.Dense(10, activation="softmax"),
], seed=0)
model.summary()

x = np.random.default_rng(0).random((8, 1, 28, 28), dtype=np.float32)
y = model(x)
print("output", y.shape, "rows sum to", y.sum(axis=1).round(5))

with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "mnist.vk")
    model.save(path)
    again = vk.load_model(path)
    print("saved and loaded:", path, "max difference", float(np.abs(again(x) - y).max()))
