"""Fully convolutional networks for semantic segmentation (Long, Shelhamer and Darrell, 2015), the textbook's FCN-8s
at a size a 2-core CPU trains in minutes: a class score for every pixel of a 64x64 digit image (background + 10).

    model = ARCHITECTURES["digits-fcn"].builder(seed=0)  # (N, 1, 64, 64) -> (N, 11, 64, 64) logits

The network (``digits-fcn``, FCN-8s; widths of a small VGG):

    stage 1   conv1_1 16@3x3                   pool1  /2
    stage 2   conv2_1 32@3x3                   pool2  /4
    stage 3   conv3_1, conv3_2 64@3x3          pool3  /8   -> score_pool3 (1x1, num_classes)
    stage 4   conv4_1, conv4_2 96@3x3          pool4  /16  -> score_pool4 (1x1, num_classes)
    stage 5   conv5_1, conv5_2 128@3x3         pool5  /32
    fc6 256@3x3, dropout 0.5; fc7 256@1x1, dropout 0.5 (VGG's dense layers as convolutions, FCN's fc6/fc7)
    score_fr 1x1 num_classes                                   (stride 32)
    upscore2       x2 (Conv2DTranspose k4 s2 p1) + score_pool4  (stride 16)
    upscore_pool4  x2 (Conv2DTranspose k4 s2 p1) + score_pool3  (stride 8)
    upscore8       x8 (Conv2DTranspose k16 s8 p4)              -> (N, num_classes, H, W) logits

Every 3x3 convolution is "same" with a relu; the pools are 2x2/2. The output holds logits (no softmax): train it
with a per-pixel cross-entropy, take the argmax for the mask (the segment task does).

Upsampling. The transposed convolutions start as bilinear interpolation (``bilinear_kernel``: FCN's
"upsample_filt", one kernel per channel on the diagonal of the IOHW weight, zeros elsewhere, no bias) and stay
trainable, as the textbook describes ("initialized to perform something close to linear interpolation, but since
it is a trainable layer, it will learn to do better"). With kernel 2f, stride f and padding f/2 the output is
exactly f times the input, and away from the border it equals ``ops.interpolate(mode="bilinear",
align_corners=False)``: output pixel o sits at (o + 0.5) / f - 0.5 in the input, and the kernel holds the two
weights of linear interpolation at that offset. At the border the transposed convolution sees zeros where
``interpolate`` repeats the edge pixel.

Score layers. ``score_pool4`` and ``score_pool3`` start at zero, as in FCN: the skip branches then add nothing,
so FCN-8s begins by predicting exactly what its coarser FCN-32s path predicts, and the skips learn their
refinement. ``score_fr`` is drawn at random (glorot_uniform): FCN zeroes it too, but FCN's backbone is a
pretrained VGG whose features are already good; here the backbone starts at random, and a zero ``score_fr`` on
top of zero skips would stop every gradient at the score layers during the first step.

Input size. H and W must be multiples of 32 (``input_size``; default 64x64). The x2 upsamplings give exactly
twice their input, which equals the skip branch's size only when no pooling dropped a row or column. The original
FCN pads the input by 100 pixels and crops each upsampled map with a Crop layer to match; visionkit has no
cropping layer, so the builder asks for a size that needs none (a ValueError names the nearest sizes otherwise).
Images of other sizes lose nothing: the segment task resizes each image to the model card's input size and
resizes the scores back to the image bilinearly; a caller wanting native resolution pads the image to the next
multiple of 32 (e.g. with ``visionkit.ops.pad``) and crops the output.

``digits-fcn32s`` and ``digits-fcn16s`` are the same network with fewer skips (FCN-32s: score_fr upsampled x32 in
one step; FCN-16s: one skip from pool4, then x16), for comparing the three as the paper does.
"""

from __future__ import annotations

import numpy as np

import visionkit as vk
from visionkit import layers as L
from visionkit.layers import initializers

from ._registry import (
    architecture,
    build_model,
    check_counts,
    dropout_seed,
    resolve_input_size,
)

