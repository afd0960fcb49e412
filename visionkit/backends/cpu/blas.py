"""BLAS's GEMM called from inside Numba kernels, so that a parallel kernel can run im2col-style work and its GEMMs
on Numba's own threads with no Python in between.

Why: ``run_tiles`` hands tiles to Python threads, and every step of a tile (a Numba kernel, then numpy's GEMM, then
another kernel) takes the GIL back. With two workers those hand-offs queue behind each other: a 1x64x56x56
Winograd forward took 1.0-1.9 ms on two cores, while the same bands in one ``prange`` kernel calling GEMM directly
take 0.8 ms. (Measured: a wake-up costs 30-50 us here, and a band has six GIL hand-offs per worker.)

How: numpy's wheels ship OpenBLAS (scipy-openblas, 64-bit integers, symbols ``scipy_cblas_sgemm64_`` and
``scipy_cblas_dgemm64_``). Its address is registered with LLVM under a fixed name, and the kernels call
``types.ExternalFunction`` by that name, so they stay cacheable (``cache=True``) although the address changes from
one process to the next. Where numpy's BLAS lacks those symbols (a distribution's numpy, for instance),
``AVAILABLE`` is False and callers keep their Python-threaded paths (``VISIONKIT_KERNEL_BLAS=0`` asks for those
too).

BLAS must run single-threaded inside such kernels: callers hold it there with ``threads.single_threaded_blas``.
"""

import ctypes
import glob
import os

import llvmlite.binding as llvm
import numpy as np
from numba import njit, types

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
_SYMBOLS = {"sgemm": ("scipy_cblas_sgemm64_", "cblas_sgemm64_"), "dgemm": ("scipy_cblas_dgemm64_", "cblas_dgemm64_")}


def _numpy_blas_libraries():
    """Shared libraries bundled with numpy (its wheels' numpy.libs folder), OpenBLAS first."""
    root = os.path.dirname(os.path.dirname(np.__file__))
    found = glob.glob(os.path.join(root, "numpy.libs", "*openblas*")) + glob.glob(os.path.join(root, "numpy.libs", "*"))
    return list(dict.fromkeys(found))


def _register():
    """Register visionkit_sgemm / visionkit_dgemm with LLVM; True when both were found."""
    for path in _numpy_blas_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        addresses = {}
        for name, candidates in _SYMBOLS.items():
            for symbol in candidates:
                fn = getattr(lib, symbol, None)
                if fn is not None:
                    addresses[name] = ctypes.cast(fn, ctypes.c_void_p).value
                    break
        if len(addresses) == len(_SYMBOLS):
            for name, address in addresses.items():
                llvm.add_symbol("visionkit_" + name, address)
            return True
    return False


AVAILABLE = os.environ.get("VISIONKIT_KERNEL_BLAS", "1") != "0" and _register()

_i32, _i64, _ptr = types.int32, types.int64, types.uintp
_sgemm = types.ExternalFunction(
    "visionkit_sgemm",
    types.void(_i32, _i32, _i32, _i64, _i64, _i64, types.float32, _ptr, _i64, _ptr, _i64, types.float32, _ptr, _i64))
_dgemm = types.ExternalFunction(
    "visionkit_dgemm",
    types.void(_i32, _i32, _i32, _i64, _i64, _i64, types.float64, _ptr, _i64, _ptr, _i64, types.float64, _ptr, _i64))


@njit(nogil=True, cache=True)
def gemm_at(ta, tb, M, N, K, a, a0, lda, b, b0, ldb, c, c0, ldc, beta=0.0):
    """c[c0:] = op(a[a0:]) @ op(b[b0:]) + beta * c[c0:] on float32 or float64 arrays of any shape, each matrix
    starting at an element offset of its array's memory with its own leading dimension, row-major, op a transpose
    when ta / tb: the one BLAS call the other wrappers make, and what ``conv_block``'s channels-last GEMMs use (they
    read NCHW planes as transposed matrices). Only when ``AVAILABLE``."""
    opa = TRANS if ta else NO_TRANS
    opb = TRANS if tb else NO_TRANS
    s = a.itemsize
    # offsets as unsigned: Numba types uintp + int64 as float64
    pa, pb, pc = a.ctypes.data + np.uintp(a0 * s), b.ctypes.data + np.uintp(b0 * s), c.ctypes.data + np.uintp(c0 * s)
    if s == 4:
        _sgemm(ROW_MAJOR, opa, opb, M, N, K, np.float32(1.0), pa, lda, pb, ldb, np.float32(beta), pc, ldc)
    else:
        _dgemm(ROW_MAJOR, opa, opb, M, N, K, 1.0, pa, lda, pb, ldb, beta, pc, ldc)


@njit(nogil=True, cache=True)
def gemm(a, b, c, beta):
    """c = a @ b + beta * c for 2-D float32 or float64 arrays whose rows are contiguous (any row stride): one BLAS
    call. Only when ``AVAILABLE``."""
    M, K = a.shape
    gemm_at(False, False, M, b.shape[1], K, a, 0, a.strides[0] // a.itemsize, b, 0, b.strides[0] // b.itemsize, c,
            0, c.strides[0] // c.itemsize, beta)


@njit(nogil=True, cache=True)
def gemm_nt(a, b, c):
    """c = a @ b.T for 2-D float32 or float64 arrays whose rows are contiguous: b is (N, K), as a dense layer's
    (out, in) weight. One BLAS call. Only when ``AVAILABLE``."""
    M, K = a.shape
    gemm_at(False, True, M, b.shape[0], K, a, 0, a.strides[0] // a.itemsize, b, 0, b.strides[0] // b.itemsize, c,
            0, c.strides[0] // c.itemsize)
