"""Test-wide setup: CUDA kernels run under Numba's simulator (tiny shapes only), never on a real GPU here."""

import os

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
