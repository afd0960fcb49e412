"""Reading Python pickles of data (CIFAR's batches) without running code.

The restricted unpickler resolves only the numpy array and dtype reconstructors (and ``_codecs.encode`` for
latin-1 text, which Python 3 writes in protocol-2 pickles of bytes), and even those are replaced by stand-ins that
can build nothing but numeric arrays and bytes. Anything else a pickle names (``os.system``, a class) is refused
before it can run, with a one-line ``DatasetError``.
"""

from __future__ import annotations

import io
import os
import pickle

import numpy as np

from .dataset import DatasetError, read_file_bytes


class _Refused(pickle.UnpicklingError):
    """Something the restricted unpickler will not build."""


class _Sentinel:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"<{self.name}>"


_NDARRAY = _Sentinel("numpy.ndarray")
_NUMERIC_KINDS = "biufc"


def _text(value):
    return value.decode("latin1") if isinstance(value, (bytes, bytearray)) else value


class _DtypeStub:
    """Stands in for ``numpy.dtype(spec, align, copy)`` plus its ``__setstate__``: numeric dtypes only."""

    def __init__(self, spec, align=False, copy=False):
        spec = _text(spec)
        if not isinstance(spec, str):
            raise _Refused(f"refuses a dtype given as {type(spec).__name__}")
        try:
            dt = np.dtype(spec)
        except TypeError:
            raise _Refused(f"refuses dtype {spec!r}") from None
        if dt.kind not in _NUMERIC_KINDS or dt.fields is not None or dt.subdtype is not None:
            raise _Refused(f"refuses non-numeric dtype {spec!r}")
        self.dtype = dt

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) < 2:
            raise _Refused("malformed dtype state")
        order = _text(state[1])
        if len(state) > 3 and (state[2] is not None or state[3] is not None):
            raise _Refused("refuses a structured dtype")
        if order in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(order)


def _as_dtype(value):
    if isinstance(value, _DtypeStub):
        return value.dtype
    return _DtypeStub(value).dtype


class _ArrayStub:
    """Stands in for ``numpy.core.multiarray._reconstruct(ndarray, shape, typecode)``; its ``__setstate__`` builds
    the array from (version, shape, dtype, is_fortran, raw bytes), numeric dtypes only."""

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("malformed array state")
        shape, dtype, fortran, raw = state[-4:]
        dtype = _as_dtype(dtype)
        raw = raw.encode("latin1") if isinstance(raw, str) else raw
        if not isinstance(raw, (bytes, bytearray)):
            raise _Refused(f"refuses array data of type {type(raw).__name__} (object arrays)")
        self.array = _array_from(raw, dtype, shape, "F" if fortran else "C")


def _array_from(raw, dtype, shape, order):
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise _Refused(f"malformed array shape {shape!r}")
    count = int(np.prod(shape, dtype=np.int64))
    if count * dtype.itemsize != len(raw):
        raise _Refused(f"array of shape {shape} {dtype} needs {count * dtype.itemsize} bytes, "
                                     f"has {len(raw)}")
    return np.frombuffer(bytes(raw), dtype, count).reshape(shape, order=_text(order)).copy()


def _reconstruct(subtype, shape, typecode):
    if subtype is not _NDARRAY:
        raise _Refused("refuses to reconstruct an array subclass")
    return _ArrayStub()


def _frombuffer(buf, dtype, shape, order):  # numpy's protocol-5 array pickles
    raw = bytes(buf.raw() if isinstance(buf, pickle.PickleBuffer) else buf)
    return _array_from(raw, _as_dtype(dtype), tuple(shape), order)


def _codecs_encode(text, encoding="utf-8", errors="strict"):  # Python 3 protocol-2 pickles of bytes
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("refuses _codecs.encode other than text to latin-1 bytes")
    return text.encode("latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DtypeStub,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _codecs_encode,
}


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        found = _ALLOWED.get((module, name))
        if found is None:
            raise _Refused(f"refuses to load {module}.{name} (only plain data and numeric numpy "
                                         "arrays are read)")
        return found

    def persistent_load(self, pid):
        raise _Refused("refuses persistent ids")


_PLAIN = (bytes, str, int, float, bool, type(None), complex, bytearray)


def _resolve(obj, depth=0):
    """Stubs replaced by their arrays; anything but plain data refused."""
    if depth > 100:
        raise _Refused("nesting too deep")
    if isinstance(obj, _ArrayStub):
        if obj.array is None:
            raise _Refused("array without data")
        return obj.array
    if isinstance(obj, (np.ndarray, *_PLAIN)):
        return obj
    if isinstance(obj, dict):
        return {_resolve(k, depth + 1): _resolve(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve(v, depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v, depth + 1) for v in obj)
    if isinstance(obj, (set, frozenset)):
        return type(obj)(_resolve(v, depth + 1) for v in obj)
    raise _Refused(f"refuses an object of type {type(obj).__name__}")


def load_data_pickle(source, path=None):
    """Unpickle plain data (dicts, lists, tuples, str, bytes, numbers, numeric numpy arrays) from a file path or
    bytes, refusing anything else without running it. Python 2 strings come back as bytes (the CIFAR keys are
    b'data', b'labels', ...). Raises DatasetError naming the file."""
    if isinstance(source, (bytes, bytearray)):
        data, where = bytes(source), path or "<pickle>"
    else:
        data, where = read_file_bytes(source), path or os.fspath(source)
    try:
        obj = _DataUnpickler(io.BytesIO(data), encoding="bytes").load()
        return _resolve(obj)
    except _Refused as e:
        raise DatasetError(where, f"unsafe pickle refused: {e}") from None
    except pickle.UnpicklingError as e:
        problem = "truncated pickle" if "truncated" in str(e) else f"malformed pickle ({e})"
        raise DatasetError(where, problem) from None
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError,
            MemoryError, UnicodeDecodeError, RecursionError) as e:
        problem = "truncated pickle" if isinstance(e, EOFError) else f"malformed pickle ({type(e).__name__}: {e})"
        raise DatasetError(where, problem) from None
