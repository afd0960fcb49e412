"""The layer protocol, parameters, symbolic tensors and the layer registry.

A layer is an object holding parameters that turns arrays into arrays through ``visionkit.ops``::

    y, ctx = layer.forward(x, training)     # ctx: whatever backward needs (inputs, masks, indices, ...)
    gx = layer.backward(grad_out, ctx)      # gradient w.r.t. x; ADDS parameter gradients into Parameter.grad

Because ``backward`` accumulates, a layer shared by several graph nodes (the same weights applied twice) gets the
sum of the gradients of all its uses. Multi-input layers (Add, Concat) take a list of arrays and return a list of
gradients. A layer never touches device details: every array operation goes through ``visionkit.ops``, so the same
code runs on numpy arrays (CPU) and Numba CUDA device arrays.

Calling a layer:
    * on an array (``layer(x)``) runs it eagerly and returns the output array (building the weights on first use);
    * on a symbolic tensor (``layer(vk.Input((3, 32, 32)))``) records a graph node and returns a symbolic tensor,
      the Keras functional API. ``visionkit.model.Model`` turns such a graph into a model.

Shapes given to ``build`` and ``compute_output_shape`` never include the batch dimension: ``(C, H, W)`` or
``(features,)``; a spatial size may be None (any size, e.g. fully convolutional networks).
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np

from . import initializers

# --------------------------------------------------------------------------------------------------------------
# registry


_REGISTRY: dict[str, type] = {}


def register_layer(cls=None, *, name=None):
    """Class decorator: make a Layer subclass known to ``from_config`` under its class name (or ``name``).

    Plugins use it for their custom layers so saved models that contain them load again::

        @register_layer
        class Mish(Layer): ...
    """

    def deco(c):
        key = name or c.__name__
        other = _REGISTRY.get(key)
        if (
            other is not None
            and other is not c
            and (other.__module__, other.__qualname__)
            != (
                c.__module__,
                c.__qualname__,
            )
        ):
            raise ValueError(
                f"a layer class named {key!r} is already registered ({other.__module__}.{other.__qualname__})"
            )
        _REGISTRY[key] = c
        return c

    if cls is None:
        return deco
    return deco(cls)


def get_layer_class(class_name, custom_objects=None):
    """The registered layer class for ``class_name`` (``custom_objects`` is searched first)."""
    if custom_objects and class_name in custom_objects:
        return custom_objects[class_name]
    try:
        return _REGISTRY[class_name]
    except KeyError:
        raise ValueError(
            f"unknown layer class {class_name!r}; known: {', '.join(sorted(_REGISTRY))}. "
            "A custom layer must be decorated with @register_layer (or passed in custom_objects)"
        ) from None


def registered_layers():
    """A copy of the registry: class name -> class."""
    return dict(_REGISTRY)


def layer_from_config(spec, custom_objects=None):
    """Rebuild a layer from ``{"class_name": ..., "config": {...}}``."""
    cls = get_layer_class(spec["class_name"], custom_objects)
    if getattr(cls, "_from_config_takes_custom_objects", False):
        return cls.from_config(spec["config"], custom_objects=custom_objects)
    return cls.from_config(spec["config"])


# --------------------------------------------------------------------------------------------------------------
# names


_NAME_COUNTS: dict[str, int] = defaultdict(int)


def snake_case(name):
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    s = re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()
    s = re.sub(r"(\D)_(\d)d\b", r"\1\2d", s)  # conv_2d -> conv2d, max_pool_2d -> max_pool2d
    s = s.replace("_2_d", "2d")
    return s


def unique_name(base):
    """Keras-style auto names: ``conv2d``, ``conv2d_1``, ``conv2d_2``, ..."""
    n = _NAME_COUNTS[base]
    _NAME_COUNTS[base] += 1
    return base if n == 0 else f"{base}_{n}"


def reset_names():
    """Restart the automatic layer names (``conv2d``, ``conv2d_1``, ...) from zero, like Keras' clear_session."""
    _NAME_COUNTS.clear()


