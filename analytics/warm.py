"""Compiling the engine's kernels before data flows: numba compiles each kernel on first use
(``analytics.kernels``: about 5–9 s in all with an empty cache, then loaded from its cache),
so a service would otherwise analyse its first live window that much late. The warm-up also
removes the caches of other kernel sources (``prune_kernel_caches``)."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import platform
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from analytics.detectors import DETECTORS
from analytics.engine.engine import Batch, ParkEngine, Rows
from analytics.kernels.common import CACHE_DIR, CACHE_PREFIX
from parkwatch.site import Park

START_MS = 1_795_968_000_000  # any past time will do: the engine runs on data time

# glibc's mallopt parameters (malloc.h) and what they are set to by keep_freed_memory
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# 32 MB is glibc's default upper bound for the moving threshold on 64-bit
# (DEFAULT_MMAP_THRESHOLD_MAX), not a limit mallopt enforces: blocks and their temporaries
# below it come from the heap
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 512 << 20  # free memory at the heap's top kept up to this much


def prune_kernel_caches(current: Path = CACHE_DIR) -> list[Path]:
    """Remove the kernel caches beside ``current`` that other kernel sources wrote (folders
    named ``kernels-`` and 16 hex digits, nothing else: the root may be a shared
    ``NUMBA_CACHE_DIR``), so that a cache kept across upgrades does not grow with each one.
    Best effort: a folder that cannot be removed is left. Returns the folders removed.

    A process still running older sources only loses its cache: numba recreates the folder
    before it saves a kernel it compiles."""
    pattern = re.compile(re.escape(CACHE_PREFIX) + "[0-9a-f]{16}")
    removed: list[Path] = []
    try:
        siblings = list(current.parent.iterdir())
    except OSError:
        return removed
    for path in siblings:
        if path == current or not pattern.fullmatch(path.name):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                removed.append(path)
    return removed


def warm_up(park: Park, minutes: int = 60, live_minutes: int = 5) -> float:
    """Run a throwaway engine with every detector over ``minutes`` of made-up readings of
    ``park``'s meters (a gently varying value per instant series, a steadily rising counter)
    fed as replay feeds it, then ``live_minutes`` more fed as the live service feeds them (a
    batch per gateway and minute, an advance after each: blocks one slot wide, which numba
    compiles as their own versions), so that every kernel the park's detectors use is
    compiled or loaded. Returns the seconds it took; raises what a detector raises."""
    started = time.perf_counter()
    prune_kernel_caches()
    engine = ParkEngine(park, DETECTORS)
    step = engine.step_ms
    tree = engine.ctx.tree
    real = [
        (i, engine.gateway_no[tree.meters[k.meter].gateway])
        for i, k in enumerate(engine.series)
        if not tree.meters[k.meter].is_virtual
    ]
    if real:
        series = np.array([i for i, _ in real], dtype=np.int64)
        gateway = np.array([g for _, g in real], dtype=np.int64)
        counter = np.array([engine.ctx.is_counter(engine.series[i].quantity) for i, _ in real])
        n = series.size
        total = minutes + live_minutes
        wave = 1.0 + 0.1 * np.sin(np.arange(total)[:, None] / 7.0 + np.arange(n)[None, :])
        values = np.where(counter, 1000.0 + np.cumsum(wave, axis=0), 10.0 * wave)
        times = START_MS + np.arange(total, dtype=np.int64) * step
        t_ms = np.repeat(times[:minutes], n)
        engine.feed_rows(
            Rows(np.tile(series, minutes), t_ms, values[:minutes].ravel(),
                 np.tile(gateway, minutes), t_ms, np.zeros(t_ms.size, dtype=bool))
        )  # fmt: skip
        engine.advance(int(times[minutes - 1]))
        names = {no: name for name, no in engine.gateway_no.items()}
        for k in range(minutes, total):
            arrival = int(times[k]) + 300
            for g in np.unique(gateway).tolist():
                mine = gateway == g
                batch = Batch(
                    names[g], k + 1, series[mine], np.full(int(mine.sum()), times[k]),
                    values[k][mine], arrival,
                )  # fmt: skip
                engine.feed(batch)
            engine.advance(arrival)
        engine.finish()
    if engine.failed_detectors:
        raise RuntimeError(f"detectors failed on made-up readings: {engine.failed_detectors}")
    return time.perf_counter() - started


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep the memory an advance frees for the next one (process-wide,
    for the rest of the process; returns whether it applies: glibc only).

    Every advance allocates and frees the same tens of megabytes (the shared block, the
    detectors' temporaries, a table's next buffer). By default glibc maps a large block
    afresh (mmap above a threshold that moves with what was freed) and gives a freed heap
    top back to the kernel (trim above twice that), so the next advance faults every page
    in again and the kernel zeroes it: about a tenth of the engine's CPU at 10,000 meters.
    With fixed thresholds the heap keeps them; the process's peak memory is unchanged, but
    after a spike it keeps up to ``TRIM_THRESHOLD`` of freed memory above its working set
    rather than returning it to the kernel.

    It cannot be undone, so only a process's own entry point calls it (``run_analytics``),
    never a run inside a caller's process (replay, the benchmark, tests)."""
    if platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def freeze_start_up() -> None:
    """Once started (modules imported, kernels loaded, engines built): collect, then keep what
    is left out of the cyclic collector's full passes (``gc.freeze``, as ingest does). The
    detectors make short-lived tracked objects by the hundred thousand (peaks' demand points
    are named tuples, which CPython never untracks); enough of them reach the oldest
    generation to start a full collection every few hours of data, and each walked every
    long-lived object of the process — numba's and numpy's included — for ~90 ms.

    For a process's entry point only (``run_analytics``): the freeze is the whole process's
    and lasts to its end. A run inside a caller's process uses :func:`frozen_start_up`.
    (The allocator's setting, :func:`keep_freed_memory`, is the entry point's own call.)"""
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def frozen_start_up() -> Iterator[Callable[[], None]]:
    """:func:`freeze_start_up` for a run inside a caller's process (the replay command and the
    benchmark, which tests call): yields the freeze, to call once start-up is over (again is a
    no-op); on leaving, what it froze is unfrozen, so the caller's collector is as it was. If
    the caller has frozen objects of its own, nothing more is frozen: unfreezing ours would
    thaw theirs too."""
    ours = gc.get_freeze_count() == 0
    froze = False

    def freeze() -> None:
        nonlocal froze
        if ours and not froze:
            freeze_start_up()
            froze = True

    try:
        yield freeze
    finally:
        if froze:
            gc.unfreeze()
