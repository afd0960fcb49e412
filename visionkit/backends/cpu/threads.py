"""How the CPU backend uses the cores: one pool at a time, never two fighting.

Two kinds of parallel work run here:
- Numba ``prange`` kernels (pooling, activations, direct convolutions). Launching one wakes Numba's workers: next
  to nothing while they still spin after the previous kernel (visionkit/_threads.py bounds that to ~2 ms), 15-50
  us once they sleep; for small tensors that is more than the work, so ``launch`` runs small kernels on the
  calling thread alone.
- im2col + GEMM convolutions. DESIGN.md measured Numba's and OpenBLAS's pools slowing each other 6-13x. Here the
  work is cut into tiles that fit in L2 and ``run_tiles`` hands them to a pool of Python threads (Numba's
  ``nogil`` kernels and numpy's GEMM both release the GIL), each tile running its im2col and a single-threaded
  GEMM back to back, so the columns are still in cache when the GEMM reads them. OpenBLAS is held to one thread
  for the duration (through threadpoolctl) and restored afterwards.

visionkit never lets OpenBLAS run its own threads: after a multi-threaded GEMM, OpenBLAS's workers spin for ~0.1 s
waiting for the next one, taking a core from whatever runs next (measured: the MNIST CNN at batch 256 ran 2x
slower, 69 ms against 35 ms, because the Dense layer's GEMM woke them before every convolution). So every GEMM,
the dense layers' included, goes through ``gemm`` / ``run_tiles`` with BLAS held to one thread, and a model's
forward and backward hold it for their whole run (``single_threaded_blas``).
"""

import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numba
import numpy as np

# Kernels with less work than this (elements touched) run on one thread: waking the pool costs more. Raised from
# 32k to 128k while idle workers slept at once (MobileNetV2 at batch 1 35 -> 27 ms, the MNIST CNN at batch 1
# 0.61 -> 0.36 ms), lowered back to 32k once they spin between kernels (visionkit/_threads.py), with
# KERNEL_MIN_FLOPS: MobileNetV2 at batch 1 15.5 -> 13.3 ms (median of 6 alternated rounds, one process).
PARALLEL_MIN_WORK = 1 << 15
# One-kernel GEMM jobs (conv_blas, the Winograd runs) under this many flops run on one thread.
KERNEL_MIN_FLOPS = 5e6
# Jobs for the Python pool under this many flops run their tiles on the calling thread: its hand-offs go through
# the GIL and cost more than a kernel's.
PARALLEL_MIN_FLOPS = 3e7

_pool = None
_pool_lock = threading.Lock()
_blas = None


_thread_counts = None


def _counts():
    """(get, set) of the calling thread's Numba thread count. Numba's public pair checks and locks around the
    threading layer's own C functions at every call; two of them made up ~8 of a small layer call's 16-20 us. So
    once Numba's threads are up, its C functions directly (the same ones numba.set_num_threads ends in); the
    public pair where this Numba has no such attributes."""
    global _thread_counts
    if _thread_counts is None:
        counts = (numba.get_num_threads, numba.set_num_threads)
        try:
            from numba.np.ufunc import parallel

            numba.get_num_threads()  # starts the threads, which sets the C functions
            if callable(parallel._get_num_threads) and callable(parallel._set_num_threads):
                counts = (parallel._get_num_threads, parallel._set_num_threads)
        except (ImportError, AttributeError):
            pass
        _thread_counts = counts
    return _thread_counts


def num_workers():
    return max(1, int(_counts()[0]()))


def kernel_workers(flops):
    """Threads a one-kernel job of ``flops`` runs on: all of Numba's, or one below KERNEL_MIN_FLOPS."""
    return num_workers() if flops >= KERNEL_MIN_FLOPS else 1