# --------------------------------------------------------------------------------------------------------------
# parameters


class Parameter:
    """A named weight array.

    ``name``       "layer_name/short_name", e.g. "conv2d/kernel" (follows the owning layer's name)
    ``value``      float32 array (numpy on CPU, a device array after ``model.to("cuda")``)
    ``grad``       accumulated gradient of the same shape, or None (no gradient yet / not trainable)
    ``trainable``  False for statistics (BatchNorm's running mean/var) and for the parameters of a frozen layer;
                   an optimizer must skip parameters whose ``trainable`` is False.
    """

    __slots__ = ("short_name", "value", "grad", "_trainable", "_owner", "initializer", "fans")

    def __init__(self, short_name, value, trainable=True, owner=None, initializer=None, fans=(1, 1)):
        self.short_name = short_name
        self.value = value
        self.grad = None
        self._trainable = bool(trainable)
        self._owner = owner
        self.initializer = initializer
        self.fans = fans

    @property
    def name(self):
        return f"{self._owner.name}/{self.short_name}" if self._owner is not None else self.short_name

    @property
    def trainable(self):
        return self._trainable and (self._owner is None or self._owner.trainable)

    @trainable.setter
    def trainable(self, flag):
        self._trainable = bool(flag)

    @property
    def shape(self):
        return tuple(self.value.shape)

    @property
    def size(self):
        return int(np.prod(self.value.shape, dtype=np.int64))

    def accumulate(self, g):
        """Add ``g`` into ``grad`` (no-op for a parameter that is not trainable)."""
        if g is None or not self.trainable:
            return
        from .. import ops

        self.grad = g if self.grad is None else ops.add(self.grad, g)

    def zero_grad(self):
        self.grad = None

    def __repr__(self):
        t = "" if self.trainable else ", trainable=False"
        return f"Parameter({self.name!r}, shape={self.shape}{t})"


# --------------------------------------------------------------------------------------------------------------
# symbolic tensors and graph nodes


class Node:
    """One call of a layer inside a graph: which symbolic tensors went in, which came out."""

    __slots__ = ("layer", "inbound", "outputs", "multi_input")

    def __init__(self, layer, inbound, multi_input):
        self.layer = layer
        self.inbound = list(inbound)
        self.multi_input = multi_input
        self.outputs = []

    def __repr__(self):
        return f"Node({self.layer.name}, inputs={[t.name for t in self.inbound]})"


class SymbolicTensor:
    """A placeholder flowing through a graph under construction. ``shape`` includes the batch dim as None."""

    __slots__ = ("shape", "node", "index")

    def __init__(self, shape, node, index=0):
        self.shape = tuple(shape)
        self.node = node
        self.index = index

    @property
    def name(self):
        layer = self.node.layer
        k = layer._nodes.index(self.node) if self.node in layer._nodes else 0
        return f"{layer.name}" + (f"[{k}]" if k else "")

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"<SymbolicTensor {self.name} shape={self.shape}>"


def is_symbolic(x):
    if isinstance(x, SymbolicTensor):
        return True
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(t, SymbolicTensor) for t in x)


def fmt_shape(shape):
    """(None, 32, 28, 28) the way Keras prints it."""
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def batch_shape_str(shape):
    """A shape without batch (or a list of them) printed with the batch as None: (None, 3, 32, 32)."""
    if isinstance(shape, list):
        return "[" + ", ".join(batch_shape_str(s) for s in shape) + "]"
    return fmt_shape((None,) + tuple(shape))


# --------------------------------------------------------------------------------------------------------------
# arrays


