"""Shape-only layers: Flatten and Reshape (no copy: a reshape of a contiguous array, so the output is a view of
the input; ``Model`` and eager calls hand the user an independent copy)."""

import math

from .base import Layer, profile, register_layer


def _reshape(x, shape):
    return x.reshape(tuple(int(d) for d in shape))


@register_layer
class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W), in C-order (channel-major, as PyTorch's flatten of NCHW)."""

    def check_input_shape(self, input_shape, building=False):
        if isinstance(input_shape, list) or len(input_shape) < 1:
            raise self._shape_error("of rank >= 2", input_shape)

    def compute_output_shape(self, input_shape):
        if any(d is None for d in input_shape):
            return (None,)
        return (math.prod(input_shape),)

    def forward(self, x, training=False):
        shape = tuple(x.shape)
        return _reshape(x, (shape[0], math.prod(shape[1:]))), shape

    def backward(self, grad_out, ctx):
        return _reshape(grad_out, ctx)

    def memory_profile(self, input_shape, output_shape, training):
        return profile(view=True)  # a view of the input; keeps only its shape


@register_layer
class Reshape(Layer):
    """Reshape each sample to ``target_shape`` (batch excluded); one entry may be -1."""

    def __init__(self, target_shape, name=None, trainable=True, input_shape=None):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape)
        self.target_shape = tuple(int(d) for d in target_shape)
        if sum(d == -1 for d in self.target_shape) > 1 or any(d == 0 or d < -1 for d in self.target_shape):
            raise ValueError(f"layer {self.name!r}: bad target_shape {target_shape!r}")

    def _resolve(self, input_shape):
        if any(d is None for d in input_shape):
            if -1 in self.target_shape:
                return tuple(None if d == -1 else d for d in self.target_shape)
            return self.target_shape
        total = math.prod(input_shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape:
            if total % known:
                raise ValueError(
                    f"layer {self.name!r}: cannot reshape {self._fmt_input(input_shape)} to {self.target_shape}"
                )
            return tuple(total // known if d == -1 else d for d in self.target_shape)
        if known != total:
            raise ValueError(
                f"layer {self.name!r}: cannot reshape {self._fmt_input(input_shape)} ({total} values per sample) "
                f"to {self.target_shape} ({known})"
            )
        return self.target_shape

    def check_input_shape(self, input_shape, building=False):
        if isinstance(input_shape, list):
            raise self._shape_error("a single tensor", input_shape)
        self._resolve(input_shape)

    def compute_output_shape(self, input_shape):
        return self._resolve(input_shape)

    def forward(self, x, training=False):
        shape = tuple(x.shape)
        return _reshape(x, (shape[0],) + self._resolve(shape[1:])), shape

    def backward(self, grad_out, ctx):
        return _reshape(grad_out, ctx)

    def memory_profile(self, input_shape, output_shape, training):
        return profile(view=True)  # a view of the input; keeps only its shape

    def get_config(self):
        cfg = super().get_config()
        cfg["target_shape"] = list(self.target_shape)
        return cfg
