"""Simulated history as the columnar rows replay and the detector tests take."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from parkwatch.site import Park
from simulators.faults import Fault
from simulators.model import ParkModel

DAY_MS = 86_400_000


@dataclass
class Rows:
    """The shape of ``analytics.replay.Readings``."""

    t_ms: npt.NDArray[np.int64]
    meter_code: npt.NDArray[np.int32]
    meters: list[str]
    quantity_code: npt.NDArray[np.int32]
    quantities: list[str]
    value: npt.NDArray[np.float64]
    line: npt.NDArray[np.int64]
    poll_ms: npt.NDArray[np.int64] | None = None  # when the value was polled (true time)


def simulated_rows(
    park: Park,
    start_ms: int,
    days: float,
    seed: int = 0,
    faults: list[Fault] | None = None,
    step_ms: int = 60_000,
) -> Rows:
    """Every reported value, poll cycle after poll cycle (meters in park order)."""
    model = ParkModel(park, seed, faults or [])
    times = start_ms + np.arange(int(days * DAY_MS // step_ms), dtype=np.int64) * step_ms
    model.prime(int(times[0]), step_ms)
    meters = list(dict.fromkeys(m for m, _ in model.series))
    quantities = list(dict.fromkeys(q for _, q in model.series))
    m_code = np.array([meters.index(m) for m, _ in model.series], dtype=np.int32)
    q_code = np.array([quantities.index(q) for _, q in model.series], dtype=np.int32)
    parts: list[Any] = []
    for first in range(0, times.size, 360):
        chunk = times[first : first + 360]
        frame = model.frame(chunk)
        present = np.ones_like(frame.values, dtype=bool) if frame.present is None else frame.present
        t = np.repeat(chunk[:, None], len(model.series), axis=1)
        if frame.t_offset_ms is not None:
            t = t + frame.t_offset_ms
        keep = present & np.isfinite(frame.values)
        cols = np.broadcast_to(np.arange(len(model.series)), keep.shape)
        polled = np.repeat(chunk[:, None], len(model.series), axis=1)
        parts.append((t[keep], cols[keep], frame.values[keep], polled[keep]))
    t_all = np.concatenate([p[0] for p in parts]).astype(np.int64)
    col = np.concatenate([p[1] for p in parts])
    value = np.concatenate([p[2] for p in parts])
    poll = np.concatenate([p[3] for p in parts]).astype(np.int64)
    return Rows(
        t_all,
        m_code[col],
        meters,
        q_code[col],
        quantities,
        value,
        np.arange(2, t_all.size + 2, dtype=np.int64),
        poll,
    )


def live_events(
    engine: Any, park: Park, rows: Rows, points: list[Any] | None = None
) -> dict[str, Any]:
    """Feed ``rows`` to ``engine`` as the live service would: one message per gateway and poll
    cycle, with a growing seq, arriving a moment after the poll, and only what ingest would
    store (known series, plausible values). Returns each event's latest state by id; the
    derived points go to ``points`` when given."""
    from analytics.engine.engine import Batch

    assert rows.poll_ms is not None
    gateway_of = {m.id: m.gateway for m in park.iter_meters()}
    meters = park.tree.meters
    series = np.array(
        [
            -1 if (i := engine.series_of(rows.meters[m], rows.quantities[q])) is None else i
            for m, q in zip(rows.meter_code, rows.quantity_code, strict=True)
        ]
    )
    gateway = np.array([gateway_of[rows.meters[m]] for m in rows.meter_code])
    plausible = np.array(
        [
            (b := meters[rows.meters[m]].bounds.get(rows.quantities[q])) is not None
            and b[0] <= v <= b[1]
            for m, q, v in zip(rows.meter_code, rows.quantity_code, rows.value, strict=True)
        ]
    )
    keep = (series >= 0) & plausible
    events: dict[str, Any] = {}
    seqs: dict[str, int] = {}
    last = int(rows.poll_ms.max())
    for poll in np.unique(rows.poll_ms).tolist():
        at = keep & (rows.poll_ms == poll)
        arrival = int(poll) + 300
        for gw in np.unique(gateway[at]):
            mine = at & (gateway == gw)
            seqs[gw] = seqs.get(gw, 0) + 1
            engine.feed(
                Batch(str(gw), seqs[gw], series[mine], rows.t_ms[mine], rows.value[mine], arrival)
            )
        for advanced in (engine.advance(arrival), *([engine.finish()] if poll == last else [])):
            events.update((e.id, e) for e in advanced.events)
            if points is not None:
                points.extend(advanced.points)
    return events
