"""How long Numba's idle OpenMP workers wait awake for the next kernel: about 2 ms, then they sleep.

Two costs pull apart here:
- Waking a sleeping worker costs 30-50 us on this project's 2-core machine. A network at batch 1 launches one or
  more kernels per layer, tens of microseconds apart; with workers that sleep at once (``OMP_WAIT_POLICY=
  passive``) MobileNetV2 paid that wake-up 65 times a run, and small layers ran faster on one thread.
- Workers that spin long (libgomp's default is ~7 ms here; ``active`` spins for ever) take a core from whatever
  runs next outside Numba: DESIGN.md measured im2col + a multi-threaded OpenBLAS GEMM slowed 6-13x that way.

A bounded spin keeps the workers awake between the layers of one run and lets them sleep after it. Measured, 8
alternated rounds each (median of per-round medians, batch 1, ``visionkit bench``'s models): MobileNetV2 17.8 ->
15.6 ms and ResNet-18 30.9 -> 27.1 ms with ``GOMP_SPINCOUNT=100000`` (~2 ms of spinning after a kernel) against
``passive``; 30,000 spins gained less; the MNIST CNN's training steps were unchanged (2.06-2.40 s against
1.89-2.31 s for 60 steps). OpenBLAS no longer runs threads of its own beside Numba's (visionkit holds it to one).

Set before Numba starts its pool, so ``visionkit/__init__.py`` imports this module first. A user's own
``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT`` or ``KMP_BLOCKTIME`` wins. ``KMP_BLOCKTIME`` (ms) is the same bound for
the Intel and LLVM OpenMP runtimes, whose default is 200 ms.
"""

import os

SPIN_COUNT = "100000"  # libgomp's pause loop: ~2 ms here
BLOCK_TIME_MS = "2"

if not any(v in os.environ for v in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")):
    os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    os.environ["KMP_BLOCKTIME"] = BLOCK_TIME_MS
