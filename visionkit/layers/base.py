"""The layer protocol: the ``Layer`` base class, input coercion and the argument helpers layers share.

A layer is an object holding parameters that turns arrays into arrays through ``visionkit.ops``::

    y, ctx = layer.forward(x, training)     # ctx: whatever backward needs (inputs, masks, indices, ...)
    gx = layer.backward(grad_out, ctx)      # gradient w.r.t. x; ADDS parameter gradients into Parameter.grad

Because ``backward`` accumulates, a layer shared by several graph nodes (the same weights applied twice) gets the
sum of the gradients of all its uses. Multi-input layers (Add, Concat) take a list of arrays and return a list of
gradients. A layer never touches device details: every array operation goes through ``visionkit.ops``, so the same
code runs on numpy arrays (CPU) and Numba CUDA device arrays. Inside ``tape.no_tape()`` (inference nobody will
differentiate) a layer may skip what only backward needs and return ``None`` as ctx.

Calling a layer:
    * on an array (``layer(x)``) runs it eagerly, without a tape, and returns the output array (building the
      weights on first use); the output never shares memory with ``x``;
    * on a symbolic tensor (``layer(vk.Input((3, 32, 32)))``) records a graph node and returns a symbolic tensor,
      the Keras functional API. ``visionkit.model.Model`` turns such a graph into a model.

Shapes given to ``build`` and ``compute_output_shape`` never include the batch dimension: ``(C, H, W)`` or
``(features,)``; a spatial size may be None (any size, e.g. fully convolutional networks).

The pieces live in their own modules and are re-exported here: ``registry`` (register_layer, get_layer_class,
layer_from_config), ``naming`` (automatic names), ``parameter`` (Parameter), ``graph`` (Node, SymbolicTensor),
``tape`` (recording / no_tape).
"""

from __future__ import annotations

import numpy as np

from .. import ops
from . import initializers
from .graph import Node, SymbolicTensor, batch_shape_str, fmt_shape, is_symbolic
from .naming import reserve_name, reset_names, snake_case, unique_name
from .parameter import Parameter
from .registry import (
    get_layer_class,
    layer_from_config,
    register_layer,
    registered_layers,
)
from .tape import no_tape, recording

__all__ = [
    "Layer", "Parameter", "Node", "SymbolicTensor", "register_layer", "get_layer_class", "registered_layers",
    "layer_from_config", "reset_names", "reserve_name", "unique_name", "snake_case", "is_symbolic", "fmt_shape",
    "batch_shape_str", "as_input_array", "shape_of", "no_tape", "recording", "pair", "norm_padding",
    "jsonable_padding", "window_output",
]

# --------------------------------------------------------------------------------------------------------------
# arrays

_NUMERIC_KINDS = "fiub"  # float, int, uint, bool: converted to float32


def as_input_array(x, who=None):
    """numpy float32 C-contiguous for anything array-like; device arrays pass unchanged.

    bool, int, uint and float arrays are converted to float32; anything else (complex, strings, objects) raises
    ValueError naming ``who`` (e.g. "layer 'conv2d' (Conv2D)"), the expected and the actual dtype.
    """
    from ..device import is_device_array

    if is_device_array(x):
        return x
    if isinstance(x, np.ndarray) and x.dtype == np.float32 and x.flags.c_contiguous:
        return x
    prefix = f"{who}: " if who else ""
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{prefix}expected a numeric array, got {type(x).__name__}: {e}") from None
    if a.dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(
            f"{prefix}expected a real numeric array (float, int, uint or bool; converted to float32), "
            f"got dtype {a.dtype}"
        )
    return np.ascontiguousarray(a, dtype=np.float32)


def shape_of(x):
    return tuple(int(d) for d in x.shape)


def _detach_from(y, xs):
    """``y``, copied if it may share memory with one of the numpy arrays ``xs``."""
    if isinstance(y, np.ndarray) and any(isinstance(x, np.ndarray) and np.may_share_memory(y, x) for x in xs):
        return y.copy()
    return y


# --------------------------------------------------------------------------------------------------------------
# the base class


