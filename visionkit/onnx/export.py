"""Write a visionkit model as an ONNX file: one converter per layer type, weights as initializers.

    from visionkit.onnx import export_onnx
    export_onnx(model, "model.onnx")                 # dynamic batch ("N"), opset 17
    export_onnx(fcn, "fcn.onnx", input_shape=(3, 480, 640), batch=1)

The graph keeps visionkit's names: the graph input is the InputLayer's name, each layer's output tensor is the
layer's name (a layer used twice: ``name[1]`` for its second use, as ``SymbolicTensor.name``), the graph outputs
are the output layers' names, and each weight is its parameter name (``conv1/kernel``). Steps a layer needs
inside (a fused activation, a separable conv's depthwise part) are named ``<layer>/<step>``.

How each layer maps (the semantics are visionkit's, i.e. PyTorch's; see ``docs/ops-api.md``):

    Conv2D, DepthwiseConv2D    Conv (pads, strides, dilations, group); "same" as explicit TensorFlow pads when the
                               spatial size is known, else auto_pad=SAME_UPPER (the same rule)
    SeparableConv2D            Conv (depthwise, group=C, no bias) then a 1x1 Conv
    Conv2DTranspose            ConvTranspose (pads, output_padding); the bottom/right crop of "same" is an
                               asymmetric end pad
    Dense                      Gemm(transB=1): visionkit's kernel is (out, in)
    fused activations, Activation
                               relu Relu, relu6 Clip(0, 6), leaky_relu LeakyRelu(negative_slope), elu Elu(alpha),
                               selu Selu, tanh Tanh, sigmoid Sigmoid, hardsigmoid HardSigmoid(alpha=1/6, beta=0.5;
                               ONNX's default alpha is 0.2), hardswish HardSwish (opset >= 14; x*HardSigmoid before),
                               softmax / log_softmax Softmax / LogSoftmax(axis=dim), linear nothing
    BatchNorm, BatchNormalization
                               BatchNormalization (inference: running statistics, the layer's epsilon; gamma=1 and
                               beta=0 when the layer has none)
    LocalResponseNorm          LRN(size, alpha, beta, bias=k) for an odd size. Both visionkit and ONNX divide alpha
                               by size, but for an even size the channel windows differ (visionkit/PyTorch:
                               c - size//2 .. c + (size-1)//2; ONNX: c - (size-1)//2 .. c + size//2; onnxruntime
                               refuses an even size outright), so an even size becomes
                               x / (k + alpha * AveragePool(x^2 over channels))^beta
    MaxPool2D                  MaxPool (pads, dilations); ceil_mode as extra end padding when sizes are known
    AvgPool2D                  AveragePool (count_include_pad; "same" never counts its padding); ceil_mode windows
                               that run past the padding get PyTorch's divisor through a constant correction map
    GlobalAvgPool2D / GlobalMaxPool2D
                               GlobalAveragePool / GlobalMaxPool (+ Flatten unless keepdims)
    ChannelMaxPool             Reshape + ReduceMax + Reshape
    Flatten / Reshape          Flatten(axis=1) / Reshape([0, *target_shape])
    Add / Concat / Multiply    Add or Sum / Concat(axis) / Mul (the scale unsqueezed to (N, C, 1, 1))
    UpSampling2D               Resize: nearest (asymmetric, floor), bilinear (half_pixel or align_corners)
    Dropout                    omitted (inference)
    PReLU                      PRelu (the slope shaped (C, 1, 1) to broadcast over NCHW)
    a nested Model             inlined, its names prefixed with ``<model>/``
    ZeroPadding2D-style layers Pad (see ``_padding_layer``)

A layer type without a converter (or with a configuration ONNX cannot express) makes ``export_onnx`` raise one
NotImplementedError naming every such layer. Third-party layers add theirs with ``register_converter``.
"""

from __future__ import annotations

import contextlib
import json

import numpy as np

DEFAULT_OPSET = 17
MIN_OPSET = 13  # Softmax along one axis, Unsqueeze/ReduceSum axes as inputs

_CONVERTERS: dict = {}
_BUILTINS_LOADED = False


