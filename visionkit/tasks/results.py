"""Typed results of the tasks, the same objects for Python users and for the CLI's --json.

Every result knows its source (path, frame), the image size, the task, the model, and per-stage times in
milliseconds; ``to_dict()`` gives plain JSON-ready types and ``to_json()`` the text.
"""

import json
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class ClassScore:
    class_id: int
    name: str
    score: float


@dataclass
class Box:
    """A detection: corners in pixels of the original image, confidence, class, optional landmarks [(x, y)]."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    class_id: int = 0
    name: str = ""
    landmarks: list = field(default_factory=list)

    @property
    def width(self):
        return self.x2 - self.x1

    @property
    def height(self):
        return self.y2 - self.y1


@dataclass
class Result:
    """One image's (or video frame's) result for any task."""

    source: str
    width: int
    height: int
    task: str
    model: str
    frame: int = None
    classes: list = field(default_factory=list)      # classify: top-k ClassScore, best first
    boxes: list = field(default_factory=list)        # detect: Box, best first
    mask_classes: list = field(default_factory=list)  # segment: class names of the mask's values
    mask: object = None                              # segment: H x W int array (not in JSON; saved as an image)
    times_ms: dict = field(default_factory=dict)     # preprocess / inference / postprocess

    def summary(self):
        """The words of the per-image line: '3 faces', 'tabby cat 0.92', '2 classes'."""
        if self.task == "classify" and self.classes:
            return f"{self.classes[0].name} {self.classes[0].score:.2f}"
        if self.task == "detect":
            counts = {}
            for b in self.boxes:
                counts[b.name or str(b.class_id)] = counts.get(b.name or str(b.class_id), 0) + 1
            if not counts:
                return "no detections"
            return ", ".join(f"{n} {name}{'' if n == 1 else 's'}" for name, n in counts.items())
        if self.task == "segment" and self.mask is not None:
            areas = sorted(self.mask_areas(), key=lambda a: -a["pixels"])
            return ", ".join(f"{a['name']} {a['fraction']:.0%}" for a in areas[:4]) + (
                f", {len(areas) - 4} more" if len(areas) > 4 else "")
        return ""

    def mask_areas(self):
        """Each class present in the mask: class_id, name, pixels and fraction of the image."""
        if self.mask is None:
            return []
        ids, counts = np.unique(np.asarray(self.mask), return_counts=True)
        total = max(1, int(counts.sum()))
        names = self.mask_classes
        return [{"class_id": int(k), "name": str(names[k]) if 0 <= k < len(names) else str(int(k)),
                 "pixels": int(n), "fraction": round(int(n) / total, 6)} for k, n in zip(ids, counts)]

    def mask_polygons(self, epsilon=1.0):
        """Each region of each non-background class as a polygon: class_id, name and points [[x, y], ...] (the
        outer contour, simplified to within ``epsilon`` pixels), as segmentation JSON usually carries them."""
        if self.mask is None:
            return []
        import cv2

        mask, names, out = np.asarray(self.mask), self.mask_classes, []
        for k in np.unique(mask):
            if k == 0:
                continue
            contours, _ = cv2.findContours((mask == k).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            for c in contours:
                pts = cv2.approxPolyDP(c, epsilon, True).reshape(-1, 2)
                out.append({"class_id": int(k), "name": str(names[k]) if k < len(names) else str(int(k)),
                            "points": pts.astype(int).tolist()})
        return out

    def txt_lines(self, save_conf=False):
        """The YOLO-style label lines of ``--save-txt``: detect, one ``class cx cy w h [conf]`` line per box
        (centre and size as fractions of the image); classify, ``probability name`` per class; segment, none (its
        mask is saved as a PNG of class ids)."""
        if self.task == "classify":
            return [f"{c.score:.6f} {c.name}" for c in self.classes]
        lines = []
        w, h = max(1, self.width), max(1, self.height)
        for b in self.boxes:
            line = (f"{b.class_id} {(b.x1 + b.x2) / 2 / w:.6f} {(b.y1 + b.y2) / 2 / h:.6f} "
                    f"{b.width / w:.6f} {b.height / h:.6f}")
            lines.append(line + (f" {b.score:.6f}" if save_conf else ""))
        return lines

    def to_dict(self):
        d = asdict(self)
        d.pop("mask")
        if self.mask is not None:
            d["mask_areas"] = self.mask_areas()
            d["polygons"] = self.mask_polygons()
        for k in ("classes", "boxes"):
            if not d[k]:
                d.pop(k)
        if not d["mask_classes"]:
            d.pop("mask_classes")
        if d["frame"] is None:
            d.pop("frame")
        return d

    def to_json(self, **kw):
        return json.dumps(self.to_dict(), **kw)
