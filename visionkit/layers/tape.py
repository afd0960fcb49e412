"""Whether layers record what their backward pass needs (the "tape").

Training and ``model(x)`` record: every layer's ``forward`` returns a ctx holding its inputs, masks, indices, ...
Inference that will never be differentiated (``model.predict``, ``model(x, keep_tape=False)``, an eager
``layer(x)``) runs inside ``no_tape()``: layers may then skip work that only backward needs (MaxPool2D asks
``ops.max_pool2d`` for no indices and uses the faster index-free kernel) and return ``None`` as ctx.

Custom layers may consult ``recording()``; ignoring it is always correct, only slower.
"""

from __future__ import annotations

import contextlib
import threading

_STATE = threading.local()


def recording():
    """True unless running inside ``no_tape()`` (in this thread)."""
    return getattr(_STATE, "recording", True)


@contextlib.contextmanager
def no_tape():
    """Run forward passes without keeping anything for backward (nestable, per thread)."""
    prev = recording()
    _STATE.recording = False
    try:
        yield
    finally:
        _STATE.recording = prev
