"""PReLU: a ReLU whose negative side has a learned slope, one per channel (He et al. 2015; MTCNN uses it).

    y = x           where x > 0
    y = alpha * x   elsewhere

Weights: ``alpha`` of shape (C,) (``channelwise=True``, the default, as ``torch.nn.PReLU(C)``) or (1,) (one slope
shared by every channel, as ``torch.nn.PReLU()``), so PyTorch state dicts load unchanged. Works on (N, C, H, W)
feature maps and on (N, C) dense outputs. The arithmetic is ``visionkit.ops.prelu``.
"""

from .. import ops
from . import initializers
from .base import Layer, profile, register_layer


@register_layer
class PReLU(Layer):
    """``PReLU(channelwise=True, alpha_initializer="zeros")``: per-channel (or shared) learned negative slope.

    ``alpha_initializer`` follows Keras (zeros: the layer starts as a ReLU); converted weights overwrite it.
    """

    def __init__(self, channelwise=True, alpha_initializer="zeros", input_shape=None, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape)
        self.channelwise = bool(channelwise)
        self.alpha_initializer = initializers.check(alpha_initializer)

    def check_input_shape(self, input_shape, building=False):
        if isinstance(input_shape, list) or len(input_shape) < 1:
            raise self._shape_error("(N, C, ...) of rank >= 2", input_shape)
        if self.channelwise:
            if input_shape[0] is None:
                raise self._shape_error("with a known number of channels", input_shape)
            if self.built and input_shape[0] != self.alpha.shape[0]:
                raise self._shape_error(f"with {self.alpha.shape[0]} channels", input_shape)

    def build(self, input_shape):
        n = int(input_shape[0]) if self.channelwise else 1
        self.add_weight("alpha", (n,), self.alpha_initializer, fans=(1, 1))

    def forward(self, x, training=False):
        return ops.prelu(x, self.alpha.value), x

    def backward(self, grad_out, ctx):
        gx, ga = ops.prelu_backward(grad_out, ctx, self.alpha.value)
        self.alpha.accumulate(ga)
        return gx

    def memory_profile(self, input_shape, output_shape, training):
        return profile(keeps_input=True)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(
            channelwise=self.channelwise,
            alpha_initializer=self._init_config(self.alpha_initializer, "alpha_initializer"),
        )
        return cfg
