"""Built-in pretrained models: model files shipped in ``visionkit/builtins/models/``, registered through the
``register_models`` hook exactly as a third-party plugin registers its own.

    mtcnn   the MTCNN face detector (a bundle: P-Net, R-Net, O-Net), converted from facenet-pytorch's weights by
            scripts/convert_mtcnn.py; run it with ``visionkit.detectors.mtcnn.detect_faces``.
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
