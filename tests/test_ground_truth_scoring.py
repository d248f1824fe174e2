"""``score truth``: events against a simulator's ground truth, fault by fault."""

from __future__ import annotations

import json
from pathlib import Path

from analytics.scoring.ground_truth import load_faults, score_events
from parkwatch.events import Event, Family, Severity, State

T0 = 1_795_968_000_000
MIN = 60_000


def event(kind: str, meter: str, detected_at: int) -> Event:
    return Event(
        id=f"{kind}/{meter}/{detected_at}",
        kind=kind,
        family=Family.METER_FAULT,
        state=State.OPENED,
        park="p",
        meter=meter,
        zone=None,
        start_ms=detected_at,
        detected_at_ms=detected_at,
        end_ms=None,
        severity=Severity.MINOR,
    )


def test_a_fault_still_on_when_the_run_stopped_is_open_ended(tmp_path: Path) -> None:
    """A live run's ground truth leaves ``end`` null for a fault still on: it is on until the
    end, not a point in time that a detection two hours on would miss."""
    truth = tmp_path / "ground_truth.jsonl"
    truth.write_text(
        json.dumps({"id": 0, "kind": "stuck_value", "meter": "m1", "start": T0, "end": None}) + "\n"
    )
    faults = load_faults(truth)
    report = score_events([event("stuck_value", "m1", T0 + 120 * MIN)], faults)
    [score] = report.kinds
    assert (score.faults, score.detected, score.right_place, score.false_events) == (1, 1, 1, 0)
    assert score.median_delay_min == 120.0
