"""The kernel warm-up covers what the live service then runs (``analytics.warm``)."""

from __future__ import annotations

import gc
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from analytics import warm
from analytics.warm import frozen_start_up

ROOT = Path(__file__).resolve().parent.parent

# In a fresh interpreter: in this one, other tests may already have called every kernel
# version, and a dispatcher's signatures would then say nothing about the warm-up.
PROBE = textwrap.dedent(
    """
    import numpy as np
    from numba.core.registry import CPUDispatcher

    import analytics.kernels as kernels
    from analytics.detectors import DETECTORS
    from analytics.engine.engine import ParkEngine
    from analytics.warm import warm_up
    from parkwatch.site import Park
    from simulators import DEMO_PARK
    from simulators.faults import random_schedule
    from tests.analytics_data import live_events, simulated_rows

    def versions():
        return {
            name: set(d.signatures)
            for name, d in vars(kernels).items()
            if isinstance(d, CPUDispatcher)
        }

    park = Park.from_yaml(DEMO_PARK)
    warm_up(park)
    before = versions()
    start = 1_795_968_000_000
    faults = random_schedule(park, start, start + 86_400_000, seed=3)
    rows = simulated_rows(park, start, 0.1, seed=3, faults=faults)
    live_events(ParkEngine(park, DETECTORS), park, rows)
    after = versions()
    print(sorted(n for n in after if after[n] - before[n]))
    """
)


def test_a_live_feed_after_the_warm_up_compiles_no_kernel_version() -> None:
    """The live service advances about once a minute, so its blocks are one slot wide, a
    version of its own for numba (review: ``gather_block`` compiled on the first live window
    after a warm-up fed only as replay feeds); after ``warm_up`` a live feed with faults
    needs no kernel version the warm-up did not make."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_freeze_for_a_run_in_a_callers_process_is_undone_after() -> None:
    """``frozen_start_up``: frozen when asked (once), unfrozen on leaving, even on an error;
    a caller that froze objects of its own keeps them frozen and gets nothing more frozen.
    (A frozen object that dies leaves the count: it may fall a little, never rise.)"""
    assert gc.get_freeze_count() == 0  # pytest's process freezes nothing
    with frozen_start_up() as freeze:
        assert gc.get_freeze_count() == 0  # not before it is asked
        freeze()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        junk = [[] for _ in range(1000)]  # tracked objects born after the freeze
        freeze()
        assert gc.get_freeze_count() <= frozen  # the second call froze nothing more
        del junk
    assert gc.get_freeze_count() == 0

    def failing() -> None:
        with frozen_start_up() as freeze:
            freeze()
            raise RuntimeError

    with pytest.raises(RuntimeError):
        failing()
    assert gc.get_freeze_count() == 0

    gc.freeze()  # the caller's own
    try:
        theirs = gc.get_freeze_count()
        junk = [[] for _ in range(1000)]
        with frozen_start_up() as freeze:
            freeze()
            assert 0 < gc.get_freeze_count() <= theirs
        assert 0 < gc.get_freeze_count() <= theirs  # theirs not thawed
        del junk
    finally:
        gc.unfreeze()


def test_the_allocator_is_set_to_keep_freed_memory_once_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``keep_freed_memory`` applies where the allocator is glibc's (mallopt accepts both
    thresholds) and says not where it is not; starting up (``freeze_start_up``, which the
    service, replay and the benchmark call) applies it."""
    assert warm.keep_freed_memory() is (platform.libc_ver()[0] == "glibc")
    calls: list[bool] = []

    def recording() -> bool:
        calls.append(True)
        return True

    monkeypatch.setattr(warm, "keep_freed_memory", recording)
    with frozen_start_up() as freeze:
        freeze()
    assert calls == [True]
