"""Xception (Chollet, 2017) as keras.applications builds it: 299x299 input, Keras-style BatchNormalization
(momentum 0.99, epsilon 1e-3), depthwise separable convolutions without bias.

    entry flow   two plain 3x3 convs (32/2, 64; "valid" padding), then three blocks (128, 256, 728 channels) of
                 [ReLU] sepconv-BN, ReLU, sepconv-BN, 3x3/2 max-pool ("same"), + a 1x1/2 conv-BN shortcut
                 (the first block has no leading ReLU: its input has just been through one)
    middle flow  eight blocks of three (ReLU, 728 sepconv, BN), + the identity
    exit flow    [ReLU, sepconv 728, BN, ReLU, sepconv 1024, BN, max-pool] + a 1x1/2 conv-BN shortcut,
                 then sepconv 1536, BN, ReLU, sepconv 2048, BN, ReLU, global average pool, fully connected
Every separable conv is 3x3 "same"; the shortcut convs are 1x1, stride 2, "same", bias-free.

The head ends in a softmax, as keras.applications' does (its ``classifier_activation="softmax"``); the
torchvision-derived builders of this package (resnet, googlenet, mobilenet_v2, se_resnet50) return logits, as
torchvision's do.
Layer names are Keras' ("block2_sepconv1", "block2_sepconv1_bn", "block14_sepconv2_act", "predictions"); Keras
leaves the shortcut layers with automatic names, here they are "block2_residual" / "block2_residual_bn".
Weights use PyTorch layouts (a Keras depthwise kernel (kh, kw, C, 1) is (C, 1, kh, kw) here).
"""

from __future__ import annotations

import visionkit as vk
from visionkit import layers as L

from ._registry import architecture, build_model, check_counts, classify_metadata, resolve_input_size


def _sep_bn(x, filters, name):
    x = L.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=name)(x)
    return L.BatchNormalization(name=f"{name}_bn")(x)


def _residual(x, filters, block):
    r = L.Conv2D(filters, 1, strides=2, padding="same", use_bias=False, name=f"{block}_residual")(x)
    return L.BatchNormalization(name=f"{block}_residual_bn")(r)


def _entry_block(x, filters, block, pre_activation=True):
    residual = _residual(x, filters, block)
    if pre_activation:
        x = L.Activation("relu", name=f"{block}_sepconv1_act")(x)
    x = _sep_bn(x, filters, f"{block}_sepconv1")
    x = L.Activation("relu", name=f"{block}_sepconv2_act")(x)
    x = _sep_bn(x, filters, f"{block}_sepconv2")
    x = L.MaxPool2D(3, strides=2, padding="same", name=f"{block}_pool")(x)
    return L.Add(name=f"{block}_add")([x, residual])


def xception_graph(inp, num_classes):
    x = L.Conv2D(32, 3, strides=2, use_bias=False, name="block1_conv1")(inp)
    x = L.BatchNormalization(name="block1_conv1_bn")(x)
    x = L.Activation("relu", name="block1_conv1_act")(x)
    x = L.Conv2D(64, 3, use_bias=False, name="block1_conv2")(x)
    x = L.BatchNormalization(name="block1_conv2_bn")(x)
    x = L.Activation("relu", name="block1_conv2_act")(x)

    x = _entry_block(x, 128, "block2", pre_activation=False)
    x = _entry_block(x, 256, "block3")
    x = _entry_block(x, 728, "block4")

    for i in range(5, 13):
        block = f"block{i}"
        y = x
        for j in (1, 2, 3):
            y = L.Activation("relu", name=f"{block}_sepconv{j}_act")(y)
            y = _sep_bn(y, 728, f"{block}_sepconv{j}")
        x = L.Add(name=f"{block}_add")([y, x])

    residual = _residual(x, 1024, "block13")
    x = L.Activation("relu", name="block13_sepconv1_act")(x)
    x = _sep_bn(x, 728, "block13_sepconv1")
    x = L.Activation("relu", name="block13_sepconv2_act")(x)
    x = _sep_bn(x, 1024, "block13_sepconv2")
    x = L.MaxPool2D(3, strides=2, padding="same", name="block13_pool")(x)
    x = L.Add(name="block13_add")([x, residual])

    x = _sep_bn(x, 1536, "block14_sepconv1")
    x = L.Activation("relu", name="block14_sepconv1_act")(x)
    x = _sep_bn(x, 2048, "block14_sepconv2")
    x = L.Activation("relu", name="block14_sepconv2_act")(x)
    x = L.GlobalAvgPool2D(name="avg_pool")(x)
    return L.Dense(int(num_classes), activation="softmax", name="predictions")(x)


@architecture(
    "xception",
    task="classify",
    input_shape=(3, 299, 299),
    num_classes=1000,
    description="Xception: depthwise separable convolutions with residual connections; 22,855,952 trainable "
    "parameters, 22,910,480 in all (keras.applications' counts)",
    reference="Chollet, Xception: Deep Learning with Depthwise Separable Convolutions, CVPR 2017 "
    "(arXiv:1610.02357); keras.applications",
)
def xception(num_classes=1000, in_channels=3, input_size=None, seed=None):
    num_classes, in_channels = check_counts(num_classes, in_channels)
    hw = resolve_input_size(input_size, (299, 299))

    def graph():
        inp = vk.Input((in_channels,) + hw, name="input")
        return inp, xception_graph(inp, num_classes)

    return build_model(
        graph, "xception", seed=seed, metadata=classify_metadata("xception", in_channels, hw, num_classes)
    )