def _import_onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise ImportError(
            "ONNX export needs the 'onnx' package, which is an optional dependency of visionkit: "
            "pip install onnx (and onnxruntime to run the exported file)"
        ) from None
    return onnx, helper, numpy_helper


def register_converter(layer_cls):
    """Decorator: ``@register_converter(MyLayer)`` on ``fn(g, layer, xs, in_shapes, out_shape, name) -> tensor``.

    ``g`` is the graph under construction (``g.node(op, inputs, name, **attrs)``, ``g.const(name, array)``,
    ``g.activation(x, act, params, name)``), ``xs`` the input tensor names (a list for a multi-input layer, else one
    name), ``in_shapes`` / ``out_shape`` the per-sample shapes (None: unknown size), ``name`` the output tensor name
    to use. Returns the name of the tensor holding the layer's output (it may return its input: an identity).
    A converter that cannot express some configuration raises ``Unsupported(reason)``.
    The class must match exactly (a subclass that changes ``forward`` must not inherit a converter silently).
    """

    def deco(fn):
        _CONVERTERS[layer_cls] = fn
        return fn

    return deco


def supported_layers():
    """The layer classes ``export_onnx`` converts."""
    _converters()
    return tuple(_CONVERTERS)


class Unsupported(Exception):
    """Raised by a converter for a layer configuration ONNX cannot express (collected into NotImplementedError)."""


# --------------------------------------------------------------------------------------------------------------
# the graph under construction


class _Graph:
    def __init__(self, helper, numpy_helper, opset):
        self.helper = helper
        self.numpy_helper = numpy_helper
        self.opset = opset
        self.nodes = []
        self.initializers = []
        self.names = set()

    def unique(self, base):
        name, k = base, 1
        while name in self.names:
            name = f"{base}_{k}"
            k += 1
        self.names.add(name)
        return name

    def const(self, name, array, dtype=np.float32):
        name = self.unique(name)
        a = np.ascontiguousarray(array, dtype=dtype)
        code = self.helper.np_dtype_to_tensor_dtype(a.dtype)
        # raw little-endian bytes: one copy (numpy_helper.from_array makes two; it matters for VGG's 500 MB)
        t = self.helper.make_tensor(name, code, a.shape, a.astype(a.dtype.newbyteorder("<")).tobytes(), raw=True)
        self.initializers.append(t)
        return name

    def ints(self, name, values):
        return self.const(name, np.asarray(values, np.int64), np.int64)

    def node(self, op, inputs, name, **attrs):
        """Add one node; its output tensor gets a unique version of ``name`` (returned)."""
        out = self.unique(name)
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(self.helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    def reduce(self, op, x, axes, keepdims, name):
        """ReduceMax/ReduceSum/...: axes an attribute before opset 18 (ReduceSum: 13), an input since."""
        input_axes = self.opset >= (13 if op == "ReduceSum" else 18)
        if input_axes:
            return self.node(op, [x, self.ints(f"{name}/axes", axes)], name, keepdims=int(keepdims))
        return self.node(op, [x], name, axes=list(axes), keepdims=int(keepdims))

    def activation(self, x, act, params, name):
        """The ONNX form of visionkit activation ``act`` (None or "linear": x itself)."""
        params = params or {}
        if act is None or act == "linear":
            return x
        simple = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}
        if act in simple:
            return self.node(simple[act], [x], name)
        if act == "relu6":
            lo = self.const(f"{name}/min", np.float32(0.0))
            hi = self.const(f"{name}/max", np.float32(6.0))
            return self.node("Clip", [x, lo, hi], name)
        if act == "leaky_relu":
            return self.node("LeakyRelu", [x], name, alpha=float(params.get("negative_slope", 0.01)))
        if act == "elu":
            return self.node("Elu", [x], name, alpha=float(params.get("alpha", 1.0)))
        if act == "selu":  # ONNX's default alpha/gamma are SELU's constants
            return self.node("Selu", [x], name)
        if act == "hardsigmoid":
            return self.node("HardSigmoid", [x], name, alpha=1.0 / 6.0, beta=0.5)
        if act == "hardswish":
            if self.opset >= 14:
                return self.node("HardSwish", [x], name)
            hs = self.node("HardSigmoid", [x], f"{name}/hardsigmoid", alpha=1.0 / 6.0, beta=0.5)
            return self.node("Mul", [x, hs], name)
        if act in ("softmax", "log_softmax"):
            op = "Softmax" if act == "softmax" else "LogSoftmax"
            return self.node(op, [x], name, axis=int(params.get("dim", 1)))
        raise Unsupported(f"activation {act!r} has no ONNX mapping")


