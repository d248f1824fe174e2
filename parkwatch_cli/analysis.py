"""``parkwatch replay`` and ``parkwatch score``: history through the analytics engine, and how
well the events it raised match what was known to be wrong.

``replay`` reads a ``time,meter,quantity,value`` CSV (``parkwatch.readings_csv``), runs it
through the same engine and detectors as the live service (``analytics.replay``), and writes
each event's last state as one JSON line. ``score`` compares an EVENTS.jsonl with a simulator's
``ground_truth.jsonl`` fault by fault, or with NAB-style anomaly windows of one series.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from parkwatch.logs import setup_logging

score_app = typer.Typer(
    help="How well events match the truth: fault by fault (a simulator's ground truth) or by "
    "NAB's method (anomaly windows of one series).",
    no_args_is_help=True,
)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _park(path: Path) -> Any:
    from parkwatch_cli.errors import UserError, load_park

    try:
        return load_park(path)
    except UserError as exc:
        raise _fail(str(exc)) from None


def replay(
    park: Annotated[Path, typer.Option("--park", help="the park.yaml the readings belong to")],
    readings: Annotated[
        Path, typer.Option("--readings", help="time,meter,quantity,value CSV (.gz too)")
    ],
    out: Annotated[Path, typer.Option("--out", help="where EVENTS.jsonl goes")],
    progress: Annotated[
        bool, typer.Option(help="a progress bar (default: on a terminal)")
    ] = sys.stderr.isatty(),
) -> None:
    """Replay a history through the analytics engine, as fast as it goes."""
    from analytics.detectors import DETECTORS
    from analytics.engine.engine import ParkEngine
    from analytics.replay import replay as run_replay
    from analytics.warm import frozen_start_up
    from parkwatch.readings_csv import ReadingsFormatError, read_readings

    setup_logging("WARNING")
    site = _park(park)
    try:
        rows = read_readings(readings)
    except FileNotFoundError:
        raise _fail(f"{readings}: no such file") from None
    except ReadingsFormatError as exc:
        raise _fail(f"{readings}: {exc}") from None
    engine = ParkEngine(site, DETECTORS)
    # frozen once the first stretch has loaded the kernels: what is built by then lives to
    # the end (see warm.freeze_start_up); unfrozen after, for a caller's process (tests)
    with frozen_start_up() as freeze:
        if progress:
            from rich.progress import Progress

            with Progress(transient=True) as bar:
                task = bar.add_task("replaying", total=max(1, int(rows.t_ms.size)))
                report = run_replay(
                    engine,
                    rows,
                    progress=lambda done, _: bar.update(task, completed=done),
                    started=freeze,
                )
        else:
            report = run_replay(engine, rows, started=freeze)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as fh:
        for event in report.events:
            fh.write(event.to_bytes(site.zone) + b"\n")
    bad = rows.bad_rows
    kinds = Counter(e.kind for e in report.events)
    typer.echo(
        f"{report.rows + len(bad):,} rows: {report.used:,} analysed, {report.ignored:,} of "
        f"quantities no detector reads, {report.duplicates:,} duplicates, {report.late:,} late, "
        f"{len(bad) + report.bad_row_count:,} bad"
        + (
            " (sorted by time first: the file was not in arrival order)"
            if report.sorted_by_time
            else ""
        ),
        err=True,
    )
    shown = [(b.line, b.reason) for b in bad[:10]] + [
        (b.line, b.reason) for b in report.bad_rows[:10]
    ]
    for line, reason in sorted(shown)[:10]:
        typer.echo(f"  line {line}: {reason}", err=True)
    typer.echo(
        f"{len(report.events)} events → {out}"
        + (": " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) if kinds else ""),
        err=True,
    )
    if report.failed_detectors:
        for key, why in sorted(report.failed_detectors.items()):
            typer.echo(f"detector {key} failed and was stopped: {why}", err=True)
        raise typer.Exit(1)  # the events are written but incomplete: say so in the exit code


@score_app.command("truth", short_help="Events against a simulator's ground truth.")
def score_truth(
    events: Annotated[Path, typer.Option(help="EVENTS.jsonl (replay's, or the alerts collected)")],
    truth: Annotated[Path, typer.Option(help="the simulator's ground_truth.jsonl")],
    # required: without the park a gateway fault seen on one of its meters, or a fault aimed
    # at an enterprise, would be missed without a word
    park: Annotated[
        Path,
        typer.Option(
            help="the history's park.yaml: which gateway each meter is on, what each zone "
            "stands for (a fault found there is missed without it)"
        ),
    ],
    days: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            help="the history's length, for false events per 30 days (default: from the "
            "history.json beside --truth, when there is one)",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object, not a table")] = False,
) -> None:
    """Per fault kind: detected, missed, false events, time to detect, right place; false
    events by place, and leak events a meter fault explains."""
    from analytics.scoring.ground_truth import (
        DAY_MS,
        load_events,
        load_faults,
        score_events,
        zone_meters,
        zone_places,
    )

    site = _park(park)
    history_end_ms = None
    span = truth.parent / "history.json"  # written by ``parkwatch simulate --history``
    if span.is_file():
        try:
            doc = json.loads(span.read_text(encoding="utf-8"))
            history_end_ms = int(doc["end_ms"])
            if days is None:
                days = (history_end_ms - int(doc["start_ms"])) / DAY_MS
        except (ValueError, KeyError, TypeError) as exc:
            raise _fail(f"{span}: not a history.json: {exc}") from None
    try:
        found = load_events(events)
        faults = load_faults(truth, history_end_ms)
    except FileNotFoundError as exc:
        raise _fail(f"{exc.filename}: no such file") from None
    except (ValueError, KeyError) as exc:
        raise _fail(f"not an events or ground-truth file: {exc}") from None
    report = score_events(
        found,
        faults,
        {m.id: m.gateway for m in site.iter_meters()},
        zone_places=zone_places(site),
        zone_meters=zone_meters(site),
        history_end_ms=history_end_ms,
        history_days=days,
    )
    typer.echo(json.dumps(report.as_dict()) if as_json else report.table())


@score_app.command("nab", short_help="NAB's score of one series' events.")
def score_nab(
    events: Annotated[Path, typer.Option(help="EVENTS.jsonl of a replay of one series")],
    readings: Annotated[
        Path, typer.Option(help="the replayed readings (their rows are NAB's rows)")
    ],
    windows: Annotated[
        Path, typer.Option(help="JSON list of [start, end] anomaly windows (ISO 8601 or epoch ms)")
    ],
    meter: Annotated[
        str | None, typer.Option(help="the series' meter (default: the only one)")
    ] = None,
    quantity: Annotated[
        str | None, typer.Option(help="the series' quantity (default: the only one)")
    ] = None,
) -> None:
    """NAB's score of one series' events against labelled windows, for the three profiles
    (meter faults are not counted as alarms)."""
    from analytics.scoring.ground_truth import load_events
    from analytics.scoring.nab import PROFILES, normalise, score_file, windows_from_times
    from parkwatch.events import Family, parse_time_ms
    from parkwatch.readings_csv import ReadingsFormatError, read_readings

    try:
        rows = read_readings(readings)
        found = load_events(events)
        limits = json.loads(windows.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise _fail(f"{exc.filename}: no such file") from None
    except (ReadingsFormatError, ValueError) as exc:
        raise _fail(str(exc)) from None
    meters = rows.meters if meter is None else [meter]
    quantities = rows.quantities if quantity is None else [quantity]
    if len(meters) != 1 or len(quantities) != 1:
        raise _fail("the readings hold several series: name one with --meter and --quantity")
    m_code = rows.meters.index(meters[0]) if meters[0] in rows.meters else -1
    q_code = rows.quantities.index(quantities[0]) if quantities[0] in rows.quantities else -1
    times = np.unique(rows.t_ms[(rows.meter_code == m_code) & (rows.quantity_code == q_code)])
    if times.size == 0:
        raise _fail(f"no readings of {meters[0]}/{quantities[0]}")
    try:
        marks = windows_from_times(times, [(parse_time_ms(a), parse_time_ms(b)) for a, b in limits])
    except ValueError as exc:
        raise _fail(str(exc)) from None
    # an event is an alarm at the row whose data raised it: the last row before its slot ended.
    # Meter faults are not: they say the measurement is wrong (a gap in an irregular series
    # is silence), not that the series is anomalous, and NAB judges the series
    alarms = [
        int(np.searchsorted(times, e.detected_at_ms, side="left")) - 1
        for e in found
        if e.meter == meters[0] and e.family is not Family.METER_FAULT
    ]
    alarms = [a for a in alarms if a >= 0]
    for name, cost in PROFILES.items():
        result = score_file(alarms, int(times.size), marks, cost)
        typer.echo(
            f"{name:<20} normalised {normalise(result.score, result.windows, cost):6.1f}  "
            f"windows {result.detected}/{result.windows}  false alarms {result.false_alarms}"
        )
