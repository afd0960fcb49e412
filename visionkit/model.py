"""Models: a directed acyclic graph of layers (Keras' functional API), with ``Sequential`` as the simple case.

    inp = vk.Input((3, 32, 32))
    x = L.Conv2D(16, 3, padding="same", activation="relu")(inp)
    y = L.Conv2D(16, 3, padding="same")(x)
    x = L.Add()([x, y])                              # residual
    out = L.Dense(10)(L.Flatten()(L.MaxPool2D(2)(x)))
    model = vk.Model(inp, out)                       # or vk.Model([in1, in2], [out1, out2])

    y = model(x)                     # numpy in (float64 / non-contiguous accepted), numpy out; a list for 2+ outputs
    gx = model.backward(grad_y)      # gradient w.r.t. the input(s); fills every trainable Parameter.grad
    p = model.predict(x)             # inference only: no tape kept, faster kernels (index-free max-pool)

Running a graph: nodes run in topological order, each layer's ``forward`` returns ``(y, ctx)``; the ctxs of the
last call are kept so ``backward`` can walk the nodes in reverse, summing the gradients of tensors consumed by
several nodes (skip connections) and letting shared layers accumulate their parameter gradients.

The arrays a model returns on the host path are its own: they never share memory with the input or with what the
tape keeps for backward, so ``y -= t`` on an output cannot change a later ``backward``.

A Model is itself a Layer: it can be called on a symbolic tensor inside a bigger model (one output).
Sequential (``visionkit.sequential``) and InputLayer / Input (``visionkit.input_layer``) are re-exported here.
"""

from __future__ import annotations

from collections import defaultdict
from time import perf_counter

import numpy as np

from . import fusion, ops
from .device import get_backend, is_device_array, resolve_device
from .input_layer import Input, InputLayer
from .layers.base import (
    Layer,
    SymbolicTensor,
    as_input_array,
    fmt_shape,
    is_symbolic,
    layer_from_config,
    no_tape,
    profile,
    recording,
    register_layer,
)

__all__ = ["Model", "Sequential", "Input", "InputLayer", "node_shapes"]

# --------------------------------------------------------------------------------------------------------------
# the graph model


def _as_list(v):
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _is_array(v):
    return isinstance(v, np.ndarray) or is_device_array(v)


def _arrays_in(obj, depth=0):
    """Every numpy array inside a ctx (nested tuples / lists / dicts)."""
    if isinstance(obj, np.ndarray):
        yield obj
    elif depth < 32 and isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _arrays_in(o, depth + 1)
    elif depth < 32 and isinstance(obj, dict):
        for o in obj.values():
            yield from _arrays_in(o, depth + 1)


def _independent(outs, kept):
    """Copy each numpy output that may share memory with an array in ``kept`` or with an earlier output."""
    kept = [a for a in kept if isinstance(a, np.ndarray)]
    result = []
    for o in outs:
        if isinstance(o, np.ndarray) and any(np.may_share_memory(o, a) for a in kept):
            o = o.copy()
        result.append(o)
        kept.append(o)
    return result


