"""MTCNN face detection: the three-network cascade of Zhang et al. (2016), "Joint Face Detection and Alignment
using Multi-task Cascaded Convolutional Networks", with the weights facenet-pytorch ships (converted by
``scripts/convert_mtcnn.py`` into ``visionkit/builtins/models/mtcnn.vk``).

    from visionkit.detectors.mtcnn import detect_faces, load_default
    bundle = load_default()                       # a ModelBundle: pnet, rnet, onet
    boxes = detect_faces(bundle, rgb_uint8_image) # [Box(x1, y1, x2, y2, score, 0, "face", landmarks), ...]

The networks (inputs normalised as (pixel - 127.5) / 128, RGB, NCHW):
    pnet  fully convolutional 12x12 window classifier, any input size -> [reg (N, 4, h, w), prob (N, 2, h, w)]
          (one output cell per 12x12 window, stride 2)
    rnet  24x24 crops -> [reg (N, 4), prob (N, 2)]
    onet  48x48 crops -> [reg (N, 4), landmarks (N, 10), prob (N, 2)]
          (landmarks: x of the 5 points, then their y, as fractions of the box; prob[:, 1] is "face")

The cascade (what ``detect_faces`` does; the same steps and arithmetic as facenet-pytorch's ``detect_face``, so
the boxes agree with it):
    1. pyramid: scales 12/min_size * factor**k while min(H, W) * scale >= 12; the image is resized at each scale
       to (int(H*s + 1), int(W*s + 1)) by area averaging (torch's interpolate(mode="area"), i.e. adaptive average
       pooling, ``visionkit.ops.adaptive_avg_pool2d``); P-Net runs on it; every cell with face probability
       >= thresholds[0] gives a box floor((2*(x, y) + 1) / s) .. floor((2*(x, y) + 12) / s) with its regression;
       IoU-NMS at 0.5 within the scale;
    2. IoU-NMS across scales (nms_thresholds[0]); the boxes move by their regression (times the box size) and
       become squares around their centres;
    3. each square is cut from the image (clipped to it, 1-based inclusive MATLAB-style corners as in the original
       code), resized to 24x24, all crops in one R-Net batch; kept when face probability > thresholds[1];
       IoU-NMS (nms_thresholds[1]); regression (box size + 1); squares again;
    4. the same with 48x48 crops and O-Net (> thresholds[2]); the five landmarks come from O-Net; regression;
       a last NMS over the overlap divided by the SMALLER box's area ("Min", nms_thresholds[2]), which removes a
       small box sitting inside a bigger one.
"""

from __future__ import annotations

import os

import numpy as np

from .. import ops
from ..tasks.nms import nms
from ..tasks.results import Box

__all__ = ["detect_faces", "load_default", "default_model_path", "pyramid_scales", "nms_min",
           "build_pnet", "build_rnet", "build_onet", "MEAN", "SCALE"]

MEAN = 127.5          # pixel normalisation: (pixel - MEAN) * SCALE
SCALE = 0.0078125     # 1 / 128
PNET_STRIDE = 2
PNET_CELL = 12
SCALE_NMS = 0.5       # the NMS threshold inside one pyramid level


# ----------------------------------------------------------------------------------------------- the networks


def build_pnet(name="pnet"):
    """P-Net: conv3(10) PReLU maxpool2 (ceil) conv3(16) PReLU conv3(32) PReLU -> conv1(2) softmax, conv1(4).

    Outputs [reg, prob]; layer names follow facenet-pytorch's state dicts (conv1, prelu1, ...)."""
    from .. import layers as L
    from ..layers.prelu import PReLU
    from ..model import Input, Model

    inp = Input((3, None, None), name=f"{name}_input")
    x = PReLU(name="prelu1")(L.Conv2D(10, 3, name="conv1")(inp))
    x = L.MaxPool2D(2, 2, ceil_mode=True, name="pool1")(x)
    x = PReLU(name="prelu2")(L.Conv2D(16, 3, name="conv2")(x))
    x = PReLU(name="prelu3")(L.Conv2D(32, 3, name="conv3")(x))
    prob = L.Activation("softmax", name="softmax4_1")(L.Conv2D(2, 1, name="conv4_1")(x))
    reg = L.Conv2D(4, 1, name="conv4_2")(x)
    return Model(inp, [reg, prob], name=name)


