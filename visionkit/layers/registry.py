"""The layer registry: class name -> Layer class, so ``from_config`` (and model files) can rebuild layers."""

from __future__ import annotations

_REGISTRY: dict[str, type] = {}


def register_layer(cls=None, *, name=None):
    """Class decorator: make a Layer subclass known to ``from_config`` under its class name (or ``name``).

    Plugins use it for their custom layers so saved models that contain them load again::

        @register_layer
        class Mish(Layer): ...
    """

    def deco(c):
        key = name or c.__name__
        other = _REGISTRY.get(key)
        if other is not None and other is not c and (other.__module__, other.__qualname__) != (
            c.__module__,
            c.__qualname__,
        ):
            raise ValueError(
                f"a layer class named {key!r} is already registered ({other.__module__}.{other.__qualname__})"
            )
        _REGISTRY[key] = c
        return c

    if cls is None:
        return deco
    return deco(cls)


def get_layer_class(class_name, custom_objects=None):
    """The registered layer class for ``class_name`` (``custom_objects`` is searched first)."""
    if custom_objects and class_name in custom_objects:
        return custom_objects[class_name]
    try:
        return _REGISTRY[class_name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown layer class {class_name!r}; known: {', '.join(sorted(_REGISTRY))}. "
            "A custom layer must be decorated with @register_layer (or passed in custom_objects)"
        ) from None


def registered_layers():
    """A copy of the registry: class name -> class."""
    return dict(_REGISTRY)


def layer_from_config(spec, custom_objects=None):
    """Rebuild a layer from ``{"class_name": ..., "config": {...}}``.

    The layer's name is reserved in the automatic-name counters (see ``naming.reserve_name``), so a layer made
    later with an automatic name never collides with one rebuilt from a config or a model file.
    """
    from .naming import reserve_name

    if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict):
        raise ValueError(f"a layer spec must be {{'class_name': ..., 'config': {{...}}}}, got {spec!r:.200}")
    cls = get_layer_class(spec.get("class_name"), custom_objects)
    if getattr(cls, "_from_config_takes_custom_objects", False):
        layer = cls.from_config(spec["config"], custom_objects=custom_objects)
    else:
        layer = cls.from_config(spec["config"])
    reserve_name(layer.name)
    return layer
