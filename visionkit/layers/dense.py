"""Dense (fully connected) layer: y = activation(x @ kernel.T + bias), kernel (units, in_features) as PyTorch."""

from .. import ops
from . import initializers
from .activation import activate, activate_backward, check_activation
from .base import Layer, profile, register_layer


@register_layer
class Dense(Layer):
    """``Dense(units, activation=None, use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros")``.

    Takes (N, in_features) inputs (put a Flatten or a global pooling in front of image tensors).
    """

    def __init__(
        self,
        units,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        input_shape=None,
        name=None,
        trainable=True,
    ):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape)
        self.units = int(units)
        if self.units < 1:
            raise ValueError(f"layer {self.name!r}: units must be >= 1, got {units}")
        self.activation = check_activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.check(kernel_initializer)
        self.bias_initializer = initializers.check(bias_initializer)

    def check_input_shape(self, input_shape, building=False):
        if isinstance(input_shape, list) or len(input_shape) != 1:
            raise self._shape_error(
                "of rank 2 (N, features); add a Flatten layer before it", input_shape
            )
        if input_shape[0] is None:
            raise self._shape_error("with a known number of features", input_shape)
        if self.built and input_shape[0] != self.in_features:
            raise self._shape_error(f"with {self.in_features} features", input_shape)

    def build(self, input_shape):
        self.in_features = input_shape[0]
        self.add_weight("kernel", (self.units, self.in_features), self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer, fans=(1, 1))
        else:
            self.bias = None

    def compute_output_shape(self, input_shape):
        return (self.units,)

    def forward(self, x, training=False):
        z = ops.linear(x, self.kernel.value, self.bias.value if self.bias is not None else None)
        y = activate(z, self.activation)
        return y, (x, z, y)

    def backward(self, grad_out, ctx):
        x, z, y = ctx
        gz = activate_backward(grad_out, z, y, self.activation)
        gx, gw, gb = ops.linear_backward(gz, x, self.kernel.value, self.bias.value if self.bias is not None else None)
        self.kernel.accumulate(gw)
        if self.bias is not None:
            self.bias.accumulate(gb)
        return gx

    def count_macs(self, input_shape, output_shape):
        return input_shape[0] * self.units

    def memory_profile(self, input_shape, output_shape, training):
        """Keeps x, y and, with a fused activation, the pre-activation z."""
        z = 0 if self.activation is None else 4 * self.units
        return profile(keeps_input=True, keeps_output=True, extra=z, transient=z)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(
            units=self.units,
            activation=self.activation,
            use_bias=self.use_bias,
            kernel_initializer=self._init_config(self.kernel_initializer, "kernel_initializer"),
            bias_initializer=self._init_config(self.bias_initializer, "bias_initializer"),
        )
        return cfg
