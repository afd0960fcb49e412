"""Dropout: inverted dropout, active only when ``training=True``."""

import numpy as np

from .. import ops
from . import initializers
from .base import Layer, elements, profile, register_layer


@register_layer
class Dropout(Layer):
    """``Dropout(rate, seed=None)``: during training zero each element with probability ``rate`` and scale the
    rest by 1/(1-rate); at inference the identity.

    Deterministic: with a ``seed``, the k-th training call draws the mask from (seed, k), so a rerun of the same
    training gives the same masks; without one, each call takes a seed from visionkit's global generator
    (``vk.set_seed``).
    """

    def __init__(self, rate, seed=None, name=None, trainable=True, input_shape=None):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape)
        self.rate = float(rate)
        if not 0.0 <= self.rate < 1.0:
            raise ValueError(f"layer {self.name!r}: rate must be in [0, 1), got {rate}")
        self.seed = None if seed is None else int(seed)
        self.calls = 0

    def _next_seed(self):
        if self.seed is None:
            s = int(initializers.global_rng().integers(0, 2**31 - 1))
        else:
            s = int(np.random.SeedSequence([self.seed, self.calls]).generate_state(1)[0] & 0x7FFFFFFF)
        self.calls += 1
        return s

    def forward(self, x, training=False):
        if not training or self.rate == 0.0:
            return x, None
        y, mask = ops.dropout(x, self.rate, training=True, seed=self._next_seed(), return_mask=True)
        return y, mask

    def backward(self, grad_out, ctx):
        if ctx is None:
            return grad_out
        return ops.dropout_backward(grad_out, ctx, self.rate)

    def memory_profile(self, input_shape, output_shape, training):
        """Training keeps a uint8 mask (one byte per value); inference is the identity (the output is the input)."""
        if not training or self.rate == 0.0:
            return profile(view=True)
        n = elements(output_shape)
        return profile(extra=None if n is None else n)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(rate=self.rate, seed=self.seed)
        return cfg