# --------------------------------------------------------------------------------------------------------------
# helpers


def _known(*dims):
    return all(d is not None for d in dims)


def _explicit_conv_pads(layer, in_hw):
    """ONNX pads [top, left, bottom, right] of a conv/pool layer, or None for "same" with an unknown size."""
    from .. import ops

    if layer.padding == "valid":
        return [0, 0, 0, 0]
    if layer.padding == "same":
        if not _known(*in_hw):
            return None
        dil = getattr(layer, "dilation_rate", None) or getattr(layer, "_dilation", (1, 1))
        kernel = getattr(layer, "kernel_size", None) or layer.pool_size
        t, b, le, r = ops.same_padding(tuple(in_hw), kernel, layer.strides, dil)
        return [t, le, b, r]
    ph, pw = layer.padding
    return [ph, pw, ph, pw]


def _weight(g, p):
    """The initializer of Parameter ``p`` (named after it), created once per parameter."""
    cache = g.__dict__.setdefault("_params", {})
    if id(p) not in cache:
        if p.value is None:
            raise ValueError(f"parameter {p.name!r} has no value (declared only): load or initialise the weights")
        from .. import ops

        cache[id(p)] = g.const(p.name, ops.to_numpy(p.value))
    return cache[id(p)]


# --------------------------------------------------------------------------------------------------------------
# converters


