"""Pooling layers: MaxPool2D, AvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D, ChannelMaxPool.

``padding`` is "valid", "same" (TensorFlow's rule; AvgPool2D then leaves the padding out of the average, as
Keras), an int or an (h, w) pair (PyTorch: at most half the window). ``strides`` defaults to ``pool_size``.
"""

from .. import ops
from .base import (
    Layer,
    elements,
    jsonable_padding,
    norm_padding,
    pair,
    profile,
    recording,
    register_layer,
    window_output,
)


class _Pool2D(Layer):
    def __init__(
        self, pool_size=2, strides=None, padding="valid", ceil_mode=False, name=None, trainable=True, input_shape=None
    ):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape)
        self.pool_size = pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else pair(strides, "strides")
        self.padding = norm_padding(padding)
        self.ceil_mode = bool(ceil_mode)
        if min(self.pool_size) < 1 or min(self.strides) < 1:
            raise ValueError(f"layer {self.name!r}: pool_size and strides must be >= 1")
        if not isinstance(self.padding, str) and (
            self.padding[0] * 2 > self.pool_size[0] or self.padding[1] * 2 > self.pool_size[1]
        ):
            raise ValueError(f"layer {self.name!r}: padding {self.padding} must be at most half the pool size")

    _dilation = (1, 1)

    def compute_output_shape(self, input_shape):
        c, h, w = input_shape
        hw = window_output(
            (h, w), self.pool_size, self.strides, self._dilation, self.padding, pool=True, ceil_mode=self.ceil_mode
        )
        return (c,) + hw

    def check_input_shape(self, input_shape, building=False):
        if isinstance(input_shape, list) or len(input_shape) != 3:
            raise self._shape_error("of rank 4 (N, C, H, W)", input_shape)
        out = self.compute_output_shape(input_shape)
        if any(d is not None and d <= 0 for d in out[1:]):
            spatial = tuple(self._eager_shape[2:]) if self._eager_shape is not None else tuple(input_shape[1:])
            raise ValueError(
                f"layer {self.name!r}: input of spatial size {spatial} is smaller than the pool "
                f"window {self.pool_size}"
            )

    def get_config(self):
        cfg = super().get_config()
        cfg.update(
            pool_size=list(self.pool_size),
            strides=list(self.strides),
            padding=jsonable_padding(self.padding),
            ceil_mode=self.ceil_mode,
        )
        return cfg


@register_layer
class MaxPool2D(_Pool2D):
    """Max pooling: ``MaxPool2D(pool_size=2, strides=None, padding="valid", dilation=1, ceil_mode=False)``."""

    def __init__(
        self,
        pool_size=2,
        strides=None,
        padding="valid",
        dilation=1,
        ceil_mode=False,
        name=None,
        trainable=True,
        input_shape=None,
    ):
        super().__init__(
            pool_size, strides, padding, ceil_mode, name=name, trainable=trainable, input_shape=input_shape
        )
        self.dilation = pair(dilation, "dilation")

    @property
    def _dilation(self):
        return self.dilation

    def forward(self, x, training=False):
        if not recording():  # inference without a tape: the index-free kernel (about 3x faster)
            y = ops.max_pool2d(
                x, self.pool_size, self.strides, self.padding, self.dilation, self.ceil_mode, return_indices=False
            )
            return y, None
        y, idx = ops.max_pool2d(
            x, self.pool_size, self.strides, self.padding, self.dilation, self.ceil_mode, return_indices=True
        )
        return y, (idx, tuple(x.shape))

    def memory_profile(self, input_shape, output_shape, training):
        """Keeps the int32 argmax indices (one per output value); no indices without a tape."""
        n = elements(output_shape)
        return profile(extra=None if n is None else 4 * n)

    def backward(self, grad_out, ctx):
        idx, x_shape = ctx
        return ops.max_pool2d_backward(grad_out, idx, x_shape)

    def get_config(self):
        cfg = super().get_config()
        cfg["dilation"] = list(self.dilation)
        return cfg


