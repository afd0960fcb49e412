"""visionkit's built-in tasks, a plugin like any other: its ``register_tasks`` hook registers them.

    classify   top-k classes with probabilities (ClassifyTask)
    detect     boxes: MTCNN faces by default, or any classifier slid over an image pyramid (DetectTask)
    segment    a class per pixel, upsampled to the image, with a coloured overlay (SegmentTask)

A task's ``run(model, images, **options)`` takes a model and a list of images (uint8 H x W x C, RGB or one channel,
as ``visionkit.io.read_image`` returns them) and returns one ``visionkit.tasks.results.Result`` per image, with the
per-image stage times in ``times_ms``. ``visionkit run`` (``visionkit.tasks.pipeline``) fills in each result's
source and frame.
"""

from visionkit.hookspecs import hookimpl
from visionkit.tasks.scores import class_names, to_probabilities  # noqa: F401  (the tasks' shared helpers)

from .classify import ClassifyTask
from .detect import DetectTask
from .segment import SegmentTask


@hookimpl
def register_tasks(register):
    """Register the built-in tasks."""
    register("classify", ClassifyTask())
    register("detect", DetectTask())
    register("segment", SegmentTask())
