"""``parkwatch bench ingest-path`` on a small load: every message goes through the whole
in-process path (all readings accepted, every chunk acknowledged) and each part is timed."""

from __future__ import annotations

import gc

from parkwatch import hotpath
from parkwatch_cli.bench_ingest_path import bench_ingest_path


def test_the_path_bench_times_every_part_per_batch_size() -> None:
    result = bench_ingest_path([1, 20], readings=400, chunk=8, repeats=1)
    assert result["messages_per_chunk"] == 8
    # which loops the figures are of: a fallback install must not pass for the compiled one
    assert result["compiled"] is hotpath.COMPILED
    figures = result["per_meters"]
    assert figures["1"]["messages"] == 400
    assert figures["20"]["messages"] == 20
    for sizes in figures.values():
        for part in ("parse", "encode", "path"):
            assert sizes[f"{part}_us_per_reading"] > 0


def test_the_path_bench_leaves_the_callers_gc_as_it_was() -> None:
    """The runs tune the GC as ingest does; a test process calling it must not keep that."""
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    result = bench_ingest_path([5], readings=100, chunk=8, repeats=1, gzip_level=1)
    assert result["gzip_level"] == 1
    assert gc.get_threshold() == threshold
    assert gc.get_freeze_count() == frozen
