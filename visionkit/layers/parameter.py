"""Parameter: a named weight array owned by a layer."""

from __future__ import annotations

import math


class Parameter:
    """A named weight array.

    ``name``       "layer_name/short_name", e.g. "conv2d/kernel" (follows the owning layer's name)
    ``value``      float32 array (numpy on CPU, a device array after ``model.to("cuda")``), or None while the
                   parameter is declared but not allocated yet (a model being loaded from a file: its shapes are
                   checked against the file before any memory is taken)
    ``shape``      the parameter's shape (known even while ``value`` is None)
    ``grad``       accumulated gradient of the same shape, or None (no gradient yet / not trainable)
    ``trainable``  False for statistics (BatchNorm's running mean/var) and for the parameters of a frozen layer;
                   an optimizer must skip parameters whose ``trainable`` is False.
    """

    __slots__ = ("short_name", "_value", "_shape", "grad", "_trainable", "_owner", "initializer", "fans")

    def __init__(self, short_name, value, trainable=True, owner=None, initializer=None, fans=(1, 1), shape=None):
        self.short_name = short_name
        self._shape = tuple(int(d) for d in shape) if shape is not None else None
        self._value = None
        self.value = value
        self.grad = None
        self._trainable = bool(trainable)
        self._owner = owner
        self.initializer = initializer
        self.fans = fans

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, v):
        self._value = v
        if v is not None:
            self._shape = tuple(int(d) for d in v.shape)

    @property
    def materialized(self):
        """False while the parameter is only declared (no array allocated yet)."""
        return self._value is not None

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
        return self._shape

    @property
    def size(self):
        return math.prod(self._shape)

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
        lazy = "" if self.materialized else ", not allocated"
        return f"Parameter({self.name!r}, shape={self.shape}{t}{lazy})"
