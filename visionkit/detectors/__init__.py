"""Ready-made detectors built from shipped weights, callable from Python and wired into the ``detect`` task.

    from visionkit.detectors import mtcnn
    faces = mtcnn.detect_faces(mtcnn.load_default(), rgb_image)
"""

from .mtcnn import detect_faces, load_default

__all__ = ["detect_faces", "load_default"]
