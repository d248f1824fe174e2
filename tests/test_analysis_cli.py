"""``parkwatch replay`` and ``parkwatch score`` as a user runs them, on files written by hand."""

from __future__ import annotations

import gc
import json
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from parkwatch_cli.app import app

SHANGHAI = timezone(timedelta(hours=8))
PARK = """\
park: mine
timezone: Asia/Shanghai
meters:
  - {id: main, utility: electricity, contracted_demand_kw: 500}
  - {id: pv, utility: electricity, role: pv, parent: main}
"""


def test_replay_takes_a_users_export_in_any_order_and_reports_its_bad_rows(
    tmp_path: Path,
) -> None:
    """Columns in another order with odd capitals and an extra one, a byte-order mark, CRLF
    line ends, rows in no order, times as ISO with an offset and as epoch milliseconds, and
    bad rows: the good rows are analysed, the bad ones listed by line."""
    park = tmp_path / "park.yaml"
    park.write_text(PARK, encoding="utf-8")
    start = datetime(2026, 11, 30, 9, 0, tzinfo=SHANGHAI)
    rows = []
    for k in range(60):
        t = start + timedelta(minutes=k)
        power = 700.0 if 15 <= k < 30 else 300.0  # 09:15-09:30 runs 200 kW over the contract
        rows.append(f"{power},p_kw,main,{t.isoformat()},x")
        rows.append(f"40,p_kw,pv,{int(t.timestamp() * 1000)},x")
    random.Random(1).shuffle(rows)
    bad = ["abc,p_kw,main,2026-11-30T09:00:00+08:00,x", "1,p_kw,main,2026-11-30T09:00:00,x"]
    lines = ["Value, Quantity ,METER,time,extra", *rows[:10], *bad, *rows[10:]]
    readings = tmp_path / "export.csv"
    readings.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8-sig"))
    out = tmp_path / "EVENTS.jsonl"
    result = CliRunner().invoke(
        app, ["replay", "--park", str(park), "--readings", str(readings), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "120 analysed" in result.output
    assert "0 late" in result.output
    assert "line 12: value 'abc' is not a number" in result.output
    assert "line 13: time '2026-11-30T09:00:00' has no UTC offset" in result.output
    [peak] = [json.loads(line) for line in out.read_text().splitlines()]
    assert peak["kind"] == "demand_peak"
    assert peak["meter"] == "main"
    assert peak["detected_at"] == "2026-11-30T09:17:00+08:00"
    assert peak["end"] == "2026-11-30T09:45:00+08:00"
    assert peak["evidence"]["minutes_left"] == 13.0


def test_replay_freezes_its_start_up_after_the_first_stretch_and_unfreezes_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command freezes what start-up built (``warm.freeze_start_up``) once the first
    stretch has loaded the kernels, as its own process; called inside another process (this
    one, as tests do) it leaves that process's collector as it was."""
    import analytics.warm as warm
    from analytics.engine.engine import ParkEngine

    fed: list[int] = []
    feed_rows = ParkEngine.feed_rows

    def counting(self: ParkEngine, rows: Any) -> Any:
        fed.append(int(rows.t_ms.size))
        return feed_rows(self, rows)

    frozen_at: list[tuple[int, int]] = []  # (stretches fed, objects frozen) at the freeze
    freeze = warm.freeze_start_up

    def recording() -> None:
        freeze()
        frozen_at.append((len(fed), gc.get_freeze_count()))

    monkeypatch.setattr(ParkEngine, "feed_rows", counting)
    monkeypatch.setattr(warm, "freeze_start_up", recording)
    park = tmp_path / "park.yaml"
    park.write_text(PARK, encoding="utf-8")
    start = datetime(2026, 11, 30, 9, 0, tzinfo=SHANGHAI)
    readings = tmp_path / "three_hours.csv"
    readings.write_text(
        "time,meter,quantity,value\n"
        + "".join(
            f"{(start + timedelta(minutes=k)).isoformat()},{m},p_kw,{v}\n"
            for k in range(180)
            for m, v in (("main", 300.0), ("pv", 40.0))
        ),
        encoding="utf-8",
    )
    before = gc.get_freeze_count()
    result = CliRunner().invoke(
        app,
        ["replay", "--park", str(park), "--readings", str(readings), "--out",
         str(tmp_path / "EVENTS.jsonl"), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(fed) >= 3  # three hours: a stretch each
    [(stretches, objects)] = frozen_at
    assert stretches == 1
    assert objects > before
    assert gc.get_freeze_count() == before


def test_score_nab_counts_the_series_alarms_not_its_meter_faults(tmp_path: Path) -> None:
    """A replay of one series through every detector also reports meter faults (a gap in an
    irregular series is silence): they say the measurement is wrong, not that the series is
    anomalous, and NAB's score takes only the series' own alarms."""
    start = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
    times = [start + timedelta(minutes=5 * k) for k in range(400)]
    readings = tmp_path / "one.csv"
    readings.write_text(
        "time,meter,quantity,value\n"
        + "".join(f"{t.isoformat()},m,value,{k % 7}\n" for k, t in enumerate(times)),
        encoding="utf-8",
    )
    windows = tmp_path / "windows.json"
    windows.write_text(json.dumps([[times[300].isoformat(), times[320].isoformat()]]))

    def event(kind: str, family: str, row: int) -> str:
        at = (times[row] + timedelta(minutes=5)).isoformat()
        return json.dumps(
            {"id": f"{kind}-{row}", "kind": kind, "family": family, "state": "closed",
             "park": "p", "zone": None, "meter": "m", "start": at, "detected_at": at,
             "end": at, "severity": "minor", "estimate": None, "evidence": {}}
        )  # fmt: skip

    events = tmp_path / "EVENTS.jsonl"
    events.write_text(
        event("baseline_deviation", "consumption", 301) + "\n"
        + event("comm_loss", "meter_fault", 200) + "\n"
    )  # fmt: skip
    result = CliRunner().invoke(
        app,
        ["score", "nab", "--events", str(events), "--readings", str(readings),
         "--windows", str(windows)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    standard = result.output.splitlines()[0]
    assert "windows 1/1" in standard
    assert "false alarms 0" in standard
