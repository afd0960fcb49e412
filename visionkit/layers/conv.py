"""Convolution layers: Conv2D, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose.

Weights use PyTorch's layouts, so they move between visionkit, PyTorch and ONNX unchanged:
    Conv2D            kernel (filters, in_channels/groups, kh, kw)   bias (filters,)
    DepthwiseConv2D   depthwise_kernel (in_channels*depth_multiplier, 1, kh, kw)   bias
    SeparableConv2D   depthwise_kernel (in_channels*depth_multiplier, 1, kh, kw), pointwise_kernel
                      (filters, in_channels*depth_multiplier, 1, 1), bias (filters,)  -- Keras' parameter count:
                      the depthwise step has no bias
    Conv2DTranspose   kernel (in_channels, filters/groups, kh, kw)   bias (filters,)

``padding`` is "valid", "same" (TensorFlow's rule: output = ceil(input / stride), the total padding split evenly
with an odd pixel at the bottom/right), an int or an (h, w) pair (PyTorch's symmetric padding).
"""

from .. import ops
from . import initializers
from .activation import activate, activate_backward, check_activation
from .base import (
    Layer,
    elements,
    jsonable_padding,
    norm_padding,
    pair,
    profile,
    register_layer,
    window_output,
)


class _ConvCommon(Layer):
    """Shared argument handling and input checks of the convolution layers."""

    _fuses_relu = False  # True where forward runs ops.conv2d_relu for activation="relu" (no z kept)

    def _init_common(self, kernel_size, strides, padding, dilation_rate, activation, use_bias):
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.strides = pair(strides, "strides")
        self.dilation_rate = pair(dilation_rate, "dilation_rate")
        self.padding = norm_padding(padding)
        self.activation = check_activation(activation)
        self.use_bias = bool(use_bias)
        if min(self.kernel_size) < 1 or min(self.strides) < 1 or min(self.dilation_rate) < 1:
            raise ValueError(f"layer {self.name!r}: kernel_size, strides and dilation_rate must be >= 1")

    def _common_config(self):
        cfg = super().get_config()
        cfg.update(
            kernel_size=list(self.kernel_size),
            strides=list(self.strides),
            padding=jsonable_padding(self.padding),
            dilation_rate=list(self.dilation_rate),
            activation=self.activation,
            use_bias=self.use_bias,
        )
        return cfg

    def _in_channels_required(self):
        return getattr(self, "in_channels", None)

    def check_input_shape(self, input_shape, building=False):
        if isinstance(input_shape, list) or len(input_shape) != 3:
            raise self._shape_error("of rank 4 (N, C, H, W)", input_shape)
        c = input_shape[0]
        want = self._in_channels_required()
        if want is not None and self.built and c != want:
            raise self._shape_error(f"with {want} channels (N, {want}, H, W)", input_shape)
        groups = getattr(self, "groups", 1)
        if c is None:
            raise self._shape_error("with a known channel count", input_shape)
        if c % groups:
            raise ValueError(f"layer {self.name!r}: input channels ({c}) must be divisible by groups ({groups})")
        out = self.compute_output_shape(input_shape)
        if any(d is not None and d <= 0 for d in out[1:]):
            raise ValueError(
                f"layer {self.name!r}: input of spatial size {self._spatial_str(input_shape)} is too small for kernel "
                f"{self.kernel_size} (padding {self.padding!r}): the output would be empty"
            )

    def _spatial_str(self, input_shape):
        if self._eager_shape is not None:
            return tuple(self._eager_shape[2:])
        return tuple(input_shape[1:])

    def _spatial_out(self, input_shape):
        return window_output(
            tuple(input_shape[1:]), self.kernel_size, self.strides, self.dilation_rate, self.padding
        )

    def memory_profile(self, input_shape, output_shape, training):
        """Keeps x, the output y and, with an activation other than ReLU (which the convolution applies itself),
        the pre-activation z (alive at inference too while y is computed)."""
        fused = self.activation is None or (self.activation == "relu" and self._fuses_relu)
        z = 0 if fused else elements(output_shape)
        z = None if z is None else 4 * z
        return profile(keeps_input=True, keeps_output=True, extra=z, transient=z)


