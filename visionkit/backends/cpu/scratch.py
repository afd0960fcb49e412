"""Per-thread scratch buffers reused across calls: fresh pages cost more than the im2col that fills them."""

import threading

import numpy as np


class _Buffers(threading.local):
    """Named per-thread buffers, grown as needed; ``get`` returns the first ``size`` elements."""

    def get(self, name, size, dtype):
        key = (name, np.dtype(dtype).str)
        buf = self.__dict__.get(key)
        if buf is None or buf.size < size:
            buf = np.empty(max(size, 1), dtype)
            self.__dict__[key] = buf
        return buf[:size]


scratch = _Buffers()
