"""The in-memory dataset every reader returns, and the one-line error a reader raises.

    Dataset        images uint8 (N, H, W, C) -- NHWC, the layout images are stored and augmented in (the loader
                   turns batches into float32 NCHW) --, labels (class ids, or per-pixel masks), class names, a name,
                   the items a reader skipped, optional regression targets
    ArrayDataset   a Dataset from arrays already in memory
    DatasetError   "<path>: <problem>", one line
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np


class DatasetError(ValueError):
    """A dataset file that cannot be used; str() is the one-line report: '<path>: <problem>'."""

    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


IGNORE_LABEL = 255  # a mask pixel that is neither trained on nor scored


class Dataset:
    """Images and labels in memory.

    images       uint8 (N, H, W, C), C = 1 or 3 (RGB)
    labels       int64 (N,), each in [0, len(class_names)); or, for segmentation, per-pixel masks (N, H, W) of
                 class ids, IGNORE_LABEL (255) marking pixels that count for nothing
    class_names  list of str, index = label
    name         a short name for reports and model provenance ("fashion-mnist/train")
    errors       the items a reader skipped (ImageError / DatasetError), empty for most readers
    targets      optional float32 (N, ...) regression targets beside the labels (a detector's box values)
    """

    def __init__(self, images, labels, class_names=None, name="", errors=None, targets=None):
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.dtype != np.uint8:
            raise TypeError(f"dataset {name!r}: images must be uint8, got {images.dtype}")
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.shape[3] not in (1, 3):
            raise ValueError(f"dataset {name!r}: images must be (N, H, W, C) with C = 1 or 3, got {images.shape}")
        if labels.ndim not in (1, 3) or labels.shape[0] != images.shape[0]:
            raise ValueError(f"dataset {name!r}: {images.shape[0]} images but labels of shape {labels.shape}")
        if labels.ndim == 3 and labels.shape[1:] != images.shape[1:3]:
            raise ValueError(f"dataset {name!r}: masks of shape {labels.shape[1:]} for images of "
                             f"{images.shape[1:3]}")
        if labels.size and not np.issubdtype(labels.dtype, np.integer) and not np.all(labels == np.round(labels)):
            raise ValueError(f"dataset {name!r}: labels must be integers")
        labels = labels.astype(np.int64)
        if labels.size and labels.min() < 0:
            raise ValueError(f"dataset {name!r}: negative label {int(labels.min())}")
        valid = labels[labels != IGNORE_LABEL] if labels.ndim == 3 else labels
        top = int(valid.max()) + 1 if valid.size else 0
        if class_names is None:
            class_names = [str(i) for i in range(top)]
        class_names = [str(c) for c in class_names]
        if top > len(class_names):
            raise ValueError(f"dataset {name!r}: label {top - 1} but only {len(class_names)} class names")
        if targets is not None:
            targets = np.ascontiguousarray(targets, dtype=np.float32)
            if targets.shape[:1] != labels.shape[:1]:
                raise ValueError(f"dataset {name!r}: {len(labels)} labels but targets of shape {targets.shape}")
        self.images = images
        self.labels = labels
        self.class_names = class_names
        self.name = name
        self.errors = list(errors or [])
        self.targets = targets

    def __len__(self):
        return int(self.labels.shape[0])

    def __getitem__(self, index):
        """``ds[i]`` -> (image HWC uint8, label int); ``ds[slice or index array]`` -> a Dataset."""
        if isinstance(index, (int, np.integer)):
            return self.images[index], int(self.labels[index])
        return self.subset(index)

    def subset(self, indices, name=None):
        """A Dataset of the given items (index array, slice or boolean mask), same class names."""
        return Dataset(self.images[indices], self.labels[indices], self.class_names,
                       self.name if name is None else name,
                       targets=None if self.targets is None else self.targets[indices])

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def image_shape(self):
        """(H, W, C) of the stored images."""
        return tuple(int(d) for d in self.images.shape[1:])

    @property
    def is_segmentation(self):
        """True when the labels are per-pixel masks."""
        return self.labels.ndim == 3

    def class_counts(self):
        """Items per class (pixels per class for masks, ignored pixels left out)."""
        labels = self.labels[self.labels != IGNORE_LABEL] if self.is_segmentation else self.labels
        return np.bincount(labels.reshape(-1), minlength=self.num_classes)

    def describe(self):
        """One line: name, count, shape, classes, skipped items."""
        h, w, c = self.image_shape
        text = f"{self.name or 'dataset'}: {len(self)} images {h}x{w}x{c}, {self.num_classes} classes"
        return text + (f", {len(self.errors)} skipped" if self.errors else "")

    def __repr__(self):
        return f"<Dataset {self.describe()}>"


class ArrayDataset(Dataset):
    """A Dataset from arrays already in memory: images uint8 (N, H, W), (N, H, W, C) or, with ``layout="NCHW"``,
    (N, C, H, W); float images in [0, 1] are scaled to uint8 (values outside it are refused)."""

    def __init__(self, images, labels, class_names=None, name="arrays", layout="NHWC"):
        images = np.asarray(images)
        if layout not in ("NHWC", "NCHW"):
            raise ValueError(f"layout must be 'NHWC' or 'NCHW', got {layout!r}")
        if layout == "NCHW":
            if images.ndim != 4:
                raise ValueError(f"NCHW images must be 4-D, got shape {images.shape}")
            images = images.transpose(0, 2, 3, 1)
        if images.dtype != np.uint8:
            if np.issubdtype(images.dtype, np.floating):
                if images.size and (np.nanmin(images) < 0 or np.nanmax(images) > 1 or np.isnan(images).any()):
                    raise ValueError("float images must lie in [0, 1]; give uint8 for other ranges")
                images = np.round(images * 255.0).astype(np.uint8)
            elif np.issubdtype(images.dtype, np.integer):
                if images.size and (images.min() < 0 or images.max() > 255):
                    raise ValueError("integer images must lie in [0, 255]")
                images = images.astype(np.uint8)
            else:
                raise TypeError(f"images must be numeric, got {images.dtype}")
        super().__init__(np.ascontiguousarray(images), labels, class_names, name)


def concatenate(datasets, name=None):
    """One Dataset from several with the same image shape and class names."""
    datasets = list(datasets)
    if not datasets:
        raise ValueError("concatenate: no datasets")
    first = datasets[0]
    for d in datasets[1:]:
        if d.image_shape != first.image_shape or d.class_names != first.class_names:
            raise ValueError(f"concatenate: {d.name!r} ({d.image_shape}) does not match {first.name!r} "
                             f"({first.image_shape}) in image shape or class names")
    return Dataset(np.concatenate([d.images for d in datasets]), np.concatenate([d.labels for d in datasets]),
                   first.class_names, first.name if name is None else name,
                   [e for d in datasets for e in d.errors])


def read_file_bytes(path):
    """The file's bytes, gunzipped when it starts with the gzip magic (whatever its name)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DatasetError(path, "no such file")
    if os.path.isdir(path):
        raise DatasetError(path, "is a directory, not a file")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DatasetError(path, f"cannot be read ({e.strerror or e})") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except EOFError:
            raise DatasetError(path, "truncated gzip file (the compressed stream ends early)") from None
        except (OSError, zlib.error) as e:
            raise DatasetError(path, f"corrupt gzip file ({e})") from None
    return data
