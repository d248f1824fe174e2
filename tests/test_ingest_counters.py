"""Ingest's counter watch on its own: which readings a counter going back flags."""

from __future__ import annotations

from pathlib import Path

from ingest.counters import CounterWatch
from parkwatch.site import Park, SiteRegistry
from parkwatch.wire import AcceptedReading


def test_a_reading_the_gateway_marked_bad_is_no_reference(demo_park_path: Path) -> None:
    """A ``bad`` reading's value is untrusted (a garbled register can read 1e12): the next good
    reading is compared with the last trusted one, not flagged ``decreased`` against garbage."""
    meter = SiteRegistry([Park.from_yaml(demo_park_path)]).park_meters("lj-demo")["steelco-main"]
    readings = [
        AcceptedReading(meter, 1_000, {"e_kwh": 100.0}),
        AcceptedReading(meter, 2_000, {"e_kwh": 1e12}, "bad"),
        AcceptedReading(meter, 3_000, {"e_kwh": 101.0}),
        AcceptedReading(meter, 4_000, {"e_kwh": 50.0}),  # a real fall: still flagged
    ]
    decreases = CounterWatch().flag(readings)
    assert [r.s for r in readings] == ["ok", "bad", "ok", "decreased"]
    assert [(d.before, d.after) for d in decreases] == [(101.0, 50.0)]