def build_rnet(name="rnet"):
    """R-Net on 24x24 crops: three conv+PReLU stages (max-pool 3/2 ceil after the first two), dense 128 PReLU ->
    dense 2 softmax, dense 4. Outputs [reg, prob]. The dense layer reads the (64, 3, 3) map flattened channel-major
    (visionkit's Flatten); the converter reorders facenet's weights, which were laid out for a (W, H, C) flatten."""
    from .. import layers as L
    from ..layers.prelu import PReLU
    from ..model import Input, Model

    inp = Input((3, 24, 24), name=f"{name}_input")
    x = PReLU(name="prelu1")(L.Conv2D(28, 3, name="conv1")(inp))
    x = L.MaxPool2D(3, 2, ceil_mode=True, name="pool1")(x)
    x = PReLU(name="prelu2")(L.Conv2D(48, 3, name="conv2")(x))
    x = L.MaxPool2D(3, 2, ceil_mode=True, name="pool2")(x)
    x = PReLU(name="prelu3")(L.Conv2D(64, 2, name="conv3")(x))
    x = PReLU(name="prelu4")(L.Dense(128, name="dense4")(L.Flatten(name="flatten")(x)))
    prob = L.Activation("softmax", name="softmax5_1")(L.Dense(2, name="dense5_1")(x))
    reg = L.Dense(4, name="dense5_2")(x)
    return Model(inp, [reg, prob], name=name)


def build_onet(name="onet"):
    """O-Net on 48x48 crops: four conv+PReLU stages with max-pools, dense 256 PReLU -> dense 2 softmax (face),
    dense 4 (box regression), dense 10 (landmarks). Outputs [reg, landmarks, prob]."""
    from .. import layers as L
    from ..layers.prelu import PReLU
    from ..model import Input, Model

    inp = Input((3, 48, 48), name=f"{name}_input")
    x = PReLU(name="prelu1")(L.Conv2D(32, 3, name="conv1")(inp))
    x = L.MaxPool2D(3, 2, ceil_mode=True, name="pool1")(x)
    x = PReLU(name="prelu2")(L.Conv2D(64, 3, name="conv2")(x))
    x = L.MaxPool2D(3, 2, ceil_mode=True, name="pool2")(x)
    x = PReLU(name="prelu3")(L.Conv2D(64, 3, name="conv3")(x))
    x = L.MaxPool2D(2, 2, ceil_mode=True, name="pool3")(x)
    x = PReLU(name="prelu4")(L.Conv2D(128, 2, name="conv4")(x))
    x = PReLU(name="prelu5")(L.Dense(256, name="dense5")(L.Flatten(name="flatten")(x)))
    prob = L.Activation("softmax", name="softmax6_1")(L.Dense(2, name="dense6_1")(x))
    reg = L.Dense(4, name="dense6_2")(x)
    landmarks = L.Dense(10, name="dense6_3")(x)
    return Model(inp, [reg, landmarks, prob], name=name)


# ----------------------------------------------------------------------------------------------- the shipped model


def default_model_path():
    """Path of the shipped MTCNN bundle (``visionkit/builtins/models/mtcnn.vk``)."""
    from .. import builtins

    return os.path.join(os.path.dirname(os.path.abspath(builtins.__file__)), "models", "mtcnn.vk")


def load_default(device="cpu"):
    """The shipped MTCNN bundle (members pnet, rnet, onet) loaded on ``device``."""
    from ..bundle import ModelBundle
    from ..weights import load_model

    bundle = load_model(default_model_path(), device=device)
    if not isinstance(bundle, ModelBundle) or not {"pnet", "rnet", "onet"} <= set(bundle):
        raise ValueError(f"{default_model_path()}: not an MTCNN bundle (needs members pnet, rnet, onet)")
    return bundle


# ----------------------------------------------------------------------------------------------- the cascade's parts


def pyramid_scales(height, width, min_size=20, factor=0.709):
    """Scales 12/min_size, then times ``factor``, while the scaled shorter side is still >= 12 pixels."""
    if not min_size > 0:
        raise ValueError(f"min_size must be > 0, got {min_size}")
    if not 0 < factor < 1:
        raise ValueError(f"factor must be between 0 and 1, got {factor}")
    m = PNET_CELL / float(min_size)
    shorter = min(height, width) * m
    scales, s = [], m
    while shorter >= PNET_CELL:
        scales.append(s)
        s *= factor
        shorter *= factor
    return scales


