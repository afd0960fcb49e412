"""Symbolic tensors and graph nodes: what calling a layer on ``vk.Input(...)`` records (Keras' functional API)."""

from __future__ import annotations


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
