"""From images to the model's input: the preprocessing card of a model file, applied with OpenCV and numpy.

A model file may carry a card in its metadata::

    "preprocessing": {"input_size": [H, W], "channels": 1 | 3, "scale": 1/255, "mean": [...], "std": [...],
                      "center_crop": [H, W] or a fraction, "per_image_standardization": true}

Every key is optional (the card is the one ``visionkit.data.transforms.Preprocessing`` writes at training time;
see it for the exact meaning of each key and their order: channels, crop, resize, scale, per-image
standardisation, mean/std). What the card leaves out comes from the model itself: the input size and channels from the
shape of its input (``model.built_input_shape``, (C, H, W)); ``scale`` defaults to 1/255, ``mean`` to 0 and ``std``
to 1 (per channel, or one number for all). The pixel value the model sees is ``(pixel * scale - mean) / std``.

Images are the ``visionkit.io.read_image`` kind: uint8 H x W x C, RGB (or one channel). Whatever their channel
count, they are converted to the model's: RGB -> gray with OpenCV's luma weights, gray -> RGB by repeating, an
alpha channel dropped. A model whose spatial size is free (a fully-convolutional one, or None in its input shape)
and whose card names none gets each image at its own size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..data.transforms import crop_box, standardize_per_image
from ..io import resize


def _floats(value, channels, what):
    arr = np.asarray(value, dtype=np.float32).reshape(-1)
    if arr.size == 1:
        return np.full(channels, float(arr[0]), np.float32)
    if arr.size != channels:
        raise ValueError(f"preprocessing card: {what} has {arr.size} values for a {channels}-channel input")
    return arr


@dataclass
class Preprocessor:
    """Turns a list of HWC uint8 images into one NCHW float32 batch (``__call__``) for one model."""

    channels: int
    input_size: tuple | None  # (H, W) or None: the image's own size
    scale: float = 1.0 / 255.0
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    center_crop: object = None  # [H, W] pixels or a fraction of each side, cut before the resize
    per_image_standardization: bool = False

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise ValueError(f"preprocessing: channels must be 1 or 3, got {self.channels!r}")
        if self.input_size is not None:
            h, w = (int(v) for v in self.input_size)
            if h <= 0 or w <= 0:
                raise ValueError(f"preprocessing: input_size must be two positive ints, got {self.input_size!r}")
            self.input_size = (h, w)
        self.scale = float(self.scale)
        self.mean = _floats(0.0 if self.mean is None else self.mean, self.channels, "mean")
        self.std = _floats(1.0 if self.std is None else self.std, self.channels, "std")
        if np.any(self.std == 0):
            raise ValueError("preprocessing card: std holds a zero")
        if self.center_crop is not None and not isinstance(self.center_crop, float):
            if isinstance(self.center_crop, int) or len(self.center_crop) != 2:
                raise ValueError(f"preprocessing card: center_crop must be [H, W] or a fraction, "
                                 f"got {self.center_crop!r}")

    @classmethod
    def from_model(cls, model):
        """The model's card (``model.metadata["preprocessing"]``) completed from the model's input shape."""
        meta = getattr(model, "metadata", None) or {}
        card = meta.get("preprocessing") or {}
        if not isinstance(card, dict):
            raise ValueError(f"preprocessing card must be a mapping, got {type(card).__name__}")
        shape = getattr(model, "built_input_shape", None)
        if isinstance(shape, list):  # several inputs: the first is the image
            shape = shape[0] if shape else None
        shape = tuple(shape) if shape is not None else (None, None, None)
        c_model = shape[0] if len(shape) == 3 else None
        hw_model = tuple(shape[1:]) if len(shape) == 3 and None not in shape[1:] else None
        channels = card.get("channels", c_model if c_model is not None else 3)
        if c_model is not None and channels != c_model:
            raise ValueError(f"preprocessing card asks for {channels} channels but the model's input has {c_model}")
        size = card.get("input_size", hw_model)
        return cls(int(channels), None if size is None else tuple(size), card.get("scale", 1.0 / 255.0),
                   card.get("mean"), card.get("std"), card.get("center_crop"),
                   bool(card.get("per_image_standardization", False)))

    def input_shape(self, image=None):
        """(C, H, W) the model gets (for an image of free size, that image's)."""
        if self.input_size is not None:
            return (self.channels, *self.input_size)
        if image is None:
            return (self.channels, None, None)
        return (self.channels, *image.shape[:2])

    def convert(self, image):
        """One image to uint8 H x W x channels at the input size (no scaling yet)."""
        img = np.asarray(image)
        if img.dtype != np.uint8:
            raise TypeError(f"images must be uint8 arrays, got {img.dtype}")
        if img.ndim == 2:
            img = img[:, :, None]
        if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
            raise ValueError(f"images must be H x W x 1, 3 or 4, got shape {img.shape}")
        if img.shape[2] == 4:
            img = img[:, :, :3]
        if self.channels == 1 and img.shape[2] == 3:
            img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)[:, :, None]
        elif self.channels == 3 and img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)
        box = crop_box(img.shape[0], img.shape[1], self.center_crop)
        if box is not None:
            top, left, h, w = box
            img = img[top:top + h, left:left + w]
        if self.input_size is not None and img.shape[:2] != self.input_size:
            img = resize(img, *self.input_size)
        return img

    def to_array(self, image):
        """One image as C x H x W float32."""
        img = self.convert(image).astype(np.float32) * np.float32(self.scale)
        if self.per_image_standardization:
            img = standardize_per_image(img[None])[0]
        img = (img - self.mean) / self.std
        return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)

    def __call__(self, images):
        """A list of images -> N x C x H x W float32 (all must come out the same size: set input_size)."""
        arrays = [self.to_array(im) for im in images]
        if not arrays:
            return np.zeros((0, *self.input_shape()), np.float32) if self.input_size else np.zeros((0,), np.float32)
        return np.stack(arrays)


def preprocess(model, images):
    """``Preprocessor.from_model(model)(images)``: NCHW float32 for ``model.predict``."""
    return Preprocessor.from_model(model)(images)