class Layer:
    """Base class of every layer.

    Subclasses implement ``build(input_shape)`` (create parameters with ``add_weight``), ``forward``,
    ``backward``, ``compute_output_shape`` and ``get_config`` (the constructor arguments, JSON-serialisable);
    multi-input layers set ``multi_input = True``. ``count_macs(input_shape, output_shape)`` (per sample) feeds
    ``summary``; the default is 0. ``memory_profile`` tells ``summary`` what forward keeps for backward.
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
        self._eager_shape = None

    # ---- parameters -------------------------------------------------------------------------------------------
    def add_weight(self, short_name, shape, initializer="zeros", trainable=True, fans=None, rng=None):
        """Create a parameter drawn from ``initializer``; inside ``initializers.deferred()`` only declare it
        (shape and initializer, no array: ``Parameter.value`` is None until weights are assigned)."""
        shape = tuple(int(s) for s in shape)
        if fans is None:
            fans = initializers.compute_fans(shape)
        if initializers.is_deferred():
            value = None
        else:
            init = initializers.get(initializer)
            value = init(shape, fans, rng if rng is not None else self._init_rng())
        p = Parameter(
            short_name, value, trainable=trainable, owner=self, initializer=initializer, fans=fans, shape=shape
        )
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

    def _fmt_input(self, input_shape):
        """How an error message shows the input: the real array shape(s) in an eager call, else (None, ...)."""
        if self._eager_shape is not None:
            return str(self._eager_shape)
        return batch_shape_str(input_shape)

    def _shape_error(self, expected, input_shape):
        """ValueError "layer 'x' (Type) expects input <expected>, got shape <the input's shape>"."""
        got = input_shape if isinstance(input_shape, str) else self._fmt_input(input_shape)
        return ValueError(f"layer {self.name!r} ({type(self).__name__}) expects input {expected}, got shape {got}")

    def count_macs(self, input_shape, output_shape):
        """Multiply-accumulates per sample (summary's MACs column); 0 for layers without multiply-adds."""
        return 0

    def memory_profile(self, input_shape, output_shape, training):
        """What a forward pass holds, for ``summary``'s memory figures (shapes without batch).

        Returns a dict:
            keeps_input   the ctx references the input tensor(s) (kept alive until backward)
            keeps_output  the ctx references the output tensor
            extra         per-sample bytes of other arrays the ctx keeps (pre-activations, indices, masks);
                          None when unknown (a None spatial size)
            transient     per-sample bytes of arrays alive only inside an inference forward, besides its
                          inputs and output (a fused activation's pre-activation)
            view          the output shares the input's memory (a reshape, the identity)
        The default (keeps its input, nothing else) suits most layers without a fused activation.
        """
        return profile(keeps_input=True)

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

    def _who(self):
        return f"layer {self.name!r} ({type(self).__name__})"

    def _call_eager(self, inputs, training):
        """Run on arrays without a tape (the ctx is dropped anyway); the output never aliases the input."""
        if self.multi_input:
            if not isinstance(inputs, (list, tuple)):
                raise ValueError(f"{self._who()} takes a list of inputs")
            xs = [as_input_array(a, self._who()) for a in inputs]
            arg, shape = xs, [shape_of(a)[1:] for a in xs]
            real = [shape_of(a) for a in xs]
        else:
            xs = [as_input_array(inputs, self._who())]
            arg, shape, real = xs[0], shape_of(xs[0])[1:], shape_of(xs[0])
        self._eager_shape = real
        try:
            self._ensure_built(shape)
        finally:
            self._eager_shape = None
        with no_tape():
            y, _ = self.forward(arg, training)
        originals = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        return _detach_from(y, list(xs) + [a for a in originals if isinstance(a, np.ndarray)])

    # ---- config -----------------------------------------------------------------------------------------------
    def get_config(self):
        """JSON-serialisable constructor arguments; ``type(self).from_config(cfg)`` rebuilds the layer."""
        return {"name": self.name, "trainable": self.trainable}

    def _init_config(self, init, what):
        """An initializer as stored in the config (its name); raises naming this layer for a nameless callable."""
        return initializers.serialize(init, self.name, what)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}{'' if self.built else ' (not built)'}>"


def profile(keeps_input=False, keeps_output=False, extra=0, transient=0, view=False):
    """The dict ``Layer.memory_profile`` returns."""
    return {
        "keeps_input": keeps_input,
        "keeps_output": keeps_output,
        "extra": extra,
        "transient": transient,
        "view": view,
    }


def elements(shape):
    """Values per sample of a shape without batch; None if a dimension is unknown."""
    n = 1
    for d in shape:
        if d is None:
            return None
        n *= int(d)
    return n


def _like(a, ref):
    """``a`` (numpy) moved to wherever ``ref`` lives."""
    from ..device import is_device_array

    if is_device_array(ref):
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
    ph, pw = pair(padding, "padding")
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return ph, pw


def jsonable_padding(padding):
    return padding if isinstance(padding, str) else list(padding)


def window_output(hw, kernel, stride, dilation, padding, pool=False, ceil_mode=False):
    """Spatial output size (oh, ow) of a convolution (``pool=False``) or pooling window over an input of spatial
    size ``hw`` (entries may be None: unknown), with the formulas of ``visionkit.ops`` (the single source of
    truth): ``ops.same_padding`` for "same", ``ops.conv_output_size`` / ``ops.pool_output_size`` for the extent."""
    if padding == "valid":
        pads = (0, 0, 0, 0)
    elif padding == "same":
        known = tuple(1 if d is None else int(d) for d in hw)
        pads = ops.same_padding(known, kernel, stride, dilation)
    else:
        pads = (padding[0], padding[0], padding[1], padding[1])
    out = []
    for i, size in enumerate(hw):
        if size is None:
            out.append(None)
            continue
        before, after = pads[2 * i], pads[2 * i + 1]
        if pool:
            o = ops.pool_output_size(size, kernel[i], stride[i], before, after, dilation[i], ceil_mode)
        else:
            o = ops.conv_output_size(size, kernel[i], stride[i], before + after, dilation[i])
        out.append(max(int(o), 0))
    return tuple(out)
