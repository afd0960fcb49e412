"""visionkit: a small CNN vision toolkit whose kernels are Numba (CPU @njit, CUDA @cuda.jit)."""

from . import _threads  # noqa: F401  (must run before Numba starts its thread pool)
from . import _memory  # noqa: F401  (malloc keeps the pages of freed activations for the next ones)
from . import layers, ops
from .device import cuda_available, resolve_device
from .hookspecs import hookimpl
from .layers.base import reset_names
from .layers.initializers import set_seed
from .model import Input, Model, Sequential
from .weights import load_model

__version__ = "0.1.0"

__all__ = [
    "ops", "layers", "Input", "Model", "Sequential", "load_model", "set_seed", "reset_names", "hookimpl",
    "cuda_available", "resolve_device", "__version__",
]
