"""The trainer hands freed activation memory back to the system (glibc's mmap threshold)."""

from __future__ import annotations

import platform
import sys

import pytest
import torch

from adaptune.train.memory import return_freed_memory


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        line = next(ln for ln in fh if ln.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt is glibc's",
)
def test_large_freed_tensors_leave_the_process() -> None:
    assert return_freed_memory()
    keep = [torch.ones(1000) for _ in range(100)]  # small blocks on the heap stay
    before = _rss_mb()
    for _ in range(5):
        big = [torch.ones(2_000_000) for _ in range(8)]  # 8 MB each: mmap'd, then unmapped
        big.append(torch.ones(10))  # a small block after them would pin a heap top
        del big
    assert _rss_mb() - before < 24
    assert keep
