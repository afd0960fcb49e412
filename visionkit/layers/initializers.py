"""Weight initializers, drawn from a numpy Generator so models are reproducible.

Names (Keras' formulas):
    he_normal       truncated normal (cut at 2 std, rescaled), std = sqrt(2 / fan_in)
    he_uniform      uniform(-l, l), l = sqrt(6 / fan_in)
    glorot_normal   truncated normal, std = sqrt(2 / (fan_in + fan_out))
    glorot_uniform  uniform(-l, l), l = sqrt(6 / (fan_in + fan_out))       (Keras' default for Conv2D and Dense)
    lecun_normal    truncated normal, std = sqrt(1 / fan_in)
    lecun_uniform   uniform(-l, l), l = sqrt(3 / fan_in)
    zeros, ones

Fans of a kernel laid out OIHW are fan_in = I*kh*kw and fan_out = O*kh*kw (layers pass their own fans where the
layout differs, e.g. Conv2DTranspose's IOHW).

Custom initializers: a callable ``f(shape, (fan_in, fan_out), rng) -> float32 array``. A model file stores an
initializer by name, so a callable is saved under its ``__name__`` (a lambda or a ``functools.partial`` has no
usable name and cannot be saved: ``serialize`` raises naming the layer). ``register_initializer`` makes a named
callable known again when the model is rebuilt from its config.

Deferred initialisation: inside ``deferred()`` layers declare their parameters (shape, initializer) without
allocating them. ``load_model`` builds the architecture that way, checks the declared shapes against the file's
tensors, and only then fills in the file's arrays: no random draw, no allocation a file's header could inflate.

Reproducibility: every layer draws from one generator: the model's (``vk.Sequential(..., seed=0)``,
``vk.Model(inp, out, seed=0)``) when given, else the global one that ``set_seed`` resets.
"""

import contextlib
import math
import threading

import numpy as np

_GLOBAL = {"rng": np.random.default_rng()}
_DEFERRED = threading.local()


@contextlib.contextmanager
def deferred():
    """Layers built inside declare their parameters without allocating or drawing them (``Parameter.value`` None)."""
    prev = is_deferred()
    _DEFERRED.on = True
    try:
        yield
    finally:
        _DEFERRED.on = prev


def is_deferred():
    return getattr(_DEFERRED, "on", False)

# std of a standard normal truncated to [-2, 2]
_TRUNC_STD = 0.87962566103423978


def set_seed(seed):
    """Seed visionkit's global generator (weight initialisation, and dropout layers created without a seed)."""
    _GLOBAL["rng"] = np.random.default_rng(seed)


def global_rng():
    return _GLOBAL["rng"]


def compute_fans(shape):
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    rf = int(np.prod(shape[2:], dtype=np.int64)) if len(shape) > 2 else 1
    return shape[1] * rf, shape[0] * rf


def _truncated_normal(shape, std, rng):
    out = rng.standard_normal(size=shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(size=int(bad.sum()))
        bad = np.abs(out) > 2.0
    return (out * (std / _TRUNC_STD)).astype(np.float32)


def _uniform(shape, limit, rng):
    return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def zeros(shape, fans, rng):
    return np.zeros(shape, np.float32)


def ones(shape, fans, rng):
    return np.ones(shape, np.float32)


def he_normal(shape, fans, rng):
    return _truncated_normal(shape, math.sqrt(2.0 / max(fans[0], 1)), rng)


def he_uniform(shape, fans, rng):
    return _uniform(shape, math.sqrt(6.0 / max(fans[0], 1)), rng)


def glorot_normal(shape, fans, rng):
    return _truncated_normal(shape, math.sqrt(2.0 / max(fans[0] + fans[1], 1)), rng)


def glorot_uniform(shape, fans, rng):
    return _uniform(shape, math.sqrt(6.0 / max(fans[0] + fans[1], 1)), rng)


def lecun_normal(shape, fans, rng):
    return _truncated_normal(shape, math.sqrt(1.0 / max(fans[0], 1)), rng)


def lecun_uniform(shape, fans, rng):
    return _uniform(shape, math.sqrt(3.0 / max(fans[0], 1)), rng)


INITIALIZERS = {
    f.__name__: f
    for f in (zeros, ones, he_normal, he_uniform, glorot_normal, glorot_uniform, lecun_normal, lecun_uniform)
}


def register_initializer(fn, name=None):
    """Make a custom initializer known under ``name`` (default: its ``__name__``) so saved models rebuild."""
    key = str(name or getattr(fn, "__name__", "")).lower()
    if not key or key.startswith("<"):
        raise ValueError(f"initializer {fn!r} needs a name to be registered")
    INITIALIZERS[key] = fn
    return fn


def get(name):
    """The initializer function ``f(shape, (fan_in, fan_out), rng) -> float32 array`` called ``name``."""
    if callable(name):
        return name
    try:
        return INITIALIZERS[str(name).lower()]
    except KeyError:
        raise ValueError(f"unknown initializer {name!r}; known: {', '.join(INITIALIZERS)}") from None


def check(name):
    """Validate an initializer name at layer construction (so typos fail early); returns it.

    While a model is being rebuilt for loading (``deferred()``) unknown names pass: the weights come from the
    file, and the name only matters if the model is re-initialised later (which then raises)."""
    if not callable(name) and not is_deferred():
        get(name)
    return name


def serialize(init, layer_name="?", what="initializer"):
    """The JSON form of an initializer for a layer config: its name. A callable is stored by its name (register it
    with ``register_initializer`` to rebuild the model with it); one without a usable name raises ValueError."""
    if not callable(init):
        return init
    name = getattr(init, "__name__", None) or getattr(init, "name", None)
    if not isinstance(name, str) or not name or name.startswith("<"):
        raise ValueError(
            f"layer {layer_name!r}: {what} {init!r} is a callable without a name, so the layer cannot be saved; "
            "use a named function (and vk.layers.initializers.register_initializer) or an initializer name"
        )
    return name
