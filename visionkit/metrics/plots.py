"""Metric plots drawn with OpenCV and numpy alone (no matplotlib): a confusion-matrix heatmap, line plots with
axes, ticks, grid and legend, a two-panel training-curves figure and detection precision / recall curves.

Every function returns a new RGB uint8 H x W x 3 image; save it with ``visionkit.io.write_image``.
"""

import math

import cv2
import numpy as np

from ..tasks.render import palette

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE = (255, 255, 255)
INK = (34, 34, 34)
AXIS = (90, 90, 90)
GRID = (225, 225, 225)

# distinct, colour-blind-safe line colours (RGB); more series fall back to visionkit's golden-angle palette
COLORS = [(0, 114, 178), (230, 120, 0), (0, 158, 115), (204, 60, 60), (150, 90, 200), (86, 180, 233),
          (204, 121, 167), (120, 120, 120), (180, 160, 0), (0, 0, 0)]

# a white -> blue ramp for heatmaps: stops at 0, 0.5 and 1 (RGB)
_RAMP = np.array([[247, 251, 255], [107, 174, 214], [8, 48, 107]], np.float64)


def _colors(n):
    return COLORS[:n] if n <= len(COLORS) else COLORS + palette(n)[len(COLORS):]


def _ramp(t):
    t = float(np.clip(t, 0.0, 1.0)) * 2
    i = min(int(t), 1)
    c = _RAMP[i] + (_RAMP[i + 1] - _RAMP[i]) * (t - i)
    return tuple(int(round(v)) for v in c)


# ---------------------------------------------------------------------------------------------------------- text

def _size(text, scale, thick=1):
    (w, h), base = cv2.getTextSize(str(text), FONT, scale, thick)
    return w, h, base


