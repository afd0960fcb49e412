"""A visionkit graph rebuilt as a ``torch.nn.Module`` on the same weights: a reference for parity checks and
engine benchmarks. torch is never a dependency of visionkit; it is imported only here, when asked for.

    from visionkit.onnx.torch_ref import to_torch
    net = to_torch(model)              # eval mode, float32, the weights copied
    y = net(torch.from_numpy(x))

Each layer becomes the ``torch.nn.functional`` call of the same name (visionkit's ops have PyTorch's semantics);
TensorFlow "same" padding is an explicit ``F.pad`` computed from the input's size at run time (-inf for a max
pool; an average pool divides by the in-bounds count, as Keras). Dropout is the identity. A layer type without a
translation makes ``to_torch`` raise one NotImplementedError naming every such layer.
"""

from __future__ import annotations

import numpy as np

_TRANSLATORS: dict = {}
_LOADED = False


def register_translator(layer_cls):
    """``@register_translator(MyLayer)`` on ``fn(layer, tensor) -> callable(inputs) -> tensor``, where ``tensor(p)``
    gives the torch tensor of visionkit Parameter ``p`` and ``inputs`` is one tensor or a list (multi-input)."""

    def deco(fn):
        _TRANSLATORS[layer_cls] = fn
        return fn

    return deco


def _import_torch():
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        raise ImportError("the torch reference needs PyTorch (pip install torch); visionkit itself does not") from None
    return torch, F


def _same_pads(hw, kernel, stride, dilation):
    from .. import ops

    t, b, le, r = ops.same_padding(tuple(int(d) for d in hw), kernel, stride, dilation)
    return (le, r, t, b)  # F.pad order


