"""Device helpers: memory handed back to the OS between the phases of a long job."""

import sys
from pathlib import Path

import pytest
import torch

from visrep import device


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.skipif(not sys.platform.startswith("linux") or device._LIBC is None,
                    reason="glibc's malloc_trim is Linux/glibc only")  # fmt: skip
def test_release_memory_returns_freed_heap_to_the_os():
    # After torch frees a 64 MiB tensor, glibc raises its mmap threshold, so the next 1 MiB
    # tensors come from the heap and stay resident after they are freed (measured: +400 MiB
    # kept) until malloc_trim hands them back.
    big = torch.ones(64 * 2**20 // 4)
    del big
    device.release_memory()  # free heap left by earlier tests would absorb the allocations
    before = _rss_mib()
    kept = [torch.ones(2**18) for _ in range(300)]  # 300 x 1 MiB
    grown = _rss_mib() - before
    del kept
    device.release_memory()
    assert grown > 250
    assert _rss_mib() - before < 0.3 * grown
