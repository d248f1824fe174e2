"""The kernel warm-up covers what the live service then runs (``analytics.warm``)."""

from __future__ import annotations

import asyncio
import gc
import platform
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from analytics import service, warm
from analytics.settings import AnalyticsSettings
from analytics.warm import frozen_start_up
from parkwatch.site import SiteRegistry

ROOT = Path(__file__).resolve().parent.parent

# In a fresh interpreter: in this one, other tests may already have called every kernel
# version, and a dispatcher's signatures would then say nothing about the warm-up.
PROBE = textwrap.dedent(
    """
    import importlib
    import pkgutil

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
        modules = [
            importlib.import_module(f"analytics.kernels.{m.name}")
            for m in pkgutil.iter_modules(kernels.__path__)
        ]
        return {
            f"{module.__name__}.{name}": set(d.signatures)
            for module in modules
            for name, d in vars(module).items()
            if isinstance(d, CPUDispatcher) and d.py_func.__module__ == module.__name__
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


def test_only_the_services_entry_point_sets_the_allocator_to_keep_freed_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``keep_freed_memory`` applies where the allocator is glibc's (mallopt accepts both
    thresholds) and says not where it is not — called in a fresh interpreter, since it
    cannot be undone. ``run_analytics`` (the service's process) calls it before anything
    else; ``freeze_start_up`` and ``frozen_start_up``, which runs in a caller's process
    (replay, the benchmark, tests) reach, do not."""
    done = subprocess.run(
        [sys.executable, "-c", "from analytics import warm; print(warm.keep_freed_memory())"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.strip().splitlines()[-1] == str(platform.libc_ver()[0] == "glibc")

    calls: list[str] = []

    def recording() -> bool:
        calls.append("keep_freed_memory")
        return True

    monkeypatch.setattr(warm, "keep_freed_memory", recording)
    monkeypatch.setattr(service, "keep_freed_memory", recording)
    with frozen_start_up() as freeze:
        freeze()
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("gc.freeze"))
    warm.freeze_start_up()
    assert calls == ["gc.freeze"]  # neither set the allocator

    class Service:
        def __init__(self, settings: object, registry: object) -> None:
            calls.append("service")

        async def run(self, *, freeze_gc: bool = False) -> None:
            calls.append(f"run(freeze_gc={freeze_gc})")

    monkeypatch.setattr(service, "AnalyticsService", Service)
    monkeypatch.setattr(SiteRegistry, "from_files", staticmethod(lambda _: None))
    calls.clear()
    asyncio.run(service.run_analytics(cast(AnalyticsSettings, SimpleNamespace(sites=[]))))
    assert calls == ["keep_freed_memory", "service", "run(freeze_gc=True)"]


def test_pruning_removes_only_the_other_kernel_caches(tmp_path: Path) -> None:
    """Beside the current cache, only folders named ``kernels-`` and 16 hex digits go: not
    another program's folder in a shared ``NUMBA_CACHE_DIR``, a file, or a link's target."""
    current = tmp_path / "kernels-00112233aabbccdd"
    old = [tmp_path / "kernels-0123456789abcdef", tmp_path / "kernels-fedcba9876543210"]
    kept = [tmp_path / "kernels-old", tmp_path / "kernels-0123456789ABCDEF", tmp_path / "other"]
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    for folder in [current, *old, *kept, outside]:
        (folder / "kernels_1234").mkdir(parents=True)
        (folder / "kernels_1234" / "feeding.route_readings-10.py311.nbi").write_bytes(b"x")
    (tmp_path / "kernels-aaaaaaaaaaaaaaaa").write_bytes(b"a file")
    (tmp_path / "kernels-bbbbbbbbbbbbbbbb").symlink_to(outside)

    assert sorted(warm.prune_kernel_caches(current)) == old
    others = ["kernels-aaaaaaaaaaaaaaaa", "kernels-bbbbbbbbbbbbbbbb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [current.name, *(p.name for p in kept), *others]
    )
    assert (outside / "kernels_1234").is_dir()
    assert (current / "kernels_1234").is_dir()
    assert warm.prune_kernel_caches(tmp_path / "missing" / "kernels-00112233aabbccdd") == []