def _converters():
    """Register the built-in converters (imports the layer classes lazily)."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    from .. import layers as L
    from ..input_layer import InputLayer  # noqa: F401
    from ..model import Model
    from ..sequential import Sequential

    def conv_node(g, layer, x, in_shape, kernel_p, bias_p, groups, name, strides=None, dilation=None, pads="layer"):
        inputs = [x, _weight(g, kernel_p)]
        if bias_p is not None:
            inputs.append(_weight(g, bias_p))
        kh, kw = kernel_p.shape[2:]
        attrs = {
            "kernel_shape": [int(kh), int(kw)],
            "strides": list(strides or layer.strides),
            "dilations": list(dilation or layer.dilation_rate),
            "group": int(groups),
        }
        p = _explicit_conv_pads(layer, in_shape[1:]) if pads == "layer" else pads
        if p is None:
            attrs["auto_pad"] = "SAME_UPPER"
        else:
            attrs["pads"] = list(p)
        return g.node("Conv", inputs, name, **attrs)

    def with_activation(g, z, layer, name):
        act = getattr(layer, "activation", None)
        if act is None:
            return z
        return g.activation(z, act, None, name)

    def conv_like(g, layer, x, in_shape, out_shape, name, kernel, groups):
        pre = name if layer.activation is None else f"{name}/conv"
        z = conv_node(g, layer, x, in_shape, kernel, layer.bias, groups, pre)
        return with_activation(g, z, layer, name)

    @register_converter(L.Conv2D)
    def _conv(g, layer, x, in_shape, out_shape, name):
        return conv_like(g, layer, x, in_shape, out_shape, name, layer.kernel, layer.groups)

    @register_converter(L.DepthwiseConv2D)
    def _dwconv(g, layer, x, in_shape, out_shape, name):
        return conv_like(g, layer, x, in_shape, out_shape, name, layer.depthwise_kernel, layer.in_channels)

    @register_converter(L.SeparableConv2D)
    def _sepconv(g, layer, x, in_shape, out_shape, name):
        t = conv_node(g, layer, x, in_shape, layer.depthwise_kernel, None, layer.in_channels, f"{name}/depthwise")
        pre = name if layer.activation is None else f"{name}/pointwise"
        z = conv_node(g, layer, t, None, layer.pointwise_kernel, layer.bias, 1, pre, strides=(1, 1),
                      dilation=(1, 1), pads=[0, 0, 0, 0])
        return with_activation(g, z, layer, name)

    @register_converter(L.Conv2DTranspose)
    def _deconv(g, layer, x, in_shape, out_shape, name):
        inputs = [x, _weight(g, layer.kernel)]
        if layer.bias is not None:
            inputs.append(_weight(g, layer.bias))
        (ph, pw), (ch, cw) = layer._pad, layer._crop
        pre = name if layer.activation is None else f"{name}/deconv"
        z = g.node(
            "ConvTranspose", inputs, pre,
            kernel_shape=list(layer.kernel_size), strides=list(layer.strides), dilations=list(layer.dilation_rate),
            group=int(layer.groups), pads=[ph, pw, ph + ch, pw + cw], output_padding=list(layer._out_pad),
        )
        return with_activation(g, z, layer, name)

    @register_converter(L.Dense)
    def _dense(g, layer, x, in_shape, out_shape, name):
        inputs = [x, _weight(g, layer.kernel)]
        if layer.bias is not None:
            inputs.append(_weight(g, layer.bias))
        pre = name if layer.activation is None else f"{name}/gemm"
        z = g.node("Gemm", inputs, pre, transB=1)
        return with_activation(g, z, layer, name)

    @register_converter(L.Activation)
    def _act(g, layer, x, in_shape, out_shape, name):
        return g.activation(x, layer.activation, layer.params, name)

    def _bn(g, layer, x, in_shape, out_shape, name):
        c = layer.channels
        scale = _weight(g, layer.gamma) if layer.gamma is not None else g.const(f"{layer.name}/gamma", np.ones(c))
        bias = _weight(g, layer.beta) if layer.beta is not None else g.const(f"{layer.name}/beta", np.zeros(c))
        mean, var = _weight(g, layer.running_mean), _weight(g, layer.running_var)
        return g.node("BatchNormalization", [x, scale, bias, mean, var], name, epsilon=float(layer.eps))

    register_converter(L.BatchNorm)(_bn)
    register_converter(L.BatchNormalization)(_bn)

    @register_converter(L.LocalResponseNorm)
    def _lrn(g, layer, x, in_shape, out_shape, name):
        size = layer.size
        if size % 2 == 1:  # the windows agree: ONNX's LRN, whose alpha is divided by size as visionkit's
            return g.node("LRN", [x], name, size=size, alpha=layer.alpha, beta=layer.beta, bias=layer.k)
        # even size: window c - size//2 .. c + (size-1)//2 (PyTorch's); the mean of x^2 over it, zero-padded
        sq = g.node("Mul", [x, x], f"{name}/square")
        r = g.node("Unsqueeze", [sq, g.ints(f"{name}/axes", [1])], f"{name}/unsqueeze")  # (N, 1, C, H, W)
        pads = g.ints(f"{name}/pads", [0, 0, size // 2, 0, 0, 0, 0, (size - 1) // 2, 0, 0])
        padded = g.node("Pad", [r, pads], f"{name}/pad")
        avg = g.node("AveragePool", [padded], f"{name}/window_mean", kernel_shape=[size, 1, 1])
        s = g.node("Squeeze", [avg, g.ints(f"{name}/squeeze_axes", [1])], f"{name}/squeeze")
        a = g.node("Mul", [s, g.const(f"{name}/alpha", np.float32(layer.alpha))], f"{name}/scaled")
        d = g.node("Add", [a, g.const(f"{name}/k", np.float32(layer.k))], f"{name}/plus_k")
        p = g.node("Pow", [d, g.const(f"{name}/beta", np.float32(layer.beta))], f"{name}/pow")
        return g.node("Div", [x, p], name)

    def pool_geometry(layer, in_shape, out_shape):
        """(explicit pads or None, extra end pads for ceil_mode or None, dilation)."""
        dil = tuple(layer._dilation)
        pads = _explicit_conv_pads(layer, in_shape[1:])
        if pads is None or not layer.ceil_mode:
            return pads, [0, 0], dil
        if not _known(*in_shape[1:]):
            return pads, None, dil
        extra = []
        for i in range(2):
            n, k, s, d = in_shape[1 + i], layer.pool_size[i], layer.strides[i], dil[i]
            o = out_shape[1 + i]
            extra.append(max(0, (o - 1) * s + d * (k - 1) + 1 - (n + pads[i] + pads[2 + i])))
        return pads, extra, dil

    @register_converter(L.MaxPool2D)
    def _maxpool(g, layer, x, in_shape, out_shape, name):
        pads, extra, dil = pool_geometry(layer, in_shape, out_shape)
        attrs = {"kernel_shape": list(layer.pool_size), "strides": list(layer.strides), "dilations": list(dil)}
        if pads is None:
            attrs["auto_pad"] = "SAME_UPPER"
        elif extra is None:  # ceil_mode with an unknown size: ONNX's own ceil_mode (PyTorch's rule in ORT >= 1.17)
            attrs.update(pads=pads, ceil_mode=1)
        else:  # padding is -inf for a max: ceil_mode's partial windows are just more end padding
            attrs["pads"] = [pads[0], pads[1], pads[2] + extra[0], pads[3] + extra[1]]
        return g.node("MaxPool", [x], name, **attrs)

    @register_converter(L.AvgPool2D)
    def _avgpool(g, layer, x, in_shape, out_shape, name):
        pads, extra, _ = pool_geometry(layer, in_shape, out_shape)
        include = layer.count_include_pad and layer.padding != "same"
        attrs = {"kernel_shape": list(layer.pool_size), "strides": list(layer.strides)}
        if pads is None:
            return g.node("AveragePool", [x], name, auto_pad="SAME_UPPER", count_include_pad=0, **attrs)
        if extra is None:
            return g.node("AveragePool", [x], name, pads=pads, ceil_mode=1, count_include_pad=int(include), **attrs)
        if not any(extra):
            return g.node("AveragePool", [x], name, pads=pads, count_include_pad=int(include), **attrs)
        # ceil_mode with partial windows: average the in-bounds values, then rescale each output position from
        # "in-bounds count" to PyTorch's divisor (the window clipped to input + padding) where they differ
        full = [pads[0], pads[1], pads[2] + extra[0], pads[3] + extra[1]]
        pre = name if not include else f"{name}/mean_inside"
        y = g.node("AveragePool", [x], pre, pads=full, count_include_pad=0, **attrs)
        if not include:
            return y
        ratio = np.ones(out_shape[1:], np.float64)
        for oh in range(out_shape[1]):
            for ow in range(out_shape[2]):
                counts = []
                for i, o in enumerate((oh, ow)):
                    n, k, s = in_shape[1 + i], layer.pool_size[i], layer.strides[i]
                    start = o * s - pads[i]
                    end = min(start + k, n + pads[2 + i])
                    inside = min(start + k, n) - max(start, 0)
                    counts.append((end - start, inside))
                ratio[oh, ow] = (counts[0][1] * counts[1][1]) / (counts[0][0] * counts[1][0])
        c = g.const(f"{name}/divisor_correction", ratio.reshape((1, 1) + ratio.shape))
        return g.node("Mul", [y, c], name)

    def global_pool(op):
        def conv(g, layer, x, in_shape, out_shape, name):
            if layer.keepdims:
                return g.node(op, [x], name)
            y = g.node(op, [x], f"{name}/pool")
            return g.node("Flatten", [y], name, axis=1)

        return conv

    register_converter(L.GlobalAvgPool2D)(global_pool("GlobalAveragePool"))
    register_converter(L.GlobalMaxPool2D)(global_pool("GlobalMaxPool"))

    @register_converter(L.ChannelMaxPool)
    def _channel_max(g, layer, x, in_shape, out_shape, name):
        c, k = in_shape[0], layer.pool_size
        r = g.node("Reshape", [x, g.ints(f"{name}/split_shape", [0, c // k, k, -1])], f"{name}/split")
        m = g.reduce("ReduceMax", r, [2], False, f"{name}/max")
        if _known(*in_shape[1:]):
            shape = g.ints(f"{name}/shape", [0, c // k, in_shape[1], in_shape[2]])
        else:
            full = g.node("Shape", [x], f"{name}/input_shape")
            n = g.node("Slice", [full, g.ints(f"{name}/s0", [0]), g.ints(f"{name}/e0", [1])], f"{name}/n")
            hw = g.node("Slice", [full, g.ints(f"{name}/s2", [2]), g.ints(f"{name}/e2", [4])], f"{name}/hw")
            shape = g.node("Concat", [n, g.ints(f"{name}/c", [c // k]), hw], f"{name}/shape", axis=0)
        return g.node("Reshape", [m, shape], name)

    @register_converter(L.Flatten)
    def _flatten(g, layer, x, in_shape, out_shape, name):
        return g.node("Flatten", [x], name, axis=1)

    @register_converter(L.Reshape)
    def _reshape(g, layer, x, in_shape, out_shape, name):
        return g.node("Reshape", [x, g.ints(f"{name}/shape", [0] + list(layer.target_shape))], name)

    @register_converter(L.Dropout)
    def _dropout(g, layer, x, in_shape, out_shape, name):
        return x  # inference: the identity

    @register_converter(L.Add)
    def _add(g, layer, xs, in_shapes, out_shape, name):
        if len(xs) == 2:
            return g.node("Add", xs, name)
        return g.node("Sum", xs, name)

    @register_converter(L.Concat)
    def _concat(g, layer, xs, in_shapes, out_shape, name):
        axis = layer._axis(len(in_shapes[0])) + 1
        return g.node("Concat", xs, name, axis=axis)

    @register_converter(L.Multiply)
    def _multiply(g, layer, xs, in_shapes, out_shape, name):
        x, s = xs
        missing = len(in_shapes[0]) - len(in_shapes[1])
        if missing > 0:
            axes = list(range(len(in_shapes[1]) + 1, len(in_shapes[0]) + 1))
            s = g.node("Unsqueeze", [s, g.ints(f"{name}/axes", axes)], f"{name}/scale")
        return g.node("Mul", [x, s], name)

    @register_converter(L.UpSampling2D)
    def _upsample(g, layer, x, in_shape, out_shape, name):
        sh, sw = layer.size
        scales = g.const(f"{name}/scales", np.array([1, 1, sh, sw], np.float32))
        if layer.interpolation == "nearest":
            attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
        else:
            ctm = "align_corners" if layer.align_corners else "half_pixel"
            attrs = {"mode": "linear", "coordinate_transformation_mode": ctm}
        return g.node("Resize", [x, "", scales], name, **attrs)

    def _nested(g, layer, xs, in_shapes, out_shape, name):
        outs = _emit(g, layer, xs if layer.multi_input else [xs], in_shapes if layer.multi_input else [in_shapes],
                     prefix=f"{name}/")
        if len(outs) != 1:
            raise Unsupported("a nested model with several outputs")
        return outs[0][0]

    register_converter(Model)(_nested)
    register_converter(Sequential)(_nested)

    try:
        from ..layers.prelu import PReLU
    except ImportError:  # an older visionkit without PReLU
        PReLU = None
    if PReLU is not None:

        @register_converter(PReLU)
        def _prelu(g, layer, x, in_shape, out_shape, name):
            alpha = layer.alpha.value
            if alpha is None:
                raise ValueError(f"parameter {layer.alpha.name!r} has no value (declared only)")
            from .. import ops

            a = ops.to_numpy(alpha).astype(np.float32)
            if layer.channelwise:
                a = a.reshape((-1,) + (1,) * (len(in_shape) - 1))
            return g.node("PRelu", [x, g.const(layer.alpha.name, a)], name)


def _padding_layer(g, layer, x, in_shape, out_shape, name):
    """A padding layer (Keras ZeroPadding2D and friends): ``layer.padding`` an int, (h, w) or ((top, bottom),
    (left, right)); ``layer.mode`` constant (default) | reflect | replicate; ``layer.value`` the constant."""
    p = layer.padding
    if isinstance(p, int):
        t = b = le = r = p
    elif len(p) == 2 and all(isinstance(v, int) for v in p):
        t = b = p[0]
        le = r = p[1]
    elif len(p) == 2:
        (t, b), (le, r) = p
    else:
        raise Unsupported(f"padding {p!r}")
    mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}.get(getattr(layer, "mode", "constant"))
    if mode is None:
        raise Unsupported(f"padding mode {layer.mode!r}")
    pads = g.ints(f"{name}/pads", [0, 0, t, le, 0, 0, b, r])
    inputs = [x, pads]
    if mode == "constant" and float(getattr(layer, "value", 0.0) or 0.0) != 0.0:
        inputs.append(g.const(f"{name}/value", np.float32(layer.value)))
    return g.node("Pad", inputs, name, mode=mode)


def _converter_for(layer):
    _converters()
    fn = _CONVERTERS.get(type(layer))
    if fn is None and type(layer).__name__ in ("ZeroPadding2D", "Padding2D", "ReflectionPadding2D"):
        fn = _padding_layer
    return fn


# --------------------------------------------------------------------------------------------------------------
# the graph walk


def _node_name(node, counts):
    k = counts.get(id(node.layer), 0)
    counts[id(node.layer)] = k + 1
    return node.layer.name + (f"[{k}]" if k else "")


def _unsupported(model, found=None, prefix=""):
    """Every (qualified name, type, reason) this exporter cannot write, nested models included."""
    from ..input_layer import InputLayer
    from ..model import Model

    found = [] if found is None else found
    seen = set()
    for node in model._order:
        layer = node.layer
        if isinstance(layer, InputLayer) or id(layer) in seen:
            continue
        seen.add(id(layer))
        if isinstance(layer, Model) and _converter_for(layer) is not None:
            _unsupported(layer, found, prefix=f"{prefix}{layer.name}/")
            continue
        if _converter_for(layer) is None:
            found.append((prefix + layer.name, type(layer).__name__, "no ONNX converter for this layer type"))
    return found


def _emit(g, model, input_names, input_shapes, prefix=""):
    """Emit ``model``'s nodes; returns [(tensor name, per-sample shape)] for its outputs."""
    from ..input_layer import InputLayer

    vals, shapes, counts = {}, {}, {}
    for k, (name, shape) in zip(model._input_idx, zip(input_names, input_shapes)):
        vals[k], shapes[k] = name, tuple(shape)
    problems = []
    for k, node in enumerate(model._order):
        if k in vals:
            continue
        layer = node.layer
        if isinstance(layer, InputLayer):
            raise ValueError(f"input {layer.name!r} is not among the model's inputs")  # noqa: TRY004
        ins = [vals[j] for j in model._inbound[k]]
        in_shapes = [shapes[j] for j in model._inbound[k]]
        arg, sh = (ins, in_shapes) if node.multi_input else (ins[0], in_shapes[0])
        out_shape = tuple(layer.compute_output_shape(list(sh) if node.multi_input else sh))
        name = prefix + _node_name(node, counts)
        fn = _converter_for(layer)
        try:
            vals[k] = fn(g, layer, arg, sh, out_shape, name)
        except Unsupported as e:
            problems.append((prefix + layer.name, type(layer).__name__, str(e)))
            vals[k] = g.unique(name)  # keep walking to report every problem at once
        shapes[k] = out_shape
    if problems:
        raise _Problems(problems)
    return [(vals[j], shapes[j]) for j in model._output_idx]