def _load():
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    torch, F = _import_torch()
    from .. import layers as L
    from ..model import Model
    from ..sequential import Sequential

    def act_fn(name, params=None):
        params = params or {}
        if name is None or name == "linear":
            return lambda x: x
        table = {
            "relu": F.relu,
            "relu6": F.relu6,
            "tanh": torch.tanh,
            "sigmoid": torch.sigmoid,
            "selu": F.selu,
            "hardsigmoid": F.hardsigmoid,
            "hardswish": F.hardswish,
        }
        if name in table:
            return table[name]
        if name == "leaky_relu":
            slope = float(params.get("negative_slope", 0.01))
            return lambda x: F.leaky_relu(x, slope)
        if name == "elu":
            alpha = float(params.get("alpha", 1.0))
            return lambda x: F.elu(x, alpha)
        if name in ("softmax", "log_softmax"):
            dim = int(params.get("dim", 1))
            fn = F.softmax if name == "softmax" else F.log_softmax
            return lambda x: fn(x, dim=dim)
        raise NotImplementedError(f"activation {name!r}")

    def conv_call(layer, w, b, groups, x, strides=None, dilation=None, padding="layer"):
        strides = strides or layer.strides
        dilation = dilation or layer.dilation_rate
        pad = layer.padding if padding == "layer" else padding
        if pad == "same":
            x = F.pad(x, _same_pads(x.shape[2:], tuple(w.shape[2:]), strides, dilation))
            pad = (0, 0)
        elif pad == "valid":
            pad = (0, 0)
        return F.conv2d(x, w, b, tuple(strides), tuple(pad), tuple(dilation), int(groups))

    @register_translator(L.Conv2D)
    def _conv(layer, T):
        w, b, a = T(layer.kernel), T(layer.bias), act_fn(layer.activation)
        return lambda x: a(conv_call(layer, w, b, layer.groups, x))

    @register_translator(L.DepthwiseConv2D)
    def _dw(layer, T):
        w, b, a = T(layer.depthwise_kernel), T(layer.bias), act_fn(layer.activation)
        return lambda x: a(conv_call(layer, w, b, layer.in_channels, x))

    @register_translator(L.SeparableConv2D)
    def _sep(layer, T):
        dw, pw, b, a = T(layer.depthwise_kernel), T(layer.pointwise_kernel), T(layer.bias), act_fn(layer.activation)

        def run(x):
            t = conv_call(layer, dw, None, layer.in_channels, x)
            return a(F.conv2d(t, pw, b))

        return run

    @register_translator(L.Conv2DTranspose)
    def _deconv(layer, T):
        w, b, a = T(layer.kernel), T(layer.bias), act_fn(layer.activation)
        ch, cw = layer._crop

        def run(x):
            z = F.conv_transpose2d(x, w, b, tuple(layer.strides), tuple(layer._pad), tuple(layer._out_pad),
                                   int(layer.groups), tuple(layer.dilation_rate))
            if ch or cw:
                z = z[:, :, : z.shape[2] - ch, : z.shape[3] - cw]
            return a(z)

        return run

    @register_translator(L.Dense)
    def _dense(layer, T):
        w, b, a = T(layer.kernel), T(layer.bias), act_fn(layer.activation)
        return lambda x: a(F.linear(x, w, b))

    @register_translator(L.Activation)
    def _act(layer, T):
        return act_fn(layer.activation, layer.params)

    def _bn(layer, T):
        rm, rv, g, b = T(layer.running_mean), T(layer.running_var), T(layer.gamma), T(layer.beta)
        return lambda x: F.batch_norm(x, rm, rv, g, b, False, 0.0, layer.eps)

    register_translator(L.BatchNorm)(_bn)
    register_translator(L.BatchNormalization)(_bn)

    @register_translator(L.LocalResponseNorm)
    def _lrn(layer, T):
        return lambda x: F.local_response_norm(x, layer.size, layer.alpha, layer.beta, layer.k)

    @register_translator(L.MaxPool2D)
    def _maxpool(layer, T):
        def run(x):
            pad = layer.padding
            if pad == "same":
                x = F.pad(x, _same_pads(x.shape[2:], layer.pool_size, layer.strides, layer.dilation), value=-np.inf)
                pad = (0, 0)
            elif pad == "valid":
                pad = (0, 0)
            return F.max_pool2d(x, tuple(layer.pool_size), tuple(layer.strides), tuple(pad), tuple(layer.dilation),
                                ceil_mode=layer.ceil_mode)

        return run

    @register_translator(L.AvgPool2D)
    def _avgpool(layer, T):
        k, s = tuple(layer.pool_size), tuple(layer.strides)

        def run(x):
            if layer.padding == "same":  # Keras: the padding is not counted
                pads = _same_pads(x.shape[2:], k, s, (1, 1))
                ones = torch.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype)
                total = F.avg_pool2d(F.pad(x, pads), k, s, ceil_mode=layer.ceil_mode)
                count = F.avg_pool2d(F.pad(ones, pads), k, s, ceil_mode=layer.ceil_mode)
                return total / count
            pad = (0, 0) if layer.padding == "valid" else tuple(layer.padding)
            return F.avg_pool2d(x, k, s, pad, ceil_mode=layer.ceil_mode, count_include_pad=layer.count_include_pad)

        return run

    @register_translator(L.GlobalAvgPool2D)
    def _gap(layer, T):
        return lambda x: x.mean(dim=(2, 3), keepdim=layer.keepdims)

    @register_translator(L.GlobalMaxPool2D)
    def _gmp(layer, T):
        return lambda x: x.amax(dim=(2, 3), keepdim=layer.keepdims)

    @register_translator(L.ChannelMaxPool)
    def _cmp(layer, T):
        k = layer.pool_size
        return lambda x: x.reshape(x.shape[0], x.shape[1] // k, k, *x.shape[2:]).amax(dim=2)

    @register_translator(L.Flatten)
    def _flatten(layer, T):
        return lambda x: x.flatten(1)

    @register_translator(L.Reshape)
    def _reshape(layer, T):
        return lambda x: x.reshape(x.shape[0], *layer.target_shape)

    @register_translator(L.Dropout)
    def _dropout(layer, T):
        return lambda x: x

    @register_translator(L.Add)
    def _add(layer, T):
        def run(xs):
            y = xs[0]
            for t in xs[1:]:
                y = y + t
            return y

        return run

    @register_translator(L.Concat)
    def _concat(layer, T):
        return lambda xs: torch.cat(list(xs), dim=layer._axis(xs[0].dim() - 1) + 1)

    @register_translator(L.Multiply)
    def _mul(layer, T):
        def run(xs):
            x, s = xs
            return x * s.reshape(tuple(s.shape) + (1,) * (x.dim() - s.dim()))

        return run

    @register_translator(L.UpSampling2D)
    def _up(layer, T):
        mode = layer.interpolation
        ac = None if mode == "nearest" else layer.align_corners
        return lambda x: F.interpolate(x, scale_factor=tuple(float(v) for v in layer.size), mode=mode,
                                       align_corners=ac)

    def _nested(layer, T):
        sub = _Graph(layer, T)
        return lambda x: sub.run(list(x) if layer.multi_input else [x])[0]

    register_translator(Model)(_nested)
    register_translator(Sequential)(_nested)

    try:
        from ..layers.prelu import PReLU
    except ImportError:
        PReLU = None
    if PReLU is not None:

        @register_translator(PReLU)
        def _prelu(layer, T):
            a = T(layer.alpha)
            return lambda x: F.prelu(x, a)


def _unsupported(model, prefix="", found=None):
    from ..input_layer import InputLayer
    from ..model import Model

    found = [] if found is None else found
    for layer in model.layers:
        if isinstance(layer, InputLayer):
            continue
        if type(layer) not in _TRANSLATORS:
            found.append(f"{prefix}{layer.name!r} ({type(layer).__name__})")
        elif isinstance(layer, Model):
            _unsupported(layer, f"{prefix}{layer.name}/", found)
    return found


class _Graph:
    """The nodes of one visionkit model as torch callables, run in the model's topological order."""

    def __init__(self, model, T):
        from ..input_layer import InputLayer

        self.model = model
        made = {}
        self.steps = []
        for node in model._order:
            layer = node.layer
            if isinstance(layer, InputLayer):
                self.steps.append(None)
                continue
            if id(layer) not in made:
                made[id(layer)] = _TRANSLATORS[type(layer)](layer, T)
            self.steps.append(made[id(layer)])

    def run(self, xs):
        m = self.model
        vals = [None] * len(m._order)
        for i, x in zip(m._input_idx, xs):
            vals[i] = x
        for k, (node, fn) in enumerate(zip(m._order, self.steps)):
            if fn is None:
                continue
            ins = [vals[j] for j in m._inbound[k]]
            vals[k] = fn(ins if node.multi_input else ins[0])
        return [vals[j] for j in m._output_idx]


def to_torch(model, device="cpu"):
    """``model`` (a visionkit Model) as an eval-mode ``torch.nn.Module`` holding copies of its weights (buffers).

    Its forward takes one tensor (or several, for a multi-input model) and returns one tensor (a tuple for several
    outputs). Raises NotImplementedError naming every layer without a translation, ImportError without torch.
    """
    torch, _ = _import_torch()
    _load()
    missing = _unsupported(model)
    if missing:
        raise NotImplementedError(
            f"cannot translate to torch: {len(missing)} layer(s) have no translation: {', '.join(missing)}"
        )
    from .. import ops

    class VisionkitTorch(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self._tensors = {}
            self.graph = _Graph(model, self._tensor)
            self.multi_out = bool(getattr(model, "_multi_out", False))

        def _tensor(self, p):
            if p is None:
                return None
            if id(p) not in self._tensors:
                if p.value is None:
                    raise ValueError(f"parameter {p.name!r} has no value (declared only)")
                t = torch.from_numpy(np.ascontiguousarray(ops.to_numpy(p.value), dtype=np.float32).copy())
                t = t.to(device)
                self.register_buffer(p.name.replace("/", "__").replace(".", "_"), t)
                self._tensors[id(p)] = t
            return self._tensors[id(p)]

        def forward(self, *xs):
            outs = self.graph.run(list(xs))
            return tuple(outs) if self.multi_out else outs[0]

    net = VisionkitTorch().eval()
    return net


__all__ = ["register_translator", "to_torch"]