@register_layer
class AvgPool2D(_Pool2D):
    """Average pooling: ``AvgPool2D(pool_size=2, strides=None, padding="valid", ceil_mode=False,
    count_include_pad=True)`` (count_include_pad as PyTorch; "same" padding is never counted, as Keras)."""

    def __init__(
        self,
        pool_size=2,
        strides=None,
        padding="valid",
        ceil_mode=False,
        count_include_pad=True,
        name=None,
        trainable=True,
        input_shape=None,
    ):
        super().__init__(
            pool_size, strides, padding, ceil_mode, name=name, trainable=trainable, input_shape=input_shape
        )
        self.count_include_pad = bool(count_include_pad)

    def _kwargs(self):
        return dict(
            stride=self.strides,
            padding=self.padding,
            ceil_mode=self.ceil_mode,
            count_include_pad=self.count_include_pad,
        )

    def forward(self, x, training=False):
        y = ops.avg_pool2d(x, self.pool_size, **self._kwargs())
        return y, tuple(x.shape)

    def backward(self, grad_out, ctx):
        return ops.avg_pool2d_backward(grad_out, ctx, self.pool_size, **self._kwargs())

    def memory_profile(self, input_shape, output_shape, training):
        return profile()  # only the input's shape

    def get_config(self):
        cfg = super().get_config()
        cfg["count_include_pad"] = self.count_include_pad
        return cfg


class _GlobalPool(Layer):
    def __init__(self, keepdims=False, name=None, trainable=True, input_shape=None):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape)
        self.keepdims = bool(keepdims)

    def check_input_shape(self, input_shape, building=False):
        if isinstance(input_shape, list) or len(input_shape) != 3:
            raise self._shape_error("of rank 4 (N, C, H, W)", input_shape)

    def compute_output_shape(self, input_shape):
        c = input_shape[0]
        return (c, 1, 1) if self.keepdims else (c,)

    def memory_profile(self, input_shape, output_shape, training):
        return profile()  # the input's shape (GlobalMaxPool2D adds its indices)

    def get_config(self):
        cfg = super().get_config()
        cfg["keepdims"] = self.keepdims
        return cfg


@register_layer
class GlobalAvgPool2D(_GlobalPool):
    """Mean over H and W: (N, C, H, W) -> (N, C), or (N, C, 1, 1) with keepdims=True."""

    def forward(self, x, training=False):
        return ops.global_avg_pool2d(x, keepdims=self.keepdims), tuple(x.shape)

    def backward(self, grad_out, ctx):
        return ops.global_avg_pool2d_backward(grad_out, ctx)


@register_layer
class GlobalMaxPool2D(_GlobalPool):
    """Max over H and W: (N, C, H, W) -> (N, C), or (N, C, 1, 1) with keepdims=True."""

    def forward(self, x, training=False):
        y, idx = ops.global_max_pool2d(x, keepdims=self.keepdims, return_indices=True)
        return y, (idx, tuple(x.shape))

    def backward(self, grad_out, ctx):
        idx, x_shape = ctx
        return ops.global_max_pool2d_backward(grad_out, idx, x_shape)

    def memory_profile(self, input_shape, output_shape, training):
        n = elements(output_shape)
        return profile(extra=None if n is None else 4 * n)  # int32 indices


@register_layer
class ChannelMaxPool(Layer):
    """Max across each run of ``pool_size`` consecutive channels (maxout): (N, C, H, W) -> (N, C/pool_size, H, W)."""

    def __init__(self, pool_size=2, name=None, trainable=True, input_shape=None):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape)
        self.pool_size = int(pool_size)
        if self.pool_size < 1:
            raise ValueError(f"layer {self.name!r}: pool_size must be >= 1")

    def check_input_shape(self, input_shape, building=False):
        if isinstance(input_shape, list) or len(input_shape) != 3:
            raise self._shape_error("of rank 4 (N, C, H, W)", input_shape)
        if input_shape[0] is not None and input_shape[0] % self.pool_size:
            raise ValueError(
                f"layer {self.name!r}: input channels ({input_shape[0]}) must be divisible by pool_size "
                f"({self.pool_size})"
            )

    def compute_output_shape(self, input_shape):
        c = input_shape[0]
        return (None if c is None else c // self.pool_size,) + tuple(input_shape[1:])

    def forward(self, x, training=False):
        y, idx = ops.channel_max_pool(x, self.pool_size, return_indices=True)
        return y, (idx, tuple(x.shape))

    def backward(self, grad_out, ctx):
        idx, x_shape = ctx
        return ops.channel_max_pool_backward(grad_out, idx, x_shape)

    def memory_profile(self, input_shape, output_shape, training):
        n = elements(output_shape)
        return profile(extra=None if n is None else 4 * n)  # int32 indices

    def get_config(self):
        cfg = super().get_config()
        cfg["pool_size"] = self.pool_size
        return cfg
