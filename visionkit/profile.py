"""Where a model's inference time goes: per-layer medians over repeated ``predict``-style runs.

``profile_layers(model, x)`` runs the graph as ``predict`` does (no tape, inference mode, fused conv -> BatchNorm
-> activation chains counted as one step under the convolution's name) and returns one ``LayerTime`` per step,
slowest first; ``profile_lines`` formats them with each layer-kind's total. ``visionkit bench MODEL --profile``
prints it: the closing notes of the speed targets use it to show where the time goes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LayerTime:
    name: str
    kind: str  # the layer class, or the fused chain ("Conv2D+BatchNorm+relu6")
    ms: float  # median over the runs
    share: float  # of the sum of all steps' medians


def profile_layers(model, x, repeat=10, warmup=2):
    """Per-step median times of ``model`` on batch ``x``, slowest first."""
    xs = model._prepare_inputs(x)
    if model.device != "cpu":  # timed as the host sees them: each step waits for its kernels
        from . import ops

        xs = [ops.to_device(a, model.device) for a in xs]
    runs = []
    for i in range(warmup + repeat):
        timings = {}
        model._run(xs, False, keep=False, timings=timings)
        if i >= warmup:
            runs.append(timings)
    keys = list(runs[0])
    med = {k: float(np.median([r.get(k, 0.0) for r in runs])) * 1e3 for k in keys}
    total = sum(med.values()) or 1.0
    rows = [LayerTime(name, kind, med[(k, name, kind)], med[(k, name, kind)] / total) for k, name, kind in keys]
    return sorted(rows, key=lambda r: -r.ms)


def profile_lines(rows, top=25):
    """A table of the ``top`` slowest steps, then the total per layer kind."""
    total = sum(r.ms for r in rows)
    width = max([len(r.name) for r in rows[:top]] + [5])
    kw = max([len(r.kind) for r in rows] + [4])
    lines = [f"{'LAYER':<{width}}  {'KIND':<{kw}}  {'MS':>8}  {'SHARE':>6}"]
    for r in rows[:top]:
        lines.append(f"{r.name:<{width}}  {r.kind:<{kw}}  {r.ms:8.3f}  {100 * r.share:5.1f}%")
    if len(rows) > top:
        rest = sum(r.ms for r in rows[top:])
        lines.append(f"{f'({len(rows) - top} more)':<{width}}  {'':<{kw}}  {rest:8.3f}  {100 * rest / total:5.1f}%")
    lines.append("")
    kinds = {}
    for r in rows:
        n, ms = kinds.get(r.kind, (0, 0.0))
        kinds[r.kind] = (n + 1, ms + r.ms)
    lines.append(f"{'KIND':<{kw}}  {'STEPS':>5}  {'MS':>8}  {'SHARE':>6}")
    for kind, (n, ms) in sorted(kinds.items(), key=lambda kv: -kv[1][1]):
        lines.append(f"{kind:<{kw}}  {n:5d}  {ms:8.3f}  {100 * ms / total:5.1f}%")
    lines.append(f"{'total':<{kw}}  {len(rows):5d}  {total:8.3f}")
    return lines
