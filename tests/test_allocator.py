"""``parkwatch.allocator.keep_freed_memory``: glibc's malloc keeps a freed block for the next
allocation (no page faults for it) where by default it gives it back to the kernel; ingest's
entry point sets it from its settings, and 0 leaves glibc's defaults."""

from __future__ import annotations

import asyncio
import platform
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ingest import service
from ingest.settings import IngestSettings
from parkwatch import allocator

ROOT = Path(__file__).resolve().parent.parent
GLIBC = platform.libc_ver()[0] == "glibc"

# In a fresh interpreter, since the setting cannot be undone: a 16 MB block (above glibc's
# default mmap threshold, below the fixed one) made, freed and made again; how many minor page
# faults the second one cost, and whether the setting applied
PROBE = textwrap.dedent(
    """
    import resource
    import sys

    from parkwatch.allocator import keep_freed_memory

    applied = keep_freed_memory(int(sys.argv[1])) if sys.argv[1] != "-" else None
    block = b"x" * (16 << 20)  # written through: every page faulted in
    del block
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = b"y" * (16 << 20)
    print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _probe(trim_threshold: int | None) -> tuple[str, int]:
    arg = "-" if trim_threshold is None else str(trim_threshold)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, arg], cwd=ROOT, capture_output=True, text=True, check=True
    )
    applied, faults = done.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not GLIBC, reason="what it changes is glibc's malloc")
def test_with_glibc_a_freed_block_is_reused_without_faulting_it_in_again() -> None:
    pages = (16 << 20) // 4096
    applied, faults = _probe(None)
    assert applied == "None"
    assert faults >= pages // 2  # the default: mapped afresh, every page faulted in again
    applied, faults = _probe(256 << 20)
    assert applied == "True"
    assert faults < pages // 20  # kept in the heap


def test_it_says_whether_it_applies_and_refuses_what_mallopt_cannot_take() -> None:
    applied, _ = _probe(64 << 20)
    assert applied == str(GLIBC)  # elsewhere: nothing done, and it says so
    for wrong in (-1, 1 << 31):
        with pytest.raises(ValueError, match="outside"):
            allocator.keep_freed_memory(wrong)


@pytest.mark.parametrize(("mb", "expected"), [(None, [256 << 20]), (64, [64 << 20]), (0, [])])
def test_ingests_entry_point_sets_the_allocator_from_its_settings(
    mb: int | None, expected: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On by default (256 MB); ``PW_INGEST_KEEP_FREED_MB=0`` leaves glibc's defaults."""
    monkeypatch.delenv("PW_INGEST_KEEP_FREED_MB", raising=False)
    if mb is not None:
        monkeypatch.setenv("PW_INGEST_KEEP_FREED_MB", str(mb))
    calls: list[Any] = []

    class StopError(Exception):
        pass

    def tune_gc() -> None:
        calls.append("tune_gc")
        raise StopError  # the rest (the service itself) is not this test's

    monkeypatch.setattr(service, "keep_freed_memory", calls.append)
    monkeypatch.setattr(service, "tune_gc", tune_gc)
    with pytest.raises(StopError):
        asyncio.run(service.run_ingest(IngestSettings()))
    assert calls == [*expected, "tune_gc"]