def _normalise(x):
    return ((x - np.float32(MEAN)) * np.float32(SCALE)).astype(np.float32, copy=False)


def _pnet_boxes(reg, prob, scale, threshold):
    """Candidate boxes of one pyramid level: (K, 9) float32 rows x1 y1 x2 y2 score dx1 dy1 dx2 dy2."""
    ys, xs = np.nonzero(prob >= threshold)  # row-major, as the reference
    if ys.size == 0:
        return np.zeros((0, 9), np.float32)
    s = np.float32(scale)
    x = xs.astype(np.float32)
    y = ys.astype(np.float32)
    x1 = np.floor((PNET_STRIDE * x + 1) / s)
    y1 = np.floor((PNET_STRIDE * y + 1) / s)
    x2 = np.floor((PNET_STRIDE * x + PNET_CELL) / s)
    y2 = np.floor((PNET_STRIDE * y + PNET_CELL) / s)
    return np.stack([x1, y1, x2, y2, prob[ys, xs], *(reg[k, ys, xs] for k in range(4))], axis=1).astype(np.float32)


def _square(b):
    """Boxes (K, >=4) made squares of side max(w, h) about their centres (w = x2 - x1, no +1), in place."""
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    side = np.maximum(w, h)
    b[:, 0] = b[:, 0] + w * 0.5 - side * 0.5
    b[:, 1] = b[:, 1] + h * 0.5 - side * 0.5
    b[:, 2] = b[:, 0] + side
    b[:, 3] = b[:, 1] + side
    return b


def _regress(b, reg):
    """Move the corners by the regression times the box size (x2 - x1 + 1), in place."""
    w = b[:, 2] - b[:, 0] + 1
    h = b[:, 3] - b[:, 1] + 1
    b[:, 0] = b[:, 0] + reg[:, 0] * w
    b[:, 1] = b[:, 1] + reg[:, 1] * h
    b[:, 2] = b[:, 2] + reg[:, 2] * w
    b[:, 3] = b[:, 3] + reg[:, 3] * h
    return b


def _crops(x, boxes, size):
    """Cut every box out of x (1, 3, H, W) float32 and resize it to size x size by area averaging.

    Corners are truncated to ints and read as 1-based inclusive (x1..x2 -> columns x1-1 .. x2-1), clipped to the
    image. Returns (batch (K', 3, size, size) normalised, indices of the boxes that had pixels in the image)."""
    H, W = x.shape[2], x.shape[3]
    c = np.trunc(boxes[:, :4]).astype(np.int64)
    x1 = np.maximum(c[:, 0], 1)
    y1 = np.maximum(c[:, 1], 1)
    x2 = np.minimum(c[:, 2], W)
    y2 = np.minimum(c[:, 3], H)
    ok = np.nonzero((y2 > y1 - 1) & (x2 > x1 - 1))[0]
    out = np.empty((len(ok), 3, size, size), np.float32)
    for j, k in enumerate(ok):
        patch = np.ascontiguousarray(x[:, :, y1[k] - 1:y2[k], x1[k] - 1:x2[k]])
        out[j] = ops.adaptive_avg_pool2d(patch, (size, size))[0]
    return _normalise(out), ok


