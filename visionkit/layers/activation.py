"""Activations: the ``Activation`` layer, and the fused activation of Conv/Dense layers (``activation="relu"``).

Names are those of ``visionkit.ops.activation``: "relu", "relu6", "leaky_relu", "elu", "selu", "tanh", "sigmoid",
"hardsigmoid", "hardswish", "linear", "softmax", "log_softmax" (softmax and log_softmax along the channel axis, 1).
A fused activation is applied after the layer's linear part, and its backward runs first in the layer's backward.
"""

from .. import ops
from ..backends import ACTIVATIONS
from ..ops.act import ACTIVATION_PARAMETERS
from .base import Layer, profile, register_layer

# the elementwise ones of the backends (one list, so a new kernel activation is usable here at once) + softmaxes
ACTIVATION_NAMES = tuple(ACTIVATIONS) + ("softmax", "log_softmax")

# Keras spellings that mean the same thing
_ALIASES = {"hard_sigmoid": "hardsigmoid", "hard_swish": "hardswish", "swish_hard": "hardswish", "none": "linear"}


# the keyword parameters each activation accepts (anything else is an error, not silently ignored): the ops' table
ACTIVATION_PARAMS = {name: (key,) for name, (key, _) in ACTIVATION_PARAMETERS.items()}


def check_activation_params(name, params, who="Activation"):
    """Validate the keyword parameters of activation ``name`` (normalised, None = linear); returns them as a dict."""
    allowed = ACTIVATION_PARAMS.get(name, ())
    unknown = [k for k in params if k not in allowed]
    if unknown:
        takes = f"takes only {', '.join(allowed)}" if allowed else "takes no parameters"
        raise ValueError(
            f"{who}: unknown parameter(s) {', '.join(map(repr, unknown))} for activation {name or 'linear'!r}, which "
            f"{takes}" + (" (leaky_relu's slope is negative_slope)" if name == "leaky_relu" else "")
        )
    out = {}
    for k, v in params.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{who}: activation parameter {k!r} must be a number, got {v!r}")
        out[k] = int(v) if k == "dim" else float(v)
    return out


def check_activation(name):
    """Normalise an activation name (None -> None, meaning identity); raise ValueError for an unknown one."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise ValueError(f"activation must be a name (one of {', '.join(ACTIVATION_NAMES)}), got {name!r}")
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in ACTIVATION_NAMES:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATION_NAMES)}")
    return None if key == "linear" else key


def activate(z, name, params=None):
    """y = activation(z); identity when name is None."""
    if name is None:
        return z
    return ops.activation(z, name, **(params or {}))


def activate_backward(grad_out, z, y, name, params=None):
    if name is None:
        return grad_out
    return ops.activation_backward(grad_out, z, y, name, **(params or {}))


@register_layer
class Activation(Layer):
    """Apply an activation by name, e.g. ``Activation("leaky_relu", negative_slope=0.2)``.

    Extra keyword arguments are the activation's parameters: ``negative_slope`` for leaky_relu, ``alpha`` for elu,
    ``dim`` for softmax/log_softmax. Any other keyword (a typo, Keras' ``alpha`` for leaky_relu) raises ValueError.
    """

    def __init__(self, activation, name=None, trainable=True, input_shape=None, **params):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape)
        self.activation = check_activation(activation)
        self.params = check_activation_params(self.activation, params, f"layer {self.name!r} (Activation)")

    def forward(self, x, training=False):
        y = activate(x, self.activation, self.params)
        if not self.activation:
            return y, None
        return y, (x, y)

    def memory_profile(self, input_shape, output_shape, training):
        if self.activation is None:
            return profile(view=True)
        return profile(keeps_input=True, keeps_output=True)

    def backward(self, grad_out, ctx):
        if ctx is None:
            return grad_out
        x, y = ctx
        return activate_backward(grad_out, x, y, self.activation, self.params)

    def get_config(self):
        cfg = super().get_config()
        cfg["activation"] = self.activation or "linear"
        cfg.update(self.params)
        return cfg
