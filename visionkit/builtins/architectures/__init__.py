"""Built-in architectures, one family per module, registered with ``@architecture`` (see ``_registry``).

``ARCHITECTURES`` maps a name ("lenet5", "alexnet", "vgg16", ...) to its ``ArchitectureSpec`` (builder, task,
default input shape and class count, description, reference). This module is a visionkit plugin: its
``register_architectures`` hook hands every spec to the plugin manager, exactly as a third-party plugin would.

    from visionkit.builtins.architectures import ARCHITECTURES
    model = ARCHITECTURES["lenet5"].builder(num_classes=10, seed=0)
"""

from __future__ import annotations

from visionkit.hookspecs import hookimpl

from ._registry import ARCHITECTURES, ArchitectureSpec, architecture

# one module per family; registering is each import's side effect
from . import alexnet, classic, detector, fcn, googlenet, mobilenet, resnet, senet, vgg, xception  # noqa: F401


@hookimpl
def register_architectures(register):
    """Register every built-in architecture: ``register(name, builder, task=..., input_shape=..., ...)``."""
    for name, spec in ARCHITECTURES.items():
        register(
            name,
            spec.builder,
            task=spec.task,
            input_shape=spec.input_shape,
            num_classes=spec.num_classes,
            description=spec.description,
            reference=spec.reference,
        )


__all__ = ["ARCHITECTURES", "ArchitectureSpec", "architecture", "hookimpl", "register_architectures"]
