"""Detection ground truth on disk: a folder of images with boxes in one of two simple formats.

JSON (``<folder>/annotations.json``)::

    {
      "format": "visionkit-detection", "version": 1, "name": "digit-scenes/test",
      "class_names": ["0", "1", ...],
      "images": [
        {"file": "images/000000.png", "width": 320, "height": 240,
         "boxes": [[x1, y1, x2, y2], ...], "classes": [3, 7, ...]},
        ...
      ]
    }

    file         the image, relative to the folder holding annotations.json
    boxes        pixel corners, x1 < x2 and y1 < y2 (floats or ints)
    classes      one per box: an index into class_names, or a class name (added to class_names if new)
    class_names  at the top; an image entry may carry its own "class_names", to which its integer classes then
                 refer (they are mapped onto the top-level list by name)
    width/height written for information, not read; "format", "version" and "name" are optional when reading

YOLO (``<folder>/images/<stem>.<ext>``, ``<folder>/labels/<stem>.txt``, ``<folder>/classes.txt``): one line per
box, ``class cx cy w h`` with the centre and size as fractions of the image's width and height (a sixth column, a
confidence, is ignored); class names one per line in ``classes.txt`` (without it, "0", "1", ... up to the largest
class seen). An image without a label file has no boxes. Images may also lie in the folder itself, without
``images/``.

``read_detection_folder(path)`` tells the formats apart by ``annotations.json`` (JSON) or ``labels/`` (YOLO). A
folder with ``train/`` and ``test/`` subfolders (each one such folder) gives one split per call. An image that
cannot be read, or whose annotation is broken, is skipped and its one-line error kept in ``dataset.errors``; a
folder that holds no annotations at all, or a JSON file that does not parse, raises DatasetError.

``write_detection_folder(dataset, path, format="json" | "yolo")`` writes images (PNG) and annotations, each file
atomically (written to a temporary file, then renamed).
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..io import (
    IMAGE_EXTENSIONS,
    ImageError,
    read_image,
    write_bytes_atomically,
    write_image,
    write_text,
)
from .readers import DatasetError
from .synthetic import DetectionDataset

__all__ = ["ANNOTATIONS_FILE", "read_detection_folder", "write_detection_folder"]

ANNOTATIONS_FILE = "annotations.json"
FORMATS = ("json", "yolo")


def _read(path, channels):
    """read_image, keeping a grayscale file one channel when ``channels`` is None (the file decides)."""
    if channels is not None:
        return read_image(path, channels=channels)
    img = read_image(path, channels=3)
    if np.array_equal(img[:, :, 0], img[:, :, 1]) and np.array_equal(img[:, :, 0], img[:, :, 2]):
        return np.ascontiguousarray(img[:, :, :1])
    return img


def read_detection_folder(path, split=None, channels=None, name=None):
    """A DetectionDataset from a folder of images with JSON or YOLO annotations (see the module doc).

    split     "train" / "test": the folder's ``<split>/`` subfolder when it has one; without one, "train" reads
              the folder itself and any other split is a DatasetError (no such split)
    channels  1 or 3 to convert every image; None keeps gray files one channel and colour files three
    """
    path = os.fspath(path)
    if os.path.isfile(path) and path.endswith(".json"):
        return _read_json(path, channels, name)
    if not os.path.isdir(path):
        raise DatasetError(path, "no such directory" if not os.path.exists(path) else "not a directory")
    if split is not None:
        sub = os.path.join(path, split)
        if os.path.isdir(sub):
            path = sub
        elif split != "train":
            raise DatasetError(path, f"no {split}/ subfolder (no {split} split)")
    if name is None:
        base = os.path.basename(os.path.abspath(path))
        name = base if split is None or base == split else f"{base}/{split}"
    js = os.path.join(path, ANNOTATIONS_FILE)
    if os.path.isfile(js):
        return _read_json(js, channels, name)
    if os.path.isdir(os.path.join(path, "labels")):
        return _read_yolo(path, channels, name)
    raise DatasetError(path, f"no detection annotations (looked for {ANNOTATIONS_FILE} and labels/)")


def _read_json(file, channels, name):
    folder = os.path.dirname(os.path.abspath(file))
    try:
        with open(file, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise DatasetError(file, f"cannot be read ({e.strerror or e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(file, f"not valid JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise DatasetError(file, 'expected an object with an "images" list')
    names = doc.get("class_names", [])
    if not isinstance(names, list):
        raise DatasetError(file, '"class_names" must be a list of names')
    names = [str(n) for n in names]
    images, boxes, classes, files, errors = [], [], [], [], []
    for k, entry in enumerate(doc["images"]):
        where = f"{file} images[{k}]"
        try:
            rel, b, c = _json_entry(entry, names, where)
        except DatasetError as e:
            errors.append(e)
            continue
        try:
            img = _read(os.path.join(folder, rel), channels)
        except ImageError as e:
            errors.append(e)
            continue
        images.append(img)
        boxes.append(b)
        classes.append(c)
        files.append(rel)
    top = max([int(c.max()) + 1 for c in classes if c.size] + [0])
    names += [str(i) for i in range(len(names), top)]  # integer classes without names: "0", "1", ...
    if name is None:
        name = str(doc.get("name") or os.path.basename(folder))
    return DetectionDataset(images, boxes, classes, names, name, files=files, errors=errors)


def _json_entry(entry, names, where):
    """(file, boxes (k, 4), classes (k,)) of one image entry; new class names are appended to ``names``."""
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or not entry["file"]:
        raise DatasetError(where, 'expected an object with a "file" name')
    try:
        b = np.asarray(entry.get("boxes", []), np.float64)
    except (TypeError, ValueError):
        raise DatasetError(where, '"boxes" must be a list of [x1, y1, x2, y2]') from None
    if b.size == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise DatasetError(where, f'"boxes" must be a list of [x1, y1, x2, y2], got shape {b.shape}')
    if not np.isfinite(b).all() or (b[:, 2] < b[:, 0]).any() or (b[:, 3] < b[:, 1]).any():
        raise DatasetError(where, '"boxes" must be finite [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2')
    raw = entry.get("classes", [0] * len(b) if not names or len(names) == 1 else None)
    if not isinstance(raw, list) or len(raw) != len(b):
        raise DatasetError(where, f'{len(b)} boxes but "classes" is '
                                  f'{"missing" if raw is None else f"{len(raw)} long" if isinstance(raw, list) else "not a list"}')
    local = entry.get("class_names")
    c = []
    for v in raw:
        if isinstance(v, str):
            label = v
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer() and v >= 0:
            v = int(v)
            if local is not None:
                if not isinstance(local, list) or v >= len(local):
                    raise DatasetError(where, f"class {v} outside its {len(local) if isinstance(local, list) else 0}"
                                              " class_names")
                label = str(local[v])
            elif v < len(names) or not names:
                c.append(v)
                continue
            else:
                raise DatasetError(where, f"class {v} outside the {len(names)} class_names")
        else:
            raise DatasetError(where, f"class {v!r} is neither a class index nor a name")
        if label not in names:
            names.append(label)
        c.append(names.index(label))
    return entry["file"], b.astype(np.float32), np.asarray(c, np.int64)


def _image_files(folder):
    try:
        found = sorted(f for f in os.listdir(folder) if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
                       and os.path.isfile(os.path.join(folder, f)))
    except OSError as e:
        raise DatasetError(folder, f"cannot be listed ({e.strerror or e})") from None
    return found


def _read_yolo(path, channels, name):
    img_dir = os.path.join(path, "images") if os.path.isdir(os.path.join(path, "images")) else path
    label_dir = os.path.join(path, "labels")
    names = None
    names_file = os.path.join(path, "classes.txt")
    if os.path.isfile(names_file):
        try:
            with open(names_file, encoding="utf-8") as f:
                names = [line.strip() for line in f if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise DatasetError(names_file, f"cannot be read ({e})") from None
    images, boxes, classes, files, errors = [], [], [], [], []
    stems = set()
    for fname in _image_files(img_dir):
        stem = os.path.splitext(fname)[0]
        stems.add(stem)
        label_file = os.path.join(label_dir, stem + ".txt")
        try:
            img = _read(os.path.join(img_dir, fname), channels)
        except ImageError as e:
            errors.append(e)
            continue
        h, w = img.shape[:2]
        try:
            b, c = _yolo_labels(label_file, w, h, names)
        except DatasetError as e:
            errors.append(e)
            continue
        images.append(img)
        boxes.append(b)
        classes.append(c)
        files.append(os.path.relpath(os.path.join(img_dir, fname), path))
    if os.path.isdir(label_dir):
        for f in sorted(os.listdir(label_dir)):
            if f.endswith(".txt") and f[:-4] not in stems:
                errors.append(DatasetError(os.path.join(label_dir, f), "no image for this label file"))
    if names is None:
        top = max([int(c.max()) + 1 for c in classes if c.size] + [0])
        names = [str(i) for i in range(top)]
    return DetectionDataset(images, boxes, classes, names, name, files=files, errors=errors)


def _yolo_labels(file, width, height, names):
    if not os.path.exists(file):
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    try:
        with open(file, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(file, f"cannot be read ({e})") from None
    boxes, classes = [], []
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) not in (5, 6):
                raise ValueError
            cls = int(parts[0])
            cx, cy, bw, bh = (float(v) for v in parts[1:5])
            if cls < 0 or not all(np.isfinite([cx, cy, bw, bh])) or bw < 0 or bh < 0:
                raise ValueError
        except ValueError:
            raise DatasetError(file, f"line {n}: expected 'class cx cy w h' (class >= 0, sizes >= 0), got "
                                     f"{line.strip()[:60]!r}") from None
        if names is not None and cls >= len(names):
            raise DatasetError(file, f"line {n}: class {cls} but classes.txt names {len(names)} classes")
        boxes.append([(cx - bw / 2) * width, (cy - bh / 2) * height, (cx + bw / 2) * width, (cy + bh / 2) * height])
        classes.append(cls)
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int64)


# --------------------------------------------------------------------------------------------------- writing


def _stems(dataset):
    files = getattr(dataset, "files", None)
    if files and len(files) == len(dataset):
        stems = [os.path.splitext(os.path.basename(f))[0] for f in files]
        if len(set(stems)) == len(stems):
            return stems
    return [f"{i:06d}" for i in range(len(dataset))]


def write_detection_folder(dataset, path, format="json"):
    """Write a DetectionDataset as a folder: ``images/<stem>.png`` plus ``annotations.json`` (format="json") or
    ``labels/<stem>.txt`` and ``classes.txt`` (format="yolo"). Stems come from the dataset's file names when it
    has them, else 000000, 000001, ... Returns the folder. Existing files of the same names are replaced."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    entries = []
    for i, stem in enumerate(_stems(dataset)):
        img, b, c = dataset[i]
        rel = f"images/{stem}.png"
        write_image(os.path.join(path, rel), img)
        h, w = img.shape[:2]
        b = np.asarray(b, np.float64).reshape(-1, 4)
        c = np.asarray(c, np.int64).reshape(-1)
        if format == "json":
            entries.append({"file": rel, "width": int(w), "height": int(h),
                            "boxes": [[float(v) for v in row] for row in b], "classes": [int(k) for k in c]})
        else:
            lines = [f"{int(k)} {((x1 + x2) / 2 / w)!r} {((y1 + y2) / 2 / h)!r} {((x2 - x1) / w)!r} "
                     f"{((y2 - y1) / h)!r}" for (x1, y1, x2, y2), k in zip(b.tolist(), c)]
            write_text(os.path.join(path, "labels", f"{stem}.txt"), lines)
    if format == "json":
        doc = {"format": "visionkit-detection", "version": 1, "name": getattr(dataset, "name", ""),
               "class_names": list(dataset.class_names), "images": entries}
        write_bytes_atomically(os.path.join(path, ANNOTATIONS_FILE), (json.dumps(doc, indent=1) + "\n").encode())
    else:
        write_text(os.path.join(path, "classes.txt"), list(dataset.class_names))
    return path
