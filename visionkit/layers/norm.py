"""Normalisation layers: BatchNorm (PyTorch's conventions), BatchNormalization (Keras' arguments and defaults, a
thin subclass translating them) and LocalResponseNorm."""

from .. import ops
from .base import Layer, profile, register_layer


@register_layer
class BatchNorm(Layer):
    """Batch normalisation over the channel axis of (N, C, H, W) inputs, or the feature axis of (N, F) inputs.

    ``BatchNorm(momentum=0.1, eps=1e-5, affine=True)``. Conventions are PyTorch's: ``momentum`` is the weight of
    the new batch statistic (running = (1 - momentum) * running + momentum * batch; Keras' momentum=0.99 is
    PyTorch's 0.01), and running_var receives the unbiased batch variance.

    Parameters: ``gamma`` and ``beta`` (trainable, only when affine=True) and ``running_mean`` / ``running_var``
    (never trainable; they count as Keras' "non-trainable params").

    ``training=True`` normalises with the batch statistics and updates the running ones; ``training=False`` uses
    the running statistics. A frozen layer (``trainable=False``) always runs in inference mode, as in Keras:
    fine-tuning a network with frozen BatchNorm layers leaves their statistics alone.
    """

    def __init__(self, momentum=0.1, eps=1e-5, affine=True, name=None, trainable=True, input_shape=None):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape)
        self.momentum = float(momentum)
        self.eps = float(eps)
        self.affine = bool(affine)
        self._scale = self._center = self.affine  # gamma / beta present (Keras' scale / center)
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"layer {self.name!r}: momentum must be in [0, 1] (PyTorch convention), got {momentum}")
        if self.eps <= 0.0:
            raise ValueError(f"layer {self.name!r}: eps must be positive, got {eps}")

    def check_input_shape(self, input_shape, building=False):
        if isinstance(input_shape, list) or len(input_shape) not in (1, 3):
            raise self._shape_error("of rank 2 (N, F) or 4 (N, C, H, W)", input_shape)
        if input_shape[0] is None:
            raise self._shape_error("with a known channel count", input_shape)
        if self.built and input_shape[0] != self.channels:
            raise self._shape_error(f"with {self.channels} channels/features", input_shape)

    def build(self, input_shape):
        self.channels = c = input_shape[0]
        self.gamma = self.beta = None
        if self._scale:
            self.add_weight("gamma", (c,), "ones", fans=(1, 1))
        if self._center:
            self.add_weight("beta", (c,), "zeros", fans=(1, 1))
        self.add_weight("running_mean", (c,), "zeros", trainable=False, fans=(1, 1))
        self.add_weight("running_var", (c,), "ones", trainable=False, fans=(1, 1))

    def forward(self, x, training=False):
        batch_stats = bool(training) and self.trainable
        y = ops.batch_norm(
            x,
            self.running_mean.value,
            self.running_var.value,
            self.gamma.value if self.gamma is not None else None,
            self.beta.value if self.beta is not None else None,
            training=batch_stats,
            momentum=self.momentum,
            eps=self.eps,
        )
        return y, (x, batch_stats)

    def backward(self, grad_out, ctx):
        x, batch_stats = ctx
        gx, gg, gb = ops.batch_norm_backward(
            grad_out,
            x,
            self.running_mean.value,
            self.running_var.value,
            self.gamma.value if self.gamma is not None else None,
            training=batch_stats,
            eps=self.eps,
        )
        if self.gamma is not None:
            self.gamma.accumulate(gg)
        if self.beta is not None:
            self.beta.accumulate(gb)
        return gx

    def count_macs(self, input_shape, output_shape):
        n = 1
        for d in output_shape:
            if d is None:
                return None
            n *= d
        return n  # one multiply-add per element (scale and shift folded)

    def memory_profile(self, input_shape, output_shape, training):
        return profile(keeps_input=True)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(momentum=self.momentum, eps=self.eps, affine=self.affine)
        return cfg


@register_layer
class BatchNormalization(BatchNorm):
    """Keras' ``BatchNormalization(momentum=0.99, epsilon=1e-3, center=True, scale=True)``, over axis 1 (NCHW).

    The arguments mean what they mean in Keras; this thin subclass translates them to BatchNorm's PyTorch
    convention:
        momentum (Keras)  the weight of the OLD running statistic: running = momentum * running + (1 - momentum)
                          * batch. BatchNorm gets ``torch_momentum = 1 - momentum`` (Keras' 0.99 is PyTorch's 0.01).
        epsilon           added to the variance (Keras' default 1e-3; PyTorch's is 1e-5)
        center / scale    create beta / gamma, each on its own (BatchNorm's ``affine`` is both at once)
    Attributes: ``keras_momentum`` (as given), ``momentum`` (inherited: the PyTorch value the computation uses),
    ``epsilon``, ``center``, ``scale``; ``get_config`` saves the Keras arguments. One difference remains: the running
    variance is updated with the unbiased batch variance (PyTorch's rule; Keras uses the biased one, smaller by
    (n-1)/n for n values per channel).
    """

    def __init__(
        self, momentum=0.99, epsilon=1e-3, center=True, scale=True, name=None, trainable=True, input_shape=None
    ):
        keras_momentum = float(momentum)
        if not 0.0 <= keras_momentum <= 1.0:
            raise ValueError(f"BatchNormalization: momentum must be in [0, 1] (Keras convention), got {momentum}")
        super().__init__(
            momentum=1.0 - keras_momentum,
            eps=epsilon,
            affine=bool(center) and bool(scale),
            name=name,
            trainable=trainable,
            input_shape=input_shape,
        )
        self.keras_momentum = keras_momentum
        self.center, self.scale = bool(center), bool(scale)
        self._center, self._scale = self.center, self.scale

    @property
    def torch_momentum(self):
        """The PyTorch momentum the computation uses: 1 - keras_momentum."""
        return self.momentum

    @property
    def epsilon(self):
        return self.eps

    def get_config(self):
        cfg = Layer.get_config(self)
        cfg.update(momentum=self.keras_momentum, epsilon=self.eps, center=self.center, scale=self.scale)
        return cfg


@register_layer
class LocalResponseNorm(Layer):
    """Local response normalisation across channels (AlexNet), with PyTorch's semantics:

        y = x / (k + alpha / size * sum_{c' in window} x[c']^2) ** beta

    NOTE: ``alpha`` is divided by ``size`` (PyTorch's LocalResponseNorm); the AlexNet paper and Caffe write the
    same formula with alpha already divided. The window spans channels c - size//2 .. c + (size-1)//2.
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=1.0, name=None, trainable=True, input_shape=None):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape)
        self.size = int(size)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.k = float(k)
        if self.size < 1:
            raise ValueError(f"layer {self.name!r}: size must be >= 1")

    def check_input_shape(self, input_shape, building=False):
        if isinstance(input_shape, list) or len(input_shape) != 3:
            raise self._shape_error("of rank 4 (N, C, H, W)", input_shape)

    def forward(self, x, training=False):
        return ops.local_response_norm(x, self.size, self.alpha, self.beta, self.k), x

    def backward(self, grad_out, ctx):
        return ops.local_response_norm_backward(grad_out, ctx, self.size, self.alpha, self.beta, self.k)

    def count_macs(self, input_shape, output_shape):
        n = self.size
        for d in output_shape:
            if d is None:
                return None
            n *= d
        return n  # the window's sum of squares per element

    def get_config(self):
        cfg = super().get_config()
        cfg.update(size=self.size, alpha=self.alpha, beta=self.beta, k=self.k)
        return cfg