class _Problems(Exception):
    def __init__(self, problems):
        self.problems = problems


def _not_implemented(problems):
    lines = [f"  {name!r} ({typ}): {why}" for name, typ, why in problems]
    return NotImplementedError(
        f"cannot export to ONNX: {len(problems)} layer(s) have no ONNX form:\n" + "\n".join(lines)
    )


def _resolve_input_shapes(model, input_shape):
    model_shapes = [tuple(t.shape[1:]) for t in model.inputs]
    if input_shape is None:
        return model_shapes
    given = [tuple(input_shape)] if len(model_shapes) == 1 and not isinstance(input_shape[0], (list, tuple)) \
        else [tuple(s) for s in input_shape]
    if len(given) != len(model_shapes):
        raise ValueError(f"input_shape: the model has {len(model_shapes)} inputs, got {len(given)} shapes")
    out = []
    for want, got in zip(model_shapes, given):
        if len(want) != len(got) or any(a is not None and b is not None and int(a) != int(b) for a, b in zip(want, got)):
            raise ValueError(f"input_shape {got} does not fit the model's input {want} (batch excluded)")
        out.append(tuple(None if b is None else int(b) for b in got))
    return out


def build_onnx(model, *, opset=DEFAULT_OPSET, input_shape=None, batch=None):
    """The ``onnx.ModelProto`` of ``model`` (what ``export_onnx`` writes); see the module docstring."""
    onnx, helper, numpy_helper = _import_onnx()
    from .. import __version__
    from ..input_layer import InputLayer  # noqa: F401

    opset = int(opset)
    latest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= latest:
        raise ValueError(f"opset must be between {MIN_OPSET} and {latest} (this onnx package's newest), got {opset}")
    if batch is not None and int(batch) < 1:
        raise ValueError(f"batch must be a positive int or None (dynamic), got {batch!r}")
    problems = _unsupported(model)
    if problems:
        raise _not_implemented(problems)
    shapes = _resolve_input_shapes(model, input_shape)
    g = _Graph(helper, numpy_helper, opset)
    in_names = []
    for t in model.inputs:
        in_names.append(g.unique(t.node.layer.name))
    try:
        outs = _emit(g, model, in_names, shapes)
    except _Problems as e:
        raise _not_implemented(e.problems) from None

    batch_dim = int(batch) if batch is not None else "N"

    def dims(shape, tag):
        spatial = ["H", "W", "D"]
        out = [batch_dim]
        for i, d in enumerate(shape):
            out.append(int(d) if d is not None else (f"{tag}_{spatial[i - 1]}" if 0 < i <= 3 else f"{tag}_{i}"))
        return out

    inputs = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, dims(s, n)) for n, s in zip(in_names, shapes)]
    outputs, used = [], set(in_names)
    for (tensor, shape), t in zip(outs, model.outputs):
        want = t.node.layer.name
        if tensor != want or tensor in used:  # an identity-like output, or the same tensor twice: name it
            tensor = g.node("Identity", [tensor], want if want not in g.names else f"{want}_output")
        used.add(tensor)
        outputs.append(helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, dims(shape, tensor)))
    graph = helper.make_graph(g.nodes, model.name, inputs, outputs, initializer=g.initializers)
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="visionkit",
        producer_version=__version__,
        doc_string=f"visionkit model {model.name!r}",
    )
    # the oldest IR version that carries this opset: readable by the widest range of runtimes
    with contextlib.suppress(AttributeError, KeyError, ValueError):  # an onnx without the helper: its default
        proto.ir_version = helper.find_min_ir_version_for([helper.make_opsetid("", opset)])
    meta = getattr(model, "metadata", None) or {}
    if meta:  # the model card, for whoever reads the file later
        helper.set_model_props(proto, {"visionkit.metadata": json.dumps(meta, default=str)})
    return proto


