"""A caching device allocator for Numba (its External Memory Management plugin interface), as PyTorch has.

Numba's own manager calls cuMemAlloc for every array and queues cuMemFree, which waits for the device to go
idle; a model run allocates a few arrays per layer, so on a GPU those calls cost more than the kernels do. This
manager keeps freed blocks in per-size free lists and hands them out again. Sizes are rounded up (to 512 bytes,
and above 1 MiB to an eighth of their power of two) so that blocks of nearly equal size are shared.

Handing a block back at once is safe because every visionkit kernel and copy runs on the default stream, in
order: a later kernel that reuses the block starts after the earlier ones that used it have finished.
When cuMemAlloc runs out of memory the cached blocks are released and the allocation is tried again.

Installed when the CUDA backend is imported, before the first allocation, unless the user has chosen a memory
manager of their own (NUMBA_CUDA_MEMORY_MANAGER) or set VISIONKIT_CUDA_ALLOCATOR=default.
"""

import os
import weakref
from collections import defaultdict

SMALL = 1 << 20  # below this, sizes round up to a multiple of 512 bytes


def rounded_size(size):
    """The block size an allocation of ``size`` bytes gets (never less than 512 bytes)."""
    size = max(int(size), 1)
    if size <= SMALL:
        return (size + 511) // 512 * 512
    step = 1 << (size.bit_length() - 4)  # an eighth of the power of two below size: at most 12.5% waste
    return (size + step - 1) // step * step


def install():
    """Make Numba allocate through ``CachingMemoryManager``; returns True when it is in use."""
    if os.environ.get("VISIONKIT_CUDA_ALLOCATOR", "caching") == "default":
        return False
    from numba import config, cuda

    if config.ENABLE_CUDASIM or config.CUDA_MEMORY_MANAGER != "default":
        return False  # the simulator has no device memory; a user's own manager wins
    cuda.set_memory_manager(caching_manager_class())
    return True


_CLASS = None


def caching_manager_class():
    """The plugin class (built on first use: numba-cuda's driver module loads the CUDA bindings)."""
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    from numba.cuda.cudadrv import driver as drv

    class CachingMemoryManager(drv.NumbaCUDAMemoryManager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.free_blocks = defaultdict(list)  # rounded size -> device pointers ready for reuse
            self.cached_bytes = 0
            self.hits = 0
            self.misses = 0

        def memalloc(self, size):
            rsize = rounded_size(size)
            blocks = self.free_blocks.get(rsize)
            if blocks:
                ptr = blocks.pop()
                self.cached_bytes -= rsize
                self.hits += 1
            else:
                ptr = self._device_alloc(rsize)
                self.misses += 1
            key = int(ptr)
            allocations, free_blocks, manager = self.allocations, self.free_blocks, weakref.ref(self)

            def give_back():  # the last reference to the block died: keep it for the next allocation
                allocations.pop(key, None)
                free_blocks[rsize].append(ptr)
                m = manager()
                if m is not None:
                    m.cached_bytes += rsize

            mem = drv.AutoFreePointer(weakref.proxy(self.context), ptr, rsize, finalizer=give_back)
            self.allocations[key] = mem
            return mem.own()

        def _device_alloc(self, rsize):
            try:
                return self._attempt_allocation(lambda: drv.driver.cuMemAlloc(rsize))
            except drv.CudaAPIError as e:
                if not self.cached_bytes or e.code != drv.binding.CUresult.CUDA_ERROR_OUT_OF_MEMORY:
                    raise
            self.empty_cache()
            return drv.driver.cuMemAlloc(rsize)

        def empty_cache(self):
            """Return every cached block to the driver (cuMemFree)."""
            for blocks in self.free_blocks.values():
                for ptr in blocks:
                    drv.driver.cuMemFree(ptr)
            self.free_blocks.clear()
            self.cached_bytes = 0

        def reset(self):
            super().reset()
            self.empty_cache()

    _CLASS = CachingMemoryManager
    return _CLASS