def nms_min(boxes, scores, threshold):
    """MTCNN's last NMS: overlap = intersection / area of the SMALLER box, areas and widths counted in the +1
    pixel convention ((x2 - x1 + 1) * (y2 - y1 + 1)). Greedy from the highest score; a box is dropped when its
    overlap with a kept one is > threshold. Returns the kept indices, highest score first."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    s = np.asarray(scores, np.float32).reshape(-1)
    area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    order = np.argsort(-s, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]) + 1)
        h = np.maximum(0.0, np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]) + 1)
        overlap = (w * h) / np.minimum(area[i], area[rest])
        order = rest[overlap <= threshold]
    return np.asarray(keep, np.int64)


def _as_rgb(image):
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"detect_faces: expected an H x W x 3 RGB image, got an array of shape {a.shape}")
    if a.dtype.kind not in "uif" and a.dtype != np.bool_:
        raise ValueError(f"detect_faces: expected a uint8 image, got dtype {a.dtype}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return a


# ----------------------------------------------------------------------------------------------- the cascade


def detect_faces(bundle, image, *, min_size=20, factor=0.709, thresholds=(0.6, 0.7, 0.7),
                 nms_thresholds=(0.7, 0.7, 0.7)):
    """Faces in ``image`` (H x W x 3 uint8 RGB; grayscale H x W or H x W x 1 is expanded), best first.

    bundle          a ModelBundle (or dict) with members "pnet", "rnet", "onet" (``load_default()``)
    min_size        the smallest face wanted, in pixels (the pyramid starts at scale 12 / min_size)
    factor          the pyramid's scale step (0 < factor < 1)
    thresholds      face probabilities a candidate needs at P-Net (>=), R-Net (>) and O-Net (>)
    nms_thresholds  overlaps above which a weaker box is dropped: across pyramid scales (IoU), after R-Net (IoU),
                    after O-Net (intersection over the smaller box)

    Returns ``visionkit.tasks.results.Box`` objects in pixel coordinates of ``image`` (corners as floats; they may
    reach a little outside the image), ``score`` the O-Net face probability, ``class_id`` 0, ``name`` "face",
    ``landmarks`` five (x, y) pairs: left eye, right eye, nose, left and right mouth corner (the person's left is
    on the image's right). See the module docstring for the steps.
    """
    pnet, rnet, onet = bundle["pnet"], bundle["rnet"], bundle["onet"]
    img = _as_rgb(image)
    if len(thresholds) != 3 or len(nms_thresholds) != 3:
        raise ValueError("detect_faces: thresholds and nms_thresholds take three values (P-Net, R-Net, O-Net)")
    H, W = img.shape[:2]
    x = np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32)

    # stage 1: P-Net over the pyramid
    levels = []
    for s in pyramid_scales(H, W, min_size, factor):
        level = _normalise(ops.adaptive_avg_pool2d(x, (int(H * s + 1), int(W * s + 1))))
        reg, prob = pnet.predict(level)
        b = _pnet_boxes(reg[0], prob[0, 1], s, thresholds[0])
        if len(b):
            levels.append(b[nms(b[:, :4], b[:, 4], SCALE_NMS)])
    if not levels:
        return []
    boxes = np.concatenate(levels, axis=0)
    boxes = boxes[nms(boxes[:, :4], boxes[:, 4], nms_thresholds[0])]
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    for k, size in ((0, w), (1, h), (2, w), (3, h)):
        boxes[:, k] = boxes[:, k] + boxes[:, 5 + k] * size
    boxes = _square(boxes[:, :5].copy())

    # stage 2: R-Net on 24x24 crops
    crops, ok = _crops(x, boxes, 24)
    if not len(ok):
        return []
    reg, prob = rnet.predict(crops, batch_size=512)
    boxes, score = boxes[ok], prob[:, 1]
    keep = score > thresholds[1]
    boxes = np.concatenate([boxes[keep, :4], score[keep, None]], axis=1).astype(np.float32)
    reg = reg[keep]
    if not len(boxes):
        return []
    pick = nms(boxes[:, :4], boxes[:, 4], nms_thresholds[1])
    boxes = _square(_regress(boxes[pick], reg[pick]))

    # stage 3: O-Net on 48x48 crops, landmarks
    crops, ok = _crops(x, boxes, 48)
    if not len(ok):
        return []
    reg, marks, prob = onet.predict(crops, batch_size=512)
    boxes, score = boxes[ok], prob[:, 1]
    keep = score > thresholds[2]
    boxes = np.concatenate([boxes[keep, :4], score[keep, None]], axis=1).astype(np.float32)
    reg, marks = reg[keep], marks[keep]
    if not len(boxes):
        return []
    bw = boxes[:, 2:3] - boxes[:, 0:1] + 1
    bh = boxes[:, 3:4] - boxes[:, 1:2] + 1
    px = bw * marks[:, :5] + boxes[:, 0:1] - 1
    py = bh * marks[:, 5:] + boxes[:, 1:2] - 1
    boxes = _regress(boxes, reg)
    pick = nms_min(boxes[:, :4], boxes[:, 4], nms_thresholds[2])

    return [
        Box(float(boxes[i, 0]), float(boxes[i, 1]), float(boxes[i, 2]), float(boxes[i, 3]), float(boxes[i, 4]),
            class_id=0, name="face", landmarks=[(float(px[i, j]), float(py[i, j])) for j in range(5)])
        for i in pick
    ]
