"""Automatic layer names, Keras style: ``conv2d``, ``conv2d_1``, ``conv2d_2``, ...

One counter per base name (the snake_case class name). ``reserve_name`` advances a counter past a name that
exists already (a layer rebuilt from a config or a model file), so the next automatic name cannot collide with it.
"""

from __future__ import annotations

import re
from collections import defaultdict

_NAME_COUNTS: dict[str, int] = defaultdict(int)
_NUMBERED = re.compile(r"^(.*?)(?:_(\d+))?$")


def snake_case(name):
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    s = re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()
    s = re.sub(r"(\D)_(\d)d\b", r"\1\2d", s)  # conv_2d -> conv2d, max_pool_2d -> max_pool2d
    s = s.replace("_2_d", "2d")
    return s


def unique_name(base):
    """The next automatic name for ``base``: ``base``, ``base_1``, ``base_2``, ..."""
    n = _NAME_COUNTS[base]
    _NAME_COUNTS[base] += 1
    return base if n == 0 else f"{base}_{n}"


def reserve_name(name):
    """Advance the counters so ``unique_name`` never returns ``name`` (``"conv2d_3"`` -> the next is ``conv2d_4``)."""
    if not isinstance(name, str):
        return
    _NAME_COUNTS[name] = max(_NAME_COUNTS[name], 1)
    m = _NUMBERED.match(name)
    if m and m.group(2) is not None and m.group(1):
        base, k = m.group(1), int(m.group(2))
        _NAME_COUNTS[base] = max(_NAME_COUNTS[base], k + 1)


def reset_names():
    """Restart the automatic layer names (``conv2d``, ``conv2d_1``, ...) from zero, like Keras' clear_session."""
    _NAME_COUNTS.clear()
