"""visionkit: a small CNN vision toolkit whose kernels are Numba (CPU @njit, CUDA @cuda.jit)."""

from . import _threads  # noqa: F401  (must run before Numba starts its thread pool)
from . import ops
from .device import cuda_available, resolve_device

__version__ = "0.1.0"

__all__ = ["ops", "cuda_available", "resolve_device", "__version__"]

try:  # the model graph lands next to the ops; keep `import visionkit` working while it is being written
    from . import layers  # noqa: F401
    from .model import Input, Model, Sequential  # noqa: F401
    from .weights import load_model  # noqa: F401
    __all__ += ["layers", "Input", "Model", "Sequential", "load_model"]
except ImportError:  # pragma: no cover
    pass
