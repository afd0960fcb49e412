"""Keep Numba's and OpenBLAS's thread pools from fighting over the cores.

Convolution alternates an ``@njit(parallel=True)`` im2col with an OpenBLAS GEMM. With Numba's OpenMP layer in its
default (active) wait policy, its idle workers spin while OpenBLAS runs, and on 2 cores that slowed im2col+GEMM
6-13x (DESIGN.md). A passive wait policy makes idle OpenMP workers sleep. This must happen before Numba starts its
thread pool, so ``visionkit/__init__.py`` imports this module first. A user's own setting wins.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
