"""Layers: Keras vocabulary, PyTorch weight layouts. See ``base`` for the protocol every layer follows.

``BatchNorm`` takes PyTorch's arguments (momentum=0.1, eps=1e-5, affine); ``BatchNormalization`` takes Keras'
(momentum=0.99, epsilon=1e-3, center, scale) and translates them. The other Keras spellings are plain aliases."""

from .activation import Activation
from .base import (
    Layer,
    Parameter,
    get_layer_class,
    register_layer,
    registered_layers,
    reset_names,
)
from .conv import Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D
from .dense import Dense
from .dropout import Dropout
from .initializers import set_seed
from .merge import Add, Concat, Multiply
from .norm import BatchNorm, BatchNormalization, LocalResponseNorm
from .prelu import PReLU
from .pool import AvgPool2D, ChannelMaxPool, GlobalAvgPool2D, GlobalMaxPool2D, MaxPool2D
from .reshape import Flatten, Reshape
from .tape import no_tape, recording
from .upsample import UpSampling2D

# Keras' alternative spellings
MaxPooling2D = MaxPool2D
AveragePooling2D = AvgPool2D
GlobalAveragePooling2D = GlobalAvgPool2D
GlobalMaxPooling2D = GlobalMaxPool2D
Concatenate = Concat

__all__ = [
    "Layer",
    "Parameter",
    "register_layer",
    "get_layer_class",
    "registered_layers",
    "reset_names",
    "set_seed",
    "no_tape",
    "recording",
    "Conv2D",
    "DepthwiseConv2D",
    "SeparableConv2D",
    "Conv2DTranspose",
    "MaxPool2D",
    "AvgPool2D",
    "GlobalAvgPool2D",
    "GlobalMaxPool2D",
    "ChannelMaxPool",
    "BatchNorm",
    "LocalResponseNorm",
    "Dense",
    "Dropout",
    "Flatten",
    "Reshape",
    "Activation",
    "PReLU",
    "Add",
    "Concat",
    "Multiply",
    "UpSampling2D",
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "BatchNormalization",
    "Concatenate",
]
