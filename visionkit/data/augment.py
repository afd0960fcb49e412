"""On-the-fly augmentation of image batches, deterministic for a given random generator.

``Augment("flip,crop,brightness")`` (the string ``--augment`` passes; ``name=value`` sets an operation's
strength: ``"flip,rotate=10,shift=0.125"``) or ``Augment(["flip", "crop"], crop=4)`` builds the pipeline;
``augment(images, rng)`` applies it to a batch: uint8 or float N x H x W x C (C = 1 or 3, RGB), one random draw per
image from the numpy Generator ``rng`` (the DataLoader hands every batch its own). The input is never modified; the
result has the input's dtype (uint8 results rounded and clipped to 0..255; float images are taken to span [0, 1]
for noise and hue and are not clipped).

The operations always run in this order, whatever the order they are named in:

    crop        pad ``crop`` pixels on every side, cut a random window (the CIFAR recipe: pad 4, crop 32 x 32);
                ``crop_size=(H, W)`` cuts windows of that size instead of the input's
    flip        horizontal flip with probability ``flip`` (default 0.5)
    vflip       vertical flip with probability ``vflip`` (default 0.5)
    scale       zoom about the centre by a factor in [1 - scale, 1 + scale]              } one cv2.warpAffine per
    rotate      rotate about the centre by an angle in [-rotate, rotate] degrees          } image (bilinear), or an
    shift       translate by whole pixels, at most ``shift`` of the width/height          } exact whole-pixel move
                (a value >= 1 is a number of pixels)                                       } when it is only a shift
    brightness  x * f,                         f in [max(0, 1 - brightness), 1 + brightness]
    contrast    (x - m) * f + m,               m = the image's mean gray level, f as above
    saturation  g + (x - g) * f,               g = each pixel's gray level (0.299 R + 0.587 G + 0.114 B)
    hue         rotate the HSV hue by h turns, h in [-hue, hue] (hue <= 0.5); gray pixels stay gray
    noise       add gaussian noise of standard deviation ``noise`` x full range (255 for uint8)

(brightness, contrast, saturation and hue are torchvision's ColorJitter formulas, applied in a fixed order;
saturation and hue leave one-channel images unchanged.) Areas a geometric operation uncovers are filled per
``fill``: "zero" (black), "edge" (the nearest edge pixel) or "reflect".

The functions below the class (``hflip``, ``translate``, ``adjust_brightness``, ...) apply one operation with given
parameters, for tests and for callers who draw their own.
"""

from __future__ import annotations

import difflib
import math

import cv2
import numpy as np

__all__ = [
    "AUGMENTATIONS",
    "Augment",
    "add_noise",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "affine_matrix",
    "gray_levels",
    "hflip",
    "pad_crop",
    "parse_augment",
    "translate",
    "vflip",
    "warp_affine",
]

# name -> default strength, in the order they are applied
AUGMENTATIONS = {
    "crop": 4, "flip": 0.5, "vflip": 0.5, "scale": 0.1, "rotate": 15.0, "shift": 0.1,
    "brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.05, "noise": 0.02,
}
_ALIASES = {"hflip": "flip", "random_crop": "crop", "rotation": "rotate", "translate": "shift", "zoom": "scale"}
_EXTRA_PARAMS = {"fill": "zero", "crop_size": None}
_FILLS = {"zero": cv2.BORDER_CONSTANT, "edge": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT_101}
_NP_PAD = {"zero": "constant", "edge": "edge", "reflect": "reflect"}
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _unknown(kind, name, valid):
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return ValueError(f"unknown {kind} {name!r}{hint}; valid: {', '.join(valid)}")


