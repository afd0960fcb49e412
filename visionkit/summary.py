"""``model.summary()``: Keras' table plus multiply-accumulate counts and a memory estimate.

Columns: Layer (type) | Output Shape (batch printed as None) | Param # | MACs for the given batch
[| Connected to, for graphs that are not a plain stack]. Then Keras' totals (Total / Trainable / Non-trainable
params; BatchNorm's running statistics count as non-trainable, as in Keras), the total MACs, and memory.

MACs (multiply-accumulates; FLOPs are about twice as many), N = batch:
    Conv2D            N * OH * OW * filters * (C / groups) * kh * kw
    DepthwiseConv2D   N * OH * OW * (C * depth_multiplier) * kh * kw
    SeparableConv2D   depthwise + N * OH * OW * filters * (C * depth_multiplier)
    Conv2DTranspose   N * H * W * C * (filters / groups) * kh * kw      (per input pixel)
    Dense             N * in_features * units
    BatchNorm         N * elements of the output (one multiply-add each, scale and shift folded)
    LocalResponseNorm N * elements * size
    UpSampling2D      bilinear: N * 4 * output elements; nearest: 0
    everything else   0 (pooling, activations, Add, Concat, Dropout, reshapes: comparisons and additions only)
"?" marks a count that depends on an unknown (None) spatial size.

Memory (float32, 4 bytes a value):
    parameters            every parameter, trainable or not
    inference activations the largest (inputs + output) of any one layer for the batch: during inference a layer's
                          input can be released once the next layer has run, so at most a layer's inputs and its
                          output are alive at once (for a plain stack, the two largest consecutive outputs)
    training activations  every layer output for the batch, the model input included, since the backward pass
                          needs them (an upper bound: Flatten/Reshape outputs are views, counted anyway)
"""

from __future__ import annotations

import math


def _elements(shape):
    if any(d is None for d in shape):
        return None
    return math.prod(shape)


def _fmt_int(v):
    return "?" if v is None else f"{v:,}"


def _fmt_bytes(b):
    if b is None:
        return "? (depends on the input size)"
    return f"{b:,} bytes ({b / 2**20:.2f} MB)"


def _wrap(text, width):
    """Split a cell at spaces into chunks that fit its column (one space kept free)."""
    width = max(width - 1, 4)
    if len(text) <= width:
        return [text]
    lines, cur = [], ""
    for tok in text.split(" "):
        cand = tok if not cur else cur + " " + tok
        if len(cand) <= width:
            cur = cand
            continue
        if cur:
            lines.append(cur)
        while len(tok) > width:
            lines.append(tok[:width])
            tok = tok[width:]
        cur = tok
    if cur:
        lines.append(cur)
    return lines


def _row(cells, widths):
    cols = [_wrap(c, w) for c, w in zip(cells, widths)]
    lines = []
    for i in range(max(len(c) for c in cols)):
        line = ""
        for c, w in zip(cols, widths):
            line += (" " + (c[i] if i < len(c) else "")).ljust(w)
        lines.append(line.rstrip())
    return lines


def summary(model, batch=1, print_fn=print, line_length=None):
    """Build the table of ``model`` for a batch of ``batch``; print it with ``print_fn`` (None: don't) and return it."""
    from .model import InputLayer, Sequential, node_shapes

    batch = int(batch)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    sequential = isinstance(model, Sequential)
    nodes = [n for n in model._order if not (sequential and isinstance(n.layer, InputLayer))]

    headers = ["Layer (type)", "Output Shape", "Param #", f"MACs (batch {batch})"]
    widths = [32, 26, 12, 18]
    if not sequential:
        headers.append("Connected to")
        widths.append(26)
    if line_length is not None:
        scale = line_length / sum(widths)
        widths = [max(int(w * scale), 8) for w in widths]
    total_width = sum(widths)

    counted = set()
    node_names = {}
    counts = {}
    for n in model._order:
        k = counts.get(n.layer.name, 0)
        counts[n.layer.name] = k + 1
        node_names[id(n)] = n.layer.name + (f"[{k}]" if k else "")

    body = []
    total_macs = 0
    for n in nodes:
        layer = n.layer
        in_shape, out_shape = node_shapes(n)
        if id(layer) in counted:
            params = "(shared)"
        else:
            counted.add(id(layer))
            params = f"{layer.count_params():,}"
        if isinstance(layer, InputLayer):
            macs = 0
        else:
            m = layer.count_macs(in_shape, out_shape)
            macs = None if m is None else m * batch
        if total_macs is not None:
            total_macs = None if macs is None else total_macs + macs
        cells = [
            f"{layer.name} ({type(layer).__name__})",
            _shape_str(n.outputs[0].shape),
            params,
            _fmt_int(macs),
        ]
        if not sequential:
            cells.append(", ".join(node_names[id(t.node)] for t in n.inbound))
        body.extend(_row(cells, widths))

    params = model.parameters()
    total = sum(p.size for p in params)
    trainable = sum(p.size for p in params if p.trainable)
    param_bytes = sum(p.size * 4 for p in params)

    # activations
    def tensor_bytes(t):
        e = _elements(t.shape[1:])
        return None if e is None else e * batch * 4

    infer, train = 0, 0
    for t in model.inputs:
        b = tensor_bytes(t)
        train = None if (train is None or b is None) else train + b
    for n in model._order:
        if isinstance(n.layer, InputLayer):
            continue
        parts = [tensor_bytes(t) for t in n.inbound] + [tensor_bytes(n.outputs[0])]
        if infer is not None:
            infer = None if any(p is None for p in parts) else max(infer, sum(parts))
        ob = parts[-1]
        train = None if (train is None or ob is None) else train + ob

    kind = "Sequential" if sequential else "Model"
    lines = [f'Model: "{model.name}" ({kind})', "_" * total_width]
    lines += _row(headers, widths)
    lines.append("=" * total_width)
    lines += body
    lines.append("=" * total_width)
    lines += [
        f"Total params: {total:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {total - trainable:,}",
        f"Total MACs (batch {batch}): {_fmt_int(total_macs)}",
        "_" * total_width,
        f"Parameter memory: {_fmt_bytes(param_bytes)}",
        f"Activation memory, inference (batch {batch}): {_fmt_bytes(infer)}",
        f"Activation memory, training (batch {batch}): {_fmt_bytes(train)}",
        "_" * total_width,
    ]
    text = "\n".join(lines)
    if print_fn is not None:
        print_fn(text)
    return text


def _shape_str(shape):
    from .layers.base import fmt_shape

    return fmt_shape(shape)