def run_bounds(n, parts):
    """Bounds of ``parts`` contiguous, near-equal runs over n items: run r is items b[r] to b[r + 1] - 1. Fixed
    runs, not a shared queue, where each run sums into its own accumulator (bitwise-repeatable results)."""
    return [i * n // parts for i in range(parts + 1)]


def launch(kernel, work, *args):
    """Call a ``parallel=True`` kernel, on this thread alone when ``work`` is small."""
    if work >= PARALLEL_MIN_WORK:
        return kernel(*args)
    get, set_ = _counts()
    prev = get()
    if prev == 1:
        return kernel(*args)
    set_(1)
    try:
        return kernel(*args)
    finally:
        set_(prev)


def _executor():
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=num_workers(), thread_name_prefix="visionkit-cpu")
        return _pool


def _blas_controllers():
    """threadpoolctl's handles on the BLAS libraries loaded in this process (empty when unavailable)."""
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController
            _blas = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        except Exception:  # threadpoolctl missing or confused: GEMMs keep their default threads
            _blas = []
    return _blas


class single_threaded_blas:
    """Hold BLAS to one thread while tiles run; nested or concurrent users share one save/restore (the BLAS
    thread count is process-wide), the last one out restoring it."""

    _lock = threading.Lock()
    _depth = 0
    _saved = []

    def __enter__(self):
        cls = single_threaded_blas
        with cls._lock:
            if cls._depth == 0:
                cls._saved = [(c, c.num_threads) for c in _blas_controllers()]
                for c, n in cls._saved:
                    if n != 1:
                        c.set_num_threads(1)
            cls._depth += 1
        return self

    def __exit__(self, *exc):
        cls = single_threaded_blas
        with cls._lock:
            cls._depth -= 1
            if cls._depth == 0:
                for c, n in cls._saved:
                    if n != 1:
                        c.set_num_threads(n)


def run_tiles(tiles, fn, flops, make_state=None):
    """Call fn(tile, state) for every tile on the pool. Returns the states.

    Without make_state, the workers take the next tile as they finish one (tiles write disjoint outputs). With
    it (e.g. a gradient accumulator per worker), the tiles are cut into one contiguous run per worker, each run
    summed into its own state in tile order, and the states come back in run order: which thread ran which run
    cannot change a bit of the result, so training is bitwise repeatable (a shared queue made each worker's sum
    depend on timing, and two identical training runs differed from the first epoch).

    Small jobs, a single tile, and calls from inside a worker run on the calling thread.
    """
    workers = min(num_workers(), len(tiles))
    if workers <= 1 or flops < PARALLEL_MIN_FLOPS or threading.current_thread().name.startswith("visionkit-cpu"):
        state = make_state() if make_state else None
        with single_threaded_blas():
            for t in tiles:
                fn(t, state)
        return [state]
    if make_state is not None:
        bounds = run_bounds(len(tiles), workers)
        runs = [tiles[a:b] for a, b in zip(bounds, bounds[1:])]

        def worker(run):
            state = make_state()
            for t in run:
                fn(t, state)
            return state

        jobs = [(worker, run) for run in runs]
    else:
        queue = iter(tiles)
        lock = threading.Lock()

        def worker():
            while True:
                with lock:
                    t = next(queue, None)
                if t is None:
                    return None
                fn(t, None)

        jobs = [(worker,)] * workers
    with single_threaded_blas():
        futures = [_executor().submit(*job) for job in jobs]
        wait(futures)  # all of them, even when one failed, before BLAS gets its threads back
    return [f.result() for f in futures]


def gemm(a, b, out=None):
    """out = a @ b for 2-D float arrays (any strides numpy's matmul takes), on visionkit's pool: the longer of
    the output's two sides is cut into one slab per worker, each a single-threaded BLAS call."""
    M, N = a.shape[0], b.shape[1]
    if out is None:
        out = np.empty((M, N), np.result_type(a, b))
    workers = num_workers()
    along_rows = M >= N or M >= 64 * workers
    size = M if along_rows else N
    step = -(-size // workers)

    def slab(t, _):
        lo, hi = t
        if along_rows:
            np.matmul(a[lo:hi], b, out=out[lo:hi])
        else:
            np.matmul(a, b[:, lo:hi], out=out[:, lo:hi])

    run_tiles([(lo, min(lo + step, size)) for lo in range(0, size, step)], slab, 2.0 * M * N * a.shape[1])
    return out
