"""Built-in architectures, one family per module, registered with ``@architecture`` (see ``_registry``).

``ARCHITECTURES`` maps a name ("lenet5", "alexnet", "vgg16", ...) to its ``ArchitectureSpec`` (builder, task,
default input shape and class count, description, reference). This module is a visionkit plugin: its
``register_architectures`` hook hands every spec to the plugin manager, exactly as a third-party plugin would.

    from visionkit.builtins.architectures import ARCHITECTURES
    model = ARCHITECTURES["lenet5"].builder(num_classes=10, seed=0)
"""

from __future__ import annotations

import importlib

from ._registry import ARCHITECTURES, ArchitectureSpec, architecture

try:
    from visionkit.hookspecs import hookimpl
except ImportError:  # hookspecs.py not written yet: the same marker, made here
    import pluggy

    hookimpl = pluggy.HookimplMarker("visionkit")

# this package's families
from . import alexnet, classic, vgg  # noqa: F401  (registering is the import's side effect)

# families written alongside (they may not exist yet); once a module exists, any error inside it propagates
for _family in ("resnet", "googlenet", "mobilenet", "xception", "senet"):
    _module = f"{__name__}.{_family}"
    try:
        importlib.import_module(_module)
    except ModuleNotFoundError as exc:
        if exc.name != _module:
            raise
del _family, _module


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
