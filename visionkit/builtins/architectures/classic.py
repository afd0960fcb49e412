"""The small classic CNNs of the source chapters: LeNet-5, the Keras MNIST / CIFAR-10 / Fashion-MNIST tutorials'
networks, and the TensorFlow CIFAR-10 networks (with local response normalisation, and with batch normalisation).

Every builder: ``builder(num_classes=10, in_channels=<C>, input_size=None, seed=None) -> vk.Model``. The dense
heads follow ``input_size`` (the Flatten width is whatever the convolutions leave). Each model ends in a softmax,
as its source does (the TensorFlow ones apply it inside their loss; here it is the last layer's activation).
Layers carry the names of their source (LeNet's C1/S2/..., the TensorFlow tutorial's conv1/pool1/norm1/...), so
saved weights have stable, readable names.

Parameter counts (trainable; the tests assert them):
    lenet5            61,706   (LeCun's original: 60,000-odd; see the builder's docstring)
    keras-mnist-cnn  220,234
    cifar10-small    528,054
    cifar10-lrn    1,068,298
    cifar10-bn     1,756,682   (+ 256 non-trainable BN statistics)
    fashion-cnn    1,413,834
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

# ---- LeNet-5 ------------------------------------------------------------------------------------------------------


@architecture(
    "lenet5",
    input_shape=(1, 32, 32),
    num_classes=10,
    description=(
        "LeNet-5 (LeCun et al., 1998) as in the textbook's table: 32x32 input, C1 6@5x5, S2 avg-pool 2, C3 16@5x5, "
        "S4 avg-pool 2, C5 120@5x5, F6 84, output 10; tanh throughout, softmax output. Differences from the "
        "original: the pooling layers have no trainable coefficient and bias (plain average, then tanh), C3 is "
        "connected to all six S2 maps, and the output is a dense softmax layer instead of RBF units. 61,706 params."
    ),
    reference="LeCun, Bottou, Bengio, Haffner, 'Gradient-based learning applied to document recognition', 1998",
)
def lenet5(num_classes=10, in_channels=1, input_size=None, seed=None):
    """LeNet-5 from the textbook's table (Table 14-1).

    Count (our layers): C1 6*(5*5*1+1) = 156; S2 0; C3 16*(5*5*6+1) = 2,416; S4 0; C5 120*(5*5*16+1) = 48,120;
    F6 84*(120+1) = 10,164; output 10*(84+1) = 850; total 61,706. LeCun's own network differs in three places
    (its S2/S4 have a coefficient and a bias per map: +12 and +32; its C3 uses a sparse connection table: 1,516
    instead of 2,416; its RBF output has no bias: 840 instead of 850).
    """
    num_classes, in_channels = check_counts(num_classes, in_channels)
    hw = resolve_input_size(input_size, (32, 32))

    def graph():
        inp = vk.Input((in_channels,) + hw, name="input")
        x = L.Conv2D(6, 5, activation="tanh", name="c1")(inp)
        x = L.AvgPool2D(2, name="s2")(x)
        x = L.Activation("tanh", name="s2_tanh")(x)
        x = L.Conv2D(16, 5, activation="tanh", name="c3")(x)
        x = L.AvgPool2D(2, name="s4")(x)
        x = L.Activation("tanh", name="s4_tanh")(x)
        x = L.Conv2D(120, 5, activation="tanh", name="c5")(x)
        x = L.Flatten(name="flatten")(x)
        x = L.Dense(84, activation="tanh", name="f6")(x)
        out = L.Dense(num_classes, activation="softmax", name="output")(x)
        return inp, out

    meta = classify_metadata("lenet5", in_channels, hw, num_classes)
    return build_model(graph, "lenet5", seed, meta)


# ---- the Keras tutorials' networks --------------------------------------------------------------------------------


@architecture(
    "keras-mnist-cnn",
    input_shape=(1, 28, 28),
    num_classes=10,
    description=(
        "The Keras MNIST CNN: conv 32@3x3 same relu, max-pool 2, conv 64@3x3 same relu, max-pool 2, flatten, "
        "dense 64 relu, dense 10 softmax. 220,234 params."
    ),
    reference="Elgendy, Deep Learning for Vision Systems, ch. 3.4 (the model summary of figure 3.27)",
)
def keras_mnist_cnn(num_classes=10, in_channels=1, input_size=None, seed=None):
    """Count: 320 + 18,496 + 200,768 (3,136 -> 64) + 650 = 220,234."""
    num_classes, in_channels = check_counts(num_classes, in_channels)
    hw = resolve_input_size(input_size, (28, 28))

    def graph():
        inp = vk.Input((in_channels,) + hw, name="input")
        x = L.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(inp)
        x = L.MaxPool2D(2, name="pool1")(x)
        x = L.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)
        x = L.MaxPool2D(2, name="pool2")(x)
        x = L.Flatten(name="flatten")(x)
        x = L.Dense(64, activation="relu", name="fc1")(x)
        out = L.Dense(num_classes, activation="softmax", name="predictions")(x)
        return inp, out

    meta = classify_metadata("keras-mnist-cnn", in_channels, hw, num_classes)
    return build_model(graph, "keras-mnist-cnn", seed, meta)


@architecture(
    "cifar10-small",
    input_shape=(3, 32, 32),
    num_classes=10,
    description=(
        "The small Keras CIFAR-10 CNN: three conv 2x2 same relu (16, 32, 64) each with max-pool 2, dropout 0.3, "
        "flatten, dense 500 relu, dropout 0.4, dense 10 softmax. 528,054 params."
    ),
    reference="Elgendy, Deep Learning for Vision Systems, ch. 3.7 (the model summary of figure 3.42)",
)
def cifar10_small(num_classes=10, in_channels=3, input_size=None, seed=None):
    """Count: 208 + 2,080 + 8,256 + 512,500 (1,024 -> 500) + 5,010 = 528,054."""
    num_classes, in_channels = check_counts(num_classes, in_channels)
    hw = resolve_input_size(input_size, (32, 32))

    def graph():
        inp = vk.Input((in_channels,) + hw, name="input")
        x = inp
        for i, filters in enumerate((16, 32, 64), start=1):
            x = L.Conv2D(filters, 2, padding="same", activation="relu", name=f"conv{i}")(x)
            x = L.MaxPool2D(2, name=f"pool{i}")(x)
        x = L.Dropout(0.3, seed=dropout_seed(seed, 0), name="dropout1")(x)
        x = L.Flatten(name="flatten")(x)
        x = L.Dense(500, activation="relu", name="fc1")(x)
        x = L.Dropout(0.4, seed=dropout_seed(seed, 1), name="dropout2")(x)
        out = L.Dense(num_classes, activation="softmax", name="predictions")(x)
        return inp, out

    meta = classify_metadata("cifar10-small", in_channels, hw, num_classes)
    return build_model(graph, "cifar10-small", seed, meta)


@architecture(
    "fashion-cnn",
    input_shape=(1, 28, 28),
    num_classes=10,
    description=(
        "The Keras Fashion-MNIST CNN: conv 64@7x7, max-pool 2, 2x conv 128@3x3, max-pool 2, 2x conv 256@3x3, "
        "max-pool 2 (all same, relu), flatten, dense 128 relu, dropout 0.5, dense 64 relu, dropout 0.5, "
        "dense 10 softmax. 1,413,834 params."
    ),
    reference="Geron, Hands-On Machine Learning, ch. 14 ('a simple CNN to tackle the Fashion MNIST dataset')",
)
def fashion_cnn(num_classes=10, in_channels=1, input_size=None, seed=None):
    """Count: 3,200 + 73,856 + 147,584 + 295,168 + 590,080 + 295,040 (2,304 -> 128) + 8,256 + 650 = 1,413,834."""
    num_classes, in_channels = check_counts(num_classes, in_channels)
    hw = resolve_input_size(input_size, (28, 28))

    def graph():
        inp = vk.Input((in_channels,) + hw, name="input")
        x = L.Conv2D(64, 7, padding="same", activation="relu", name="conv1")(inp)
        x = L.MaxPool2D(2, name="pool1")(x)
        for block, filters in ((2, 128), (3, 256)):
            x = L.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{block}_1")(x)
            x = L.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{block}_2")(x)
            x = L.MaxPool2D(2, name=f"pool{block}")(x)
        x = L.Flatten(name="flatten")(x)
        x = L.Dense(128, activation="relu", name="fc1")(x)
        x = L.Dropout(0.5, seed=dropout_seed(seed, 0), name="dropout1")(x)
        x = L.Dense(64, activation="relu", name="fc2")(x)
        x = L.Dropout(0.5, seed=dropout_seed(seed, 1), name="dropout2")(x)
        out = L.Dense(num_classes, activation="softmax", name="predictions")(x)
        return inp, out

    meta = classify_metadata("fashion-cnn", in_channels, hw, num_classes)
    return build_model(graph, "fashion-cnn", seed, meta)


# ---- the TensorFlow CIFAR-10 networks -----------------------------------------------------------------------------


@architecture(
    "cifar10-lrn",
    input_shape=(3, 24, 24),
    num_classes=10,
    description=(
        "The TensorFlow CIFAR-10 tutorial's CNN on 24x24 crops: conv1 64@5x5, max-pool 3x3/2, LRN, conv2 64@5x5, "
        "LRN, max-pool 3x3/2 (all same, relu), local3 384, local4 192, 10 softmax. LRN as tf.nn.lrn(4, bias=1, "
        "alpha=0.001/9, beta=0.75), i.e. size 9, alpha 0.001 in PyTorch's convention. 1,068,298 params."
    ),
    reference="TensorFlow CIFAR-10 tutorial (cifar10.py); Shukla, Machine Learning with TensorFlow, ch. 9",
)
def cifar10_lrn(num_classes=10, in_channels=3, input_size=None, seed=None):
    """Count: conv1 64*(5*5*3+1) = 4,864; conv2 64*(5*5*64+1) = 102,464; the pools ("same", stride 2) take
    24 -> 12 -> 6, so local3 sees 6*6*64 = 2,304 features: 2,304*384+384 = 885,120; local4 384*192+192 = 73,920;
    output 192*10+10 = 1,930; total 1,068,298.

    LRN: TensorFlow's ``lrn(depth_radius=4, bias=1, alpha=0.001/9, beta=0.75)`` sums squares over 2*4+1 = 9
    channels and multiplies by alpha itself; PyTorch's (ours) divides alpha by the window, so size=9, alpha=0.001.
    """
    num_classes, in_channels = check_counts(num_classes, in_channels)
    hw = resolve_input_size(input_size, (24, 24))

    def lrn(name):
        return L.LocalResponseNorm(size=9, alpha=0.001, beta=0.75, k=1.0, name=name)

    def graph():
        inp = vk.Input((in_channels,) + hw, name="input")
        x = L.Conv2D(64, 5, padding="same", activation="relu", name="conv1")(inp)
        x = L.MaxPool2D(3, strides=2, padding="same", name="pool1")(x)
        x = lrn("norm1")(x)
        x = L.Conv2D(64, 5, padding="same", activation="relu", name="conv2")(x)
        x = lrn("norm2")(x)
        x = L.MaxPool2D(3, strides=2, padding="same", name="pool2")(x)
        x = L.Flatten(name="flatten")(x)
        x = L.Dense(384, activation="relu", name="local3")(x)
        x = L.Dense(192, activation="relu", name="local4")(x)
        out = L.Dense(num_classes, activation="softmax", name="softmax_linear")(x)
        return inp, out

    meta = classify_metadata("cifar10-lrn", in_channels, hw, num_classes)
    return build_model(graph, "cifar10-lrn", seed, meta)


@architecture(
    "cifar10-bn",
    input_shape=(3, 32, 32),
    num_classes=10,
    description=(
        "The CIFAR-10 CNN with batch normalisation: two blocks of conv 64@5x5 same, batch norm, relu, max-pool 2; "
        "fc 384 relu, fc 192 relu, 10 softmax. Batch norm as the source's (moving-average decay 0.9, eps 1e-3). "
        "The source also normalises the fully connected layers' logits; this version normalises the convolutions "
        "only. 1,756,682 trainable params (+256 running statistics)."
    ),
    reference="Buduma, Fundamentals of Deep Learning, ch. 5 ('Building a Convolutional Network for CIFAR-10')",
)
def cifar10_bn(num_classes=10, in_channels=3, input_size=None, seed=None):
    """Count: conv1 4,864 (with its bias, as in the source) + bn1 128 (gamma, beta) + conv2 102,464 + bn2 128;
    the pools take 32 -> 16 -> 8, so fc1 sees 8*8*64 = 4,096 features: 4,096*384+384 = 1,573,248; fc2 73,920;
    output 1,930; trainable 1,756,682. Each BN also keeps a running mean and variance (2*64 each: 256 in all),
    not trainable."""
    num_classes, in_channels = check_counts(num_classes, in_channels)
    hw = resolve_input_size(input_size, (32, 32))

    def graph():
        inp = vk.Input((in_channels,) + hw, name="input")
        x = inp
        for i in (1, 2):
            x = L.Conv2D(64, 5, padding="same", name=f"conv{i}")(x)
            x = L.BatchNormalization(momentum=0.9, epsilon=1e-3, name=f"bn{i}")(x)
            x = L.Activation("relu", name=f"relu{i}")(x)
            x = L.MaxPool2D(2, padding="same", name=f"pool{i}")(x)
        x = L.Flatten(name="flatten")(x)
        x = L.Dense(384, activation="relu", name="fc1")(x)
        x = L.Dense(192, activation="relu", name="fc2")(x)
        out = L.Dense(num_classes, activation="softmax", name="output")(x)
        return inp, out

    meta = classify_metadata("cifar10-bn", in_channels, hw, num_classes)
    return build_model(graph, "cifar10-bn", seed, meta)
