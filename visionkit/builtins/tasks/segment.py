"""The segment task: a class for every pixel.

The model (fully convolutional: its output is (N, classes, h, w)) sees the image preprocessed by its card (at the
card's input size, or at the image's own size when the model takes any). Its class scores are upsampled
bilinearly (``visionkit.ops.interpolate``, align_corners=False, the way FCN and DeepLab upsample logits) to the
image's size, and the argmax is the mask. One output channel is a binary segmenter: a pixel is the object where
its sigmoid exceeds ``conf`` (default 0.5).
"""

from __future__ import annotations

import time

from visionkit.registry import Task


def _as_mask(scores, conf):
    """(K, H, W) scores -> (H, W) int32 class ids."""
    import numpy as np

    if scores.shape[0] == 1:
        s = scores[0].astype(np.float64)
        if s.min() < 0 or s.max() > 1:
            s = 1.0 / (1.0 + np.exp(-s))
        return (s > (0.5 if conf is None else conf)).astype(np.int32)
    return scores.argmax(axis=0).astype(np.int32)


class SegmentTask(Task):
    """A mask (class id per pixel, the image's size) per image, with the class names and each class's share of
    the pixels. Options: ``conf`` (binary segmenters: the foreground threshold)."""

    name = "segment"
    description = "a class per pixel, upsampled to the image, with a coloured overlay"
    default_model = "digits-fcn"

    def run(self, model, images, conf=None, batch_size=None, **options):
        import numpy as np

        from visionkit import ops
        from visionkit.tasks.preprocess import Preprocessor
        from visionkit.tasks.results import Result
        from visionkit.tasks.scores import class_names

        pre = Preprocessor.from_model(model)
        results = []
        for img in images:
            t0 = time.perf_counter()
            x = pre.to_array(img)[None]
            t1 = time.perf_counter()
            out = model.predict(x, batch_size=1)
            if isinstance(out, (list, tuple)):
                out = out[0]
            if out.ndim != 4:
                raise ValueError(f"model {getattr(model, 'name', '?')!r} gives outputs of shape {out.shape[1:]}; "
                                 f"segment needs per-pixel class scores (classes, H, W)")
            t2 = time.perf_counter()
            h, w = img.shape[:2]
            scores = out if out.shape[2:] == (h, w) else ops.interpolate(
                np.ascontiguousarray(out, np.float32), size=(h, w), mode="bilinear", align_corners=False)
            mask = _as_mask(scores[0], conf)
            names = class_names(model, max(2, scores.shape[1]))
            results.append(Result(source="", width=int(w), height=int(h), task=self.name,
                                  model=str(getattr(model, "name", "")), mask=mask, mask_classes=names))
            t3 = time.perf_counter()
            results[-1].times_ms = {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3,
                                    "postprocess": (t3 - t2) * 1e3}
        return results