def parse_augment(spec):
    """"flip,rotate=10" or ["flip", "rotate=10"] -> ({"flip": None, "rotate": 10.0}) with names checked."""
    if spec is None:
        return {}
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    out = {}
    for item in items:
        if not item:
            continue
        name, _, value = item.partition("=")
        name = name.strip().lower()
        name = _ALIASES.get(name, name)
        if name not in AUGMENTATIONS:
            raise _unknown("augmentation", name, list(AUGMENTATIONS))
        if value.strip():
            try:
                out[name] = float(value)
            except ValueError:
                raise ValueError(f"augmentation {name}: {value.strip()!r} is not a number") from None
        else:
            out[name] = None
    return out


class Augment:
    """A batch augmentation pipeline; see the module docstring for the operations, their order and strengths."""

    def __init__(self, ops=None, **params):
        chosen = parse_augment(ops)
        self.params = dict(_EXTRA_PARAMS)
        for key, value in params.items():
            key_n = _ALIASES.get(key, key)
            if key_n in _EXTRA_PARAMS:
                self.params[key_n] = value
            elif key_n in AUGMENTATIONS:
                if key_n not in chosen:
                    raise ValueError(f"{key}={value!r} given but {key_n!r} is not among the augmentations "
                                     f"({', '.join(chosen) or 'none'})")
                if chosen[key_n] is None:
                    chosen[key_n] = value
            else:
                raise _unknown("augmentation parameter", key, list(AUGMENTATIONS) + list(_EXTRA_PARAMS))
        self.ops = [name for name in AUGMENTATIONS if name in chosen]
        for name in self.ops:
            value = AUGMENTATIONS[name] if chosen[name] is None else chosen[name]
            self.params[name] = self._check(name, value)
        if self.params["fill"] not in _FILLS:
            raise ValueError(f"fill must be one of {', '.join(_FILLS)}, got {self.params['fill']!r}")
        if self.params["crop_size"] is not None:
            size = tuple(int(v) for v in np.atleast_1d(self.params["crop_size"]))
            size = size * 2 if len(size) == 1 else size
            if len(size) != 2 or min(size) <= 0:
                raise ValueError(f"crop_size must be (H, W) positive ints, got {self.params['crop_size']!r}")
            self.params["crop_size"] = size

    @staticmethod
    def _check(name, value):
        v = float(value)
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"augmentation {name}: strength must be a non-negative number, got {value!r}")
        if name in ("flip", "vflip") and v > 1:
            raise ValueError(f"augmentation {name}: a probability must be in [0, 1], got {v}")
        if name == "hue" and v > 0.5:
            raise ValueError(f"augmentation hue: at most 0.5 (half a turn), got {v}")
        if name == "crop":
            if v != int(v):
                raise ValueError(f"augmentation crop: padding must be whole pixels, got {v}")
            return int(v)
        return v

    def to_config(self):
        """{"ops": [...], strengths of the chosen ops, fill, crop_size}: JSON types, ``Augment(**config)`` rebuilds
        it (as ``Augment(config.pop("ops"), **config)``)."""
        cfg = {"ops": list(self.ops)}
        cfg.update({name: self.params[name] for name in self.ops})
        cfg["fill"] = self.params["fill"]
        if self.params["crop_size"] is not None:
            cfg["crop_size"] = list(self.params["crop_size"])
        return cfg

    def __str__(self):
        """The comma string that rebuilds it: "flip=0.5,crop=4"."""
        return ",".join(f"{name}={self.params[name]:g}" for name in self.ops)

    def __repr__(self):
        return f"Augment({str(self)!r}, fill={self.params['fill']!r})"

    def __bool__(self):
        return bool(self.ops)

    # ------------------------------------------------------------------ applying

    def __call__(self, images, rng=None):
        x = np.asarray(images)
        if x.ndim != 4 or x.shape[3] not in (1, 3):
            raise ValueError(f"augment: images must be N x H x W x C with C = 1 or 3, got shape {x.shape}")
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        if not self.ops or len(x) == 0:
            return x.copy()
        dtype = x.dtype
        p, n = self.params, len(x)
        fill = p["fill"]
        if "crop" in self.ops:
            h, w = x.shape[1:3]
            ch, cw = p["crop_size"] or (h, w)
            pad = p["crop"]
            if ch > h + 2 * pad or cw > w + 2 * pad:
                raise ValueError(f"augment crop: a {ch}x{cw} window does not fit a {h}x{w} image padded by {pad}")
            tops = rng.integers(0, h + 2 * pad - ch + 1, n)
            lefts = rng.integers(0, w + 2 * pad - cw + 1, n)
            x = pad_crop(x, tops, lefts, (ch, cw), pad, fill)
        else:
            x = x.copy()
        if "flip" in self.ops:
            mask = rng.random(n) < p["flip"]
            x[mask] = x[mask][:, :, ::-1]
        if "vflip" in self.ops:
            mask = rng.random(n) < p["vflip"]
            x[mask] = x[mask][:, ::-1]
        geometric = [op for op in ("scale", "rotate", "shift") if op in self.ops]
        if geometric:
            h, w = x.shape[1:3]
            scales = rng.uniform(1 - p["scale"], 1 + p["scale"], n) if "scale" in self.ops else np.ones(n)
            angles = rng.uniform(-p["rotate"], p["rotate"], n) if "rotate" in self.ops else np.zeros(n)
            if "shift" in self.ops:
                s = p["shift"]
                mx, my = (round(s * w), round(s * h)) if s < 1 else (int(s), int(s))
                dxs, dys = rng.integers(-mx, mx + 1, n), rng.integers(-my, my + 1, n)
            else:
                dxs = dys = np.zeros(n, np.int64)
            for i in range(n):
                x[i] = warp_affine(x[i], affine_matrix((h, w), angles[i], scales[i], dxs[i], dys[i]), fill)
        photometric = [op for op in ("brightness", "contrast", "saturation", "hue", "noise") if op in self.ops]
        if photometric:
            f = x.astype(np.float32)
            full = 255.0 if dtype == np.uint8 else 1.0

            def factors(strength):
                return rng.uniform(max(0.0, 1 - strength), 1 + strength, n)

            if "brightness" in self.ops:
                f = adjust_brightness(f, factors(p["brightness"]))
            if "contrast" in self.ops:
                f = adjust_contrast(f, factors(p["contrast"]))
            if "saturation" in self.ops:
                f = adjust_saturation(f, factors(p["saturation"]))
            if "hue" in self.ops:
                f = adjust_hue(f, rng.uniform(-p["hue"], p["hue"], n), full)
            if "noise" in self.ops:
                f = add_noise(f, p["noise"] * full, rng)
            x = f
        if dtype == np.uint8 and x.dtype != np.uint8:
            x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
        return x.astype(dtype, copy=False)