def as_input_array(x):
    """numpy float32 C-contiguous for anything array-like; device arrays pass unchanged."""
    from ..device import is_device_array

    if is_device_array(x):
        return x
    if isinstance(x, np.ndarray) and x.dtype == np.float32 and x.flags.c_contiguous:
        return x
    try:
        return np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    except (TypeError, ValueError) as e:
        raise ValueError(f"expected a numeric array, got {type(x).__name__}: {e}") from None


def shape_of(x):
    return tuple(int(d) for d in x.shape)


# --------------------------------------------------------------------------------------------------------------
# the base class


class Layer:
    """Base class of every layer.

    Subclasses implement ``build(input_shape)`` (create parameters with ``add_weight``), ``forward``,
    ``backward``, ``compute_output_shape`` and ``get_config`` (the constructor arguments, JSON-serialisable);
    multi-input layers set ``multi_input = True``. ``count_macs(input_shape, output_shape)`` (per sample) feeds
    ``summary``; the default is 0.
    """

    multi_input = False

    def __init__(self, name=None, trainable=True, input_shape=None):
        self.name = name if name is not None else unique_name(snake_case(type(self).__name__))
        self.trainable = bool(trainable)
        self.built = False
        self.input_shape_arg = tuple(input_shape) if input_shape is not None else None
        self.built_input_shape = None
        self._params: list[Parameter] = []
        self._nodes: list[Node] = []
        self._rng = None

    # ---- parameters -------------------------------------------------------------------------------------------
    def add_weight(self, short_name, shape, initializer="zeros", trainable=True, fans=None, rng=None):
        shape = tuple(int(s) for s in shape)
        if fans is None:
            fans = initializers.compute_fans(shape)
        init = initializers.get(initializer)
        value = init(shape, fans, rng if rng is not None else self._init_rng())
        p = Parameter(short_name, value, trainable=trainable, owner=self, initializer=initializer, fans=fans)
        self._params.append(p)
        setattr(self, short_name, p)
        return p

    def _init_rng(self):
        return self._rng if self._rng is not None else initializers.global_rng()

    def initialize(self, rng):
        """Redraw every parameter from its initializer with ``rng`` (a numpy Generator)."""
        for p in self._params:
            p.value = initializers.get(p.initializer)(p.shape, p.fans, rng)
            p.grad = None

    def parameters(self):
        """Every Parameter (trainable and not) of this layer."""
        return list(self._params)

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.trainable]

    @property
    def weights(self):
        return self.parameters()

    def get_weights(self):
        from .. import ops

        return [ops.to_numpy(p.value) for p in self.parameters()]

    def set_weights(self, arrays):
        params = self.parameters()
        if len(arrays) != len(params):
            raise ValueError(f"layer {self.name!r} has {len(params)} weights, got {len(arrays)} arrays")
        for p, a in zip(params, arrays):
            a = np.asarray(a, dtype=np.float32)
            if a.shape != p.shape:
                raise ValueError(f"layer {self.name!r}: weight {p.short_name!r} has shape {p.shape}, got {a.shape}")
            p.value = _like(np.ascontiguousarray(a), p.value)

    def count_params(self):
        if not self.built:
            raise ValueError(f"layer {self.name!r} is not built yet: its parameter count depends on its input shape")
        return sum(p.size for p in self.parameters())

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    # ---- build / shapes ---------------------------------------------------------------------------------------
    def build(self, input_shape):
        self.built = True
        self.built_input_shape = input_shape

    def _ensure_built(self, input_shape):
        if not self.built:
            self.check_input_shape(input_shape, building=True)
            self.build(input_shape)
            self.built = True
            self.built_input_shape = input_shape
        else:
            self.check_input_shape(input_shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def check_input_shape(self, input_shape, building=False):
        """Raise ValueError (naming this layer) when ``input_shape`` (no batch) cannot feed it."""

    def _shape_error(self, expected, got):
        return ValueError(f"layer {self.name!r} ({type(self).__name__}) expects input {expected}, got shape {got}")

    def count_macs(self, input_shape, output_shape):
        """Multiply-accumulates per sample (summary's MACs column); 0 for layers without multiply-adds."""
        return 0

    # ---- compute ----------------------------------------------------------------------------------------------
    def forward(self, x, training=False):
        raise NotImplementedError

    def backward(self, grad_out, ctx):
        raise NotImplementedError

    def __call__(self, inputs, training=False):
        if is_symbolic(inputs):
            return self._call_symbolic(inputs)
        return self._call_eager(inputs, training)

    def _call_symbolic(self, inputs):
        multi = isinstance(inputs, (list, tuple))
        if multi != self.multi_input:
            if self.multi_input:
                raise ValueError(f"layer {self.name!r} ({type(self).__name__}) takes a list of inputs")
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) takes one input, got {len(inputs)}")
        tensors = list(inputs) if multi else [inputs]
        shapes = [t.shape[1:] for t in tensors]
        in_shape = shapes if multi else shapes[0]
        self._ensure_built(in_shape)
        out_shape = self.compute_output_shape(in_shape)
        node = Node(self, tensors, multi)
        self._nodes.append(node)
        out = SymbolicTensor((None,) + tuple(out_shape), node, 0)
        node.outputs.append(out)
        return out

    def _call_eager(self, inputs, training):
        if self.multi_input:
            if not isinstance(inputs, (list, tuple)):
                raise ValueError(f"layer {self.name!r} ({type(self).__name__}) takes a list of inputs")
            xs = [as_input_array(a) for a in inputs]
            self._ensure_built([shape_of(a)[1:] for a in xs])
            y, _ = self.forward(xs, training)
        else:
            x = as_input_array(inputs)
            self._ensure_built(shape_of(x)[1:])
            y, _ = self.forward(x, training)
        return y

    # ---- config -----------------------------------------------------------------------------------------------
    def get_config(self):
        """JSON-serialisable constructor arguments; ``type(self).from_config(cfg)`` rebuilds the layer."""
        return {"name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}{'' if self.built else ' (not built)'}>"


def _like(a, ref):
    """``a`` (numpy) moved to wherever ``ref`` lives."""
    from ..device import is_device_array

    if is_device_array(ref):
        from .. import ops

        return ops.to_device(a, "cuda")
    return a


# --------------------------------------------------------------------------------------------------------------
# argument helpers shared by several layers


def pair(v, what="value"):
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise ValueError(f"{what} must be an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def norm_padding(padding):
    """ "valid" | "same" | int | (ph, pw) -> "valid" | "same" | (ph, pw)."""
    if isinstance(padding, str):
        p = padding.lower()
        if p not in ("valid", "same"):
            raise ValueError(f'padding must be "valid", "same", an int or a pair, got {padding!r}')
        return p
    return pair(padding, "padding")


def jsonable_padding(padding):
    return padding if isinstance(padding, str) else list(padding)


def same_pads(size, k, s, d):
    """TensorFlow "same": (before, after) padding of one spatial dim."""
    if size is None:
        return None
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def window_out(size, k, s, d, padding, ceil_mode=False):
    """Output extent of one spatial dim of a sliding window (conv / pool), PyTorch rules plus "same"/"valid"."""
    if size is None:
        return None
    if padding == "same":
        return -(-size // s)
    p = 0 if padding == "valid" else padding
    span = size + 2 * p - d * (k - 1) - 1
    if span < 0:
        return 0
    if ceil_mode:
        out = -(-span // s) + 1
        if (out - 1) * s >= size + p:
            out -= 1
        return out
    return span // s + 1


def spatial_pads(padding, hw, kernel, stride, dilation):
    """Padding as (top, bottom, left, right) for an input of spatial size ``hw``."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        t, b = same_pads(hw[0], kernel[0], stride[0], dilation[0])
        left, r = same_pads(hw[1], kernel[1], stride[1], dilation[1])
        return (t, b, left, r)
    return (padding[0], padding[0], padding[1], padding[1])
