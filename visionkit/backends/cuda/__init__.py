"""CUDA backend: ``@cuda.jit`` twins of ``visionkit.backends.cpu`` (same modules, functions, argument order).

Imported only when CUDA is asked for (numba-cuda costs ~0.3 s to import). Every function takes and returns Numba
device arrays; activations stay on the device from layer to layer, and only ``tensor.to_host`` copies back.
The contract is the docstring of ``visionkit.backends``.
"""

from contextlib import nullcontext as session  # noqa: F401  (nothing to hold around a model run)

import numpy as np
from numba import config, cuda  # noqa: F401  (fail here, clearly, when numba-cuda is missing)

# numba-cuda (0.30.4 and earlier) registers an overload for np.row_stack when it compiles its first kernel; numpy
# 2.5 removed that alias of vstack, and every kernel launch then failed (seen on an H200 with numpy 2.5.2).
if not hasattr(np, "row_stack"):
    np.row_stack = np.vstack

from . import act, conv, dense, gemm, memory, norm, pool, prelu, resize, tensor  # noqa: F401

# Small layers launch grids of fewer than 128 blocks by design (one image, few channels); Numba would warn at
# every such launch.
config.CUDA_LOW_OCCUPANCY_WARNINGS = 0
memory.install()

name = "cuda"
