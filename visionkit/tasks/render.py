"""Drawing results on images with OpenCV: labelled boxes and landmarks, a classification label, a mask overlay
with a legend. Images are RGB uint8 H x W x 3; functions return a new image."""

import cv2
import numpy as np


def palette(n):
    """n distinguishable RGB colours (golden-angle hues), the same for a class id on every image."""
    hues = (np.arange(n) * 137.508) % 360
    hsv = np.stack([hues / 2, np.full(n, 200), np.full(n, 255)], axis=1).astype(np.uint8)[None]
    return [tuple(int(v) for v in c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]]


def _label(img, text, x, y, color):
    scale = max(0.4, min(img.shape[:2]) / 800)
    thick = max(1, int(round(scale * 2)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    y0 = max(th + base, y)
    cv2.rectangle(img, (x, y0 - th - base), (x + tw + 2, y0), color, -1)
    cv2.putText(img, text, (x + 1, y0 - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                cv2.LINE_AA)


def draw_boxes(image, boxes):
    """Boxes (visionkit.tasks.results.Box) with 'name score' labels and landmarks."""
    img = np.ascontiguousarray(image).copy()
    colors = palette(max([b.class_id for b in boxes] + [0]) + 1)
    thick = max(1, min(img.shape[:2]) // 300)
    for b in boxes:
        c = colors[b.class_id]
        p1, p2 = (int(round(b.x1)), int(round(b.y1))), (int(round(b.x2)), int(round(b.y2)))
        cv2.rectangle(img, p1, p2, c, thick)
        _label(img, f"{b.name or b.class_id} {b.score:.2f}", p1[0], p1[1], c)
        for x, y in b.landmarks:
            cv2.circle(img, (int(round(x)), int(round(y))), max(1, thick + 1), (255, 0, 0), -1)
    return img


def draw_label(image, text):
    """A classification's label in the top-left corner."""
    img = np.ascontiguousarray(image).copy()
    _label(img, text, 0, 0, (0, 0, 0))
    return img


def overlay_mask(image, mask, class_names, alpha=0.5):
    """Colour each pixel by its class (class 0 left unpainted as background) and add a legend of the classes
    present."""
    img = np.ascontiguousarray(image).copy()
    colors = np.array(palette(max(len(class_names), int(mask.max()) + 1)), np.uint8)
    painted = mask > 0
    img[painted] = (img[painted] * (1 - alpha) + colors[mask[painted]] * alpha).astype(np.uint8)
    y = 0
    for k in np.unique(mask):
        if k == 0:
            continue
        name = class_names[k] if k < len(class_names) else str(k)
        _label(img, name, 0, y + 20, tuple(int(v) for v in colors[k]))
        y += 22
    return img
