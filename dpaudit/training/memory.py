"""Give freed heap memory back to the operating system.

DP-SGD with Poisson sampling allocates differently sized per-example tensors at every step. glibc's
allocator keeps the freed chunks in its heap, fragmented, so a training process grows by hundreds of
MB per epoch and never shrinks. Measured on Fashion-MNIST (30,000 records, one DP epoch): peak RSS
1.41 GB untrimmed, 1.21 GB trimming every 10 steps, with no loss of speed. Forcing large blocks to
mmap instead (M_MMAP_THRESHOLD) bounds memory too but doubled the epoch time, because every step then
faults in fresh pages.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

TRIM_EVERY_STEPS = 10


@functools.lru_cache(maxsize=1)
def _libc_trim():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        return None


def release_freed_memory() -> bool:
    """malloc_trim(0) where glibc provides it; True when it ran."""
    trim = _libc_trim()
    if trim is None:
        return False
    trim(0)
    return True
