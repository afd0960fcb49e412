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

Memory (float32 activations, 4 bytes a value; int32 indices 4 bytes, dropout masks 1 byte), for the batch:
    parameters            every parameter, trainable or not
    inference activations the peak of a liveness simulation of ``model.predict`` (no tape): nodes run in the
                          model's topological order; a node's output is allocated when it runs and freed after its
                          last consumer has run (counted with the graph's consumer counts, as ``Model._run``
                          does), so tensors held across a block (a residual's skip, an inception's branches) stay
                          live while the block runs. The peak over nodes of
                              bytes of every live tensor (the node's inputs included) + the node's output
                              + its transient arrays (a fused activation's pre-activation, a separable conv's
                                depthwise result)
                          The model inputs (held by the caller) and outputs (returned) count as live throughout.
    training activations  what the tape keeps after a training forward, i.e. what backward needs: every tensor
                          some layer's ctx references (a conv/dense layer keeps its input, its output and, with a
                          fused activation, the pre-activation z too; BatchNorm, LRN and Activation keep their
                          input), plus the extra arrays ctxs hold (max-pool int32 indices, dropout uint8 masks,
                          a separable conv's depthwise result), plus the model inputs and outputs.
Views share memory and are counted once: Flatten/Reshape outputs, an inference-mode Dropout, Activation("linear")
and InputLayer are views of their input. Layers describe themselves through ``Layer.memory_profile`` (custom layers
default to "keeps its input"); a nested model contributes its own figures. Gradients, optimizer state and the
temporary buffers inside kernels (im2col columns) are not counted.
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
    from .input_layer import InputLayer
    from .model import node_shapes
    from .sequential import Sequential

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

    infer, train = activation_memory(model, batch)

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


def _profiles(model, training):
    """Per node of ``model._order``: (output bytes per sample or None, memory profile dict)."""
    from .model import node_shapes

    out = []
    for n in model._order:
        in_shape, out_shape = node_shapes(n)
        e = _elements(n.outputs[0].shape[1:])
        out.append((None if e is None else 4 * e, n.layer.memory_profile(in_shape, out_shape, training)))
    return out


def _storages(model, profiles):
    """The storage (index of the node whose output owns the memory) of each node's output: views share."""
    storage = []
    for k, (_, prof) in enumerate(profiles):
        ins = model._inbound[k]
        storage.append(storage[ins[0]] if prof["view"] and len(ins) == 1 else k)
    return storage


def activation_memory(model, batch=1, io_only=False):
    """(inference bytes, training bytes) of ``model``'s activations for ``batch`` (None where a size is unknown);
    the rules are in this module's docstring. ``io_only``: just the bytes of the model's inputs and outputs."""
    batch = int(batch)
    if io_only:
        prof = _profiles(model, False)
        store = _storages(model, prof)
        ids = {store[j] for j in list(model._input_idx) + list(model._output_idx)}
        sizes = [prof[j][0] for j in ids]
        return None if any(b is None for b in sizes) else sum(sizes) * batch
    return _inference_peak(model, batch), _training_bytes(model, batch)


def _training_bytes(model, batch):
    prof = _profiles(model, True)
    store = _storages(model, prof)
    kept = {store[j] for j in list(model._input_idx) + list(model._output_idx)}
    extra = 0
    for k, (_, p) in enumerate(prof):
        if k in model._input_idx:
            continue
        if p["keeps_input"]:
            kept.update(store[j] for j in model._inbound[k])
        if p["keeps_output"]:
            kept.add(store[k])
        if p["extra"] is None:
            return None
        extra += p["extra"]
    sizes = [prof[s][0] for s in kept]
    if any(b is None for b in sizes):
        return None
    return (sum(sizes) + extra) * batch


def _inference_peak(model, batch):
    prof = _profiles(model, False)
    if any(b is None for b, _ in prof) or any(p["transient"] is None for _, p in prof):
        return None
    store = _storages(model, prof)
    pinned = set(model._input_idx) | set(model._output_idx)
    remaining = list(model._consumers)
    refs = {}  # storage -> number of live tensors on it

    def live_bytes():
        return sum(prof[s][0] for s in refs)

    for i in model._input_idx:
        refs[store[i]] = refs.get(store[i], 0) + 1
    peak = live_bytes()
    for k, (size, p) in enumerate(prof):
        if k in model._input_idx:
            continue
        new = 0 if store[k] in refs else size
        peak = max(peak, live_bytes() + new + p["transient"])
        refs[store[k]] = refs.get(store[k], 0) + 1
        for j in model._inbound[k]:
            remaining[j] -= 1
            if remaining[j] == 0 and j not in pinned:
                refs[store[j]] -= 1
                if refs[store[j]] == 0:
                    del refs[store[j]]
        if remaining[k] == 0 and k not in pinned:  # an output nobody consumes (not a model output)
            refs[store[k]] -= 1
            if refs[store[k]] == 0:
                del refs[store[k]]
    return peak * batch


def _shape_str(shape):
    from .layers.graph import fmt_shape

    return fmt_shape(shape)
