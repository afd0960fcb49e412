"""The CPU backend: ``@njit(parallel=True, cache=True)`` kernels plus numpy's BLAS for GEMMs."""

from . import act, conv, dense, norm, pool, prelu, resize, tensor  # noqa: F401
from .threads import single_threaded_blas as session  # noqa: F401

name = "cpu"
