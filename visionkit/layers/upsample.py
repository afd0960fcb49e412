"""UpSampling2D: enlarge H and W by integer factors (segmentation decoders, FCN heads)."""

from .. import ops
from .base import Layer, pair, profile, register_layer


@register_layer
class UpSampling2D(Layer):
    """``UpSampling2D(size=2, interpolation="nearest"|"bilinear", align_corners=False)``.

    Nearest repeats each pixel; bilinear follows PyTorch's ``interpolate`` (align_corners=False is the half-pixel
    rule Keras uses too). ``size`` is an int or an (h, w) pair of integer factors.
    """

    def __init__(
        self, size=2, interpolation="nearest", align_corners=False, name=None, trainable=True, input_shape=None
    ):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape)
        self.size = pair(size, "size")
        if min(self.size) < 1:
            raise ValueError(f"layer {self.name!r}: size must be >= 1")
        self.interpolation = str(interpolation).lower()
        if self.interpolation not in ("nearest", "bilinear"):
            raise ValueError(
                f'layer {self.name!r}: interpolation must be "nearest" or "bilinear", got {interpolation!r}'
            )
        self.align_corners = bool(align_corners)
        if self.align_corners and self.interpolation == "nearest":
            raise ValueError(f"layer {self.name!r}: align_corners applies to bilinear interpolation only")

    def check_input_shape(self, input_shape, building=False):
        if isinstance(input_shape, list) or len(input_shape) != 3:
            raise self._shape_error("of rank 4 (N, C, H, W)", input_shape)

    def compute_output_shape(self, input_shape):
        c, h, w = input_shape
        return (c, None if h is None else h * self.size[0], None if w is None else w * self.size[1])

    def _kwargs(self):
        return dict(
            scale_factor=self.size,
            mode=self.interpolation,
            align_corners=None if self.interpolation == "nearest" else self.align_corners,
        )

    def forward(self, x, training=False):
        return ops.interpolate(x, **self._kwargs()), tuple(x.shape)

    def backward(self, grad_out, ctx):
        return ops.interpolate_backward(grad_out, ctx, **self._kwargs())

    def memory_profile(self, input_shape, output_shape, training):
        return profile()  # keeps only the input's shape

    def count_macs(self, input_shape, output_shape):
        if self.interpolation == "nearest" or any(d is None for d in output_shape):
            return 0 if self.interpolation == "nearest" else None
        c, h, w = output_shape
        return 4 * c * h * w  # four taps per output element

    def get_config(self):
        cfg = super().get_config()
        cfg.update(size=list(self.size), interpolation=self.interpolation, align_corners=self.align_corners)
        return cfg
