"""Device selection: ``"auto" | "cpu" | "cuda"``.

numba-cuda is optional and costs ~0.3 s to import, so nothing here imports it until CUDA is asked for.
"auto" picks CUDA when a real driver and GPU answer, and otherwise falls back to the CPU silently; the CUDA
simulator (NUMBA_ENABLE_CUDASIM=1, used by the tests) is not a GPU and never wins "auto".
"""

import functools
import os

import numpy as np

DEVICES = ("auto", "cpu", "cuda")


def cuda_available():
    """True when numba-cuda is installed and a real CUDA driver and device answer."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False
    try:
        from numba import cuda
    except Exception:  # numba-cuda missing or broken: no CUDA
        return False
    try:
        return bool(cuda.is_available())
    except Exception:
        return False


def resolve_device(device="auto"):
    """Turn "auto" into "cpu" or "cuda"; reject anything else with a clear error."""
    if device is None:
        device = "auto"
    device = str(device).lower()
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda":
        _require_cuda()
    return device


@functools.lru_cache(maxsize=None)
def _require_cuda():
    """Checked once per process: ops call get_backend("cuda") for every array, and asking the driver is slow."""
    try:
        from numba import cuda
    except Exception as e:  # pragma: no cover - depends on the install
        raise RuntimeError("device 'cuda' needs numba-cuda: pip install visionkit[cuda]") from e
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return  # the simulator stands in for a GPU in tests
    if not cuda.is_available():
        raise RuntimeError("device 'cuda' asked for, but no CUDA driver or GPU is available")


def is_device_array(a):
    """True for a Numba CUDA device array (the simulator's fake ones included) or any __cuda_array_interface__."""
    if isinstance(a, np.ndarray):
        return False
    return hasattr(a, "__cuda_array_interface__") or type(a).__module__.startswith("numba.cuda")


def backend_name(a):
    return "cuda" if is_device_array(a) else "cpu"


_cpu = None


def get_backend(name):
    """The backend package ``visionkit.backends.<name>`` (CUDA imported lazily)."""
    global _cpu
    if name == "cpu":
        if _cpu is None:  # (every op call asks: an import statement each time cost ~1 us)
            from .backends import cpu

            _cpu = cpu
        return _cpu
    if name == "cuda":
        _require_cuda()
        from .backends import cuda
        return cuda
    raise ValueError(f"unknown backend {name!r}")


def backend_of(a):
    return get_backend(backend_name(a))
