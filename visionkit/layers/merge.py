"""Merge layers: Add (residual connections), Concat (inception blocks, skip connections) and Multiply (per-channel
rescaling, as in squeeze-and-excitation blocks). They take a list."""

from .. import ops
from .base import Layer, elements, profile, register_layer


def _compatible(a, b):
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


@register_layer
class Add(Layer):
    """Elementwise sum of two or more tensors of the same shape."""

    multi_input = True

    def check_input_shape(self, input_shape, building=False):
        if not isinstance(input_shape, list) or len(input_shape) < 2:
            raise ValueError(f"layer {self.name!r} (Add) takes a list of at least two tensors")
        first = input_shape[0]
        for s in input_shape[1:]:
            if not _compatible(first, s):
                raise ValueError(
                    f"layer {self.name!r} (Add) needs inputs of one shape, got {self._fmt_input(input_shape)}"
                )

    def compute_output_shape(self, input_shape):
        out = list(input_shape[0])
        for s in input_shape[1:]:
            out = [a if a is not None else b for a, b in zip(out, s)]
        return tuple(out)

    def forward(self, xs, training=False):
        return ops.add(*xs), len(xs)

    def backward(self, grad_out, ctx):
        return [grad_out] * ctx

    def count_macs(self, input_shape, output_shape):
        return 0

    def memory_profile(self, input_shape, output_shape, training):
        return profile()  # keeps only the number of inputs


@register_layer
class Concat(Layer):
    """Concatenate a list of tensors along ``axis`` (1: channels, counting the batch as axis 0)."""

    multi_input = True

    def __init__(self, axis=1, name=None, trainable=True, input_shape=None):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape)
        self.axis = int(axis)
        if self.axis == 0:
            raise ValueError(f"layer {self.name!r}: cannot concatenate along the batch axis")

    def _axis(self, rank):
        """The axis within a shape without batch (rank = that shape's length)."""
        a = self.axis if self.axis > 0 else self.axis + rank + 1
        if not 1 <= a <= rank:
            raise ValueError(f"layer {self.name!r}: axis {self.axis} is out of range for rank-{rank + 1} inputs")
        return a - 1

    def check_input_shape(self, input_shape, building=False):
        if not isinstance(input_shape, list) or len(input_shape) < 1:
            raise ValueError(f"layer {self.name!r} (Concat) takes a list of tensors")
        rank = len(input_shape[0])
        a = self._axis(rank)
        for s in input_shape[1:]:
            if len(s) != rank or not _compatible(s[:a] + s[a + 1 :], input_shape[0][:a] + input_shape[0][a + 1 :]):
                raise ValueError(
                    f"layer {self.name!r} (Concat) needs inputs that match except along axis {self.axis}, got "
                    f"{self._fmt_input(input_shape)}"
                )

    def compute_output_shape(self, input_shape):
        a = self._axis(len(input_shape[0]))
        out = list(input_shape[0])
        sizes = [s[a] for s in input_shape]
        out[a] = None if any(d is None for d in sizes) else sum(sizes)
        return tuple(out)

    def forward(self, xs, training=False):
        dim = self._axis(len(xs[0].shape) - 1) + 1
        return ops.concat(list(xs), dim=dim), ([int(x.shape[dim]) for x in xs], dim)

    def backward(self, grad_out, ctx):
        sizes, dim = ctx
        return list(ops.concat_backward(grad_out, sizes, dim=dim))

    def memory_profile(self, input_shape, output_shape, training):
        return profile()  # keeps only the split sizes

    def get_config(self):
        cfg = super().get_config()
        cfg["axis"] = self.axis
        return cfg


@register_layer
class Multiply(Layer):
    """``[x, s]`` -> x rescaled per channel: x is (N, C, H, W), s is (N, C) or (N, C, 1, 1), as the squeeze-and-
    excitation block of SENet multiplies feature maps by their channel weights. Keras' Multiply also multiplies
    same-shaped tensors; visionkit's covers the broadcast a CNN needs and refuses other shapes."""

    multi_input = True

    def check_input_shape(self, input_shape, building=False):
        ok = isinstance(input_shape, list) and len(input_shape) == 2
        if ok:
            x, s = input_shape
            ok = len(x) >= 1 and len(s) >= 1 and _compatible(s[:1], x[:1]) and all(d in (1, None) for d in s[1:])
        if not ok:
            raise ValueError(
                f"layer {self.name!r} (Multiply) takes [x, scale] with x (N, C, ...) and scale (N, C) or "
                f"(N, C, 1, 1), got {self._fmt_input(input_shape) if isinstance(input_shape, list) else input_shape}"
            )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def forward(self, xs, training=False):
        x, s = xs
        return ops.scale_channels(x, s), (x, s)

    def backward(self, grad_out, ctx):
        x, s = ctx
        gx, gs = ops.scale_channels_backward(grad_out, x, s)
        return [gx, gs]

    def count_macs(self, input_shape, output_shape):
        return elements(output_shape)

    def memory_profile(self, input_shape, output_shape, training):
        """Keeps both inputs: x for the scale's gradient, the scale for x's."""
        return profile(keeps_input=True)