@register_layer
class Conv2D(_ConvCommon):
    """2-D convolution (cross-correlation, as every framework), optionally grouped, with a fused activation.

    ``Conv2D(filters, kernel_size, strides=1, padding="valid", dilation_rate=1, groups=1, activation=None,
    use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros", input_shape=None, name=None,
    trainable=True)``. Kernel layout OIHW: (filters, in_channels/groups, kh, kw).
    """

    _fuses_relu = True

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        dilation_rate=1,
        groups=1,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        input_shape=None,
        name=None,
        trainable=True,
    ):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape)
        self._init_common(kernel_size, strides, padding, dilation_rate, activation, use_bias)
        self.filters = int(filters)
        self.groups = int(groups)
        if self.filters < 1 or self.groups < 1 or self.filters % self.groups:
            raise ValueError(
                f"layer {self.name!r}: filters ({filters}) must be a positive multiple of groups ({groups})"
            )
        self.kernel_initializer = initializers.check(kernel_initializer)
        self.bias_initializer = initializers.check(bias_initializer)

    def build(self, input_shape):
        self.in_channels = input_shape[0]
        kh, kw = self.kernel_size
        self.add_weight("kernel", (self.filters, self.in_channels // self.groups, kh, kw), self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, fans=(1, 1))
        else:
            self.bias = None

    def compute_output_shape(self, input_shape):
        return (self.filters,) + self._spatial_out(input_shape)

    def _conv_kwargs(self):
        return dict(stride=self.strides, padding=self.padding, dilation=self.dilation_rate, groups=self.groups)

    def _weight(self):
        return self.kernel

    def forward(self, x, training=False):
        b = self.bias.value if self.bias is not None else None
        if self.activation == "relu":  # fused: one pass over the output, and no pre-activation to keep
            y = ops.conv2d_relu(x, self._weight().value, b, **self._conv_kwargs())
            return y, (x, None, y)
        z = ops.conv2d(x, self._weight().value, b, **self._conv_kwargs())
        y = activate(z, self.activation)
        return y, (x, z, y)

    def backward(self, grad_out, ctx, input_grad=True):
        """input_grad=False (the model's first layer in training) skips the gradient w.r.t. x: returns None."""
        x, z, y = ctx
        # relu's gradient mask from y: y > 0 exactly where z > 0 (NaN in both fails the test)
        gz = activate_backward(grad_out, y if z is None else z, y, self.activation)
        b = self.bias.value if self.bias is not None else None
        gx, gw, gb = ops.conv2d_backward(gz, x, self._weight().value, b, **self._conv_kwargs(), input_grad=input_grad)
        self._weight().accumulate(gw)
        if self.bias is not None:
            self.bias.accumulate(gb)
        return gx

    def backward_params(self, grad_out, ctx):
        """The parameter gradients alone (the model calls this on layers that read its inputs directly when no
        input gradient is asked for)."""
        self.backward(grad_out, ctx, input_grad=False)

    def count_macs(self, input_shape, output_shape):
        o, oh, ow = output_shape
        if oh is None or ow is None:
            return None
        kh, kw = self.kernel_size
        return oh * ow * o * (input_shape[0] // self.groups) * kh * kw

    def get_config(self):
        cfg = self._common_config()
        cfg.update(
            filters=self.filters,
            groups=self.groups,
            kernel_initializer=self._init_config(self.kernel_initializer, "kernel_initializer"),
            bias_initializer=self._init_config(self.bias_initializer, "bias_initializer"),
        )
        return cfg


@register_layer
class DepthwiseConv2D(_ConvCommon):
    """Depthwise convolution: each input channel convolved with ``depth_multiplier`` filters of its own
    (a Conv2D with groups = in_channels). Kernel (in_channels*depth_multiplier, 1, kh, kw)."""

    _fuses_relu = True

    def __init__(
        self,
        kernel_size,
        strides=1,
        padding="valid",
        depth_multiplier=1,
        dilation_rate=1,
        activation=None,
        use_bias=True,
        depthwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        input_shape=None,
        name=None,
        trainable=True,
    ):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape)
        self._init_common(kernel_size, strides, padding, dilation_rate, activation, use_bias)
        self.depth_multiplier = int(depth_multiplier)
        if self.depth_multiplier < 1:
            raise ValueError(f"layer {self.name!r}: depth_multiplier must be >= 1")
        self.depthwise_initializer = initializers.check(depthwise_initializer)
        self.bias_initializer = initializers.check(bias_initializer)

    @property
    def groups(self):
        return getattr(self, "in_channels", 1)

    def build(self, input_shape):
        self.in_channels = c = input_shape[0]
        kh, kw = self.kernel_size
        m = self.depth_multiplier
        self.add_weight("depthwise_kernel", (c * m, 1, kh, kw), self.depthwise_initializer, fans=(kh * kw, m * kh * kw))
        if self.use_bias:
            self.add_weight("bias", (c * m,), self.bias_initializer, fans=(1, 1))
        else:
            self.bias = None

    def compute_output_shape(self, input_shape):
        c = input_shape[0]
        return (None if c is None else c * self.depth_multiplier,) + self._spatial_out(input_shape)

    def _conv_kwargs(self):
        return dict(stride=self.strides, padding=self.padding, dilation=self.dilation_rate, groups=self.in_channels)

    def _weight(self):
        return self.depthwise_kernel

    # a depthwise conv is a grouped conv (groups = channels): Conv2D's forward and backward serve as they are
    forward = Conv2D.forward
    backward = Conv2D.backward
    backward_params = Conv2D.backward_params

    def count_macs(self, input_shape, output_shape):
        o, oh, ow = output_shape
        if oh is None or ow is None:
            return None
        kh, kw = self.kernel_size
        return oh * ow * o * kh * kw

    def get_config(self):
        cfg = self._common_config()
        cfg.update(
            depth_multiplier=self.depth_multiplier,
            depthwise_initializer=self._init_config(self.depthwise_initializer, "depthwise_initializer"),
            bias_initializer=self._init_config(self.bias_initializer, "bias_initializer"),
        )
        return cfg


@register_layer
class SeparableConv2D(_ConvCommon):
    """Depthwise separable convolution: a depthwise convolution (no bias) then a 1x1 pointwise convolution
    (with bias), as Keras' SeparableConv2D (same parameter count)."""

    _fuses_relu = True

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        depth_multiplier=1,
        dilation_rate=1,
        activation=None,
        use_bias=True,
        depthwise_initializer="glorot_uniform",
        pointwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        input_shape=None,
        name=None,
        trainable=True,
    ):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape)
        self._init_common(kernel_size, strides, padding, dilation_rate, activation, use_bias)
        self.filters = int(filters)
        self.depth_multiplier = int(depth_multiplier)
        if self.filters < 1 or self.depth_multiplier < 1:
            raise ValueError(f"layer {self.name!r}: filters and depth_multiplier must be >= 1")
        self.depthwise_initializer = initializers.check(depthwise_initializer)
        self.pointwise_initializer = initializers.check(pointwise_initializer)
        self.bias_initializer = initializers.check(bias_initializer)

    def build(self, input_shape):
        self.in_channels = c = input_shape[0]
        kh, kw = self.kernel_size
        m = self.depth_multiplier
        self.add_weight("depthwise_kernel", (c * m, 1, kh, kw), self.depthwise_initializer, fans=(kh * kw, m * kh * kw))
        self.add_weight("pointwise_kernel", (self.filters, c * m, 1, 1), self.pointwise_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, fans=(1, 1))
        else:
            self.bias = None

    def compute_output_shape(self, input_shape):
        return (self.filters,) + self._spatial_out(input_shape)

    def _dw_kwargs(self):
        return dict(stride=self.strides, padding=self.padding, dilation=self.dilation_rate, groups=self.in_channels)

    def forward(self, x, training=False):
        t = ops.conv2d(x, self.depthwise_kernel.value, None, **self._dw_kwargs())
        b = self.bias.value if self.bias is not None else None
        if self.activation == "relu":
            y = ops.conv2d_relu(t, self.pointwise_kernel.value, b)
            return y, (x, t, None, y)
        z = ops.conv2d(t, self.pointwise_kernel.value, b)
        y = activate(z, self.activation)
        return y, (x, t, z, y)

    def backward(self, grad_out, ctx):
        x, t, z, y = ctx
        gz = activate_backward(grad_out, y if z is None else z, y, self.activation)
        b = self.bias.value if self.bias is not None else None
        gt, gpw, gb = ops.conv2d_backward(gz, t, self.pointwise_kernel.value, b)
        gx, gdw, _ = ops.conv2d_backward(gt, x, self.depthwise_kernel.value, None, **self._dw_kwargs())
        self.depthwise_kernel.accumulate(gdw)
        self.pointwise_kernel.accumulate(gpw)
        if self.bias is not None:
            self.bias.accumulate(gb)
        return gx

    def memory_profile(self, input_shape, output_shape, training):
        """Also keeps the depthwise result t (in_channels*depth_multiplier at the output's spatial size)."""
        prof = super().memory_profile(input_shape, output_shape, training)
        t = elements((input_shape[0] * self.depth_multiplier,) + tuple(output_shape[1:]))
        if t is None or prof["extra"] is None:
            prof["extra"] = prof["transient"] = None
        else:
            prof["extra"] += 4 * t
            prof["transient"] += 4 * t
        return prof

    def count_macs(self, input_shape, output_shape):
        o, oh, ow = output_shape
        if oh is None or ow is None:
            return None
        kh, kw = self.kernel_size
        cm = input_shape[0] * self.depth_multiplier
        return oh * ow * cm * kh * kw + oh * ow * o * cm

    def get_config(self):
        cfg = self._common_config()
        cfg.update(
            filters=self.filters,
            depth_multiplier=self.depth_multiplier,
            depthwise_initializer=self._init_config(self.depthwise_initializer, "depthwise_initializer"),
            pointwise_initializer=self._init_config(self.pointwise_initializer, "pointwise_initializer"),
            bias_initializer=self._init_config(self.bias_initializer, "bias_initializer"),
        )
        return cfg


