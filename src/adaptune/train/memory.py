"""Keep a CPU training process's resident memory at what it really holds.

glibc serves large allocations with ``mmap`` only up to a threshold that it raises by itself
whenever such a block is freed (up to 32 MiB). After the first optimizer step every activation
tensor of a step therefore comes from the heap, which glibc rarely gives back, and peak RSS
keeps growing from step to step. Fixing the threshold at 1 MiB (which also turns the adjustment
off) sends each large tensor to ``mmap`` and back to the system when freed, and peak RSS stays
flat. The price is a page fault per fresh page of every large tensor, a clear loss of
throughput, so it is opt-in (``TrainConfig.release_memory``; the figures:
``bench/results/hand_measurements.md`` and ``bench/train_throughput.py --release-memory``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
"""``mallopt`` parameter number in glibc's malloc.h."""
THRESHOLD = 1 << 20


def return_freed_memory(threshold: int = THRESHOLD) -> bool:
    """Fix glibc's mmap threshold for this process; ``False`` where that is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, threshold))
    if not done:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused; memory is left as glibc manages it")
    return done