# --------------------------------------------------------------------------------------------------- geometry


def hflip(images):
    """Mirror left-right (N x H x W x C or H x W x C)."""
    return np.asarray(images)[..., :, ::-1, :].copy()


def vflip(images):
    """Mirror top-bottom (N x H x W x C or H x W x C)."""
    return np.asarray(images)[..., ::-1, :, :].copy()


def pad_crop(images, tops, lefts, size, padding, fill="zero"):
    """Pad N x H x W x C images by ``padding`` on every side, then cut the ``size`` (H', W') window at
    (tops[i], lefts[i]) of padded image i."""
    x = np.asarray(images)
    if padding:
        mode = _NP_PAD[fill]
        x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)), mode=mode)
    ch, cw = size
    out = np.empty((x.shape[0], ch, cw, x.shape[3]), x.dtype)
    for i in range(x.shape[0]):
        t, l = int(tops[i]), int(lefts[i])
        out[i] = x[i, t:t + ch, l:l + cw]
    return out


def affine_matrix(shape, angle=0.0, scale=1.0, dx=0, dy=0):
    """2 x 3 matrix: rotate by ``angle`` degrees (counter-clockwise) and zoom by ``scale`` about the image centre,
    then move by (dx, dy) pixels (right, down)."""
    h, w = shape
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(angle), float(scale))
    m[0, 2] += dx
    m[1, 2] += dy
    return m


