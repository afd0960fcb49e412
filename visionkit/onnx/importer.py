"""ONNX import: ``load_onnx(path, *, input_shape=None)`` turns an ONNX file into a visionkit ``Model``.

    from visionkit.onnx.importer import load_onnx
    model = load_onnx("resnet18.onnx")              # a visionkit Model (graph of layers)
    y = model.predict(x)                             # x: float32 NCHW

How a graph becomes a model:
    * Constants: initializers and ``Constant`` nodes are weights. Nodes whose inputs are all constant (the
      Shape -> Gather -> Unsqueeze -> Concat -> Reshape chains exporters write, ConstantOfShape, Cast, Slice,
      arithmetic) are evaluated at load time; ``Shape`` of a graph tensor is folded from the tensor's shape,
      known at load time (``input_shape``, or the model's declared input dims with a symbolic batch taken as 1).
    * Nodes that map cleanly onto a visionkit layer become that layer, so imported CNNs run on visionkit's
      kernels: Conv (2-D) -> Conv2D, ConvTranspose -> Conv2DTranspose, MaxPool/AveragePool -> MaxPool2D/AvgPool2D,
      Global*Pool -> Global*Pool2D, BatchNormalization -> BatchNorm, LRN -> LocalResponseNorm, Gemm/MatMul on a
      (N, K) tensor with constant weights -> Dense, activations -> Activation, PRelu -> PReLU, Add of two tensors
      of one shape -> Add, Concat on channels -> Concat, Flatten(axis=1) -> Flatten, a Reshape that keeps the
      batch -> Reshape, Resize/Upsample by integer factors (PyTorch's coordinate rules) -> UpSampling2D. The rest
      becomes a generic layer of ``visionkit.onnx.layers`` (numpy, any rank, inference-only).
    * Identity and Dropout are removed (their output is their input).

Errors: every unsupported operator type is listed, with its node names, in ONE ValueError raised before anything
is built. An attribute combination visionkit cannot run (Resize mode "cubic", BatchNormalization in training mode,
a Conv whose weight is computed at run time, ...) raises a ValueError naming the node. External data files must lie
inside the model's folder: a reference to an absolute path or one that climbs out with ``..`` is refused.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np

from .. import layers as L
from ..input_layer import Input
from ..layers.naming import reserve_name
from ..layers.prelu import PReLU
from . import layers as OL
from . import np_ops

__all__ = ["SUPPORTED_OPS", "check_supported", "load_onnx"]

SUPPORTED_OPS = frozenset(
    ["Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization", "LRN", "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Clip", "Softmax", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Concat", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Pad", "Resize", "Upsample", "Dropout", "Identity", "Constant", "Shape", "Gather", "Slice", "Cast", "ConstantOfShape"]
)
# computed at load time only (their inputs must be constant, or a tensor whose shape is known)
_FOLD_ONLY = {"Shape", "ConstantOfShape", "Constant"}

_FLOAT_TYPES = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


# --------------------------------------------------------------------------------------------------------------
# reading the file


def _external_locations(model):
    """(tensor name, location) of every tensor stored in external data (initializers and Constant nodes)."""
    from onnx import TensorProto

    def tensors(graph):
        yield from graph.initializer
        for node in graph.node:
            for a in node.attribute:
                if a.HasField("t"):
                    yield a.t
                yield from a.tensors
                if a.HasField("g"):
                    yield from tensors(a.g)
                for g in a.graphs:
                    yield from tensors(g)

    for t in tensors(model.graph):
        if t.data_location == TensorProto.EXTERNAL:
            loc = next((e.value for e in t.external_data if e.key == "location"), "")
            yield t.name, loc


def _check_external(model, base_dir, path):
    root = os.path.realpath(base_dir)
    for name, loc in _external_locations(model):
        norm = os.path.normpath(loc) if loc else ""
        bad = (not loc or os.path.isabs(loc) or re.match(r"^[A-Za-z]:", loc) or norm == ".."
               or norm.startswith(".." + os.sep) or norm.startswith("../"))
        full = os.path.realpath(os.path.join(root, loc)) if loc else root
        if bad or os.path.commonpath([root, full]) != root:
            raise ValueError(
                f"{path}: tensor {name!r} refers to external data {loc!r}, outside the model's folder {root}; "
                "external data must lie in the model's folder or below it (refusing to read it)"
            )
        if not os.path.isfile(full):
            raise ValueError(f"{path}: tensor {name!r} refers to external data file {loc!r}, which does not exist")


def _read(path):
    import onnx

    if isinstance(path, onnx.ModelProto):
        if any(True for _ in _external_locations(path)):
            raise ValueError("an in-memory ONNX model with external data: pass the file's path instead")
        return path, "<ModelProto>"
    if isinstance(path, (bytes, bytearray)):
        return onnx.load_from_string(bytes(path)), "<bytes>"
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends
        raise ValueError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    base = os.path.dirname(os.path.abspath(path))
    _check_external(model, base, path)
    if any(True for _ in _external_locations(model)):
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, base)
    return model, path


def check_supported(model, where="ONNX model"):
    """Raise ONE ValueError listing every unsupported operator type with its node names."""
    bad = {}
    for i, node in enumerate(model.graph.node):
        if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPS:
            key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            bad.setdefault(key, []).append(node.name or f"#{i}")
    if bad:
        parts = [f"{op} (node{'s' if len(n) > 1 else ''} {', '.join(map(repr, n))})" for op, n in sorted(bad.items())]
        raise ValueError(
            f"{where}: {len(bad)} unsupported ONNX operator type{'s' if len(bad) > 1 else ''}: " + "; ".join(parts)
            + f". Supported: {', '.join(sorted(SUPPORTED_OPS))}"
        )


def _opset(model):
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 1


# --------------------------------------------------------------------------------------------------------------
# helpers


def _attrs(node):
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _s(v):
    return v.decode() if isinstance(v, bytes) else v


def _sanitize(name):
    name = re.sub(r"[^A-Za-z0-9_.\-]+", ".", str(name)).strip(".")
    return name or "node"


def _pylist(a):
    return [int(v) for v in np.asarray(a).reshape(-1)]


class _Importer:
    def __init__(self, model, where, input_shape):
        self.model = model
        self.where = where
        self.opset = _opset(model)
        self.input_shape = input_shape
        self.const = {}    # tensor name -> numpy array
        self.sym = {}      # tensor name -> SymbolicTensor
        self.shape = {}    # tensor name -> concrete full shape (batch included)
        self.used_names = set()

    # ---- names, errors ---------------------------------------------------------------------------------------
    def name(self, node, suffix=""):
        base = _sanitize(node.name or f"{node.op_type.lower()}_{len(self.used_names)}") + suffix
        n, k = base, 1
        while n in self.used_names:
            k += 1
            n = f"{base}_{k}"
        self.used_names.add(n)
        return n

    def fail(self, node, msg):
        return ValueError(f"{self.where}: node {node.name or node.op_type!r} ({node.op_type}): {msg}")

    # ---- tensors ---------------------------------------------------------------------------------------------
    def is_const(self, name):
        return name in self.const

    def get_const(self, node, name, what):
        if name not in self.const:
            raise self.fail(node, f"{what} must be a constant (initializer or Constant), it is computed at run time")
        return self.const[name]

    def opt_const(self, node, i):
        """Constant input i, or None when absent / empty."""
        if len(node.input) <= i or not node.input[i]:
            return None
        a = self.get_const(node, node.input[i], f"input {i}")
        return None if a.size == 0 and a.ndim == 1 else a

    def rank(self, name):
        return len(self.const[name].shape) if name in self.const else len(self.shape[name])

    def full_shape(self, name):
        return tuple(self.const[name].shape) if name in self.const else self.shape[name]

    # ---- emitting layers -------------------------------------------------------------------------------------
    def builtin(self, node, layer, inputs, weights=None, out=None):
        """Call a visionkit layer on the runtime tensors ``inputs`` and assign ``weights`` (short name -> array)."""
        ts = [self.sym[n] for n in inputs]
        y = layer(ts if len(ts) > 1 or getattr(layer, "multi_input", False) else ts[0])
        for short, arr in (weights or {}).items():
            p = getattr(layer, short)
            p.value = np.ascontiguousarray(np.asarray(arr, np.float32).reshape(p.shape))
        shapes = [self.shape[n][1:] for n in inputs]
        per = layer.compute_output_shape(shapes if len(shapes) > 1 or layer.multi_input else shapes[0])
        out = out or node.output[0]
        self.sym[out] = y
        self.shape[out] = (self.shape[inputs[0]][0],) + tuple(per)
        return y

    def generic(self, node, cls, inputs, attrs, out=None, suffix=""):
        """A generic ONNX layer on ``inputs`` (tensor names; '' = absent, constants become parameters)."""
        slots, const_shapes, consts, runtime, probe = "", {}, {}, [], []
        for i, n in enumerate(inputs):
            if not n:
                slots += "-"
                probe.append(None)
            elif n in self.const:
                slots += "c"
                a = np.asarray(self.const[n], np.float32)
                const_shapes[i] = a.shape
                consts[i] = a
                probe.append(a)
            else:
                slots += "x"
                runtime.append(n)
                probe.append(np.zeros(self.shape[n], np.float32))
        tmp = cls(attrs=attrs, slots=slots, const_shapes=const_shapes, name="probe")
        with np.errstate(all="ignore"):
            out_shape = tuple(np.asarray(tmp.compute(probe)).shape)
        layer = cls(attrs=attrs, slots=slots, const_shapes=const_shapes, output_shape=out_shape,
                    name=self.name(node, suffix))
        ts = [self.sym[n] for n in runtime]
        y = layer(ts if len(ts) > 1 else ts[0])
        for i, a in consts.items():
            layer.set_constant(i, a)
        out = out or node.output[0]
        self.sym[out] = y
        self.shape[out] = out_shape
        return out

    def alias(self, node, src, dst=None):
        dst = dst or node.output[0]
        if src in self.const:
            self.const[dst] = self.const[src]
        else:
            self.sym[dst] = self.sym[src]
            self.shape[dst] = self.shape[src]

    # ---- the graph -------------------------------------------------------------------------------------------
    def inputs(self):
        g = self.model.graph
        inits = {t.name for t in g.initializer}
        real = [v for v in g.input if v.name not in inits]
        given = self.input_shape
        if given is not None and not isinstance(given, dict):
            if len(real) != 1:
                raise ValueError(f"{self.where}: the model has {len(real)} inputs; pass input_shape as a dict "
                                 "{input name: shape}")
            given = {real[0].name: given}
        given = given or {}
        unknown = [k for k in given if k not in {v.name for v in real}]
        if unknown:
            raise ValueError(f"{self.where}: input_shape names unknown input(s) {unknown}; the inputs are "
                             f"{[v.name for v in real]}")
        tensors = []
        for v in real:
            dims = v.type.tensor_type.shape.dim if v.type.tensor_type.HasField("shape") else []
            declared = [d.dim_value if d.HasField("dim_value") else None for d in dims]
            if v.name in given:
                conc = tuple(int(d) for d in given[v.name])
                if declared and len(conc) != len(declared):
                    raise ValueError(f"{self.where}: input {v.name!r} has rank {len(declared)}, input_shape "
                                     f"gives {conc}")
            else:
                conc = tuple(1 if (d is None and i == 0) else d for i, d in enumerate(declared))
                if any(d is None for d in conc):
                    raise ValueError(
                        f"{self.where}: input {v.name!r} has symbolic dims {tuple(declared)}; pass input_shape "
                        "(the full shape, batch included) so shapes can be resolved at load time"
                    )
            per = tuple(declared[1:]) if declared else tuple(conc[1:])
            name = _sanitize(v.name)
            self.used_names.add(name)
            t = Input(per, name=name)
            self.sym[v.name] = t
            self.shape[v.name] = conc
            tensors.append(t)
        return tensors

    def build(self):
        from onnx import numpy_helper

        from ..model import Model

        check_supported(self.model, self.where)
        g = self.model.graph
        for t in g.initializer:
            self.const[t.name] = numpy_helper.to_array(t)
        inputs = self.inputs()
        for node in g.node:
            self.convert(node)
        outputs = []
        for v in g.output:
            n = v.name
            if n in self.sym and (n in {i.name for i in g.input}):
                self.generic(_Fake("Identity", n), OL.OnnxIdentity, [n], {}, out="__out__" + n)
                n = "__out__" + n
            elif n in self.const:
                first = g.input[0].name if len(inputs) else None
                if first is None:
                    raise ValueError(f"{self.where}: output {v.name!r} is a constant and the model has no input")
                real_first = next(k for k in self.sym)
                self.generic(_Fake("Constant", n), OL.OnnxConstant, [real_first, n], {}, out="__out__" + n)
                n = "__out__" + n
            if n not in self.sym:
                raise ValueError(f"{self.where}: graph output {v.name!r} is never computed")
            outputs.append(self.sym[n])
        for name in self.used_names:
            reserve_name(name)
        model = Model(inputs if len(inputs) > 1 else inputs[0], outputs if len(outputs) > 1 else outputs[0],
                      name=_sanitize(g.name or "onnx_model"))
        model.metadata = {
            "source": "onnx",
            "onnx_file": os.path.basename(self.where),
            "producer": f"{self.model.producer_name} {self.model.producer_version}".strip(),
            "opset": self.opset,
            "input_names": [i.name for i in g.input if i.name in self.sym],
            "output_names": [o.name for o in g.output],
        }
        return model

    # ---- conversion ------------------------------------------------------------------------------------------
    def convert(self, node):
        op = node.op_type
        ins = [n for n in node.input]
        if op == "Constant":
            return self.fold_constant(node)
        if op == "Shape":
            shp = np.asarray(self.full_shape(ins[0]), np.int64)
            a = _attrs(node)
            start, end = a.get("start", 0), a.get("end", None)
            self.const[node.output[0]] = shp[slice(start, end)]
            return
        if op in ("Identity", "Dropout"):
            if op == "Dropout" and len(node.output) > 1 and node.output[1] and self._used(node.output[1]):
                raise self.fail(node, "the dropout mask output is not supported")
            return self.alias(node, ins[0])
        data_ins = [n for n in ins if n]
        if all(n in self.const for n in data_ins):
            return self.fold(node)
        if op == "ConstantOfShape":
            raise self.fail(node, "its shape input must be constant at load time")
        handler = getattr(self, "op_" + op, None)
        if handler is None:
            raise self.fail(node, "no converter")  # pragma: no cover (SUPPORTED_OPS lists only handled ops)
        handler(node, ins, _attrs(node))

    def _used(self, name):
        g = self.model.graph
        return any(name in n.input for n in g.node) or any(o.name == name for o in g.output)

    def fold_constant(self, node):
        from onnx import numpy_helper

        a = node.attribute[0]
        if a.name == "value":
            v = numpy_helper.to_array(a.t)
        elif a.name == "value_float":
            v = np.asarray(a.f, np.float32)
        elif a.name == "value_floats":
            v = np.asarray(list(a.floats), np.float32)
        elif a.name == "value_int":
            v = np.asarray(a.i, np.int64)
        elif a.name == "value_ints":
            v = np.asarray(list(a.ints), np.int64)
        else:
            raise self.fail(node, f"Constant with attribute {a.name!r} is not supported")
        self.const[node.output[0]] = v

    def fold(self, node):
        """Evaluate a node whose inputs are all constant."""
        op, a = node.op_type, _attrs(node)
        xs = [self.const[n] if n else None for n in node.input]
        with np.errstate(all="ignore"):
            if op == "ConstantOfShape":
                from onnx import numpy_helper

                v = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
                y = np.full(_pylist(xs[0]), v.reshape(-1)[0], dtype=v.dtype)
            elif op == "Cast":
                from onnx import helper

                y = xs[0].astype(helper.tensor_dtype_to_np_dtype(a["to"]))
            elif op in ("Add", "Sub", "Mul", "Div"):
                y = np_ops.binary(xs[0], xs[1], op)
            elif op == "Gather":
                y = np_ops.gather(xs[0], xs[1], a.get("axis", 0))
            elif op == "Slice":
                y = np_ops.slice_(xs[0], *self.slice_args(node, a))
            elif op == "Concat":
                y = np_ops.concat(*[x for x in xs if x is not None], axis=a["axis"])
            elif op == "Unsqueeze":
                y = np_ops.unsqueeze(xs[0], self.axes(node, a))
            elif op == "Squeeze":
                y = np_ops.squeeze(xs[0], self.axes(node, a, required=False))
            elif op == "Reshape":
                y = np_ops.reshape(xs[0], _pylist(xs[1]) if len(xs) > 1 else a["shape"], a.get("allowzero", 0))
            elif op == "Transpose":
                y = np_ops.transpose(xs[0], a.get("perm"))
            elif op == "Flatten":
                y = np_ops.flatten(xs[0], a.get("axis", 1))
            else:  # any other supported op on constants: run it through the generic path's numpy function
                y = self.fold_generic(node, xs, a)
        self.const[node.output[0]] = np.asarray(y)

    def fold_generic(self, node, xs, a):
        op = node.op_type
        if op in ("Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Selu", "HardSigmoid", "HardSwish"):
            return np_ops.unary(xs[0], op, a.get("alpha"), a.get("beta"), a.get("gamma"))
        if op == "MatMul":
            return np_ops.matmul(xs[0], xs[1])
        if op == "Clip":
            lo, hi = self.clip_bounds(node, a)
            return np_ops.clip(xs[0], lo, hi)
        raise self.fail(node, "this operator on constant inputs is not supported")

    # ---- attribute helpers -----------------------------------------------------------------------------------
    def axes(self, node, a, required=True):
        if "axes" in a:
            return list(a["axes"])
        if len(node.input) > 1 and node.input[1]:
            return _pylist(self.get_const(node, node.input[1], "axes"))
        if required:
            raise self.fail(node, "axes missing")
        return None

    def slice_args(self, node, a):
        if self.opset < 10 or "starts" in a:
            return list(a["starts"]), list(a["ends"]), (list(a["axes"]) if "axes" in a else None), None
        starts = _pylist(self.get_const(node, node.input[1], "starts"))
        ends = _pylist(self.get_const(node, node.input[2], "ends"))
        axes = self.opt_const(node, 3)
        steps = self.opt_const(node, 4)
        return starts, ends, None if axes is None else _pylist(axes), None if steps is None else _pylist(steps)

    def clip_bounds(self, node, a):
        if self.opset < 11:
            return a.get("min"), a.get("max")
        lo, hi = self.opt_const(node, 1), self.opt_const(node, 2)
        return (None if lo is None else float(lo)), (None if hi is None else float(hi))

    def window(self, node, a, nsp):
        kernel = list(a.get("kernel_shape", []))
        strides = list(a.get("strides", [1] * nsp))
        dil = list(a.get("dilations", [1] * nsp))
        pads = list(a.get("pads", [0] * (2 * nsp)))
        auto = _s(a.get("auto_pad", "NOTSET"))
        return kernel, strides, dil, pads, auto

    # ---- operators -------------------------------------------------------------------------------------------
    def op_Conv(self, node, ins, a):
        w = self.get_const(node, ins[1], "the weight")
        b = self.opt_const(node, 2) if len(ins) > 2 else None
        x = ins[0]
        nsp = self.rank(x) - 2
        kernel, strides, dil, pads, auto = self.window(node, a, nsp)
        kernel = kernel or list(w.shape[2:])
        group = int(a.get("group", 1))
        if nsp != 2:
            attrs = dict(strides=strides, pads=pads, dilations=dil, group=group, auto_pad=auto)
            return self.generic(node, OL.OnnxConv, ins[:3], attrs)
        padding = self.pads_2d(node, x, kernel, strides, dil, pads, auto, allow_same=True)
        layer = L.Conv2D(int(w.shape[0]), tuple(kernel), strides=tuple(strides), padding=padding,
                         dilation_rate=tuple(dil), groups=group, use_bias=b is not None, name=self.name(node))
        weights = {"kernel": w}
        if b is not None:
            weights["bias"] = b
        self.builtin(node, layer, [self._pre or x], weights)
        self._pre = None

    _pre = None

    def pads_2d(self, node, x, kernel, strides, dil, pads, auto, allow_same):
        """visionkit padding for a 2-D window: "same", a symmetric (ph, pw), or an explicit OnnxPad emitted in
        front (self._pre names its output) followed by padding 0."""
        if auto == "SAME_UPPER" and allow_same:
            return "same"
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            b, e = np_ops.auto_pads(auto, self.shape[x][2:], kernel, strides, dil)
            pads = b + e
        elif auto == "VALID":
            pads = [0, 0, 0, 0]
        if pads[0] == pads[2] and pads[1] == pads[3]:
            return (int(pads[0]), int(pads[1]))
        full = [0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]]
        tmp = "__pad__" + node.output[0]
        self.generic(node, OL.OnnxPad, [x], {"pads": full, "mode": "constant", "value": 0.0}, out=tmp, suffix=".pad")
        self._pre = tmp
        return (0, 0)

    def op_ConvTranspose(self, node, ins, a):
        w = self.get_const(node, ins[1], "the weight")
        b = self.opt_const(node, 2) if len(ins) > 2 else None
        x = ins[0]
        nsp = self.rank(x) - 2
        kernel, strides, dil, pads, auto = self.window(node, a, nsp)
        kernel = kernel or list(w.shape[2:])
        group = int(a.get("group", 1))
        out_pad = list(a.get("output_padding", [0] * nsp))
        out_shape = list(a["output_shape"]) if "output_shape" in a else None
        begins, ends, out_pad = np_ops.conv_transpose_geometry(
            self.shape[x][2:], kernel, strides, dil, None if auto in ("SAME_UPPER", "SAME_LOWER") else pads,
            out_pad, out_shape, auto)
        ok = (nsp == 2 and begins == ends and min(begins) >= 0
              and all(op == 0 or op < max(s, d) for op, s, d in zip(out_pad, strides, dil)))
        if not ok:
            attrs = dict(strides=strides, pads=begins + ends, dilations=dil, group=group,
                         output_padding=out_pad, auto_pad="NOTSET")
            return self.generic(node, OL.OnnxConvTranspose, ins[:3], attrs)
        layer = L.Conv2DTranspose(int(w.shape[1]) * group, tuple(kernel), strides=tuple(strides),
                                  padding=tuple(begins), output_padding=tuple(out_pad), dilation_rate=tuple(dil),
                                  groups=group, use_bias=b is not None, name=self.name(node))
        weights = {"kernel": w}
        if b is not None:
            weights["bias"] = b
        self.builtin(node, layer, [x], weights)

    def _pool(self, node, ins, a, kind):
        x = ins[0]
        if len(node.output) > 1 and node.output[1] and self._used(node.output[1]):
            raise self.fail(node, "the Indices output of MaxPool is not supported")
        nsp = self.rank(x) - 2
        kernel, strides, dil, pads, auto = self.window(node, a, nsp)
        ceil = int(a.get("ceil_mode", 0))
        cip = int(a.get("count_include_pad", 0))
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            b, e = np_ops.auto_pads(auto, self.shape[x][2:], kernel, strides, dil)
            pads = b + e
        elif auto == "VALID":
            pads = [0] * (2 * nsp)
        sym = nsp == 2 and pads[0] == pads[2] and pads[1] == pads[3] and all(
            2 * p <= k for p, k in zip(pads[:2], kernel))
        if sym and (kind == "max" or dil == [1, 1]):
            if kind == "max":
                layer = L.MaxPool2D(tuple(kernel), tuple(strides), (pads[0], pads[1]), dilation=tuple(dil),
                                    ceil_mode=bool(ceil), name=self.name(node))
            else:
                layer = L.AvgPool2D(tuple(kernel), tuple(strides), (pads[0], pads[1]), ceil_mode=bool(ceil),
                                    count_include_pad=bool(cip), name=self.name(node))
            return self.builtin(node, layer, [x])
        attrs = dict(kind=kind, kernel=kernel, strides=strides, pads=pads, dilations=dil, ceil_mode=ceil,
                     count_include_pad=cip, auto_pad="NOTSET")
        self.generic(node, OL.OnnxPool, [x], attrs)

    def op_MaxPool(self, node, ins, a):
        self._pool(node, ins, a, "max")

    def op_AveragePool(self, node, ins, a):
        self._pool(node, ins, a, "avg")

    def _global(self, node, ins, kind):
        if self.rank(ins[0]) == 4:
            cls = L.GlobalMaxPool2D if kind == "max" else L.GlobalAvgPool2D
            return self.builtin(node, cls(keepdims=True, name=self.name(node)), [ins[0]])
        self.generic(node, OL.OnnxGlobalPool, [ins[0]], {"kind": kind})

    def op_GlobalAveragePool(self, node, ins, a):
        self._global(node, ins, "avg")

    def op_GlobalMaxPool(self, node, ins, a):
        self._global(node, ins, "max")

    def op_BatchNormalization(self, node, ins, a):
        if int(a.get("training_mode", 0)) or (self.opset < 7 and not a.get("is_test", 0)) or any(
                o and self._used(o) for o in node.output[1:]):
            raise self.fail(node, "training mode (batch statistics, running-statistics outputs) is not supported")
        params = [self.get_const(node, n, w) for n, w in zip(ins[1:5], ("scale", "B", "mean", "var"))]
        eps = float(a.get("epsilon", 1e-5))
        if self.rank(ins[0]) in (2, 4):
            mom = float(a.get("momentum", 0.9))
            layer = L.BatchNorm(momentum=min(max(1.0 - mom, 0.0), 1.0), eps=eps, name=self.name(node))
            return self.builtin(node, layer, [ins[0]], dict(zip(("gamma", "beta", "running_mean", "running_var"),
                                                                params)))
        self.generic(node, OL.OnnxBatchNorm, ins[:5], {"epsilon": eps})

    def op_LRN(self, node, ins, a):
        size = int(a["size"])
        alpha, beta, bias = float(a.get("alpha", 1e-4)), float(a.get("beta", 0.75)), float(a.get("bias", 1.0))
        if self.rank(ins[0]) == 4 and size % 2 == 1:
            return self.builtin(node, L.LocalResponseNorm(size, alpha, beta, bias, name=self.name(node)), [ins[0]])
        self.generic(node, OL.OnnxLRN, [ins[0]], dict(size=size, alpha=alpha, beta=beta, bias=bias))

    # activations
    def _act(self, node, ins, name, **params):
        self.builtin(node, L.Activation(name, name=self.name(node), **params), [ins[0]])

    def op_Relu(self, node, ins, a):
        self._act(node, ins, "relu")

    def op_Sigmoid(self, node, ins, a):
        self._act(node, ins, "sigmoid")

    def op_Tanh(self, node, ins, a):
        self._act(node, ins, "tanh")

    def op_HardSwish(self, node, ins, a):
        self._act(node, ins, "hardswish")

    def op_LeakyRelu(self, node, ins, a):
        self._act(node, ins, "leaky_relu", negative_slope=float(a.get("alpha", 0.01)))

    def op_Elu(self, node, ins, a):
        self._act(node, ins, "elu", alpha=float(a.get("alpha", 1.0)))

    def op_Selu(self, node, ins, a):
        al, ga = float(a.get("alpha", 1.67326319217681884765625)), float(a.get("gamma", 1.05070102214813232421875))
        if abs(al - 1.6732632) < 1e-6 and abs(ga - 1.0507010) < 1e-6:
            return self._act(node, ins, "selu")
        self.generic(node, OL.OnnxUnary, [ins[0]], dict(op="Selu", alpha=al, gamma=ga))

    def op_HardSigmoid(self, node, ins, a):
        al, be = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
        if abs(al - 1 / 6) < 1e-7 and abs(be - 0.5) < 1e-7:
            return self._act(node, ins, "hardsigmoid")
        self.generic(node, OL.OnnxUnary, [ins[0]], dict(op="HardSigmoid", alpha=al, beta=be))

    def op_Clip(self, node, ins, a):
        if self.opset >= 11 and any(n and n not in self.const for n in ins[1:3]):
            return self.generic(node, OL.OnnxClip, ins[:3], {})
        lo, hi = self.clip_bounds(node, a)
        if lo == 0.0 and hi == 6.0:
            return self._act(node, ins, "relu6")
        if lo == 0.0 and (hi is None or hi == float("inf")):
            return self._act(node, ins, "relu")
        self.generic(node, OL.OnnxClip, [ins[0]], {"min": lo, "max": hi})

    def op_PRelu(self, node, ins, a):
        x = ins[0]
        if ins[1] in self.const:
            slope = self.const[ins[1]]
            r = self.rank(x)
            c = self.shape[x][1] if r >= 2 else None
            aligned = (1,) * (r - slope.ndim) + tuple(slope.shape)
            if r in (2, 4) and slope.size == 1:
                return self.builtin(node, PReLU(channelwise=False, name=self.name(node)), [x],
                                    {"alpha": slope.reshape(1)})
            if r in (2, 4) and slope.size == c and slope.ndim <= r and aligned[1] == c:
                return self.builtin(node, PReLU(channelwise=True, name=self.name(node)), [x],
                                    {"alpha": slope.reshape(c)})
        self.generic(node, OL.OnnxPRelu, ins[:2], {})

    def op_Softmax(self, node, ins, a):
        r = self.rank(ins[0])
        axis = int(a.get("axis", 1 if self.opset < 13 else -1)) % max(r, 1)
        legacy = self.opset < 13 and axis != r - 1
        if not legacy and axis != 0:
            return self._act(node, ins, "softmax", dim=axis)
        self.generic(node, OL.OnnxSoftmax, [ins[0]], {"axis": axis, "legacy": legacy})

    # linear algebra
    def op_Gemm(self, node, ins, a):
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        ta, tb = int(a.get("transA", 0)), int(a.get("transB", 0))
        x, wname = ins[0], ins[1]
        c = ins[2] if len(ins) > 2 and ins[2] else ""
        if (not ta and x not in self.const and wname in self.const and self.rank(x) == 2
                and (not c or c in self.const)):
            w = self.const[wname].astype(np.float32)
            kernel = alpha * (w if tb else w.T)  # (units, in)
            units = kernel.shape[0]
            bias = None
            if c:
                cv = self.const[c].astype(np.float32)
                if cv.size in (1, units) and (cv.ndim <= 1 or (cv.ndim == 2 and cv.shape[0] == 1)):
                    bias = beta * np.broadcast_to(cv.reshape(-1), (units,))
                else:
                    bias = False
            if bias is not False:
                layer = L.Dense(units, use_bias=bias is not None, name=self.name(node))
                weights = {"kernel": kernel}
                if bias is not None:
                    weights["bias"] = bias
                return self.builtin(node, layer, [x], weights)
        attrs = dict(alpha=alpha, beta=beta, trans_a=ta, trans_b=tb)
        self.generic(node, OL.OnnxGemm, [x, wname] + ([c] if c else []), attrs)

    def op_MatMul(self, node, ins, a):
        x, wname = ins
        if x not in self.const and wname in self.const and self.rank(x) == 2 and self.const[wname].ndim == 2:
            w = self.const[wname].astype(np.float32)
            layer = L.Dense(int(w.shape[1]), use_bias=False, name=self.name(node))
            return self.builtin(node, layer, [x], {"kernel": w.T})
        self.generic(node, OL.OnnxMatMul, ins[:2], {})

    # elementwise arithmetic
    def _binary(self, node, ins, op):
        a_, b_ = ins[:2]
        if a_ not in self.const and b_ not in self.const:
            sa, sb = self.shape[a_], self.shape[b_]
            if op == "Add" and sa == sb:
                return self.builtin(node, L.Add(name=self.name(node)), [a_, b_])
            if op == "Mul" and len(sa) == 4 and len(sb) == 4:
                if sb[:2] == sa[:2] and sb[2:] == (1, 1):
                    return self.builtin(node, L.Multiply(name=self.name(node)), [a_, b_])
                if sa[:2] == sb[:2] and sa[2:] == (1, 1):
                    return self.builtin(node, L.Multiply(name=self.name(node)), [b_, a_])
        self.generic(node, OL.OnnxBinary, [a_, b_], {"op": op})

    def op_Add(self, node, ins, a):
        self._binary(node, ins, "Add")

    def op_Sub(self, node, ins, a):
        self._binary(node, ins, "Sub")

    def op_Mul(self, node, ins, a):
        self._binary(node, ins, "Mul")

    def op_Div(self, node, ins, a):
        self._binary(node, ins, "Div")

    # shapes
    def op_Concat(self, node, ins, a):
        ins = [n for n in ins if n]
        r = self.rank(ins[0])
        axis = int(a["axis"]) % r
        if axis == 1 and r >= 2 and all(n not in self.const for n in ins) and len(ins) > 1:
            return self.builtin(node, L.Concat(axis=1, name=self.name(node)), ins)
        self.generic(node, OL.OnnxConcat, ins, {"axis": axis})

    def op_Flatten(self, node, ins, a):
        r = self.rank(ins[0])
        axis = int(a.get("axis", 1))
        axis = axis + r if axis < 0 else axis
        if axis == 1 and r >= 2:
            return self.builtin(node, L.Flatten(name=self.name(node)), [ins[0]])
        self.generic(node, OL.OnnxFlatten, [ins[0]], {"axis": axis})

    def op_Reshape(self, node, ins, a):
        x = ins[0]
        shape = _pylist(self.get_const(node, ins[1], "the target shape")) if len(ins) > 1 else list(a["shape"])
        allowzero = int(a.get("allowzero", 0))
        src = self.shape[x]
        target = np_ops.reshape(np.zeros(src, np.uint8), shape, allowzero).shape
        if (len(src) >= 1 and len(target) >= 2 and target[0] == src[0] and all(d > 0 for d in target)
                and math.prod(target[1:]) == math.prod(src[1:])):
            return self.builtin(node, L.Reshape(tuple(target[1:]), name=self.name(node)), [x])
        self.generic(node, OL.OnnxReshape, [x], {"shape": shape, "allowzero": allowzero})

    def op_Transpose(self, node, ins, a):
        perm = list(a["perm"]) if "perm" in a else None
        self.generic(node, OL.OnnxTranspose, [ins[0]], {"perm": perm})

    def op_Squeeze(self, node, ins, a):
        self.generic(node, OL.OnnxSqueeze, [ins[0]], {"axes": self.axes(node, a, required=False)})

    def op_Unsqueeze(self, node, ins, a):
        self.generic(node, OL.OnnxUnsqueeze, [ins[0]], {"axes": self.axes(node, a)})

    def op_Slice(self, node, ins, a):
        starts, ends, axes, steps = self.slice_args(node, a)
        clamp = lambda v: int(max(min(v, 2**62), -(2**62)))
        attrs = dict(starts=[clamp(v) for v in starts], ends=[clamp(v) for v in ends], axes=axes, steps=steps)
        self.generic(node, OL.OnnxSlice, [ins[0]], attrs)

    def op_Gather(self, node, ins, a):
        idx = self.get_const(node, ins[1], "the indices")
        self.generic(node, OL.OnnxGather, [ins[0]], {"indices": np.asarray(idx, np.int64).tolist(),
                                                      "axis": int(a.get("axis", 0))})

    def op_Cast(self, node, ins, a):
        if int(a["to"]) not in _FLOAT_TYPES:
            raise self.fail(node, "a Cast of a run-time tensor to a non-float type is not supported (visionkit "
                                  "tensors are float32)")
        self.alias(node, ins[0])

    def op_Pad(self, node, ins, a):
        x = ins[0]
        r = self.rank(x)
        mode = _s(a.get("mode", "constant"))
        if self.opset < 11:
            pads, value = list(a["pads"]), float(a.get("value", 0.0))
        else:
            pads = _pylist(self.get_const(node, ins[1], "pads"))
            v = self.opt_const(node, 2)
            value = 0.0 if v is None else float(np.asarray(v).reshape(-1)[0])
            axes = self.opt_const(node, 3)
            if axes is not None:
                axes = [int(v) % r for v in _pylist(axes)]
                full = [0] * (2 * r)
                for i, ax in enumerate(axes):
                    full[ax], full[r + ax] = pads[i], pads[len(axes) + i]
                pads = full
        if mode not in ("constant", "reflect", "edge", "wrap"):
            raise self.fail(node, f"Pad mode {mode!r} is not supported")
        self.generic(node, OL.OnnxPad, [x], {"pads": pads, "mode": mode, "value": value})

    def op_Upsample(self, node, ins, a):
        scales = list(a["scales"]) if "scales" in a else [float(v) for v in self.get_const(node, ins[1], "scales")]
        mode = _s(a.get("mode", "nearest"))
        self._resize(node, ins[0], scales, None, None,
                     dict(mode="linear" if mode in ("linear", "bilinear") else mode,
                          coordinate_transformation_mode="asymmetric", nearest_mode="floor"))

    def op_Resize(self, node, ins, a):
        mode = _s(a.get("mode", "nearest"))
        if mode not in ("nearest", "linear"):
            raise self.fail(node, f"Resize mode {mode!r} is not supported (nearest and linear are)")
        if int(a.get("antialias", 0)):
            raise self.fail(node, "Resize with antialias=1 is not supported")
        if self.opset < 11:
            scales = [float(v) for v in self.get_const(node, ins[1], "scales")]
            sizes, roi = None, None
            ctm, nm = "asymmetric", "floor"
        else:
            roi = self.opt_const(node, 1)
            scales = self.opt_const(node, 2)
            sizes = self.opt_const(node, 3)
            ctm = _s(a.get("coordinate_transformation_mode", "half_pixel"))
            nm = _s(a.get("nearest_mode", "round_prefer_floor"))
            scales = None if scales is None else [float(v) for v in scales.reshape(-1)]
            sizes = None if sizes is None else _pylist(sizes)
            roi = None if roi is None or ctm != "tf_crop_and_resize" else [float(v) for v in roi.reshape(-1)]
        extra = dict(mode=mode, coordinate_transformation_mode=ctm, nearest_mode=nm,
                     extrapolation_value=float(a.get("extrapolation_value", 0.0)), roi=roi,
                     keep_aspect_ratio_policy=_s(a.get("keep_aspect_ratio_policy", "stretch")))
        axes = list(a["axes"]) if "axes" in a else None
        self._resize(node, ins[0], scales, sizes, axes, extra)

    def _resize(self, node, x, scales, sizes, axes, extra):
        src = self.shape[x]
        out, full_scales = np_ops.resize_output_shape(src, scales, sizes, axes,
                                                      extra.get("keep_aspect_ratio_policy", "stretch"))
        mode, ctm, nm = extra["mode"], extra["coordinate_transformation_mode"], extra["nearest_mode"]
        if len(src) == 4 and out[:2] == list(src[:2]) and full_scales[:2] == [1.0, 1.0]:
            f = [out[i] / src[i] for i in (2, 3)]
            integer = all(v == int(v) and v >= 1 and full_scales[i + 2] == v for i, v in enumerate(f))
            interp = None
            if integer and mode == "nearest" and ctm in ("asymmetric",) and nm == "floor":
                interp, ac = "nearest", False
            elif integer and mode == "linear" and ctm in ("half_pixel", "pytorch_half_pixel"):
                interp, ac = "bilinear", False
            elif integer and mode == "linear" and ctm == "align_corners":
                interp, ac = "bilinear", True
            if interp:
                layer = L.UpSampling2D((int(f[0]), int(f[1])), interpolation=interp, align_corners=ac,
                                       name=self.name(node))
                return self.builtin(node, layer, [x])
        attrs = dict(extra, scales=scales, sizes=sizes, axes=axes)
        self.generic(node, OL.OnnxResize, [x], attrs)


class _Fake:
    """A stand-in node for layers the importer adds itself (graph outputs that are inputs or constants)."""

    def __init__(self, op_type, name):
        self.op_type = op_type
        self.name = name + "." + op_type.lower()
        self.output = [name]


def load_onnx(path, *, input_shape=None):
    """Build a visionkit ``Model`` from the ONNX model at ``path`` (a file path; an ``onnx.ModelProto`` or the
    file's bytes also work).

    ``input_shape``: the full input shape, batch included, e.g. ``(1, 3, 224, 224)`` (a dict {input name: shape}
    for several inputs). Needed only when the model declares symbolic dims other than the batch; shapes computed
    inside the graph (Shape nodes) are folded for this shape. The visionkit model keeps the declared dims, so a
    model with a symbolic batch runs on any batch size when its reshapes keep the batch axis.

    Raises ValueError for an unreadable file, unsupported operators (all listed at once, before anything is
    built), attribute combinations visionkit cannot run, and external data outside the model's folder.
    ``onnx`` must be installed (``pip install onnx``).
    """
    model, where = _read(path)
    return _Importer(model, where, input_shape).build()