@register_layer
class Model(Layer):
    """A graph of layers from ``inputs`` to ``outputs`` (symbolic tensors).

    ``Model(inputs, outputs, name=None, seed=None, trainable=True, device="cpu")``: ``seed`` redraws every weight
    from ``numpy.random.default_rng(seed)`` in graph order, so two models built with the same seed are identical;
    ``trainable=False`` freezes every layer of the graph; ``device`` ("cpu" | "cuda" | "auto") moves the
    parameters there (``model.to(device)``).
    """

    _from_config_takes_custom_objects = True

    def __init__(self, inputs, outputs, name=None, seed=None, trainable=True, device="cpu"):
        super().__init__(name=name, trainable=True)
        self.metadata = {}
        self.device = "cpu"
        self._last = None
        self._init_graph(inputs, outputs)
        if seed is not None:
            self.initialize(np.random.default_rng(seed))
        self._finish_init(trainable, device)

    def _finish_init(self, trainable, device):
        """Apply the constructor's ``trainable`` and ``device`` once the layers are attached."""
        if not trainable:
            self.trainable = False  # propagates to every layer (the setter)
        dev = resolve_device(device)
        if dev != self.device:
            self.to(dev)

    # ---- graph construction -----------------------------------------------------------------------------------
    def _init_graph(self, inputs, outputs):
        self._multi_in = isinstance(inputs, (list, tuple))
        self._multi_out = isinstance(outputs, (list, tuple))
        inputs, outputs = _as_list(inputs), _as_list(outputs)
        if not inputs or not outputs:
            raise ValueError("a Model needs at least one input and one output")
        for t in inputs:
            if not isinstance(t, SymbolicTensor) or not isinstance(t.node.layer, InputLayer):
                raise ValueError(f"model inputs must be tensors made by vk.Input, got {t!r}")
        for t in outputs:
            if not isinstance(t, SymbolicTensor):
                raise ValueError(f"model outputs must be symbolic tensors (layer outputs), got {t!r}")
        input_nodes = [t.node for t in inputs]
        if len(set(map(id, input_nodes))) != len(input_nodes):
            raise ValueError("the same vk.Input appears twice among the model's inputs")

        # topological order by depth-first search from the outputs (iterative, post-order)
        order, seen = list(input_nodes), {id(n) for n in input_nodes}
        for out in outputs:
            stack = [(out.node, False)]
            while stack:
                node, expanded = stack.pop()
                if id(node) in seen and not expanded:
                    continue
                if expanded:
                    if id(node) not in seen:
                        seen.add(id(node))
                        order.append(node)
                    continue
                if isinstance(node.layer, InputLayer):
                    raise ValueError(
                        f"the outputs depend on input {node.layer.name!r}, which is not among the model's inputs"
                    )
                stack.append((node, True))
                for t in reversed(node.inbound):
                    if id(t.node) not in seen:
                        stack.append((t.node, False))
        pos = {id(n): i for i, n in enumerate(order)}
        self._order = order
        self._inbound = [[pos[id(t.node)] for t in n.inbound] for n in order]
        self._input_idx = [pos[id(n)] for n in input_nodes]
        self._output_idx = [pos[id(t.node)] for t in outputs]
        consumers = [0] * len(order)
        for ins in self._inbound:
            for j in ins:
                consumers[j] += 1
        self._consumers = consumers
        self.inputs, self.outputs = inputs, outputs

        layers, ids = [], set()
        for n in order:
            if id(n.layer) not in ids:
                ids.add(id(n.layer))
                layers.append(n.layer)
        names = defaultdict(list)
        for layer in layers:
            names[layer.name].append(layer)
        dup = [k for k, v in names.items() if len(v) > 1]
        if dup:
            raise ValueError(f"layer names must be unique within a model; repeated: {', '.join(dup)}")
        self._graph_layers = layers
        self.built = True
        self.built_input_shape = [t.shape[1:] for t in inputs] if self._multi_in else inputs[0].shape[1:]

    # ---- the Layer protocol (so a model can be a layer of another) --------------------------------------------
    @property
    def multi_input(self):
        return getattr(self, "_multi_in", False)

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, flag):
        """Setting it sets every layer's flag too (Keras): False freezes the whole model, True unfreezes it."""
        self._trainable = bool(flag)
        for layer in self._member_layers():
            if not isinstance(layer, InputLayer):
                layer.trainable = flag

    def _member_layers(self):
        return getattr(self, "_graph_layers", ())

    def compute_output_shape(self, input_shape):
        if self._multi_out:
            raise ValueError(f"model {self.name!r} has several outputs and cannot be used as a single layer")
        return self.outputs[0].shape[1:]

    def check_input_shape(self, input_shape, building=False):
        shapes = input_shape if self._multi_in else [input_shape]
        for t, s in zip(self.inputs, shapes):
            want = t.shape[1:]
            if len(s) != len(want) or any(a is not None and b is not None and a != b for a, b in zip(want, s)):
                raise ValueError(
                    f"model {self.name!r} expects input {fmt_shape(t.shape)}, got {fmt_shape((None,) + tuple(s))}"
                )

    def forward(self, x, training=False):
        xs = list(x) if self._multi_in else [x]
        outs, tape = self._run(xs, training, keep=recording())
        return (outs if self._multi_out else outs[0]), tape

    def memory_profile(self, input_shape, output_shape, training):
        """A nested model: its own activation figures (see visionkit.summary) less its inputs and outputs."""
        from .summary import activation_memory

        infer, train = activation_memory(self, batch=1)
        io = activation_memory(self, batch=1, io_only=True)
        if infer is None or train is None or io is None:
            return profile(keeps_input=True, keeps_output=True, extra=None, transient=None)
        return profile(
            keeps_input=True, keeps_output=True, extra=max(train - io, 0), transient=max(infer - io, 0)
        )

    def count_macs(self, input_shape, output_shape):
        total = 0
        for node in self._order:
            if isinstance(node.layer, InputLayer):
                continue
            m = node.layer.count_macs(*node_shapes(node))
            if m is None:
                return None
            total += m
        return total

    def parameters(self):
        out, ids = [], set()
        for layer in self._graph_layers:
            for p in layer.parameters():
                if id(p) not in ids:
                    ids.add(id(p))
                    out.append(p)
        return out

    def initialize(self, rng):
        """Redraw every weight (graph order) from ``rng``, a numpy Generator."""
        for layer in self._graph_layers:
            layer.initialize(rng)
        if self.device != "cpu":
            for p in self.parameters():
                p.value = ops.to_device(p.value, self.device)

    # ---- running ----------------------------------------------------------------------------------------------
    def _run(self, xs, training, keep=True, timings=None):
        """Run the graph; with ``keep`` False inside ``no_tape()`` (layers skip what backward needs). ``timings``
        (a dict) receives each step's seconds, keyed (node index, label, kind): visionkit/profile.py."""
        if not keep and recording():
            with no_tape():
                return self._run(xs, training, keep=False, timings=timings)
        with get_backend(self.device).session():
            return self._run_nodes(xs, training, keep, timings)

    def _fusion_plan(self):
        """The conv -> BatchNorm -> activation chains inference runs fuse (visionkit/fusion.py), per graph."""
        cached = getattr(self, "_fusion", None)
        if cached is None or cached[0] is not self._order:
            chains = fusion.plan(self._order, self._inbound, self._output_idx)
            cached = (self._order, chains, {j for c in chains.values() for j in c.absorbed})
            self._fusion = cached
        return cached[1], cached[2]

    def _run_nodes(self, xs, training, keep, timings=None):
        order, inbound = self._order, self._inbound
        chains, absorbed = self._fusion_plan() if not keep and not training else ({}, ())
        vals = [None] * len(order)
        tape = [None] * len(order) if keep else None
        remaining = list(self._consumers)
        outputs = set(self._output_idx)
        for i, x in zip(self._input_idx, xs):
            vals[i] = x
        inputs = set(self._input_idx)
        for k, node in enumerate(order):
            if k in inputs or k in absorbed:
                continue
            ins = [vals[j] for j in inbound[k]]
            start = perf_counter() if timings is not None else 0.0
            if k in chains:  # the whole chain in one call; its inner nodes hold no value
                vals[chains[k].tail] = fusion.run(chains[k], ins)
            else:
                y, ctx = node.layer.forward(ins if node.multi_input else ins[0], training)
                vals[k] = y
                if keep:
                    tape[k] = ctx
            if timings is not None:
                key = (k, node.layer.name, fusion.describe(chains[k]) if k in chains else type(node.layer).__name__)
                timings[key] = timings.get(key, 0.0) + perf_counter() - start
            for j in inbound[k]:
                remaining[j] -= 1
                if remaining[j] == 0 and j not in outputs:
                    vals[j] = None  # release activations nobody needs any more
        shapes = [tuple(x.shape) for x in xs]
        return [vals[j] for j in self._output_idx], (tape, shapes)

    def _backward(self, grads, ctx, input_grads=True):
        with get_backend(self.device).session():
            return self._backward_nodes(grads, ctx, input_grads)

    def _backward_nodes(self, grads, ctx, input_grads=True):
        tape, in_shapes = ctx
        order, inbound = self._order, self._inbound
        g = [None] * len(order)
        for j, go in zip(self._output_idx, grads):
            if go is not None:
                g[j] = go if g[j] is None else ops.add(g[j], go)
        inputs = set(self._input_idx)
        for k in range(len(order) - 1, -1, -1):
            if k in inputs or g[k] is None:
                continue
            node = order[k]
            params_only = getattr(node.layer, "backward_params", None)
            if not input_grads and params_only is not None and all(j in inputs for j in inbound[k]):
                params_only(g[k], tape[k])  # nobody wants the gradient of the model's input
                g[k] = None
                continue
            gin = node.layer.backward(g[k], tape[k])
            gins = gin if node.multi_input else [gin]
            for j, gj in zip(inbound[k], gins):
                if gj is not None:
                    g[j] = gj if g[j] is None else ops.add(g[j], gj)
            g[k] = None
        if not input_grads:
            return [None] * len(self._input_idx)
        out = []
        for i, shape in zip(self._input_idx, in_shapes):
            gi = g[i]
            if gi is None:
                gi = np.zeros(shape, np.float32)
                if self.device != "cpu":
                    gi = ops.to_device(gi, self.device)
            out.append(gi)
        return out

    def backward(self, grad_out, ctx=None, input_grads=True):
        """Backpropagate.

        ``model.backward(grad)``: ``grad`` holds one array per output (a list for several outputs; None for an
        output that gets no gradient). Uses the tape of the last ``model(x)`` call (training or not; a call with
        ``keep_tape=False`` keeps none, and ``predict`` leaves the last tape alone), zeroes every
        parameter's grad first, fills the grad of every trainable parameter (zeros where no gradient reached it),
        and returns the gradient w.r.t. the input (a list for several inputs). ``input_grads=False`` (what the
        trainer passes) returns None and lets the layers that read the inputs skip that gradient.

        ``backward(grad, ctx)`` with a ctx from ``forward`` is the Layer protocol (used when this model is a layer
        of another); it accumulates into the grads instead.
        """
        if ctx is not None:
            grads = list(grad_out) if self._multi_out else [grad_out]
            gins = self._backward(grads, ctx)
            return gins if self._multi_in else gins[0]
        if self._last is None:
            if getattr(self, "_last_untaped", False):
                raise RuntimeError(
                    f"model {self.name!r}: the last call kept no tape (keep_tape=False or predict); call "
                    "model(x) (or model(x, training=True)) before backward()"
                )
            raise RuntimeError(f"model {self.name!r}: call the model on a batch before backward()")
        ctx, out_shapes, to_host = self._last
        grads = _as_list(grad_out) if self._multi_out else [grad_out]
        if len(grads) != len(self.outputs):
            raise ValueError(f"model {self.name!r} has {len(self.outputs)} outputs, got {len(grads)} gradients")
        conv = []
        for k, (gr, shape) in enumerate(zip(grads, out_shapes)):
            if gr is None:
                conv.append(None)
                continue
            gr = as_input_array(gr)
            if tuple(gr.shape) != shape:
                raise ValueError(
                    f"model {self.name!r}: gradient {k} has shape {tuple(gr.shape)}, the output had shape {shape}"
                )
            if self.device != "cpu" and not is_device_array(gr):
                gr = ops.to_device(gr, self.device)
            conv.append(gr)
        params = self.parameters()
        for p in params:
            p.grad = None
        gins = self._backward(conv, ctx, input_grads)
        for p in params:
            if p.trainable and p.grad is None:
                z = np.zeros(p.shape, np.float32)
                p.grad = ops.to_device(z, self.device) if self.device != "cpu" else z
        if not input_grads:
            return None
        if to_host:
            gins = [ops.to_numpy(a) for a in gins]
        return gins if self._multi_in else gins[0]

    def _prepare_inputs(self, inputs):
        n = len(self.inputs)
        if isinstance(inputs, dict):
            names = [t.node.layer.name for t in self.inputs]
            missing = [k for k in names if k not in inputs]
            if missing:
                raise ValueError(f"model {self.name!r}: missing input(s) {', '.join(missing)}")
            xs = [inputs[k] for k in names]
        elif isinstance(inputs, (list, tuple)) and (n > 1 or (len(inputs) == 1 and _is_array(inputs[0]))):
            xs = list(inputs)
            if len(xs) != n:
                raise ValueError(f"model {self.name!r} takes {n} inputs, got {len(xs)}")
        else:
            if n != 1:
                raise ValueError(f"model {self.name!r} takes {n} inputs (a list), got one array")
            xs = [inputs]
        conv = []
        for t, x in zip(self.inputs, xs):
            conv.append(as_input_array(x, self._input_who(t)))
        for t, x in zip(self.inputs, conv):
            self._check_array(t, x)
        return conv

    def _input_who(self, t):
        consumers = [n.layer for n in self._order if any(u is t for u in n.inbound)]
        who = (
            f"layer {consumers[0].name!r} ({type(consumers[0]).__name__})"
            if consumers
            else f"input {t.node.layer.name!r}"
        )
        return f"model {self.name!r}: {who}"

    def _check_array(self, t, x):
        want = t.shape[1:]
        got = tuple(x.shape)
        where = self._input_who(t)
        expect = "(N, " + ", ".join("?" if d is None else str(d) for d in want) + ")"
        if len(got) != len(want) + 1:
            raise ValueError(f"{where} expects a {len(want) + 1}-D input {expect}, got an array of shape {got}")
        if got[0] == 0:
            raise ValueError(f"{where}: the batch is empty (shape {got})")
        if len(want) == 3 and want[0] is not None and got[1] != want[0]:
            raise ValueError(f"{where} expects {want[0]} input channel(s) {expect}, got an array of shape {got}")
        if any(a is not None and a != b for a, b in zip(want, got[1:])):
            raise ValueError(f"{where} expects input of shape {expect}, got an array of shape {got}")

    def _maybe_build(self, inputs):
        """Hook for models built on their first call (Sequential without an input shape)."""

    def __call__(self, inputs, training=False, keep_tape=True):
        """Run the model: ``model(x)`` -> output array (a list for several outputs).

        numpy inputs of any real dtype (float, int, uint, bool) or layout are converted to contiguous float32; on
        a CUDA model they are copied to the GPU once and the outputs come back as numpy, unless the input was a
        device array already (then the outputs are device arrays, not copied). Numpy outputs never share memory
        with the input or the tape.

        ``training``   True: training behaviour (dropout active, BatchNorm on batch statistics).
        ``keep_tape``  True (default, also with training=False): keep what backward needs, so ``backward`` can
                       follow, e.g. a saliency map (the gradient w.r.t. the input) of a model in inference mode.
                       False: run like ``predict`` (no tape, index-free max-pool); ``backward`` then raises.
        Called on a symbolic tensor, the model becomes a layer of a bigger graph.
        """
        if is_symbolic(inputs):
            return Layer.__call__(self, inputs)
        self._maybe_build(inputs)
        xs = self._prepare_inputs(inputs)
        to_host = not any(is_device_array(x) for x in xs)
        if self.device != "cpu":
            xs = [x if is_device_array(x) else ops.to_device(x, self.device) for x in xs]
        keep = bool(keep_tape)
        self._last = None
        outs, ctx = self._run(xs, training, keep=keep)
        if keep:
            self._last = (ctx, [tuple(o.shape) for o in outs], to_host)
        self._last_untaped = not keep
        if to_host:
            outs = [ops.to_numpy(o) for o in outs]
            originals = inputs if isinstance(inputs, (list, tuple)) else (
                list(inputs.values()) if isinstance(inputs, dict) else [inputs]
            )
            kept = list(xs) + list(originals)
            if keep:
                kept += list(_arrays_in(ctx[0]))
            outs = _independent(outs, kept)
        return outs if self._multi_out else outs[0]

    def predict(self, x, batch_size=32):
        """Inference in batches of ``batch_size``; numpy out (a list for several outputs).

        Runs without a tape (nothing kept for backward, index-free max-pool kernels), in inference mode
        (dropout off, BatchNorm on its running statistics). Unlike ``model(x)``, it does not replace the
        activations a pending ``backward`` needs. The outputs never share memory with ``x``.
        """
        self._maybe_build(x)
        xs = self._prepare_inputs(x)
        n = int(xs[0].shape[0])
        if any(int(a.shape[0]) != n for a in xs):
            raise ValueError(f"model {self.name!r}: inputs have different batch sizes")
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"model {self.name!r}: batch_size must be >= 1, got {batch_size}")
        chunks = []
        with no_tape():
            for s in range(0, n, batch_size):
                part = [a[s : s + batch_size] for a in xs]
                if self.device != "cpu":
                    part = [
                        a if is_device_array(a) else ops.to_device(np.ascontiguousarray(a), self.device) for a in part
                    ]
                outs, _ = self._run(part, False, keep=False)
                chunks.append([ops.to_numpy(o) for o in outs])
        if len(chunks) == 1:
            originals = x if isinstance(x, (list, tuple)) else (list(x.values()) if isinstance(x, dict) else [x])
            outs = _independent(chunks[0], list(xs) + list(originals))
        else:
            outs = [np.concatenate([c[i] for c in chunks], axis=0) for i in range(len(self.outputs))]
        return outs if self._multi_out else outs[0]

    # ---- inspection -------------------------------------------------------------------------------------------
    @property
    def layers(self):
        """The layers in graph order (InputLayers included for a functional model, as Keras)."""
        return list(self._graph_layers)

    def get_layer(self, name=None, index=None):
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(
            f"model {self.name!r} has no layer named {name!r}; it has: {', '.join(l.name for l in self.layers)}"
        )

    def to_fully_convolutional(self, name=None):
        """This classifier with its Dense head as convolutions: one pass over any image size gives the map of
        window scores (see visionkit.fcn). The new model uses this one's weight arrays."""
        from .fcn import to_fully_convolutional

        return to_fully_convolutional(self, name=name)

    def count_params(self):
        return sum(p.size for p in self.parameters())

    def summary(self, batch=1, print_fn=print, line_length=None):
        """Print (and return) a Keras-style table: layers, output shapes, parameters, MACs, memory."""
        from .summary import summary

        return summary(self, batch=batch, print_fn=print_fn, line_length=line_length)

    # ---- devices ----------------------------------------------------------------------------------------------
    def to(self, device="auto"):
        """Move the parameters to "cpu" or "cuda" ("auto": CUDA when available). Returns the model."""
        dev = resolve_device(device)
        for p in self.parameters():
            if p.value is not None:
                p.value = ops.to_device(p.value, dev)
            if p.grad is not None:
                p.grad = ops.to_device(p.grad, dev)
        self._set_device(dev)
        self._last = None
        return self

    def _set_device(self, dev):
        self.device = dev
        for layer in self._graph_layers:
            if isinstance(layer, Model):
                layer._set_device(dev)

    # ---- files and configs ------------------------------------------------------------------------------------
    def save(self, path, metadata=None):
        """Write the model (architecture + weights + ``metadata``) as one safetensors file; see visionkit.weights."""
        from .weights import save_model

        save_model(self, path, metadata=metadata)

    def save_weights(self, path):
        from .weights import save_model

        save_model(self, path, metadata=None)

    def load_weights(self, path):
        """Load the weights of a model file into this model (names and shapes must match)."""
        from .weights import load_weights

        load_weights(self, path)
        return self

    def _node_refs(self):
        """(layer name, index of this node among the layer's nodes in this model) for every node."""
        counts, refs = defaultdict(int), []
        for n in self._order:
            refs.append([n.layer.name, counts[n.layer.name]])
            counts[n.layer.name] += 1
        return refs

    def get_config(self):
        refs = self._node_refs()
        nodes = []
        for k, n in enumerate(self._order):
            if isinstance(n.layer, InputLayer):
                continue
            nodes.append(
                {"layer": n.layer.name, "inbound": [refs[j] for j in self._inbound[k]], "multi_input": n.multi_input}
            )
        return {
            "name": self.name,
            "trainable": self.trainable,
            "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()} for layer in self.layers],
            "nodes": nodes,
            "inputs": [refs[j] for j in self._input_idx],
            "outputs": [refs[j] for j in self._output_idx],
            "multi_input": self._multi_in,
            "multi_output": self._multi_out,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        layers = {}
        for spec in config["layers"]:
            layer = layer_from_config(spec, custom_objects)
            layers[layer.name] = layer
        tensors, counts = {}, defaultdict(int)
        for layer in layers.values():
            if isinstance(layer, InputLayer):
                tensors[(layer.name, 0)] = layer.output
                counts[layer.name] = 1

        def lookup(ref):
            key = (ref[0], int(ref[1]))
            if key not in tensors:
                raise ValueError(f"model config refers to node {key}, which does not exist (yet)")
            return tensors[key]

        for nd in config["nodes"]:
            name = nd["layer"]
            if name not in layers:
                raise ValueError(f"model config: node of unknown layer {name!r}")
            ins = [lookup(r) for r in nd["inbound"]]
            multi = nd.get("multi_input", len(ins) > 1)
            out = layers[name](ins if multi else ins[0])
            tensors[(name, counts[name])] = out
            counts[name] += 1
        inputs = [lookup(r) for r in config["inputs"]]
        outputs = [lookup(r) for r in config["outputs"]]
        return Model(
            inputs if config.get("multi_input", len(inputs) > 1) else inputs[0],
            outputs if config.get("multi_output", len(outputs) > 1) else outputs[0],
            name=config.get("name"),
            trainable=bool(config.get("trainable", True)),
        )

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r}: {len(self.layers)} layers, {self.count_params():,} params>"


def node_shapes(node):
    """(input shape(s), output shape) of a graph node, batch excluded."""
    ins = [t.shape[1:] for t in node.inbound]
    return (ins if node.multi_input else (ins[0] if ins else node.outputs[0].shape[1:])), node.outputs[0].shape[1:]


# Sequential lives in its own module; imported last because it subclasses Model.
from .sequential import Sequential  # noqa: E402
