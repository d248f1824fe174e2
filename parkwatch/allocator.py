"""glibc's malloc told to keep the memory a service frees (``keep_freed_memory``): ingest and
analytics free and allocate the same memory over and over, and by default glibc hands it back
to the kernel and faults it in again (zeroed) each time."""

from __future__ import annotations

import ctypes
import platform

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# 32 MB is glibc's default upper bound for the moving threshold on 64-bit
# (DEFAULT_MMAP_THRESHOLD_MAX), not a limit mallopt enforces: blocks and their temporaries
# below it come from the heap
MMAP_THRESHOLD = 32 << 20


def keep_freed_memory(trim_threshold: int) -> bool:
    """Let glibc's malloc keep what the process frees for its next allocations (process-wide,
    for the rest of the process; returns whether it applies: glibc only, elsewhere nothing is
    done).

    By default glibc maps a large block afresh (mmap above a threshold that moves with what
    was freed) and gives a freed heap top back to the kernel (trim above twice that), so the
    next allocation faults every page in again and the kernel zeroes it. With fixed
    thresholds the heap keeps them; the process's peak memory is unchanged, but after a
    spike it keeps up to ``trim_threshold`` bytes of freed memory above its working set
    rather than returning it to the kernel.

    It cannot be undone, so only a process's own entry point calls it (``run_ingest``,
    ``run_analytics``), never a run inside a caller's process (replay, benchmarks, tests)."""
    if not 0 <= trim_threshold < 1 << 31:  # a C int: ctypes would wrap a larger one
        raise ValueError(f"trim_threshold {trim_threshold} outside 0 .. 2**31 - 1")
    if platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )
