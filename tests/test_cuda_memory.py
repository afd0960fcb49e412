"""The caching device allocator (visionkit/backends/cuda/memory.py) against a fake CUDA driver: cuMemAlloc and
cuMemFree are stood in for and every call to them is recorded, so no GPU is needed.

The allocator subclasses numba-cuda's real memory manager, which the simulator the other tests run under
replaces; so under the simulator, one test runs this file again in a child process with the simulator off.
"""

import gc
import os
import subprocess
import sys

import pytest

pytest.importorskip("numba.cuda")
SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
real_driver = pytest.mark.skipif(SIMULATOR, reason="run in a child process by test_outside_the_simulator")

from visionkit.backends.cuda.memory import caching_manager_class, rounded_size


@pytest.mark.skipif(not SIMULATOR, reason="already outside the simulator")
def test_outside_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", __file__], env=env,
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert " passed" in r.stdout and "run in a child process" not in r.stdout, r.stdout[-1000:]


drv = None  # numba.cuda.cudadrv.driver, imported by the fixture outside the simulator


class FakeDriver:
    def __init__(self, capacity):
        self.capacity, self.used, self.next = capacity, 0, 0x10000
        self.sizes, self.allocs, self.frees = {}, 0, 0

    def cuMemAlloc(self, size):
        if self.used + size > self.capacity:
            raise drv.CudaAPIError(drv.binding.CUresult.CUDA_ERROR_OUT_OF_MEMORY, "out of memory")
        ptr, self.next = self.next, self.next + size
        self.sizes[ptr] = size
        self.used += size
        self.allocs += 1
        return ptr

    def cuMemFree(self, ptr):
        self.used -= self.sizes.pop(ptr)
        self.frees += 1


class FakeContext:
    pass


@pytest.fixture
def manager(monkeypatch):
    global drv
    from numba.cuda.cudadrv import driver as drv

    fake = FakeDriver(capacity=1 << 20)
    monkeypatch.setattr(drv, "driver", fake)
    ctx = FakeContext()
    mm = caching_manager_class()(context=ctx)
    mm.ctx = ctx  # the manager holds only a weak proxy of its context
    return mm, fake


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 4000, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 << 20,
                                  12_345_678, 1 << 30])
def test_rounded_size_covers_the_request_with_little_waste(size):
    r = rounded_size(size)
    assert r >= max(size, 1) and r % 512 == 0
    assert r <= max(size, 1) * 1.125 + 512
    assert rounded_size(r) == r  # a rounded size is its own bucket


@real_driver
def test_a_freed_block_is_reused_without_the_driver(manager):
    mm, fake = manager
    a = mm.memalloc(1000)
    ptr = int(a.device_pointer)
    assert fake.allocs == 1 and mm.misses == 1
    del a
    gc.collect()
    assert mm.cached_bytes == rounded_size(1000) and fake.frees == 0
    b = mm.memalloc(900)  # same bucket
    assert int(b.device_pointer) == ptr and fake.allocs == 1 and mm.hits == 1 and mm.cached_bytes == 0
    c = mm.memalloc(900)  # the block is taken: a new one
    assert int(c.device_pointer) != ptr and fake.allocs == 2


@real_driver
def test_a_view_keeps_its_block_out_of_the_cache(manager):
    mm, _ = manager
    a = mm.memalloc(4096)
    view = a.view(1024)
    del a
    gc.collect()
    assert mm.cached_bytes == 0  # the view still uses the block
    del view
    gc.collect()
    assert mm.cached_bytes == 4096


@real_driver
def test_out_of_memory_releases_the_cache_and_retries(manager):
    mm, fake = manager
    blocks = [mm.memalloc(256 << 10) for _ in range(4)]  # the whole fake device
    del blocks
    gc.collect()
    assert mm.cached_bytes == 1 << 20 and fake.used == 1 << 20
    big = mm.memalloc(512 << 10)  # no bucket fits and the device is full: the cache goes back first
    assert fake.frees == 4 and mm.cached_bytes == 0 and fake.used == 512 << 10
    with pytest.raises(drv.CudaAPIError):
        mm.memalloc(1 << 20)  # nothing cached to release: the error reaches the caller
    del big


@real_driver
def test_reset_returns_the_cache_to_the_driver(manager):
    mm, fake = manager
    x = mm.memalloc(2048)
    del x
    gc.collect()
    mm.reset()
    assert fake.used == 0 and mm.cached_bytes == 0