STAGES = ((16, 1), (32, 1), (64, 2), (96, 2), (128, 2))  # (filters, convolutions) per pooling stage
FC_WIDTH = 256
DIGIT_CLASSES = ["background"] + [str(d) for d in range(10)]


# ---- bilinear upsampling kernels ----------------------------------------------------------------------------------


def bilinear_filter(kernel_size):
    """The (k, k) float32 bilinear interpolation filter of FCN's ``upsample_filt``: for upsampling by f, k = 2f
    (the centre falls between two taps), each tap weighing 1 - |distance from the centre| / f."""
    k = int(kernel_size)
    if k < 1:
        raise ValueError(f"bilinear kernel size must be >= 1, got {kernel_size!r}")
    factor = (k + 1) // 2
    center = factor - 1 if k % 2 == 1 else factor - 0.5
    taps = 1.0 - np.abs(np.arange(k, dtype=np.float64) - center) / factor
    return np.outer(taps, taps).astype(np.float32)


def bilinear_kernel(channels, kernel_size):
    """An IOHW (channels, channels, k, k) float32 Conv2DTranspose weight that upsamples each channel bilinearly
    on its own: ``bilinear_filter(k)`` on the diagonal (input c -> output c), zeros elsewhere."""
    c = int(channels)
    if c < 1:
        raise ValueError(f"channels must be >= 1, got {channels!r}")
    w = np.zeros((c, c, int(kernel_size), int(kernel_size)), np.float32)
    w[np.arange(c), np.arange(c)] = bilinear_filter(kernel_size)
    return w


def bilinear(shape, fans, rng):
    """Initializer "bilinear" (for Conv2DTranspose kernels, IOHW (C, C, k, k)): ``bilinear_kernel``. Draws
    nothing from ``rng``."""
    shape = tuple(int(d) for d in shape)
    if len(shape) != 4 or shape[0] != shape[1] or shape[2] != shape[3]:
        raise ValueError(f"the bilinear initializer takes a square IOHW (C, C, k, k) kernel, got {shape}")
    return bilinear_kernel(shape[0], shape[2])


initializers.register_initializer(bilinear, "bilinear")


def upsample(num_classes, factor, name):
    """Conv2DTranspose(num_classes, 2f, strides f, padding f/2): exactly f times bigger, bilinear to start."""
    return L.Conv2DTranspose(num_classes, 2 * factor, strides=factor, padding=factor // 2, use_bias=False,
                             kernel_initializer="bilinear", name=name)


def score(num_classes, name, initializer="zeros"):
    return L.Conv2D(num_classes, 1, kernel_initializer=initializer, name=name)


# ---- the builders -------------------------------------------------------------------------------------------------


