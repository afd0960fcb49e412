"""The run loop every task shares: sources -> images -> task (preprocess, inference, postprocess) -> results ->
lines, annotated images and a report.

    report = run_pipeline(registry.get_task("classify"), model, ["photos/", "clip.mp4"], batch=8,
                          save_dir=next_run_dir("classify"), task_options={"topk": 5}, log=print, error=print)

Sources are expanded with ``visionkit.io.expand_sources`` (files, directories, globs, videos). Images are read as
RGB uint8 (``read_image``: grayscale, RGBA and 16-bit converted; the task converts to what the model's card asks
for); a video gives every ``every``-th frame. Images are grouped into batches of ``batch`` (across files and
frames) and handed to ``task.run(model, images, **task_options)``, which returns one Result per image with its
per-image ``times_ms``. Options the task's ``run`` does not accept are not passed (unless it takes ``**options``).

Every input that cannot be used becomes one error (``ImageError``: '<path>: <problem>') passed to ``error`` and
kept in the report; the others go on. Annotated images are written atomically (``write_image``), drawn by the
task's ``render(image, result)`` when it has one, else from the result's fields (label, boxes or mask).
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field

from ..io import DEFAULT_MAX_PIXELS, ImageError, expand_sources, read_image, video_frames, write_image, write_text

SAVE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class RunReport:
    """What a run produced: results (in input order), errors (ImageError), mean per-image stage times in ms,
    the model's input shape (batch, C, H, W) and where annotated images went."""

    task: str
    model: str
    results: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    speed_ms: dict = field(default_factory=dict)
    shape: tuple | None = None
    save_dir: str | None = None
    saved: list = field(default_factory=list)

    def speed_line(self):
        if not self.speed_ms:
            return None
        s = self.speed_ms
        line = (f"Speed: {s.get('preprocess', 0.0):.1f}ms preprocess, {s.get('inference', 0.0):.1f}ms inference, "
                f"{s.get('postprocess', 0.0):.1f}ms postprocess per image")
        if self.shape and None not in self.shape:
            line += f" at shape {tuple(self.shape)}"
        return line

    def to_dict(self):
        return {
            "task": self.task,
            "model": self.model,
            "results": [r.to_dict() for r in self.results],
            "errors": [{"source": e.path, "error": e.problem} for e in self.errors],
            "speed_ms": self.speed_ms,
            "shape": list(self.shape) if self.shape else None,
            "save_dir": self.save_dir,
        }


def render(image, result):
    """An annotated copy (RGB uint8) of ``image`` drawn from ``result``'s fields: the classification label, the
    boxes, or the mask overlay."""
    import numpy as np

    from .render import draw_boxes, draw_label, overlay_mask

    img = np.asarray(image)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    img = np.ascontiguousarray(img[:, :, :3])
    if result.mask is not None:
        img = overlay_mask(img, np.asarray(result.mask), list(result.mask_classes))
    if result.boxes:
        img = draw_boxes(img, result.boxes)
    if result.classes:
        img = draw_label(img, result.summary())
    return img


def _accepted(run, options):
    """The options ``run`` accepts (all of them when it takes **kwargs)."""
    try:
        params = inspect.signature(run).parameters.values()
    except (TypeError, ValueError):
        return dict(options)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return dict(options)
    names = {p.name for p in params}
    return {k: v for k, v in options.items() if k in names}


def _frame_count(path):
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()
    return max(n, 0)


@dataclass
class _Input:
    index: int  # 1-based position among the expanded sources
    kind: str  # "image" | "video"
    path: str
    image: object
    frame: int | None = None
    frames: int | None = None


class _Saver:
    """Unique file names in one folder for the annotated images (and the label / mask files beside them). The
    folder is made on the first write, so a run whose every input failed leaves no empty folder behind."""

    def __init__(self, folder):
        self.folder = folder
        self.used = set()

    def path_for(self, inp):
        stem, ext = os.path.splitext(os.path.basename(inp.path))
        ext = ext.lower() if ext.lower() in SAVE_EXTENSIONS and inp.kind == "image" else (
            ".jpg" if inp.kind == "video" else ".png")
        if inp.frame is not None:
            stem = f"{stem}_{inp.frame}"
        name, n = stem + ext, 2
        while name in self.used:
            name, n = f"{stem}_{n}{ext}", n + 1
        self.used.add(name)
        return os.path.join(self.folder, name)

    def beside(self, image_path, sub, ext):
        """labels/<stem>.txt or masks/<stem>.png for the image saved (or that would be saved) at image_path."""
        stem = os.path.splitext(os.path.basename(image_path))[0]
        folder = os.path.join(self.folder, sub)
        os.makedirs(folder, exist_ok=True)
        return os.path.join(folder, stem + ext)