def export_onnx(model, path, *, opset=DEFAULT_OPSET, input_shape=None, batch=None):
    """Write ``model`` to ``path`` as ONNX (atomically: a temporary file beside it, then ``os.replace``).

    ``opset``        ONNX opset (13 .. the installed onnx's newest; default 17)
    ``input_shape``  per-sample shape (C, H, W) to fix sizes the model leaves open (a fully convolutional model);
                     it must agree with the sizes the model fixes. Open sizes stay symbolic otherwise.
    ``batch``        None (default): a dynamic batch dimension named "N"; an int fixes it.
    Raises NotImplementedError naming every layer that has no ONNX form, ImportError when onnx is missing.
    Returns the path written.
    """
    onnx, _, _ = _import_onnx()
    proto = build_onnx(model, opset=opset, input_shape=input_shape, batch=batch)
    size = proto.ByteSize()
    if size >= 2**31:
        raise ValueError(f"the ONNX file would be {size / 2**30:.1f} GiB: protobuf's 2 GiB limit (external weight "
                         f"files are not supported by this exporter)")
    data = proto.SerializeToString()
    del proto
    onnx.checker.check_model(data)
    from ..io import write_bytes_atomically

    return write_bytes_atomically(path, data)


__all__ = [
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "Unsupported",
    "build_onnx",
    "export_onnx",
    "register_converter",
    "supported_layers",
]