def _put(img, text, x, y, scale, color=INK, thick=1, ha="left", va="baseline"):
    """Text anchored at (x, y): ha left / center / right, va baseline / center / top / bottom."""
    text = str(text)
    w, h, base = _size(text, scale, thick)
    x = x - (w // 2 if ha == "center" else w if ha == "right" else 0)
    y = y + (h // 2 if va == "center" else h if va == "top" else -base if va == "bottom" else 0)
    cv2.putText(img, text, (int(round(x)), int(round(y))), FONT, scale, color, thick, cv2.LINE_AA)


def _put_vertical(img, text, cx, cy, scale, color=INK, thick=1):
    """Text turned 90 degrees counter-clockwise (reading bottom to top), centred on (cx, cy)."""
    w, h, base = _size(text, scale, thick)
    mask = np.zeros((h + base + 4, w + 4), np.uint8)
    cv2.putText(mask, str(text), (2, h + 2), FONT, scale, 255, thick, cv2.LINE_AA)
    mask = cv2.rotate(mask, cv2.ROTATE_90_COUNTERCLOCKWISE)
    _blend(img, mask, int(round(cx - mask.shape[1] / 2)), int(round(cy - mask.shape[0] / 2)), color)


def _put_vertical_top(img, text, cx, top, scale, color=INK, thick=1):
    """Vertical text (reading from the bottom up) centred on x = cx, whose last letter is just below ``top``."""
    w, h, base = _size(text, scale, thick)
    mask = np.zeros((h + base + 4, w + 4), np.uint8)
    cv2.putText(mask, str(text), (2, h + 2), FONT, scale, 255, thick, cv2.LINE_AA)
    mask = cv2.rotate(mask, cv2.ROTATE_90_COUNTERCLOCKWISE)
    _blend(img, mask, int(round(cx - mask.shape[1] / 2)), int(top), color)


def _blend(img, mask, x, y, color):
    """Paint ``color`` into img through an 8-bit coverage mask placed with its top-left corner at (x, y)."""
    H, W = img.shape[:2]
    mh, mw = mask.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + mw, W), min(y + mh, H)
    if x0 >= x1 or y0 >= y1:
        return
    a = mask[y0 - y:y1 - y, x0 - x:x1 - x, None].astype(np.float32) / 255
    region = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = (region * (1 - a) + np.array(color, np.float32) * a + 0.5).astype(np.uint8)


def _fit_scale(texts, max_width, max_scale, min_scale=0.3, thick=1):
    """The largest font scale (<= max_scale) at which every text fits max_width; 0 if not even min_scale does."""
    widest = max((_size(t, 1.0, thick)[0] for t in texts), default=1) or 1
    scale = min(max_scale, max_width / widest)
    return scale if scale >= min_scale else 0.0


def _shorten(name, limit=22):
    name = str(name)
    return name if len(name) <= limit else name[:limit - 2] + ".."


# --------------------------------------------------------------------------------------------------------- ticks

def _nice_step(span, count, integer=False):
    raw = span / max(count, 1)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        step = m * mag
        if step >= raw * (1 - 1e-9) and not (integer and step != round(step)):
            break
    if integer:
        step = max(1.0, round(step))
    return float(step)


def _decimals(step):
    for d in range(8):
        if abs(round(step, d) - step) <= abs(step) * 1e-6:
            return d
    return 8


def _tick_label(v, step):
    if abs(v) >= 1e5 or (0 < abs(step) < 1e-4):
        return f"{v:.3g}"
    d = _decimals(step)
    return f"{v + 0.0:.{d}f}" if d else str(int(round(v)))


def _ticks(lo, hi, count=6, integer=False):
    step = _nice_step(hi - lo, count, integer)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = first
    while v <= hi + step * 1e-9:
        ticks.append(round(v / step) * step)
        v += step
    return ticks, step


def _data_range(values, pad_degenerate):
    finite = values[np.isfinite(values)] if values.size else values
    if finite.size == 0:
        return None
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        d = pad_degenerate if pad_degenerate else max(abs(lo) * 0.1, 0.5)
        lo, hi = lo - d, hi + d
    return lo, hi


# ---------------------------------------------------------------------------------------------------------- lines

def _runs(x, y):
    """The runs of consecutive finite points, as (K, 2) float arrays."""
    ok = np.isfinite(x) & np.isfinite(y)
    runs, start = [], None
    for i, good in enumerate(list(ok) + [False]):
        if good and start is None:
            start = i
        elif not good and start is not None:
            runs.append(np.stack([x[start:i], y[start:i]], axis=1))
            start = None
    return runs


def _polyline(img, pts, color, thick, dashed=False, dash=10, gap=6):
    pts = np.asarray(pts, np.float64)
    if len(pts) < 2:
        return
    shift = 4
    if not dashed:
        cv2.polylines(img, [np.round(pts * (1 << shift)).astype(np.int32)], False, color, thick, cv2.LINE_AA, shift)
        return
    seg = np.diff(pts, axis=0)
    lengths = np.hypot(seg[:, 0], seg[:, 1])
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    period = dash + gap
    s = 0.0
    while s < cum[-1]:
        e = min(s + dash, cum[-1])
        piece = [np.array([np.interp(s, cum, pts[:, 0]), np.interp(s, cum, pts[:, 1])])]
        piece += [pts[k] for k in range(1, len(pts)) if s < cum[k] < e]
        piece.append(np.array([np.interp(e, cum, pts[:, 0]), np.interp(e, cum, pts[:, 1])]))
        cv2.polylines(img, [np.round(np.array(piece) * (1 << shift)).astype(np.int32)], False, color, thick,
                      cv2.LINE_AA, shift)
        s += period


def _densify(pts, spacing=4.0):
    """Points every few pixels along a polyline, so the legend can avoid the lines and not just their vertices."""
    out = [pts[:1]]
    for a, b in zip(pts[:-1], pts[1:]):
        n = max(1, int(np.hypot(*(b - a)) / spacing))
        out.append(a + (b - a) * np.linspace(0, 1, n + 1)[1:, None])
    return np.concatenate(out)


def _legend(img, entries, area, points, scale, thick):
    """A boxed legend in the corner of ``area`` (x0, y0, x1, y1) that covers the fewest data ``points``."""
    if not entries:
        return
    sample, pad = int(28 * scale / 0.45), 8
    row = _size("Ag", scale, thick)[1] + 10
    width = sample + 3 * pad + max(_size(e["label"], scale, thick)[0] for e in entries)
    height = row * len(entries) + pad
    x0, y0, x1, y1 = area
    width = min(width, x1 - x0 - 2 * pad)
    corners = [(x1 - pad - width, y0 + pad), (x0 + pad, y0 + pad), (x1 - pad - width, y1 - pad - height),
               (x0 + pad, y1 - pad - height)]

    def covered(c):
        if points is None or not len(points):
            return 0
        inside = ((points[:, 0] >= c[0] - 4) & (points[:, 0] <= c[0] + width + 4) & (points[:, 1] >= c[1] - 4)
                  & (points[:, 1] <= c[1] + height + 4))
        return int(inside.sum())

    lx, ly = min(corners, key=covered)          # min keeps the first (top right) on ties
    over = img[ly:ly + height, lx:lx + width].astype(np.float32)
    img[ly:ly + height, lx:lx + width] = (over * 0.15 + 255 * 0.85).astype(np.uint8)
    cv2.rectangle(img, (lx, ly), (lx + width, ly + height), (180, 180, 180), 1)
    for i, e in enumerate(entries):
        cy = ly + pad // 2 + row * i + row // 2
        _polyline(img, [(lx + pad, cy), (lx + pad + sample, cy)], e["color"], max(2, thick + 1), e.get("dashed"))
        if e.get("markers", True):
            cv2.circle(img, (lx + pad + sample // 2, cy), 3, e["color"], -1, cv2.LINE_AA)
        _put(img, e["label"], lx + 2 * pad + sample, cy, scale, INK, thick, va="center")


def _panel(img, rect, series, title="", xlabel="", ylabel="", xlim=None, ylim=None, integer_x=False):
    """Draw one plot (frame, grid, ticks, labels, lines, legend) inside rect = (x, y, w, h) of img."""
    x, y, w, h = rect
    f = float(np.clip(min(w, h) / 480, 0.8, 1.6))
    s_tick, s_label, s_title = 0.45 * f, 0.52 * f, 0.62 * f
    thick = 1 if f < 1.3 else 2
    pad = int(10 * f)
    xs = np.concatenate([np.asarray(s["x"], np.float64) for s in series]) if series else np.zeros(0)
    ys = np.concatenate([np.asarray(s["y"], np.float64) for s in series]) if series else np.zeros(0)
    ok = np.isfinite(xs) & np.isfinite(ys)
    has_data = bool(ok.any())
    xr = xlim or _data_range(xs[ok], 0.5 if integer_x else 0) or (0.0, 1.0)
    yr = ylim or _data_range(ys[ok], 0) or (0.0, 1.0)
    ycount = max(3, int(h / (60 * f)))
    if ylim is None:                                    # a little air above and below the data
        air = (yr[1] - yr[0]) * 0.05
        yr = (yr[0] - air, yr[1] + air)
    yticks, ystep = _ticks(*yr, count=ycount)
    xticks, xstep = _ticks(*xr, count=max(2, int(w / (90 * f))), integer=integer_x)
    if xlim is None:                                    # a little air left and right of the data
        air = (xr[1] - xr[0]) * 0.025
        xr = (xr[0] - air, xr[1] + air)
    ylabels = [_tick_label(v, ystep) for v in yticks]
    xlabels = [_tick_label(v, xstep) for v in xticks]

    th = _size("Ag", s_tick, thick)[1]
    left = pad + (_size("Ag", s_label, thick)[1] + pad if ylabel else 0) + \
        max((_size(t, s_tick, thick)[0] for t in ylabels), default=0) + 6 + pad // 2
    top = pad + (_size("Ag", s_title, thick)[1] + pad if title else 0) + th // 2
    bottom = pad + th + 10 + (_size("Ag", s_label, thick)[1] + pad if xlabel else 0)
    right = pad + max(_size(xlabels[-1], s_tick, thick)[0] // 2, pad) if xlabels else 2 * pad
    px0, py0, px1, py1 = x + left, y + top, x + w - right, y + h - bottom
    if px1 - px0 < 20 or py1 - py0 < 20:
        raise ValueError(f"a {w} x {h} panel is too small to plot in")

    def X(v):
        return px0 + (np.asarray(v, np.float64) - xr[0]) / (xr[1] - xr[0]) * (px1 - px0)

    def Y(v):
        return py1 - (np.asarray(v, np.float64) - yr[0]) / (yr[1] - yr[0]) * (py1 - py0)

    cv2.rectangle(img, (px0, py0), (px1, py1), WHITE, -1)
    for v, lab in zip(yticks, ylabels):
        yy = int(round(float(Y(v))))
        cv2.line(img, (px0, yy), (px1, yy), GRID, 1)
        cv2.line(img, (px0 - 5, yy), (px0, yy), AXIS, 1)
        _put(img, lab, px0 - 8, yy, s_tick, INK, thick, ha="right", va="center")
    for v, lab in zip(xticks, xlabels):
        xx = int(round(float(X(v))))
        cv2.line(img, (xx, py0), (xx, py1), GRID, 1)
        cv2.line(img, (xx, py1), (xx, py1 + 5), AXIS, 1)
        _put(img, lab, xx, py1 + 8, s_tick, INK, thick, ha="center", va="top")
    cv2.rectangle(img, (px0, py0), (px1, py1), AXIS, 1)
    if title:
        _put(img, title, (px0 + px1) / 2, y + pad, s_title, INK, thick + (1 if f >= 1 else 0), ha="center",
             va="top")
    if xlabel:
        _put(img, xlabel, (px0 + px1) / 2, y + h - pad, s_label, INK, thick, ha="center", va="bottom")
    if ylabel:
        _put_vertical(img, ylabel, x + pad + _size("Ag", s_label, thick)[1] / 2, (py0 + py1) / 2, s_label, INK,
                      thick)

    # the lines, drawn on a copy of the plot area so nothing spills outside the frame
    area = img[py0 + 1:py1, px0 + 1:px1].copy()
    all_points = []
    lw = max(2, int(round(2 * f)))
    for s in series:
        sx, sy = np.asarray(s["x"], np.float64), np.asarray(s["y"], np.float64)
        n_finite = int(np.sum(np.isfinite(sx) & np.isfinite(sy)))
        for run in _runs(sx, sy):
            pts = np.stack([X(run[:, 0]) - px0 - 1, Y(run[:, 1]) - py0 - 1], axis=1)
            all_points.append(_densify(pts) + [px0 + 1, py0 + 1])
            _polyline(area, pts, s["color"], lw, s.get("dashed", False))
            if len(pts) == 1 or (s.get("markers", True) and n_finite <= 40):
                for px, py in pts:
                    cv2.circle(area, (int(round(px * 16)), int(round(py * 16))), 16 * (lw + 1), s["color"], -1,
                               cv2.LINE_AA, 4)
    img[py0 + 1:py1, px0 + 1:px1] = area
    if not has_data:
        _put(img, "no data", (px0 + px1) / 2, (py0 + py1) / 2, s_label, (150, 150, 150), thick, ha="center",
             va="center")
    points = np.concatenate(all_points) if all_points else None
    _legend(img, [s for s in series if s.get("label")], (px0, py0, px1, py1), points, s_tick, thick)
    return img


def _canvas(size):
    w, h = int(size[0]), int(size[1])
    if w < 60 or h < 60:
        raise ValueError(f"image size {size} is too small")
    return np.full((h, w, 3), 255, np.uint8)


def _series_xy(value, x):
    if isinstance(value, tuple) and len(value) == 2 and np.ndim(value[0]) == 1 and np.ndim(value[1]) == 1:
        return np.asarray(value[0], np.float64), np.asarray(value[1], np.float64), False
    yv = np.asarray(value, np.float64).reshape(-1)
    if x is None:
        return np.arange(1, len(yv) + 1, dtype=np.float64), yv, True
    xv = np.asarray(x, np.float64).reshape(-1)[:len(yv)]
    if len(xv) < len(yv):
        raise ValueError(f"{len(xv)} x values for a series of {len(yv)}")
    return xv, yv, False


# ---------------------------------------------------------------------------------------------------------- plots

def line_plot(series, title="", xlabel="", ylabel="", size=(800, 500), x=None, dashed=()):
    """A line plot of named series: axes, ticks and tick labels, grid, legend, one distinct colour per series.

    series: {name: y values} plotted against 1, 2, ... (epochs), or against ``x`` when given; a value may also be
    an ``(x, y)`` pair of sequences. NaN / inf values are skipped (the line breaks there; a lone point gets a
    marker). dashed: names of series to draw dashed. size: (width, height) in pixels.
    """
    img = _canvas(size)
    items, integer = [], True
    for (name, value), color in zip(series.items(), _colors(len(series))):
        xv, yv, default_x = _series_xy(value, x)
        integer = integer and default_x
        items.append({"label": str(name), "x": xv, "y": yv, "color": color, "dashed": name in dashed})
    return _panel(img, (0, 0, img.shape[1], img.shape[0]), items, title, xlabel, ylabel,
                  integer_x=integer and bool(items))


_ALIASES = {"train_loss": ("train_loss", "loss"), "val_loss": ("val_loss", "valid_loss", "validation_loss"),
            "train_accuracy": ("train_accuracy", "accuracy", "train_acc", "acc"),
            "val_accuracy": ("val_accuracy", "val_acc", "valid_accuracy", "validation_accuracy")}


def _history_dict(history):
    if isinstance(history, (list, tuple)):                 # one dict per epoch
        keys = {k for epoch in history for k in epoch}
        return {k: [epoch.get(k, float("nan")) for epoch in history] for k in keys}
    return dict(history)


def training_curves_image(history, size=(1200, 460), title=None):
    """Two panels side by side, per epoch: loss (train_loss, val_loss) and accuracy (train_accuracy,
    val_accuracy). history: {name: per-epoch values} (Keras-style "loss" / "accuracy" / "acc" / "val_acc" are
    understood too) or a list of per-epoch dicts. Missing series are skipped; a panel with none says "no data".
    Training lines are solid, validation lines dashed; NaN epochs leave a gap."""
    h = _history_dict(history)
    img = _canvas(size)
    W, H = img.shape[1], img.shape[0]
    top = 0
    if title:
        s = 0.7 * float(np.clip(H / 460, 0.8, 1.6))
        top = _size("Ag", s, 2)[1] + 16
        _put(img, title, W / 2, 8, s, INK, 2, ha="center", va="top")
    train_c, val_c = COLORS[0], COLORS[1]
    for i, (metric, label) in enumerate((("loss", "loss"), ("accuracy", "accuracy"))):
        items = []
        for split, color, dashed in (("train", train_c, False), ("val", val_c, True)):
            key = next((k for k in _ALIASES[f"{split}_{metric}"] if k in h and h[k] is not None), None)
            if key is None:
                continue
            yv = np.asarray(h[key], np.float64).reshape(-1)
            if yv.size == 0:
                continue
            items.append({"label": f"{split} {label}", "x": np.arange(1, yv.size + 1, dtype=np.float64), "y": yv,
                          "color": color, "dashed": dashed})
        _panel(img, (i * (W // 2), top, W // 2, H - top), items, label, "epoch", label, integer_x=True)
    return img


def _pr_items(curves):
    if hasattr(curves, "pr_curves"):                       # a DetectionMetrics
        curves = curves.pr_curves()
    out = []
    for name, c in curves.items():
        if isinstance(c, dict):
            p, r, ap = c["precision"], c["recall"], c.get("ap")
        elif hasattr(c, "precision"):
            p, r, ap = c.precision, c.recall, getattr(c, "ap", None)
        else:
            p, r = c[0], c[1]
            ap = c[2] if len(c) > 2 else None
        p, r = np.asarray(p, np.float64).reshape(-1), np.asarray(r, np.float64).reshape(-1)
        if p.size:                                        # start the curve at recall 0
            p, r = np.concatenate([[p[0]], p]), np.concatenate([[0.0], r])
        label = str(name) if ap is None or not np.isfinite(ap) else f"{name} (AP {ap:.3f})"
        out.append((label, r, p))
    return out


def precision_recall_image(curves, title="precision-recall", size=(800, 600)):
    """Detection precision / recall curves on [0, 1] x [0, 1].

    curves: a DetectionMetrics (its curves at the first IoU threshold), or {name: PRCurve | {"precision",
    "recall"[, "ap"]} | (precision, recall[, ap])}. Legend labels carry the AP when it is known.
    """
    img = _canvas(size)
    if hasattr(curves, "iou_thresholds") and title == "precision-recall":
        title = f"precision-recall at IoU {curves.iou_thresholds[0]:g}"
    items = _pr_items(curves)
    series = [{"label": lab, "x": r, "y": p, "color": c, "markers": False}
              for (lab, r, p), c in zip(items, _colors(len(items)))]
    return _panel(img, (0, 0, img.shape[1], img.shape[0]), series, title, "recall", "precision",
                  xlim=(0.0, 1.0), ylim=(0.0, 1.04))


def confusion_matrix_image(cm, class_names=None, normalize=True, title=None, cell_size=None):
    """A confusion-matrix heatmap: true classes down the side, predicted along the bottom, class names on both
    axes, each cell's value written in it, and a colour bar.

    normalize: colour and label by the fraction of each true class's samples (rows sum to 100%; the count is
    written under the percentage when the cell has room; a class with no samples stays at 0); False: by raw counts.
    cell_size: pixels per cell (default: about 560 / K, so 10 classes make a ~800 px image).
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"a confusion matrix is square and non-empty, got shape {cm.shape}")
    k = cm.shape[0]
    names = [_shorten(n) for n in (class_names if class_names is not None else range(k))]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a {k} x {k} matrix")
    counts = np.nan_to_num(cm.astype(np.float64))
    rows = counts.sum(axis=1, keepdims=True)
    if normalize:
        values = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
        vmax = 1.0
    else:
        values = counts
        vmax = max(float(counts.max()), 1.0)
    cell = int(cell_size or np.clip(560 // k, 14, 140))
    f = float(np.clip(cell / 56, 0.75, 1.3)) if cell >= 40 else 0.75
    s_name, s_label, s_title = 0.5 * f, 0.6 * f, 0.65 * f
    pad = 12

    # cell texts and the scale they fit at
    def pct(v):
        return "0" if v == 0 else f"{100 * v:.0f}%" if v >= 0.0995 else f"{100 * v:.1f}%"

    def num(v):
        return f"{int(round(v))}" if abs(v - round(v)) < 1e-9 else f"{v:.3g}"

    main = [[pct(values[i, j]) if normalize else num(counts[i, j]) for j in range(k)] for i in range(k)]
    sub = [[f"({num(counts[i, j])})" for j in range(k)] for i in range(k)] if normalize else None
    flat = [t for r in main for t in r]
    s_cell = _fit_scale(flat, cell * 0.86, 0.55 * f, 0.3)
    line_h = _size("0", s_cell or 0.3)[1]
    s_sub = _fit_scale([t for r in sub for t in r], cell * 0.86, 0.42 * f, 0.3) if sub else 0.0
    two_lines = bool(sub) and s_sub > 0 and s_cell > 0 and (line_h + _size("0", s_sub)[1] + 8) <= cell * 0.8

    # layout
    name_w = max(_size(n, s_name)[0] for n in names)
    name_h = _size("Ag", s_name)[1]
    rotate_x = name_w > cell - 6
    xnames_h = (name_w if rotate_x else name_h) + 10
    label_h = _size("Ag", s_label)[1]
    title = title if title is not None else ("confusion matrix (% of each true class)" if normalize
                                             else "confusion matrix (counts)")
    title_h = _size("Ag", s_title, 1)[1] + pad if title else 0
    bar_w = max(12, cell // 4)
    bar_labels = ["0%", "50%", "100%"] if normalize else [num(v) for v in (0, vmax / 2, vmax)]
    bar_lab_w = max(_size(t, s_name)[0] for t in bar_labels)
    mx0 = pad + label_h + pad + name_w + 8
    my0 = pad + title_h
    mw = mh = cell * k
    width = mx0 + mw + pad + bar_w + 6 + bar_lab_w + pad
    width = max(width, _size(title, s_title)[0] + 2 * pad) if title else width
    height = my0 + mh + 6 + xnames_h + pad + label_h + pad
    img = np.full((height, width, 3), 255, np.uint8)

    for i in range(k):
        for j in range(k):
            color = _ramp(values[i, j] / vmax)
            x0, y0 = mx0 + j * cell, my0 + i * cell
            cv2.rectangle(img, (x0, y0), (x0 + cell - 1, y0 + cell - 1), color, -1)
            if not s_cell:
                continue
            lum = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
            ink = WHITE if lum < 140 else INK
            cx, cy = x0 + cell / 2, y0 + cell / 2
            if two_lines:
                sub_h = _size("0", s_sub)[1]
                gap = max(4, cell // 12)
                top = cy - (line_h + gap + sub_h) / 2
                _put(img, main[i][j], cx, top, s_cell, ink, 1, ha="center", va="top")
                _put(img, sub[i][j], cx, top + line_h + gap, s_sub, ink, 1, ha="center", va="top")
            else:
                _put(img, main[i][j], cx, cy, s_cell, ink, 1, ha="center", va="center")
    # grid lines between cells and a frame
    for t in range(1, k):
        cv2.line(img, (mx0 + t * cell, my0), (mx0 + t * cell, my0 + mh - 1), WHITE, 1)
        cv2.line(img, (mx0, my0 + t * cell), (mx0 + mw - 1, my0 + t * cell), WHITE, 1)
    cv2.rectangle(img, (mx0 - 1, my0 - 1), (mx0 + mw, my0 + mh), AXIS, 1)

    # class names: right-aligned along the left side, and along the bottom (turned when wider than a cell)
    for i, n in enumerate(names):
        _put(img, n, mx0 - 8, my0 + i * cell + cell / 2, s_name, INK, 1, ha="right", va="center")
        if rotate_x:
            _put_vertical_top(img, n, mx0 + i * cell + cell / 2, my0 + mh + 6, s_name, INK)
        else:
            _put(img, n, mx0 + i * cell + cell / 2, my0 + mh + 8, s_name, INK, 1, ha="center", va="top")
    _put(img, "predicted", mx0 + mw / 2, height - pad, s_label, INK, 1, ha="center", va="bottom")
    _put_vertical(img, "true", pad + label_h / 2, my0 + mh / 2, s_label, INK, 1)
    if title:
        tw = _size(title, s_title)[0]     # centred over the matrix where it fits, else over the image
        cx = min(max(mx0 + mw / 2, pad + tw / 2), width - pad - tw / 2)
        _put(img, title, cx, pad, s_title, INK, 1, ha="center", va="top")

    # colour bar
    bx0 = mx0 + mw + pad
    for yy in range(mh):
        cv2.line(img, (bx0, my0 + yy), (bx0 + bar_w, my0 + yy), _ramp(1 - yy / max(mh - 1, 1)), 1)
    cv2.rectangle(img, (bx0, my0), (bx0 + bar_w, my0 + mh - 1), AXIS, 1)
    for t, lab in zip((0.0, 0.5, 1.0), bar_labels):
        yy = int(round(my0 + (mh - 1) * (1 - t)))
        cv2.line(img, (bx0 + bar_w, yy), (bx0 + bar_w + 4, yy), AXIS, 1)
        _put(img, lab, bx0 + bar_w + 6, yy, s_name, INK, 1, va="center")
    return img
