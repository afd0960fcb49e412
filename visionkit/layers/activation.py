"""Activations: the ``Activation`` layer, and the fused activation of Conv/Dense layers (``activation="relu"``).

Names are those of ``visionkit.ops.activation``: "relu", "leaky_relu", "elu", "selu", "tanh", "sigmoid",
"hardsigmoid", "hardswish", "linear", "softmax", "log_softmax" (softmax and log_softmax along the channel axis, 1).
A fused activation is applied after the layer's linear part, and its backward runs first in the layer's backward.
"""

from .. import ops
from .base import Layer, register_layer

ACTIVATION_NAMES = (
    "relu",
    "leaky_relu",
    "elu",
    "selu",
    "tanh",
    "sigmoid",
    "hardsigmoid",
    "hardswish",
    "linear",
    "softmax",
    "log_softmax",
)

# Keras spellings that mean the same thing
_ALIASES = {"hard_sigmoid": "hardsigmoid", "hard_swish": "hardswish", "swish_hard": "hardswish", "none": "linear"}


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

    Extra keyword arguments are the activation's parameters (``negative_slope`` for leaky_relu, ``alpha`` for elu).
    """

    def __init__(self, activation, name=None, trainable=True, input_shape=None, **params):
        super().__init__(name=name, trainable=trainable, input_shape=input_shape)
        self.activation = check_activation(activation)
        self.params = dict(params)

    def forward(self, x, training=False):
        y = activate(x, self.activation, self.params)
        return y, (x, y)

    def backward(self, grad_out, ctx):
        x, y = ctx
        return activate_backward(grad_out, x, y, self.activation, self.params)

    def get_config(self):
        cfg = super().get_config()
        cfg["activation"] = self.activation or "linear"
        cfg.update(self.params)
        return cfg
