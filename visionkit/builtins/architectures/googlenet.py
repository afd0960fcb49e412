"""GoogLeNet / Inception v1 (Szegedy et al., 2014) as torchvision builds it, without the auxiliary classifiers.

Every convolution is a "BasicConv2d": a bias-free convolution, BatchNorm (eps=0.001) and ReLU (the BatchNorm is
torchvision's addition to the paper's network). The max-pools round up (ceil_mode=True). An inception block runs
four branches side by side and concatenates them along the channels:

    1x1 | 1x1 -> 3x3 | 1x1 -> "5x5" | 3x3/1 max-pool -> 1x1

The third branch uses a 3x3 kernel, as torchvision's GoogLeNet does (its pretrained weights were trained that
way; the paper says 5x5). Head: global average pool, dropout 0.2, fully connected.

torchvision's ``transform_input`` (a fixed per-channel affine remapping ImageNet-normalised input, used only with
its pretrained weights) is not part of the graph: preprocessing belongs to a model's card.

Layer names follow torchvision's modules ("inception3a.branch2.1.conv", "inception3a.branch2.1.bn", "fc").
"""

from __future__ import annotations

import visionkit as vk
from visionkit import layers as L

from ._registry import architecture, build_model, check_counts, classify_metadata, dropout_seed, resolve_input_size

_CONV_INIT = "he_uniform"

# name: (1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool proj)
_INCEPTIONS = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}


def basic_conv(x, filters, kernel_size, name, strides=1, padding=0):
    """torchvision's BasicConv2d: conv (no bias), BatchNorm(eps=0.001), ReLU; layers "<name>.conv/.bn/.relu"."""
    x = L.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=False,
        kernel_initializer=_CONV_INIT,
        name=f"{name}.conv",
    )(x)
    x = L.BatchNorm(eps=0.001, name=f"{name}.bn")(x)
    return L.Activation("relu", name=f"{name}.relu")(x)


def inception(x, name, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
    b1 = basic_conv(x, ch1x1, 1, f"{name}.branch1")
    b2 = basic_conv(x, ch3x3red, 1, f"{name}.branch2.0")
    b2 = basic_conv(b2, ch3x3, 3, f"{name}.branch2.1", padding=1)
    b3 = basic_conv(x, ch5x5red, 1, f"{name}.branch3.0")
    b3 = basic_conv(b3, ch5x5, 3, f"{name}.branch3.1", padding=1)
    b4 = L.MaxPool2D(3, strides=1, padding=1, ceil_mode=True, name=f"{name}.branch4.0")(x)
    b4 = basic_conv(b4, pool_proj, 1, f"{name}.branch4.1")
    return L.Concat(name=f"{name}.concat")([b1, b2, b3, b4])


def googlenet_graph(inp, num_classes, dropout_seed=None):
    x = basic_conv(inp, 64, 7, "conv1", strides=2, padding=3)
    x = L.MaxPool2D(3, strides=2, ceil_mode=True, name="maxpool1")(x)
    x = basic_conv(x, 64, 1, "conv2")
    x = basic_conv(x, 192, 3, "conv3", padding=1)
    x = L.MaxPool2D(3, strides=2, ceil_mode=True, name="maxpool2")(x)
    for name in ("inception3a", "inception3b"):
        x = inception(x, name, *_INCEPTIONS[name])
    x = L.MaxPool2D(3, strides=2, ceil_mode=True, name="maxpool3")(x)
    for name in ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e"):
        x = inception(x, name, *_INCEPTIONS[name])
    x = L.MaxPool2D(2, strides=2, ceil_mode=True, name="maxpool4")(x)
    for name in ("inception5a", "inception5b"):
        x = inception(x, name, *_INCEPTIONS[name])
    x = L.GlobalAvgPool2D(name="avgpool")(x)
    x = L.Dropout(0.2, seed=dropout_seed, name="dropout")(x)
    return L.Dense(int(num_classes), name="fc")(x)


@architecture(
    "googlenet",
    task="classify",
    input_shape=(3, 224, 224),
    num_classes=1000,
    description="GoogLeNet (Inception v1) with BatchNorm, no auxiliary classifiers; 6,624,904 parameters "
    "(torchvision's count)",
    reference="Szegedy et al., Going Deeper with Convolutions, CVPR 2015 (arXiv:1409.4842); torchvision",
)
def googlenet(num_classes=1000, in_channels=3, input_size=None, seed=None):
    num_classes, in_channels = check_counts(num_classes, in_channels)
    hw = resolve_input_size(input_size, (224, 224))

    def graph():
        inp = vk.Input((in_channels,) + hw, name="input")
        return inp, googlenet_graph(inp, num_classes, dropout_seed(seed, 0))

    return build_model(
        graph, "googlenet", seed=seed, metadata=classify_metadata("googlenet", in_channels, hw, num_classes)
    )
