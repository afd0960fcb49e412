"""Graph inputs: ``InputLayer`` and ``vk.Input(shape)``, the symbolic tensor a functional model starts from."""

from __future__ import annotations

from .layers.base import (
    Layer,
    Node,
    SymbolicTensor,
    profile,
    register_layer,
    unique_name,
)


@register_layer
class InputLayer(Layer):
    """The source of a graph: holds the shape (batch excluded) of one model input; ``vk.Input`` makes one."""

    def __init__(self, shape, name=None, trainable=True):
        super().__init__(name=name if name is not None else unique_name("input_layer"), trainable=trainable)
        if isinstance(shape, int):
            shape = (shape,)
        try:
            self.shape = tuple(None if d is None else int(d) for d in shape)
        except (TypeError, ValueError):
            raise ValueError(f"input {self.name!r}: bad shape {shape!r}") from None
        if any(d is not None and d < 1 for d in self.shape):
            raise ValueError(f"input {self.name!r}: bad shape {shape!r}")
        self.built = True
        self.built_input_shape = self.shape
        node = Node(self, [], False)
        self._nodes.append(node)
        node.outputs.append(SymbolicTensor((None,) + self.shape, node, 0))

    @property
    def output(self):
        return self._nodes[0].outputs[0]

    def compute_output_shape(self, input_shape):
        return self.shape

    def forward(self, x, training=False):
        return x, None

    def backward(self, grad_out, ctx):
        return grad_out

    def memory_profile(self, input_shape, output_shape, training):
        return profile(view=True)

    def get_config(self):
        return {"name": self.name, "shape": list(self.shape)}


def Input(shape, name=None):
    """A symbolic model input of ``shape`` without the batch, e.g. ``Input((3, 224, 224))``; None for any size."""
    return InputLayer(shape, name=name).output
