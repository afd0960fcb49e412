"""MobileNetV2 (Sandler et al., 2018) as torchvision builds it, width multiplier 1.0.

Stem: 3x3/2 conv to 32 channels. Then inverted residual blocks, each
    1x1 expansion conv (t * C_in channels; absent when t == 1), BN, ReLU6
    3x3 depthwise conv (stride s), BN, ReLU6
    1x1 linear projection conv (no activation), BN
    + the input when s == 1 and C_in == C_out.
Then a 1x1 conv to 1280 channels, BN, ReLU6, global average pool, dropout 0.2, fully connected. Every conv is
bias-free; BatchNorm is PyTorch's (eps=1e-5). With width 1.0 every channel count is already a multiple of 8, so
torchvision's rounding (``_make_divisible``) changes nothing and is not needed here.

Layer names follow torchvision's modules ("features.2.conv.1.0" is block 2's depthwise conv, "classifier.1" the fc).
"""

from __future__ import annotations

import visionkit as vk
from visionkit import layers as L

from ._registry import architecture, build_model, check_counts, classify_metadata, dropout_seed, resolve_input_size

_CONV_INIT = "he_uniform"

# expansion t, output channels c, repeats n, first stride s (the paper's Table 2)
_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
_STEM_CHANNELS = 32
_LAST_CHANNELS = 1280


def conv_bn_relu6(x, filters, kernel_size, name, strides=1, depthwise=False):
    """torchvision's Conv2dNormActivation: conv (no bias; depthwise when asked), BN, ReLU6 as "<name>.0/.1/.2"."""
    pad = (kernel_size - 1) // 2
    if depthwise:
        conv = L.DepthwiseConv2D(
            kernel_size,
            strides=strides,
            padding=pad,
            use_bias=False,
            depthwise_initializer=_CONV_INIT,
            name=f"{name}.0",
        )
    else:
        conv = L.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=pad,
            use_bias=False,
            kernel_initializer=_CONV_INIT,
            name=f"{name}.0",
        )
    x = L.BatchNorm(name=f"{name}.1")(conv(x))
    return L.Activation("relu6", name=f"{name}.2")(x)


def inverted_residual(x, filters, strides, expansion, name):
    in_channels = x.shape[1]
    hidden = in_channels * expansion
    y, i = x, 0
    if expansion != 1:
        y = conv_bn_relu6(y, hidden, 1, f"{name}.conv.0")
        i = 1
    y = conv_bn_relu6(y, hidden, 3, f"{name}.conv.{i}", strides=strides, depthwise=True)
    y = L.Conv2D(filters, 1, use_bias=False, kernel_initializer="glorot_uniform", name=f"{name}.conv.{i + 1}")(
        y
    )  # linear bottleneck: no ReLU follows, so no He scaling
    y = L.BatchNorm(name=f"{name}.conv.{i + 2}")(y)
    if strides == 1 and in_channels == filters:
        y = L.Add(name=f"{name}.add")([x, y])
    return y


def mobilenet_v2_graph(inp, num_classes, dropout_seed=None):
    x = conv_bn_relu6(inp, _STEM_CHANNELS, 3, "features.0", strides=2)
    block = 1
    for t, c, n, s in _SETTINGS:
        for i in range(n):
            x = inverted_residual(x, c, s if i == 0 else 1, t, f"features.{block}")
            block += 1
    x = conv_bn_relu6(x, _LAST_CHANNELS, 1, f"features.{block}")
    x = L.GlobalAvgPool2D(name="avgpool")(x)
    x = L.Dropout(0.2, seed=dropout_seed, name="classifier.0")(x)
    return L.Dense(int(num_classes), name="classifier.1")(x)


@architecture(
    "mobilenet_v2",
    task="classify",
    input_shape=(3, 224, 224),
    num_classes=1000,
    description="MobileNetV2, width 1.0: inverted residuals with linear bottlenecks, ReLU6; 3,504,872 parameters "
    "(torchvision's count)",
    reference="Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks, CVPR 2018 "
    "(arXiv:1801.04381); torchvision",
)
def mobilenet_v2(num_classes=1000, in_channels=3, input_size=None, seed=None):
    num_classes, in_channels = check_counts(num_classes, in_channels)
    hw = resolve_input_size(input_size, (224, 224))

    def graph():
        inp = vk.Input((in_channels,) + hw, name="input")
        return inp, mobilenet_v2_graph(inp, num_classes, dropout_seed(seed, 0))

    return build_model(
        graph, "mobilenet_v2", seed=seed, metadata=classify_metadata("mobilenet_v2", in_channels, hw, num_classes)
    )
