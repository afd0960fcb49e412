"""AlexNet (Krizhevsky, Sutskever, Hinton, 2012) as in the textbook's table: one tower, no grouped convolutions.

    In 227x227x3 -> C1 96@11x11/4 valid relu (55) -> LRN -> S2 max 3x3/2 (27) -> C3 256@5x5 same relu -> LRN
    -> S4 max 3x3/2 (13) -> C5 384@3x3 -> C6 384@3x3 -> C7 256@3x3 (same, relu) -> S8 max 3x3/2 (6)
    -> F9 4096 relu, dropout 0.5 -> F10 4096 relu, dropout 0.5 -> Out 1000 softmax

Count: C1 96*(11*11*3+1) = 34,944; C3 256*(5*5*96+1) = 614,656; C5 384*(3*3*256+1) = 885,120;
C6 384*(3*3*384+1) = 1,327,488; C7 256*(3*3*384+1) = 884,992; F9 (6*6*256)*4096+4096 = 37,752,832;
F10 4096*4096+4096 = 16,781,312; Out 4096*1000+1000 = 4,097,000; total 62,378,344.

LRN as the textbook gives it: r = 2, alpha = 0.00002, beta = 0.75, k = 1 (TensorFlow's convention, which
multiplies the sum of squares by alpha). PyTorch's convention (ours) divides alpha by the window (2r+1 = 5), so
``LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=1)``.
"""

from __future__ import annotations

import visionkit as vk
from visionkit import layers as L

from ._registry import (
    architecture,
    build_model,
    check_counts,
    classify_metadata,
    dropout_seed,
    resolve_input_size,
)


@architecture(
    "alexnet",
    input_shape=(3, 227, 227),
    num_classes=1000,
    description=(
        "AlexNet as in the textbook's table: 227x227x3, C1 96@11x11/4, LRN, max-pool 3x3/2, C3 256@5x5, LRN, "
        "max-pool, C5-C7 384/384/256@3x3, max-pool, F9/F10 4096 with dropout 0.5, 1000 softmax; one tower "
        "(no grouped convolutions). 62,378,344 params."
    ),
    reference=(
        "Krizhevsky, Sutskever, Hinton, 'ImageNet Classification with Deep Convolutional Neural Networks', 2012; "
        "Geron, Hands-On Machine Learning, ch. 14, Table 14-2"
    ),
)
def alexnet(num_classes=1000, in_channels=3, input_size=None, seed=None):
    num_classes, in_channels = check_counts(num_classes, in_channels)
    hw = resolve_input_size(input_size, (227, 227))

    def lrn(name):
        return L.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=1.0, name=name)

    def graph():
        inp = vk.Input((in_channels,) + hw, name="input")
        x = L.Conv2D(96, 11, strides=4, activation="relu", name="c1")(inp)
        x = lrn("c1_lrn")(x)
        x = L.MaxPool2D(3, strides=2, name="s2")(x)
        x = L.Conv2D(256, 5, padding="same", activation="relu", name="c3")(x)
        x = lrn("c3_lrn")(x)
        x = L.MaxPool2D(3, strides=2, name="s4")(x)
        x = L.Conv2D(384, 3, padding="same", activation="relu", name="c5")(x)
        x = L.Conv2D(384, 3, padding="same", activation="relu", name="c6")(x)
        x = L.Conv2D(256, 3, padding="same", activation="relu", name="c7")(x)
        x = L.MaxPool2D(3, strides=2, name="s8")(x)
        x = L.Flatten(name="flatten")(x)
        x = L.Dense(4096, activation="relu", name="f9")(x)
        x = L.Dropout(0.5, seed=dropout_seed(seed, 0), name="f9_dropout")(x)
        x = L.Dense(4096, activation="relu", name="f10")(x)
        x = L.Dropout(0.5, seed=dropout_seed(seed, 1), name="f10_dropout")(x)
        out = L.Dense(num_classes, activation="softmax", name="output")(x)
        return inp, out

    meta = classify_metadata("alexnet", in_channels, hw, num_classes)
    return build_model(graph, "alexnet", seed, meta)
