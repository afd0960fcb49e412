"""Image pyramids for sliding-window detection: the scales at which a fixed-size window sees objects of every
size between a minimum and a maximum.

A classifier trained on W x W windows finds an object of size S (pixels) once the image is scaled by W / S. So the
pyramid starts at scale W / min_size (the smallest objects wanted fill the window) and shrinks by ``factor`` per
level until objects of max_size fit the window, or the scaled image becomes smaller than the window.
"""

import math

import numpy as np

from ..io import resize


def pyramid_scales(height, width, window, min_size=None, max_size=None, factor=0.709):
    """The scales, largest first. window: the classifier's input size (int or (h, w));
    min_size / max_size: object sizes in pixels (default: the window / the whole image); 0 < factor < 1."""
    wh, ww = (window, window) if np.isscalar(window) else window
    if not 0 < factor < 1:
        raise ValueError(f"pyramid factor must be between 0 and 1, got {factor}")
    small = min(wh, ww)
    min_size = small if min_size is None else float(min_size)
    max_size = min(height, width) if max_size is None else float(max_size)
    if min_size <= 0 or max_size < min_size:
        raise ValueError(f"pyramid: need 0 < min_size <= max_size, got {min_size} and {max_size}")
    scales = []
    s = small / min_size
    # objects larger than max_size appear once the scale drops below small / max_size: stop there
    floor = small / max_size
    while s >= floor * (1 - 1e-9) and height * s >= wh and width * s >= ww:
        scales.append(s)
        s *= factor
    return scales


def resize_for_scale(image, scale):
    """image (H, W[, C]) resized by ``scale`` (visionkit.io.resize: area averaging when shrinking)."""
    h, w = image.shape[:2]
    return resize(image, max(1, int(math.ceil(h * scale))), max(1, int(math.ceil(w * scale))))
