"""Preprocessing as a card: the textbook steps from images to network input, saved with the model.

A ``Preprocessing`` object holds the same keys as the ``"preprocessing"`` card of a model file (see
``visionkit.tasks.preprocess``) plus two more, and ``to_card()`` returns that dict::

    input_size                 [H, W] the network sees (resize with OpenCV: area when shrinking, bilinear growing)
    channels                   1 (grayscale, OpenCV's luma weights) or 3 (RGB; gray repeated); None: keep
    scale                      pixel multiplier, default 1/255 (uint8 -> [0, 1])
    mean, std                  per channel (or one number), applied as (x - mean) / std; ``fit(dataset)`` computes
                               them from a dataset
    center_crop                [H, W] pixels, or a fraction in (0, 1] of each side, cut from the image's centre
                               before the resize (an image smaller than the crop is cut as far as it goes)
    per_image_standardization  TensorFlow's ``per_image_standardization``: each image becomes
                               (x - mean) / max(std, 1 / sqrt(N)), mean and std over all its N values (H * W * C)

Order of operations: channels -> center crop -> resize to input_size -> float32 * scale -> per-image
standardization -> (x - mean) / std -> transpose to C x H x W. For a card without the two extra keys the numbers
are those of ``visionkit.tasks.preprocess.Preprocessor``.

``Compose([augment, preprocessing])`` chains steps called as ``step(images, rng)``: the loader's ``transform``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..io import resize

__all__ = ["Compose", "Preprocessing", "crop_box", "standardize_per_image"]


def _per_channel(value, what):
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"preprocessing: {what} must be finite numbers, got {value!r}")
    return [float(v) for v in arr]


def standardize_per_image(x):
    """TensorFlow's per_image_standardization on float N x H x W x C: per image, (x - mean) / max(std,
    1/sqrt(H*W*C))."""
    x = np.asarray(x, dtype=np.float32)
    n = x[0].size if len(x) else 1
    flat = x.reshape(len(x), -1).astype(np.float64)
    mean = flat.mean(axis=1)
    std = np.maximum(flat.std(axis=1), 1.0 / math.sqrt(n))
    shape = (len(x),) + (1,) * (x.ndim - 1)
    return ((x - mean.reshape(shape)) / std.reshape(shape)).astype(np.float32)


def crop_box(h, w, center_crop):
    """(top, left, height, width) of the ``center_crop`` ([H, W] pixels or a fraction of each side) of an h x w
    image, or None for no crop; a crop larger than the image is cut as far as the image goes."""
    if center_crop is None:
        return None
    if isinstance(center_crop, float):
        ch, cw = max(1, round(h * center_crop)), max(1, round(w * center_crop))
    else:
        ch, cw = min(h, int(center_crop[0])), min(w, int(center_crop[1]))
    return (h - ch) // 2, (w - cw) // 2, ch, cw


class Preprocessing:
    """The preprocessing card as an object: ``__call__(images)`` -> float32 NCHW, ``fit(dataset)``,
    ``to_card()`` / ``from_card(card)``. See the module docstring for the keys and their order."""

    def __init__(self, input_size=None, channels=None, scale=1.0 / 255.0, mean=None, std=None, center_crop=None,
                 per_image_standardization=False):
        if input_size is not None:
            input_size = tuple(int(v) for v in input_size)
            if len(input_size) != 2 or min(input_size) <= 0:
                raise ValueError(f"preprocessing: input_size must be two positive ints, got {input_size!r}")
        if channels is not None and channels not in (1, 3):
            raise ValueError(f"preprocessing: channels must be 1, 3 or None, got {channels!r}")
        if center_crop is not None:
            if isinstance(center_crop, (int, float)) and not isinstance(center_crop, bool):
                if not 0 < float(center_crop) <= 1:
                    raise ValueError(f"preprocessing: a center_crop fraction must be in (0, 1], got {center_crop}")
                center_crop = float(center_crop)
            else:
                center_crop = tuple(int(v) for v in center_crop)
                if len(center_crop) != 2 or min(center_crop) <= 0:
                    raise ValueError(f"preprocessing: center_crop must be [H, W] or a fraction, got {center_crop!r}")
        self.input_size = input_size
        self.channels = channels
        self.scale = float(scale)
        self.mean = _per_channel(mean, "mean")
        self.std = _per_channel(std, "std")
        if self.std is not None and any(s == 0 for s in self.std):
            raise ValueError("preprocessing: std holds a zero")
        self.center_crop = center_crop
        self.per_image_standardization = bool(per_image_standardization)

    # ------------------------------------------------------------------ card

    def to_card(self):
        """The dict for model metadata["preprocessing"] (JSON types only; keys left at their defaults omitted,
        except scale)."""
        card = {}
        if self.input_size is not None:
            card["input_size"] = list(self.input_size)
        if self.channels is not None:
            card["channels"] = self.channels
        card["scale"] = self.scale
        if self.mean is not None:
            card["mean"] = list(self.mean)
        if self.std is not None:
            card["std"] = list(self.std)
        if self.center_crop is not None:
            card["center_crop"] = (self.center_crop if isinstance(self.center_crop, float)
                                   else list(self.center_crop))
        if self.per_image_standardization:
            card["per_image_standardization"] = True
        return card

    @classmethod
    def from_card(cls, card):
        known = {"input_size", "channels", "scale", "mean", "std", "center_crop", "per_image_standardization"}
        unknown = set(card) - known
        if unknown:
            raise ValueError(f"preprocessing card: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        return cls(**card)

    def __eq__(self, other):
        return isinstance(other, Preprocessing) and self.to_card() == other.to_card()

    def __repr__(self):
        return f"Preprocessing({', '.join(f'{k}={v!r}' for k, v in self.to_card().items())})"

    # ------------------------------------------------------------------ applying

    def _crop_box(self, h, w):
        return crop_box(h, w, self.center_crop)

    def convert(self, images):
        """uint8 (or float) N x H x W x C (or a list of H x W x C images) -> N x H' x W' x C' at the input size
        and channel count, same dtype: the geometric and colour-space part, before any arithmetic."""
        if isinstance(images, np.ndarray) and images.ndim == 4:
            batch = images
            if batch.shape[3] == 4:
                batch = batch[..., :3]
            batch = self._convert_channels(batch)
            box = self._crop_box(*batch.shape[1:3])
            if box is not None:
                t, l, ch, cw = box
                batch = batch[:, t:t + ch, l:l + cw]
            if self.input_size is not None and batch.shape[1:3] != self.input_size:
                batch = np.stack([resize(im, *self.input_size) for im in batch]) if len(batch) else \
                    np.zeros((0, *self.input_size, batch.shape[3]), batch.dtype)
            return batch
        out = [self.convert(np.asarray(im)[None] if np.ndim(im) == 3 else np.asarray(im)[None, :, :, None])[0]
               for im in images]
        if out and any(o.shape != out[0].shape for o in out):
            raise ValueError("preprocessing: images come out in different sizes; set input_size")
        return np.stack(out) if out else np.zeros((0, 1, 1, self.channels or 3), np.uint8)

    def _convert_channels(self, batch):
        c = batch.shape[3]
        if self.channels is None or self.channels == c:
            return batch
        if c not in (1, 3):
            raise ValueError(f"preprocessing: images must have 1, 3 or 4 channels, got {c}")
        if self.channels == 3:
            return np.repeat(batch, 3, axis=3)
        n, h, w, _ = batch.shape
        if n == 0:
            return batch[..., :1]
        flat = np.ascontiguousarray(batch).reshape(n * h, w, 3)  # one OpenCV call for the whole batch
        if flat.dtype not in (np.uint8, np.uint16, np.float32):
            flat = flat.astype(np.float32)
        return cv2.cvtColor(flat, cv2.COLOR_RGB2GRAY).reshape(n, h, w, 1)

    def normalise(self, batch):
        """N x H x W x C (after ``convert``) -> float32, scaled, standardised, mean/std applied (still NHWC)."""
        x = self.normalise_without_mean_std(batch)
        c = x.shape[3]
        if self.mean is not None:
            x = x - self._vector(self.mean, c, "mean")
        if self.std is not None:
            x = x / self._vector(self.std, c, "std")
        return x

    @staticmethod
    def _vector(values, c, what):
        if len(values) == 1:
            return np.float32(values[0])
        if len(values) != c:
            raise ValueError(f"preprocessing: {what} has {len(values)} values for {c}-channel images")
        return np.asarray(values, np.float32)

    def __call__(self, images, rng=None):
        """images (uint8 N x H x W x C, or a list of H x W x C) -> float32 N x C x H x W. ``rng`` is ignored (the
        signature of a loader transform)."""
        x = self.normalise(self.convert(images))
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)

    def fit(self, dataset, batch_size=2048):
        """Set ``mean`` and ``std`` (per channel) to those of ``dataset``'s images after every earlier step
        (channels, crop, resize, scale, per-image standardization); population std. Returns self."""
        images = dataset.images if hasattr(dataset, "images") else np.asarray(dataset)
        if len(images) == 0:
            raise ValueError("preprocessing: cannot fit on an empty dataset")
        total = total_sq = None
        count = 0
        for start in range(0, len(images), batch_size):
            x = self.normalise_without_mean_std(self.convert(images[start:start + batch_size]))
            flat = x.reshape(-1, x.shape[3]).astype(np.float64)
            s, sq = flat.sum(axis=0), np.square(flat).sum(axis=0)
            total = s if total is None else total + s
            total_sq = sq if total_sq is None else total_sq + sq
            count += flat.shape[0]
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
        std[std == 0] = 1.0
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        return self

    def normalise_without_mean_std(self, batch):
        """float32 * scale, then per-image standardization if set (what ``fit`` measures)."""
        x = np.asarray(batch).astype(np.float32) * np.float32(self.scale)
        return standardize_per_image(x) if self.per_image_standardization else x


class Compose:
    """Steps applied in order, each called as ``step(images, rng)`` with the batch's generator: typically
    ``Compose([Augment("flip,crop"), Preprocessing(...)])`` as a DataLoader transform."""

    def __init__(self, steps):
        self.steps = [s for s in steps if s is not None]

    def __call__(self, images, rng=None):
        for step in self.steps:
            images = step(images, rng)
        return images

    def __repr__(self):
        return f"Compose({self.steps!r})"