def warp_affine(image, matrix, fill="zero"):
    """One H x W x C image through cv2.warpAffine (same size, ``fill`` for uncovered areas); a pure whole-pixel
    translation is done with nearest-neighbour sampling, so it moves pixels exactly."""
    img = np.ascontiguousarray(image)
    h, w = img.shape[:2]
    m = np.asarray(matrix, np.float64)
    exact = np.allclose(m[:, :2], np.eye(2)) and np.allclose(m[:, 2], np.round(m[:, 2]))
    if exact and not m[:, 2].any():
        return img.copy()
    src = img if img.dtype in (np.uint8, np.uint16, np.float32, np.float64, np.int16) else img.astype(np.float32)
    out = cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_NEAREST if exact else cv2.INTER_LINEAR,
                         borderMode=_FILLS[fill], borderValue=0)
    if out.ndim == 2:
        out = out[:, :, None]
    return out.astype(img.dtype, copy=False)


def translate(image, dx, dy, fill="zero"):
    """Move an H x W x C image by whole pixels (dx right, dy down) with cv2.warpAffine; exact."""
    return warp_affine(image, affine_matrix(np.shape(image)[:2], 0.0, 1.0, int(dx), int(dy)), fill)


# --------------------------------------------------------------------------------------------------- colour


def _per_image(values, x):
    return np.asarray(values, np.float32).reshape((-1,) + (1,) * (x.ndim - 1))


def gray_levels(x):
    """Each pixel's gray level of float N x H x W x C (0.299 R + 0.587 G + 0.114 B; the value itself for C = 1),
    shape N x H x W x 1."""
    if x.shape[-1] == 1:
        return x
    return (x @ _LUMA)[..., None].astype(np.float32)


def adjust_brightness(x, factors):
    """x * factor (per image)."""
    x = np.asarray(x, np.float32)
    return x * _per_image(factors, x)


def adjust_contrast(x, factors):
    """(x - m) * factor + m, m = each image's mean gray level."""
    x = np.asarray(x, np.float32)
    m = gray_levels(x).reshape(len(x), -1).mean(axis=1, dtype=np.float64).astype(np.float32)
    m = _per_image(m, x)
    return (x - m) * _per_image(factors, x) + m


def adjust_saturation(x, factors):
    """g + (x - g) * factor, g = each pixel's gray level; one-channel images unchanged."""
    x = np.asarray(x, np.float32)
    if x.shape[-1] == 1:
        return x.copy()
    g = gray_levels(x)
    return g + (x - g) * _per_image(factors, x)


def adjust_hue(x, shifts, full=255.0):
    """Rotate the HSV hue of RGB float images (values in [0, full]) by ``shifts`` turns (per image); gray pixels
    and one-channel images unchanged."""
    x = np.asarray(x, np.float32)
    if x.shape[-1] == 1:
        return x.copy()
    n, h, w, _ = x.shape
    flat = np.ascontiguousarray(np.clip(x / np.float32(full), 0, None)).reshape(n * h, w, 3)
    hsv = cv2.cvtColor(flat, cv2.COLOR_RGB2HSV).reshape(n, h, w, 3)
    hsv[..., 0] = np.mod(hsv[..., 0] + (np.asarray(shifts, np.float32) * 360.0)[:, None, None], 360.0)
    rgb = cv2.cvtColor(np.ascontiguousarray(hsv.reshape(n * h, w, 3)), cv2.COLOR_HSV2RGB)
    return rgb.reshape(n, h, w, 3) * np.float32(full)


def add_noise(x, sigma, rng):
    """x + gaussian noise of standard deviation ``sigma`` (same units as x)."""
    x = np.asarray(x, np.float32)
    return x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(sigma)
