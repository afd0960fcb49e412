"""Generic ONNX layers: the operators of an imported ONNX graph that do not map onto a visionkit layer.

visionkit's own layers (Conv2D, Dense, BatchNorm, MaxPool2D, ...) work on NCHW images and (N, features) vectors,
with the batch as axis 0 and per-layer semantics from PyTorch/Keras. An ONNX graph also holds tensors of any rank,
reshapes that move the batch, transposes, broadcasting arithmetic against constants, 1-D and 3-D windows,
asymmetric padding, and so on. ``load_onnx`` maps a node onto a visionkit layer whenever it can (so imported CNNs
run on visionkit's kernels) and onto one of the layers here otherwise.

Every layer here:
    * runs in plain numpy (``visionkit.onnx.np_ops``) with ONNX's semantics, on the CPU (device arrays are copied
      to the host); the output is float32;
    * is inference-only: ``backward`` raises NotImplementedError;
    * takes its inputs through ``slots``, one character per ONNX input: "x" a tensor of the graph (the layer's
      inputs, in order), "c" a constant held as a (non-trainable) parameter ``const<i>``, "-" an absent optional
      input. Integer operands that are really attributes (a Reshape's shape, a Slice's starts) sit in ``attrs``;
    * reports as its output shape the one recorded at import (``output_shape``, batch included), because several
      of them move or merge the batch axis; at run time it computes from the arrays it gets, whatever their shape;
    * is registered with ``@register_layer``, so a model built from ONNX saves to a ``.vk`` file and loads again.
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..layers.base import Layer, profile, register_layer
from . import np_ops


class OnnxLayer(Layer):
    """Base of the generic ONNX layers (inference-only: ``backward`` raises NotImplementedError).

    ``OnnxLayer(attrs=None, slots="x", const_shapes=None, output_shape=None, name=None)``; see the module docstring.
    Subclasses implement ``compute(args)`` (args: one numpy array or None per slot). ``same_shape = True`` marks
    ops whose output has the shape of their first input (activations, normalisations).
    """

    same_shape = False

    def __init__(self, attrs=None, slots="x", const_shapes=None, output_shape=None, name=None, trainable=False,
                 input_shape=None):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape)
        self.attrs = dict(attrs or {})
        self.slots = str(slots)
        if not self.slots or set(self.slots) - set("xc-") or "x" not in self.slots:
            raise ValueError(f"layer {self.name!r}: slots must be a string of x/c/- holding at least one x, "
                             f"got {slots!r}")
        self.const_shapes = {int(k): tuple(int(d) for d in v) for k, v in (const_shapes or {}).items()}
        for i, ch in enumerate(self.slots):
            if (ch == "c") != (i in self.const_shapes):
                raise ValueError(f"layer {self.name!r}: const_shapes must give the shape of each 'c' slot")
        self.output_shape = (None if output_shape is None
                             else tuple(None if d is None else int(d) for d in output_shape))
        self.multi_input = self.slots.count("x") > 1

    # ---- parameters and shapes --------------------------------------------------------------------------------
    def build(self, input_shape):
        for i, ch in enumerate(self.slots):
            if ch == "c":
                self.add_weight(f"const{i}", self.const_shapes[i], "zeros", trainable=False, fans=(1, 1))

    def const(self, i):
        return getattr(self, f"const{i}")

    def set_constant(self, i, value):
        """Give slot ``i`` its value (the importer calls this once the layer is built)."""
        p = self.const(i)
        a = np.ascontiguousarray(np.asarray(value, np.float32).reshape(p.shape))
        p.value = a

    def compute_output_shape(self, input_shape):
        if self.same_shape:
            return tuple(input_shape[0] if self.multi_input else input_shape)
        if self.output_shape is None:
            return (None,)
        return tuple(self.output_shape[1:])

    def memory_profile(self, input_shape, output_shape, training):
        return profile()

    # ---- compute ----------------------------------------------------------------------------------------------
    def _args(self, x):
        xs = iter(list(x) if self.multi_input else [x])
        args = []
        for i, ch in enumerate(self.slots):
            if ch == "x":
                args.append(np.asarray(ops.to_numpy(next(xs))))
            elif ch == "c":
                args.append(np.asarray(ops.to_numpy(self.const(i).value)))
            else:
                args.append(None)
        return args

    def compute(self, args):
        raise NotImplementedError

    def forward(self, x, training=False):
        y = np.asarray(self.compute(self._args(x)), dtype=np.float32)
        if not y.flags.c_contiguous:  # (np.ascontiguousarray would turn a 0-d result into 1-d)
            y = y.copy(order="C")
        return y, None

    def backward(self, grad_out, ctx):
        raise NotImplementedError(
            f"layer {self.name!r} ({type(self).__name__}) is an imported ONNX operator without a backward pass; "
            "imported models run inference only"
        )

    def get_config(self):
        cfg = super().get_config()
        cfg.update(
            attrs=self.attrs,
            slots=self.slots,
            const_shapes={str(k): list(v) for k, v in self.const_shapes.items()},
            output_shape=None if self.output_shape is None else list(self.output_shape),
        )
        return cfg


# --------------------------------------------------------------------------------------------------------------
# elementwise


@register_layer
class OnnxUnary(OnnxLayer):
    """An elementwise activation with ONNX's parameters: attrs ``op`` (Relu, Sigmoid, Tanh, LeakyRelu, Elu, Selu,
    HardSigmoid, HardSwish, Identity) and ``alpha`` / ``beta`` / ``gamma``. Inference-only (no backward)."""

    same_shape = True

    def compute(self, args):
        a = self.attrs
        return np_ops.unary(args[0], a["op"], a.get("alpha"), a.get("beta"), a.get("gamma"))


@register_layer
class OnnxBinary(OnnxLayer):
    """Add / Sub / Mul / Div / Pow / Max / Min with numpy broadcasting, between two tensors or a tensor and a
    constant (attrs ``op``). Inference-only (no backward)."""

    def compute(self, args):
        return np_ops.binary(args[0], args[1], self.attrs["op"])


@register_layer
class OnnxClip(OnnxLayer):
    """Clip to [min, max]: slots (x, min, max), either bound absent or given by attrs ``min`` / ``max`` (opset < 11).
    Inference-only (no backward)."""

    same_shape = True

    def compute(self, args):
        x, lo, hi = (args + [None, None])[:3]
        lo = self.attrs.get("min") if lo is None else lo
        hi = self.attrs.get("max") if hi is None else hi
        return np_ops.clip(x, lo, hi)


@register_layer
class OnnxPRelu(OnnxLayer):
    """PRelu with a slope broadcast against the input (slots x, slope). Inference-only (no backward)."""

    same_shape = True

    def compute(self, args):
        return np_ops.prelu(args[0], args[1])


@register_layer
class OnnxSoftmax(OnnxLayer):
    """Softmax along attrs ``axis``; ``legacy`` (opset < 13) normalises over the 2-D flattening at ``axis``, i.e.
    over every dim from ``axis`` on. Inference-only (no backward)."""

    same_shape = True

    def compute(self, args):
        return np_ops.softmax(args[0], int(self.attrs.get("axis", -1)), bool(self.attrs.get("legacy", False)))


# --------------------------------------------------------------------------------------------------------------
# linear algebra


@register_layer
class OnnxMatMul(OnnxLayer):
    """numpy matmul semantics (1-D operands, broadcast batch dims); either side may be a constant.
    Inference-only (no backward)."""

    def compute(self, args):
        return np_ops.matmul(args[0], args[1])


@register_layer
class OnnxGemm(OnnxLayer):
    """Y = alpha * A' B' + beta * C, with attrs ``alpha``, ``beta``, ``trans_a``, ``trans_b``; C broadcasts.
    Inference-only (no backward)."""

    def compute(self, args):
        a = self.attrs
        c = args[2] if len(args) > 2 else None
        return np_ops.gemm(args[0], args[1], c, float(a.get("alpha", 1.0)), float(a.get("beta", 1.0)),
                           int(a.get("trans_a", 0)), int(a.get("trans_b", 0)))


# --------------------------------------------------------------------------------------------------------------
# shapes


@register_layer
class OnnxReshape(OnnxLayer):
    """Reshape to attrs ``shape`` with ONNX's rules (0 copies the input dim unless ``allowzero``; one -1), the batch
    axis included. Inference-only (no backward)."""

    def compute(self, args):
        return np_ops.reshape(args[0], self.attrs["shape"], int(self.attrs.get("allowzero", 0)))


@register_layer
class OnnxTranspose(OnnxLayer):
    """Permute the axes by attrs ``perm`` (None: reverse them). Inference-only (no backward)."""

    def compute(self, args):
        return np_ops.transpose(args[0], self.attrs.get("perm"))


@register_layer
class OnnxSqueeze(OnnxLayer):
    """Remove the size-1 axes ``axes`` (None: all of them). Inference-only (no backward)."""

    def compute(self, args):
        return np_ops.squeeze(args[0], self.attrs.get("axes"))


@register_layer
class OnnxUnsqueeze(OnnxLayer):
    """Insert size-1 axes at ``axes`` (positions in the output). Inference-only (no backward)."""

    def compute(self, args):
        return np_ops.unsqueeze(args[0], self.attrs["axes"])


@register_layer
class OnnxFlatten(OnnxLayer):
    """Flatten to 2-D at attrs ``axis``: (prod(dims[:axis]), prod(dims[axis:])). Inference-only (no backward)."""

    def compute(self, args):
        return np_ops.flatten(args[0], int(self.attrs.get("axis", 1)))


@register_layer
class OnnxConcat(OnnxLayer):
    """Concatenate tensors and constants along attrs ``axis`` (any axis). Inference-only (no backward)."""

    def compute(self, args):
        return np_ops.concat(*[a.astype(np.float32) for a in args if a is not None], axis=int(self.attrs["axis"]))


@register_layer
class OnnxSlice(OnnxLayer):
    """Slice with constant attrs ``starts``, ``ends``, ``axes``, ``steps`` (ONNX clamping, negative steps).
    Inference-only (no backward)."""

    def compute(self, args):
        a = self.attrs
        return np_ops.slice_(args[0], a["starts"], a["ends"], a.get("axes"), a.get("steps"))


@register_layer
class OnnxGather(OnnxLayer):
    """Gather constant attrs ``indices`` (nested lists, negative allowed) along ``axis``. Inference-only
    (no backward)."""

    def compute(self, args):
        return np_ops.gather(args[0], np.asarray(self.attrs["indices"], np.int64), int(self.attrs.get("axis", 0)))


@register_layer
class OnnxPad(OnnxLayer):
    """Pad with attrs ``pads`` (ONNX order: all begins, then all ends; negative crops), ``mode`` (constant, reflect,
    edge, wrap) and ``value``. Inference-only (no backward)."""

    def compute(self, args):
        a = self.attrs
        return np_ops.pad(args[0], a["pads"], a.get("mode", "constant"), float(a.get("value", 0.0)))


@register_layer
class OnnxIdentity(OnnxLayer):
    """The identity (a graph output that is a graph input, Dropout at inference). Inference-only (no backward)."""

    same_shape = True

    def compute(self, args):
        return args[0]


@register_layer
class OnnxConstant(OnnxLayer):
    """Outputs its constant (slot 1), ignoring its tensor input: a graph output that is a constant.
    Inference-only (no backward)."""

    def compute(self, args):
        return args[1]


# --------------------------------------------------------------------------------------------------------------
# windows


def _window_attrs(a):
    return dict(
        strides=a.get("strides"), pads=a.get("pads"), dilations=a.get("dilations"),
        auto_pad=a.get("auto_pad", "NOTSET"),
    )


@register_layer
class OnnxPool(OnnxLayer):
    """N-D MaxPool / AveragePool (attrs ``kind`` "max"|"avg", ``kernel``, ``strides``, ``pads``, ``dilations``,
    ``ceil_mode``, ``count_include_pad``, ``auto_pad``), for what MaxPool2D/AvgPool2D do not cover: 1-D and 3-D
    windows, asymmetric or SAME_LOWER padding, dilated averages. Inference-only (no backward)."""

    def compute(self, args):
        a = self.attrs
        return np_ops.pool(args[0], a["kind"], a["kernel"], ceil_mode=int(a.get("ceil_mode", 0)),
                           count_include_pad=int(a.get("count_include_pad", 0)), **_window_attrs(a))


@register_layer
class OnnxGlobalPool(OnnxLayer):
    """Global max / average over every axis after (N, C), keeping them as size 1 (attrs ``kind``).
    Inference-only (no backward)."""

    def compute(self, args):
        return np_ops.global_pool(args[0], self.attrs["kind"])


@register_layer
class OnnxConv(OnnxLayer):
    """N-D (grouped, dilated, asymmetrically padded) convolution: slots (x, weight, bias), attrs ``strides``,
    ``pads``, ``dilations``, ``group``, ``auto_pad``. Only for what Conv2D does not cover (1-D, 3-D).
    Inference-only (no backward)."""

    def compute(self, args):
        a = self.attrs
        b = args[2] if len(args) > 2 else None
        return np_ops.conv(args[0], args[1], b, group=int(a.get("group", 1)), **_window_attrs(a))


@register_layer
class OnnxConvTranspose(OnnxLayer):
    """N-D transposed convolution with ONNX's ``output_shape`` / ``output_padding`` / ``auto_pad`` rules:
    slots (x, weight, bias). Only for what Conv2DTranspose does not cover. Inference-only (no backward)."""

    def compute(self, args):
        a = self.attrs
        b = args[2] if len(args) > 2 else None
        return np_ops.conv_transpose(args[0], args[1], b, group=int(a.get("group", 1)),
                                     output_padding=a.get("output_padding"), output_shape=a.get("output_shape"),
                                     **_window_attrs(a))


# --------------------------------------------------------------------------------------------------------------
# normalisation and resizing


@register_layer
class OnnxBatchNorm(OnnxLayer):
    """Inference batch normalisation over axis 1 of any rank: slots (x, scale, bias, mean, var), attrs ``epsilon``.
    Inference-only (no backward)."""

    same_shape = True

    def compute(self, args):
        return np_ops.batch_norm(*args[:5], epsilon=float(self.attrs.get("epsilon", 1e-5)))


@register_layer
class OnnxLRN(OnnxLayer):
    """Local response normalisation across channels with ONNX's window (floor((size-1)/2) before, ceil after),
    attrs ``size``, ``alpha``, ``beta``, ``bias``. Inference-only (no backward)."""

    same_shape = True

    def compute(self, args):
        a = self.attrs
        return np_ops.lrn(args[0], int(a["size"]), float(a.get("alpha", 1e-4)), float(a.get("beta", 0.75)),
                          float(a.get("bias", 1.0)))


@register_layer
class OnnxResize(OnnxLayer):
    """Resize / Upsample with modes nearest and linear and every coordinate_transformation_mode: attrs ``scales``
    or ``sizes`` (with ``axes`` and ``keep_aspect_ratio_policy``), ``mode``, ``coordinate_transformation_mode``,
    ``nearest_mode``, ``extrapolation_value``, ``roi``. Inference-only (no backward)."""

    def compute(self, args):
        a = self.attrs
        x = args[0]
        out, scales = np_ops.resize_output_shape(x.shape, a.get("scales"), a.get("sizes"), a.get("axes"),
                                                 a.get("keep_aspect_ratio_policy", "stretch"))
        roi = a.get("roi")
        if roi is not None and a.get("axes") is not None:  # roi given for ``axes`` only: expand to every axis
            rank, axes = x.ndim, [int(v) % x.ndim for v in a["axes"]]
            full = [0.0] * rank + [1.0] * rank
            for i, ax in enumerate(axes):
                full[ax], full[rank + ax] = roi[i], roi[len(axes) + i]
            roi = full
        return np_ops.resize(x, out, scales, a.get("mode", "nearest"),
                             a.get("coordinate_transformation_mode", "half_pixel"),
                             a.get("nearest_mode", "round_prefer_floor"), float(a.get("extrapolation_value", 0.0)),
                             roi)


GENERIC_LAYERS = [
    OnnxUnary, OnnxBinary, OnnxClip, OnnxPRelu, OnnxSoftmax, OnnxMatMul, OnnxGemm, OnnxReshape, OnnxTranspose,
    OnnxSqueeze, OnnxUnsqueeze, OnnxFlatten, OnnxConcat, OnnxSlice, OnnxGather, OnnxPad, OnnxIdentity, OnnxConstant,
    OnnxPool, OnnxGlobalPool, OnnxConv, OnnxConvTranspose, OnnxBatchNorm, OnnxLRN, OnnxResize,
]
