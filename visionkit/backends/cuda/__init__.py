"""CUDA backend: ``@cuda.jit`` twins of ``visionkit.backends.cpu`` (same modules, functions, argument order).

Imported only when CUDA is asked for (numba-cuda costs ~0.3 s to import). Every function takes and returns Numba
device arrays; activations stay on the device from layer to layer, and only ``tensor.to_host`` copies back.
The contract is the docstring of ``visionkit.backends``.
"""

from contextlib import nullcontext as session  # noqa: F401  (nothing to hold around a model run)

from numba import cuda  # noqa: F401  (fail here, clearly, when numba-cuda is missing)

from . import act, conv, dense, gemm, norm, pool, prelu, resize, tensor  # noqa: F401

name = "cuda"
