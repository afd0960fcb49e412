"""Sequential: a plain stack of single-input layers, the simple case of ``visionkit.model.Model``."""

from __future__ import annotations

import numpy as np

from . import ops
from .input_layer import Input, InputLayer
from .layers.base import (
    Layer,
    SymbolicTensor,
    is_symbolic,
    layer_from_config,
    register_layer,
)
from .model import Model, _is_array


@register_layer
class Sequential(Model):
    """A plain stack of single-input layers: ``vk.Sequential([layer, ...], name=None, seed=None, trainable=True,
    device="cpu")``.

    The input shape comes from the first layer's ``input_shape=`` or from a leading ``vk.Input(...)``; without
    either the model is built on its first call. ``seed`` draws the weights of the layers it builds from
    ``numpy.random.default_rng(seed)`` (layers built before they were added keep their weights).
    ``trainable=False`` freezes every layer, those added later included; ``device`` moves the parameters
    ("cpu" | "cuda" | "auto"), those of layers built later included.
    """

    def __init__(self, layers=None, name=None, seed=None, trainable=True, device="cpu"):
        Layer.__init__(self, name=name, trainable=True)
        self.metadata = {}
        self.device = "cpu"
        self._last = None
        self._seq = []
        self._input_tensor = None
        self._tail = None
        self._seed = seed
        self._seq_rng = np.random.default_rng(seed) if seed is not None else None
        self._graph_layers = []
        self._multi_in = self._multi_out = False
        self.built = False
        for layer in layers or []:
            self.add(layer)
        self._finish_init(trainable, device)

    def _member_layers(self):
        return getattr(self, "_seq", ())

    @property
    def layers(self):
        return list(self._seq)

    @property
    def input_shape(self):
        return None if self._input_tensor is None else self._input_tensor.shape

    def add(self, layer):
        """Append a layer (or, first, a ``vk.Input``)."""
        if isinstance(layer, SymbolicTensor):
            if self._seq or self._input_tensor is not None:
                raise ValueError("vk.Input can only be the first entry of a Sequential")
            if not isinstance(layer.node.layer, InputLayer):
                raise ValueError("Sequential takes layers (and a leading vk.Input), not intermediate tensors")
            self._input_tensor = self._tail = layer
            return
        if isinstance(layer, InputLayer):
            return self.add(layer.output)
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential takes layers, got {type(layer).__name__}")
        if layer.multi_input:
            raise ValueError(f"layer {layer.name!r} takes several inputs; use the functional API (vk.Model)")
        if any(layer is other for other in self._seq):
            raise ValueError(f"layer {layer.name!r} is already in this Sequential")
        if not self._trainable:
            layer.trainable = False
        self._seq.append(layer)
        if self._input_tensor is None and len(self._seq) == 1 and layer.input_shape_arg is not None:
            self._input_tensor = self._tail = InputLayer(layer.input_shape_arg, name=f"{self.name}_input").output
        if self._input_tensor is not None:
            self._extend(self._seq[-1:] if self._graph_layers else self._seq)

    def _extend(self, new_layers):
        x = self._tail
        for layer in new_layers:
            fresh = not layer.built
            if fresh and self._seq_rng is not None:
                layer._rng = self._seq_rng
            try:
                x = layer(x)
            finally:
                layer._rng = None
        self._tail = x
        self._init_graph(self._input_tensor, x)
        self._graph_layers = [n.layer for n in self._order if not isinstance(n.layer, InputLayer)]
        self._last = None
        if self.device != "cpu":
            for p in self.parameters():
                if p.value is not None:
                    p.value = ops.to_device(p.value, self.device)

    def _maybe_build(self, inputs):
        if self._graph_layers or not self._seq:
            return
        if is_symbolic(inputs):
            self._input_tensor = self._tail = Input(inputs.shape[1:], name=f"{self.name}_input")
            self._extend(self._seq)
            return
        if isinstance(inputs, (list, tuple)) and len(inputs) == 1 and _is_array(inputs[0]):
            inputs = inputs[0]
        x = inputs if _is_array(inputs) else np.asarray(inputs)
        if self._input_tensor is None:
            self._input_tensor = self._tail = InputLayer(tuple(x.shape[1:]), name=f"{self.name}_input").output
            self._extend(self._seq)

    def __call__(self, inputs, training=False, keep_tape=True):
        if is_symbolic(inputs):
            self._maybe_build(inputs)
            return Layer.__call__(self, inputs)
        return Model.__call__(self, inputs, training, keep_tape)

    def _require_built(self):
        if not self._graph_layers:
            raise ValueError(
                f"Sequential {self.name!r} is not built yet: give the first layer input_shape=..., start with "
                "vk.Input(...), or call the model on a batch"
            )

    def parameters(self):
        if not self._graph_layers:
            return [p for layer in self._seq for p in layer.parameters()]
        return Model.parameters(self)

    def count_params(self):
        self._require_built()
        return Model.count_params(self)

    def summary(self, batch=1, print_fn=print, line_length=None):
        self._require_built()
        return Model.summary(self, batch=batch, print_fn=print_fn, line_length=line_length)

    def backward(self, grad_out, ctx=None, input_grads=True):
        self._require_built()
        return Model.backward(self, grad_out, ctx, input_grads)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "input_shape": None if self._input_tensor is None else list(self._input_tensor.shape[1:]),
            "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()} for layer in self._seq],
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        model = cls(name=config.get("name"), trainable=bool(config.get("trainable", True)))
        if config.get("input_shape") is not None:
            model.add(InputLayer(config["input_shape"], name=f"{model.name}_input").output)
        for spec in config["layers"]:
            model.add(layer_from_config(spec, custom_objects))
        return model

    def __repr__(self):
        n = f"{self.count_params():,} params" if self._graph_layers else "not built"
        return f"<Sequential {self.name!r}: {len(self._seq)} layers, {n}>"