def _mask_image(mask):
    import numpy as np

    mask = np.asarray(mask)
    return mask.astype(np.uint8 if mask.max(initial=0) < 256 else np.uint16)


def _inputs(items, every, max_pixels, on_error):
    for i, (path, kind) in enumerate(items, 1):
        if kind == "video":
            frames = _frame_count(path)
            try:
                got = False
                for f, img in video_frames(path, every=every, channels=3):
                    got = True
                    yield _Input(i, "video", path, img, frame=f + 1, frames=frames)
                if not got:
                    on_error(ImageError(path, "video holds no frames OpenCV can read"))
            except ImageError as e:
                on_error(e)
        else:
            try:
                img = read_image(path, channels=3, max_pixels=max_pixels)
            except ImageError as e:
                on_error(e)
                continue
            yield _Input(i, "image", path, img)


def _line(inp, total, result):
    ms = result.times_ms.get("inference", 0.0)
    where = f"image {inp.index}/{total}" if inp.kind == "image" else (
        f"video {inp.index}/{total} (frame {inp.frame}/{inp.frames or '?'})")
    words = result.summary()
    return f"{where} {inp.path}: {result.width}x{result.height} {words}{', ' if words else ''}{ms:.1f}ms"


def run_pipeline(task, model, sources, *, model_name="", batch=1, every=1, max_pixels=DEFAULT_MAX_PIXELS,
                 save_dir=None, save_images=True, save_txt=False, save_conf=False, task_options=None, log=None,
                 error=None):
    """Run ``task`` (a registered TaskSpec or any object with ``name`` and ``run``) with ``model`` over
    ``sources``; returns a RunReport. ``log(line)`` gets each per-image line, ``error(ImageError)`` each bad
    input as it happens. Under ``save_dir`` (made when the first file is written): the annotated images (unless
    ``save_images`` is false), and with ``save_txt`` one YOLO-style ``labels/<stem>.txt`` per image
    (``Result.txt_lines``; ``save_conf`` adds box confidences) or, for masks, ``masks/<stem>.png`` of class
    ids."""
    from .preprocess import Preprocessor

    task_obj = getattr(task, "task", task)  # a TaskSpec wraps the task object
    task_name = getattr(task, "name", "") or getattr(task_obj, "name", "")
    report = RunReport(task_name, model_name or str(getattr(model, "name", "")), save_dir=save_dir)
    batch = max(1, int(batch))
    log = log or (lambda line: None)
    options = _accepted(task_obj.run, dict(task_options or {}))
    renderer = getattr(task_obj, "render", None) or render
    saver = _Saver(save_dir) if save_dir else None
    try:
        report.shape = (batch, *Preprocessor.from_model(model).input_shape())
    except (ValueError, TypeError):
        report.shape = None

    def on_error(e):
        report.errors.append(e)
        if error is not None:
            error(e)

    items, source_errors = expand_sources(sources)
    for e in source_errors:
        on_error(e)
    total = len(items)
    sums, count = {}, 0

    def flush(pending):
        nonlocal count
        results = task_obj.run(model, [p.image for p in pending], **options)
        results = list(results) if not isinstance(results, dict) else None
        if results is None or len(results) != len(pending):
            raise TypeError(f"task {task_name!r} returned {type(results).__name__ if results is not None else 'a dict'}"
                            f", not one result per image")
        for inp, res in zip(pending, results):
            res.source, res.frame = inp.path, inp.frame
            if model_name:
                res.model = model_name
            report.results.append(res)
            for k, v in (res.times_ms or {}).items():
                sums[k] = sums.get(k, 0.0) + float(v)
            count += 1
            log(_line(inp, total, res))
            if saver is not None:
                _save(saver, inp, res)

    def _save(saver, inp, res):
        os.makedirs(saver.folder, exist_ok=True)
        out = saver.path_for(inp)
        if save_images:
            write_image(out, renderer(inp.image, res))
            report.saved.append(out)
        if save_txt and res.mask is not None:
            write_image(saver.beside(out, "masks", ".png"), _mask_image(res.mask))
        elif save_txt:
            write_text(saver.beside(out, "labels", ".txt"), res.txt_lines(save_conf))

    pending = []
    for inp in _inputs(items, every, max_pixels, on_error):
        pending.append(inp)
        if len(pending) == batch:
            flush(pending)
            pending = []
    if pending:
        flush(pending)
    if count:
        report.speed_ms = {k: v / count for k, v in sums.items()}
    return report