@register_layer
class Conv2DTranspose(_ConvCommon):
    """Transposed convolution ("deconvolution"; the gradient of Conv2D w.r.t. its input), kernel IOHW
    (in_channels, filters/groups, kh, kw) as PyTorch's ConvTranspose2d.

    Output size per spatial dim, with K = dilation*(kernel-1)+1:
        "valid"       (in-1)*stride + K, or in*stride when K < stride (Keras' rule)
        "same"        in*stride (Keras/TensorFlow: the conv whose gradient this is pads as "same"; an odd extra
                      pixel is cropped at the bottom/right)
        int / pair p  (in-1)*stride - 2p + K + output_padding (PyTorch)
    ``output_padding`` (int or pair, < max(stride, dilation)) adds rows/cols at the bottom/right; it is not
    allowed with "same".
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        output_padding=None,
        dilation_rate=1,
        groups=1,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        input_shape=None,
        name=None,
        trainable=True,
    ):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape)
        self._init_common(kernel_size, strides, padding, dilation_rate, activation, use_bias)
        self.filters = int(filters)
        self.groups = int(groups)
        if self.filters < 1 or self.groups < 1 or self.filters % self.groups:
            raise ValueError(
                f"layer {self.name!r}: filters ({filters}) must be a positive multiple of groups ({groups})"
            )
        self.output_padding = None if output_padding is None else pair(output_padding, "output_padding")
        if self.output_padding is not None and self.padding == "same":
            raise ValueError(f"layer {self.name!r}: output_padding cannot be combined with padding='same'")
        self.kernel_initializer = initializers.check(kernel_initializer)
        self.bias_initializer = initializers.check(bias_initializer)
        # resolved PyTorch arguments: symmetric padding, output_padding, and rows/cols cropped at bottom/right
        self._pad, self._out_pad, self._crop = [], [], []
        for i in range(2):
            k_eff = self.dilation_rate[i] * (self.kernel_size[i] - 1) + 1
            s = self.strides[i]
            if self.padding == "same":
                total = k_eff - s
                if total >= 0:
                    p, op, crop = total // 2, 0, total % 2
                else:
                    p, op, crop = 0, -total, 0
            elif self.padding == "valid":
                p, crop = 0, 0
                op = self.output_padding[i] if self.output_padding is not None else max(s - k_eff, 0)
            else:
                p, crop = self.padding[i], 0
                op = self.output_padding[i] if self.output_padding is not None else 0
            if op >= max(s, self.dilation_rate[i]) and op > 0:
                raise ValueError(
                    f"layer {self.name!r}: output_padding ({op}) must be smaller than stride or dilation "
                    f"({s}, {self.dilation_rate[i]})"
                )
            self._pad.append(p)
            self._out_pad.append(op)
            self._crop.append(crop)

    def build(self, input_shape):
        self.in_channels = input_shape[0]
        kh, kw = self.kernel_size
        rf = kh * kw
        self.add_weight(
            "kernel",
            (self.in_channels, self.filters // self.groups, kh, kw),
            self.kernel_initializer,
            fans=(self.filters // self.groups * rf, self.in_channels * rf),
        )
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, fans=(1, 1))
        else:
            self.bias = None

    def compute_output_shape(self, input_shape):
        out = []
        for i, size in enumerate(input_shape[1:]):
            if size is None:
                out.append(None)
                continue
            k_eff = self.dilation_rate[i] * (self.kernel_size[i] - 1) + 1
            out.append((size - 1) * self.strides[i] - 2 * self._pad[i] + k_eff + self._out_pad[i] - self._crop[i])
        return (self.filters,) + tuple(out)

    def _kwargs(self):
        return dict(
            stride=self.strides,
            padding=tuple(self._pad),
            output_padding=tuple(self._out_pad),
            groups=self.groups,
            dilation=self.dilation_rate,
        )

    def _crop_pads(self):
        return (0, self._crop[1], 0, self._crop[0])  # PyTorch order: left, right, top, bottom

    def forward(self, x, training=False):
        b = self.bias.value if self.bias is not None else None
        z = ops.conv_transpose2d(x, self.kernel.value, b, **self._kwargs())
        full_shape = None
        if any(self._crop):
            full_shape = tuple(z.shape)
            n, c, h, w = full_shape
            z = ops.pad_backward(z, (n, c, h - self._crop[0], w - self._crop[1]), self._crop_pads())
        y = activate(z, self.activation)
        return y, (x, z, y, full_shape)

    def backward(self, grad_out, ctx):
        x, z, y, full_shape = ctx
        gz = activate_backward(grad_out, z, y, self.activation)
        if full_shape is not None:
            gz = ops.pad(gz, self._crop_pads())
        b = self.bias.value if self.bias is not None else None
        gx, gw, gb = ops.conv_transpose2d_backward(gz, x, self.kernel.value, b, **self._kwargs())
        self.kernel.accumulate(gw)
        if self.bias is not None:
            self.bias.accumulate(gb)
        return gx

    def count_macs(self, input_shape, output_shape):
        c, h, w = input_shape
        if h is None or w is None:
            return None
        kh, kw = self.kernel_size
        return h * w * c * (self.filters // self.groups) * kh * kw

    def get_config(self):
        cfg = self._common_config()
        cfg.update(
            filters=self.filters,
            output_padding=None if self.output_padding is None else list(self.output_padding),
            groups=self.groups,
            kernel_initializer=self._init_config(self.kernel_initializer, "kernel_initializer"),
            bias_initializer=self._init_config(self.bias_initializer, "bias_initializer"),
        )
        return cfg
