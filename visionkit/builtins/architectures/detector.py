"""The textbook's sliding-window detector as a network: a small classifier with a background class and a
box-regression head, trained on windows, then slid over an image pyramid by the detect task (one
fully-convolutional pass per level, ``visionkit.tasks.sliding``).

    digits-detector   28x28 gray windows -> [11 class probabilities (digits 0-9, background), 4 box values]

    conv1 32@3x3 valid relu -> pool 2 -> conv2 64@3x3 valid relu -> pool 2 -> conv3 128@3x3 valid relu
    -> flatten (128x3x3) -> fc 128 relu -> classes: dense 11 softmax
                                        -> box:     dense 4 (centre x, y as fractions of the window; square roots
                                                    of width and height as fractions of the window's)

Every convolution is "valid", so the window scores of the fully-convolutional pass equal the classifier's on each
crop exactly (a "same" convolution would see zeros at a lone window's edge where the image has pixels). Window
stride: 4 pixels (the two pools).

The card's detect defaults (``DETECT_DEFAULTS``, ``visionkit.tasks.sliding`` explains each): a digit is seen by
dozens of windows over neighbouring positions and pyramid levels, so plain per-class NMS leaves many boxes per
digit (other classes, parts of it, other levels) and lone false alarms at full score. Digits on a page do not
overlap, so suppression is class-agnostic at IoU 0.3; a box is scored by the windows that agree on it (votes 3),
placed at their weighted mean (merge), and dropped when it lies mostly inside a better box (contain 0.4). Chosen
on 100 test-split scenes of another seed (digit-scenes:n=100,seed=1), not on the scenes `visionkit eval` scores.
"""

from __future__ import annotations

import visionkit as vk
from visionkit import layers as L

from ._registry import architecture, build_model, check_counts, resolve_input_size

DIGIT_DETECTOR_CLASSES = [str(d) for d in range(10)] + ["background"]
DETECT_DEFAULTS = {"conf": 0.5, "iou": 0.3, "agnostic": True, "votes": 3.0, "merge": True, "contain": 0.4}


@architecture(
    "digits-detector",
    task="detect",
    input_shape=(1, 28, 28),
    num_classes=11,
    description=(
        "Sliding-window digit detector: a 3-conv classifier of 28x28 windows (digits 0-9 + background, softmax) "
        "with a second dense head regressing the digit's box (centre, sqrt width, sqrt height), all convolutions "
        "valid so the FCN pass is exact. 242,191 params."
    ),
    reference="Elgendy, Deep Learning for Vision Systems, ch. 7 (sliding windows, box regression with sqrt w, h)",
)
def digits_detector(num_classes=11, in_channels=1, input_size=None, seed=None):
    num_classes, in_channels = check_counts(num_classes, in_channels)
    hw = resolve_input_size(input_size, (28, 28))

    def graph():
        inp = vk.Input((in_channels,) + hw, name="input")
        x = L.Conv2D(32, 3, activation="relu", name="conv1")(inp)
        x = L.MaxPool2D(2, name="pool1")(x)
        x = L.Conv2D(64, 3, activation="relu", name="conv2")(x)
        x = L.MaxPool2D(2, name="pool2")(x)
        x = L.Conv2D(128, 3, activation="relu", name="conv3")(x)
        x = L.Flatten(name="flatten")(x)
        x = L.Dense(128, activation="relu", name="fc")(x)
        classes = L.Dense(num_classes, activation="softmax", name="classes")(x)
        box = L.Dense(4, name="box")(x)
        return inp, [classes, box]

    meta = {"architecture": "digits-detector", "task": "detect", "input_shape": [in_channels, *hw],
            "num_classes": num_classes, "detect": dict(DETECT_DEFAULTS)}
    if num_classes == len(DIGIT_DETECTOR_CLASSES):
        meta.update(class_names=list(DIGIT_DETECTOR_CLASSES), background_class=num_classes - 1)
    return build_model(graph, "digits-detector", seed, meta)
