"""Image input and output over OpenCV: reading with validation, expanding sources, video frames, atomic writes.

Every problem with one input becomes an ``ImageError`` whose message is one line naming the file and the problem
(missing, empty, not an image, truncated, too large), so a caller can report it and go on with the other inputs.
Images come back as RGB (or single-channel) uint8 arrays, H x W x C: 16-bit images are scaled to 8 bits, an alpha
channel is composited over white, grayscale is kept or expanded as the caller asks.
"""

import glob
import os
import tempfile

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
DEFAULT_MAX_PIXELS = 100_000_000


class ImageError(ValueError):
    """An input that cannot be used; str() is the one-line report: '<path>: <problem>'."""

    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


def _header_size(data):
    """(width, height) from a PNG or JPEG header without decoding the pixels, or None when not found."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def read_image(path, channels=3, max_pixels=DEFAULT_MAX_PIXELS):
    """The image at ``path`` as uint8 H x W x channels (RGB for 3), or ImageError naming the problem."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    path = str(path)
    if not os.path.exists(path):
        raise ImageError(path, "no such file")
    if os.path.isdir(path):
        raise ImageError(path, "is a directory, not an image")
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as e:
        raise ImageError(path, f"cannot be read ({e.strerror or e})") from None
    if data.size == 0:
        raise ImageError(path, "empty file (0 bytes)")
    raw = data.tobytes()
    size = _header_size(raw[:1 << 16])
    if size and max_pixels and size[0] * size[1] > max_pixels:
        raise ImageError(path, f"{size[0]}x{size[1]} is larger than the {max_pixels:,}-pixel limit")
    # libjpeg decodes a cut-off JPEG with a warning on stderr and grey rows: look for its end-of-image marker
    # (after any early thumbnail's; some cameras append metadata after it, so not necessarily at the very end)
    if raw[:2] == b"\xff\xd8" and raw.rfind(b"\xff\xd9") < len(raw) // 2:
        raise ImageError(path, "truncated JPEG (no end-of-image marker)")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageError(path, "not an image OpenCV can decode (corrupt, truncated or another format)")
    if max_pixels and img.shape[0] * img.shape[1] > max_pixels:
        raise ImageError(path, f"{img.shape[1]}x{img.shape[0]} is larger than the {max_pixels:,}-pixel limit")
    return _normalise(img, channels)


def _normalise(img, channels):
    """OpenCV's decoded array (BGR/BGRA/gray, 8 or 16 bit, or float) to uint8 RGB or gray."""
    if img.dtype == np.uint16:
        img = (img.astype(np.uint32) * 255 + 32767) // 65535
    elif img.dtype != np.uint8:
        img = np.clip(np.nan_to_num(img.astype(np.float64)) * (255 if img.max() <= 1.0 else 1), 0, 255)
    img = img.astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:  # composite over white: transparent areas read as background
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        img = (img[:, :, :3] * alpha + 255.0 * (1 - alpha) + 0.5).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return img[:, :, None] if channels == 1 else np.repeat(img[:, :, None], 3, axis=2)
    if channels == 1:
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[:, :, None]
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def resize(image, height, width):
    """image (H, W[, C]) resized to height x width with OpenCV: area averaging when it shrinks (no aliasing),
    bilinear when it grows; a single-channel H x W x 1 image stays three-dimensional."""
    img = np.ascontiguousarray(image)
    shrink = height * width < img.shape[0] * img.shape[1]
    out = cv2.resize(img, (int(width), int(height)), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out[:, :, None] if img.ndim == 3 and out.ndim == 2 else out


def expand_sources(sources):
    """Files, directories (their images, sorted), globs and videos -> (items, errors).

    items: (path, "image" | "video") in the order given; errors: ImageError for sources that match nothing.
    """
    items, errors = [], []
    for src in sources:
        src = str(src)
        if os.path.isdir(src):
            found = sorted(p for p in glob.glob(os.path.join(src, "*")) if _kind(p))
            if not found:
                errors.append(ImageError(src, "directory holds no images or videos"))
            items += [(p, _kind(p)) for p in found]
        elif os.path.exists(src):
            items.append((src, _kind(src) or "image"))  # an unknown extension is tried as an image
        elif glob.has_magic(src):
            found = sorted(p for p in glob.glob(src, recursive=True) if os.path.isfile(p))
            if not found:
                errors.append(ImageError(src, "pattern matches no files"))
            items += [(p, _kind(p) or "image") for p in found]
        else:
            errors.append(ImageError(src, "no such file or directory"))
    return items, errors


def _kind(path):
    ext = os.path.splitext(path)[1].lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    return None


def video_frames(path, every=1, channels=3):
    """(frame index, image) for every ``every``-th frame of a video, images as read_image returns them."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ImageError(path, "not a video OpenCV can open")
    try:
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if i % max(1, int(every)) == 0:
                yield i, _normalise(frame, channels)
            i += 1
    finally:
        cap.release()


def write_image(path, image):
    """Write an RGB (or gray) uint8 image atomically: encoded in memory, written to a temp file, then renamed, so
    an interrupted run never leaves half a file where a good one was."""
    path = str(path)
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ext = os.path.splitext(path)[1] or ".png"
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise ImageError(path, f"OpenCV cannot encode {ext} images")
    write_bytes_atomically(path, buf.tobytes())
    return path


def write_text(path, lines):
    """Write lines of text atomically (as ``write_image``), making the folder if needed."""
    write_bytes_atomically(str(path), "".join(f"{line}\n" for line in lines).encode())
    return str(path)


def write_bytes_atomically(path, data):
    """``data`` to a temporary file in the target folder (made if needed), flushed to disk, given the permissions
    any file the user writes gets, then renamed over ``path``: a reader never sees half a file, and an interrupted
    write leaves the old file (or none) in place."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
