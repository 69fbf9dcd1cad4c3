import platform

import numpy as np
import pytest

from dpaudit.training.memory import release_freed_memory


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_trim_returns_fragmented_heap_to_the_os():
    # Many mid-sized blocks (below glibc's mmap threshold, so they live in the heap), then free all but
    # a few scattered survivors: the heap can't shrink from the top, only malloc_trim hands it back.
    blocks = [np.ones(12_000, dtype=np.float64) for _ in range(6_000)]  # 96 KB each, 576 MB in all
    keep = blocks[::300]
    del blocks
    before = _rss_mb()
    assert release_freed_memory() is True
    after = _rss_mb()
    assert keep and after < before - 300, (before, after)
