"""VGG (Simonyan and Zisserman, 2014), laid out as torchvision's ``vgg16`` / ``vgg19`` (no batch norm):

    blocks of 3x3 "same" convolutions + relu, each block closed by a 2x2 max-pool; then torchvision's
    AdaptiveAvgPool2d((7, 7)); flatten (512*7*7 = 25,088); fc1 4096 relu, dropout 0.5; fc2 4096 relu, dropout 0.5;
    predictions 1000 (softmax here; torchvision returns the logits, keras.applications the softmax).

Layer names are keras.applications' (block1_conv1, ..., block5_pool, fc1, fc2, predictions). The parameter layout
is torchvision's, in the same order, so its state dict maps one to one.

Counts: vgg16 14,714,688 (convolutions) + 102,764,544 + 16,781,312 + 4,097,000 = 138,357,544;
vgg19 20,024,384 + the same head = 143,667,240.

The 7x7 average pool: torchvision's adaptive pool makes the classifier independent of the input size. visionkit's
layers have no adaptive pooling layer yet (the op, ``ops.adaptive_avg_pool2d``, exists), so unless
``layers.AdaptiveAvgPool2D`` is present the builder uses the exact fixed-size equivalent: nothing at all when the
features are 7x7 (224x224 input: the adaptive pool is the identity), ``AvgPool2D((i, j))`` when they are 7i x 7j
(input 448, ...), a 7x nearest ``UpSampling2D`` when they are 1x1 (inputs 32 to 63). Other sizes raise ValueError.
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

_CONFIGS = {
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}
_WIDTHS = (64, 128, 256, 512, 512)
_POOLED = 7  # torchvision's AdaptiveAvgPool2d((7, 7))


def _adaptive_avg_pool_7(x, arch, hw):
    """torchvision's AdaptiveAvgPool2d(7) on the symbolic tensor ``x`` (see the module docstring)."""
    layer = getattr(L, "AdaptiveAvgPool2D", None)
    if layer is not None:
        return layer(_POOLED, name="avgpool")(x)
    h, w = x.shape[2], x.shape[3]
    if (h, w) == (_POOLED, _POOLED):
        return x  # the adaptive pool of a 7x7 map to 7x7 is the identity
    if h % _POOLED == 0 and w % _POOLED == 0:
        return L.AvgPool2D((h // _POOLED, w // _POOLED), name="avgpool")(x)
    if (h, w) == (1, 1):
        return L.UpSampling2D(_POOLED, interpolation="nearest", name="avgpool")(x)
    raise ValueError(
        f"{arch}: input size {hw[0]}x{hw[1]} leaves a {h}x{w} feature map, which torchvision's AdaptiveAvgPool2d(7) "
        "would average with uneven windows; visionkit has no adaptive pooling layer yet, so use an input size whose "
        "feature map is 7x7, a multiple of 7 (input 224, 448, ...) or 1x1 (input 32 to 63)"
    )


def _vgg(arch, num_classes, in_channels, input_size, seed):
    num_classes, in_channels = check_counts(num_classes, in_channels)
    hw = resolve_input_size(input_size, (224, 224))
    depths = _CONFIGS[arch]

    def graph():
        inp = vk.Input((in_channels,) + hw, name="input")
        x = inp
        for b, (depth, width) in enumerate(zip(depths, _WIDTHS), start=1):
            for i in range(1, depth + 1):
                x = L.Conv2D(width, 3, padding="same", activation="relu", name=f"block{b}_conv{i}")(x)
            x = L.MaxPool2D(2, name=f"block{b}_pool")(x)
        x = _adaptive_avg_pool_7(x, arch, hw)
        x = L.Flatten(name="flatten")(x)
        x = L.Dense(4096, activation="relu", name="fc1")(x)
        x = L.Dropout(0.5, seed=dropout_seed(seed, 0), name="fc1_dropout")(x)
        x = L.Dense(4096, activation="relu", name="fc2")(x)
        x = L.Dropout(0.5, seed=dropout_seed(seed, 1), name="fc2_dropout")(x)
        out = L.Dense(num_classes, activation="softmax", name="predictions")(x)
        return inp, out

    meta = classify_metadata(arch, in_channels, hw, num_classes)
    return build_model(graph, arch, seed, meta)


_REFERENCE = (
    "Simonyan, Zisserman, 'Very Deep Convolutional Networks for Large-Scale Image Recognition', 2014; "
    "torchvision.models.vgg16 / vgg19"
)


@architecture(
    "vgg16",
    input_shape=(3, 224, 224),
    num_classes=1000,
    description=(
        "VGG-16 (configuration D) as torchvision's vgg16: 13 conv 3x3 same relu in 5 blocks with max-pool 2, "
        "7x7 average pool, fc 4096-4096 with dropout 0.5, 1000 softmax. 138,357,544 params."
    ),
    reference=_REFERENCE,
)
def vgg16(num_classes=1000, in_channels=3, input_size=None, seed=None):
    return _vgg("vgg16", num_classes, in_channels, input_size, seed)


@architecture(
    "vgg19",
    input_shape=(3, 224, 224),
    num_classes=1000,
    description=(
        "VGG-19 (configuration E) as torchvision's vgg19: 16 conv 3x3 same relu in 5 blocks with max-pool 2, "
        "7x7 average pool, fc 4096-4096 with dropout 0.5, 1000 softmax. 143,667,240 params."
    ),
    reference=_REFERENCE,
)
def vgg19(num_classes=1000, in_channels=3, input_size=None, seed=None):
    return _vgg("vgg19", num_classes, in_channels, input_size, seed)