def _check_size(hw):
    for d in hw:
        if d % 32:
            lo, hi = max(32, d // 32 * 32), (d // 32 + 1) * 32
            raise ValueError(
                f"digits-fcn: input_size {hw[0]}x{hw[1]}: each side must be a multiple of 32 (the network pools "
                f"five times and its skip connections need sizes that halve exactly; {d} -> {lo} or {hi}). "
                f"Resize or pad the images to such a size."
            )


def _fcn(variant, num_classes, in_channels, input_size, seed):
    num_classes, in_channels = check_counts(num_classes, in_channels)
    hw = resolve_input_size(input_size, (64, 64))
    _check_size(hw)
    arch = {8: "digits-fcn", 16: "digits-fcn16s", 32: "digits-fcn32s"}[variant]

    def graph():
        inp = vk.Input((in_channels,) + hw, name="input")
        x, pools = inp, []
        for stage, (filters, convs) in enumerate(STAGES, start=1):
            for k in range(1, convs + 1):
                x = L.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{stage}_{k}")(x)
            x = L.MaxPool2D(2, name=f"pool{stage}")(x)
            pools.append(x)
        x = L.Conv2D(FC_WIDTH, 3, padding="same", activation="relu", name="fc6")(x)
        x = L.Dropout(0.5, seed=dropout_seed(seed, 0), name="drop6")(x)
        x = L.Conv2D(FC_WIDTH, 1, activation="relu", name="fc7")(x)
        x = L.Dropout(0.5, seed=dropout_seed(seed, 1), name="drop7")(x)
        x = score(num_classes, "score_fr", "glorot_uniform")(x)  # stride 32
        if variant == 32:
            return inp, upsample(num_classes, 32, "upscore32")(x)
        x = upsample(num_classes, 2, "upscore2")(x)  # stride 16
        x = L.Add(name="fuse_pool4")([x, score(num_classes, "score_pool4")(pools[3])])
        if variant == 16:
            return inp, upsample(num_classes, 16, "upscore16")(x)
        x = upsample(num_classes, 2, "upscore_pool4")(x)  # stride 8
        x = L.Add(name="fuse_pool3")([x, score(num_classes, "score_pool3")(pools[2])])
        return inp, upsample(num_classes, 8, "upscore8")(x)

    meta = {
        "architecture": arch,
        "task": "segment",
        "input_shape": [in_channels, hw[0], hw[1]],
        "num_classes": num_classes,
    }
    if num_classes == len(DIGIT_CLASSES):
        meta["class_names"] = list(DIGIT_CLASSES)
        meta["background_class"] = 0
    return build_model(graph, arch, seed, meta)


_REFERENCE = (
    "Long, Shelhamer, Darrell, 'Fully Convolutional Networks for Semantic Segmentation', CVPR 2015; Geron, "
    "Hands-On Machine Learning, ch. 14 ('Semantic Segmentation', figure 14-28)"
)
_BACKBONE = (
    "backbone conv 16, 32, 2x64, 2x96, 2x128 (3x3 same relu, max-pool 2 after each stage), fc6 256@3x3 and "
    "fc7 256@1x1 with dropout 0.5, 1x1 class scores"
)


@architecture(
    "digits-fcn",
    task="segment",
    input_shape=(1, 64, 64),
    num_classes=11,
    description=(
        "FCN-8s for digit segmentation (background + 10 digits), small enough to train on a CPU: "
        + _BACKBONE
        + "; score_fr upsampled x2 plus pool4's scores, x2 plus pool3's scores, then x8 to the input size "
        "(transposed convolutions initialised to bilinear interpolation, trainable). Logits (N, classes, H, W); "
        "H and W multiples of 32. 857,377 params."
    ),
    reference=_REFERENCE,
)
def digits_fcn(num_classes=11, in_channels=1, input_size=None, seed=None):
    """FCN-8s (see the module docstring). Count with 11 classes: backbone 160 + 4,640 + 18,496 + 36,928 + 55,392
    + 83,040 + 110,720 + 147,584 = 456,960; fc6 295,168; fc7 65,792; score_fr 2,827, score_pool4 1,067,
    score_pool3 715; upscore2 and upscore_pool4 11*11*4*4 = 1,936 each, upscore8 11*11*16*16 = 30,976; total
    857,377 (FCN-16s 947,654 and FCN-32s 1,316,363: their single big upsampling kernels, 32x32 and 64x64, cost
    more than the skips save)."""
    return _fcn(8, num_classes, in_channels, input_size, seed)


@architecture(
    "digits-fcn16s",
    task="segment",
    input_shape=(1, 64, 64),
    num_classes=11,
    description=(
        "FCN-16s for digit segmentation: digits-fcn with one skip (score_fr x2 plus pool4's scores, then x16). "
        "Logits (N, classes, H, W); H and W multiples of 32. 947,654 params."
    ),
    reference=_REFERENCE,
)
def digits_fcn16s(num_classes=11, in_channels=1, input_size=None, seed=None):
    return _fcn(16, num_classes, in_channels, input_size, seed)


@architecture(
    "digits-fcn32s",
    task="segment",
    input_shape=(1, 64, 64),
    num_classes=11,
    description=(
        "FCN-32s for digit segmentation: digits-fcn without skips (score_fr upsampled x32 in one step). "
        "Logits (N, classes, H, W); H and W multiples of 32. 1,316,363 params."
    ),
    reference=_REFERENCE,
)
def digits_fcn32s(num_classes=11, in_channels=1, input_size=None, seed=None):
    return _fcn(32, num_classes, in_channels, input_size, seed)
