"""The contract every registered detector keeps (``analytics.engine.contract``), checked on two
simulated days of the demo park (three for the leak detector) with every fault kind injected:
state survives a snapshot and restore, input is not mutated, the same input gives the same
findings, and any chunking of the same slots gives the same findings."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import replace
from functools import cache
from typing import Any

import numpy as np
import pytest

from analytics.detectors import DETECTORS
from analytics.detectors.leaks import ZoneLeaks
from analytics.engine.contract import (
    Block,
    Detector,
    Finding,
    ParkContext,
    Scope,
    SeriesKey,
    TransportStats,
)
from analytics.engine.engine import ParkEngine
from analytics.engine.events import finding_order
from analytics.engine.slots import slot_block
from analytics.replay import replay
from parkwatch.site import Park
from simulators import DEMO_PARK
from simulators.faults import random_schedule
from tests.analytics_data import live_events, simulated_rows

START_MS = 1_795_968_000_000  # 2026-11-29 16:00 UTC: local midnight in Shanghai
DAYS = 2
STEP_MS = 60_000
# detectors that need more days to reach all they do: the leak detector's production model
# is fitted at a midnight from a day of clean hours at the least (``model_days`` 1 below),
# so only a third day is judged by it
DAYS_OF = {"leaks": 3}


@cache
def _park() -> Park:
    return Park.from_yaml(DEMO_PARK)


@cache
def _data(days: int = DAYS) -> tuple[dict[tuple[str, str], int], Any]:
    park = _park()
    faults = random_schedule(park, START_MS, START_MS + days * 86_400_000, seed=7)
    rows = simulated_rows(park, START_MS, days, seed=7, faults=faults)
    index = {
        (rows.meters[m], rows.quantities[q]): i
        for i, (m, q) in enumerate(
            sorted(
                {(int(a), int(b)) for a, b in zip(rows.meter_code, rows.quantity_code, strict=True)}
            )
        )
    }
    return index, rows


def _instances(cls: type[Detector]) -> list[tuple[list[SeriesKey], str | None]]:
    """The series of each instance the engine would make (one per gateway for meter scope)."""
    ctx = ParkContext(_park())
    series = cls.select(ctx)
    if cls.scope is Scope.PARK or cls.row_subsets:
        return [(series, None)]
    groups: dict[str, list[SeriesKey]] = {}
    for key in series:
        meter = ctx.tree.meters[key.meter]
        groups.setdefault("_virtual" if meter.is_virtual else meter.gateway, []).append(key)
    # the two largest groups keep the test quick and still exercise many meters
    return [(keys, g) for g, keys in sorted(groups.items(), key=lambda kv: -len(kv[1]))[:2]]


def _block(series: Sequence[SeriesKey], group: str | None, days: int = DAYS) -> Block:
    _, rows = _data(days)
    ctx = ParkContext(_park())
    meters = {m: i for i, m in enumerate(rows.meters)}
    quantities = {q: i for i, q in enumerate(rows.quantities)}
    lookup = {
        (meters[k.meter], quantities[k.quantity]): r
        for r, k in enumerate(series)
        if k.meter in meters and k.quantity in quantities
    }
    key = rows.meter_code.astype(np.int64) * 1000 + rows.quantity_code
    table = np.full(len(rows.meters) * 1000 + len(rows.quantities), -1, dtype=np.int64)
    for (m, q), r in lookup.items():
        table[m * 1000 + q] = r
    row = table[key]
    keep = row >= 0
    slots = days * 86_400_000 // STEP_MS
    counters = np.array([ctx.is_counter(k.quantity) for k in series], dtype=bool)
    block = slot_block(
        row[keep],
        rows.t_ms[keep],
        rows.value[keep],
        len(series),
        START_MS,
        STEP_MS,
        slots,
        counters,
    )
    gateways = [
        g
        for g in sorted({ctx.tree.meters[k.meter].gateway for k in series})
        if group is None or g == group
    ]
    # transport facts that switch on and off (each gateway its own phase), so the transport
    # checks have work to do
    k = np.arange(slots)[None, :] + 97 * np.arange(len(gateways))[:, None]
    transport = TransportStats(
        tuple(gateways),
        np.ones(k.shape, dtype=np.int32),
        ((k // 300) % 4 == 2).astype(np.int32),
        np.zeros(k.shape, dtype=np.int32),
        np.where((k // 240) % 3 == 1, 400_000.0, -500.0),
    )
    return Block(
        block.start_ms,
        block.step_ms,
        block.values,
        block.count,
        block.low,
        block.high,
        group,
        transport,
    )


def _feed(detector: Detector, block: Block, sizes: Sequence[int]) -> list[Finding]:
    out: list[Finding] = []
    first = 0
    i = 0
    while first < block.slots:
        stop = min(block.slots, first + sizes[i % len(sizes)])
        out.extend(detector.update(block.window(first, stop)).findings)
        first = stop
        i += 1
    return out


def _comparable(findings: Sequence[Finding]) -> list[tuple[Any, ...]]:
    def rounded(value: Any) -> Any:
        if isinstance(value, float):
            return float(f"{value:.6g}")
        if isinstance(value, dict):
            return tuple(sorted((k, rounded(v)) for k, v in value.items()))
        return value

    return [
        (
            f.kind,
            f.subject,
            f.at_ms,
            f.active,
            f.start_ms,
            f.severity,
            None if f.estimate is None else rounded(f.estimate.value),
            rounded(dict(f.evidence)),
        )
        for f in sorted(findings, key=finding_order)
    ]


def _plain(value: Any) -> bool:
    """State must be plain data: numbers, strings, None, lists, dicts, numpy arrays."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    return isinstance(value, int | float | str | bool | np.ndarray | np.generic) or value is None


CASES = [(cls, i) for cls in DETECTORS for i in range(len(_instances(cls)))]


@pytest.fixture(params=CASES, ids=lambda c: f"{c[0].name}-{c[1]}")
def case(request: pytest.FixtureRequest) -> tuple[type[Detector], list[SeriesKey], Block]:
    cls, i = request.param
    series, group = _instances(cls)[i]
    return cls, series, _block(series, group, DAYS_OF.get(cls.name, DAYS))


# detectors whose defaults need more than two days to say anything are made to speak sooner
# here, so that the checks below have findings to compare
QUICK: dict[str, dict[str, Any]] = {
    "coincident_peaks": {"settle_days": 0},
    "leaks": {"min_days": 1, "min_residuals": 4, "model_days": 1},
}


def _new(cls: type[Detector], series: list[SeriesKey]) -> Detector:
    return cls(ParkContext(_park()), series, QUICK.get(cls.name))


def test_it_finds_something_on_faulty_data(case: Any) -> None:
    """Otherwise the other checks would hold trivially."""
    cls, series, block = case
    findings = _feed(_new(cls, series), block, [block.slots])
    out = _new(cls, series).update(block)
    assert findings or out.points, f"{cls.name} neither found nor wrote anything in two days"
    for f in findings:
        assert f.kind in cls.kinds
        assert (f.meter is None) != (f.zone is None)
        assert block.start_ms < f.at_ms <= block.end_ms


def test_same_input_same_output(case: Any) -> None:
    cls, series, block = case
    a = _feed(_new(cls, series), block, [block.slots])
    b = _feed(_new(cls, series), block, [block.slots])
    assert _comparable(a) == _comparable(b)


@pytest.mark.parametrize("sizes", [[1], [7, 13], [97], [1000]], ids=str)
def test_any_chunking_gives_the_same_findings(case: Any, sizes: list[int]) -> None:
    cls, series, block = case
    whole = _feed(_new(cls, series), block, [block.slots])
    chunked = _feed(_new(cls, series), block, sizes)
    assert _comparable(chunked) == _comparable(whole)


@pytest.mark.parametrize("cls", [d for d in DETECTORS if d.values_only], ids=lambda d: d.name)
def test_a_values_only_detector_reads_nothing_but_values(cls: type[Detector]) -> None:
    """The engine hands a ``values_only`` detector empty ``count``, ``low`` and ``high`` (they
    are not copied for it): with them empty it finds and writes what it does with them."""
    said = 0
    for series, group in _instances(cls):
        block = _block(series, group, DAYS_OF.get(cls.name, DAYS))
        empty = np.zeros((0, 0))
        bare = replace(block, count=empty.astype(np.int32), low=empty, high=empty)
        full, values = _new(cls, series).update(block), _new(cls, series).update(bare)
        assert _comparable(values.findings) == _comparable(full.findings)
        assert repr(values.points) == repr(full.points)
        said += len(full.findings) + len(full.points)
    assert said


def test_state_survives_snapshot_and_restore(case: Any) -> None:
    cls, series, block = case
    whole = _feed(_new(cls, series), block, [block.slots])
    day = 86_400_000 // STEP_MS
    # (and, over a third day, within it: after what is fitted at its midnight)
    splits = [block.slots // 2 + 17] + ([2 * day + 59] if block.slots > 2 * day else [])
    for half in splits:
        first = _new(cls, series)
        before = _feed(first, block.window(0, half), [half])
        state = first.state()
        assert _plain(state), f"{cls.name}.state() holds something other than plain data"
        second = _new(cls, series)
        second.restore(pickle.loads(pickle.dumps(state)))
        after = _feed(second, block.window(half, block.slots), [block.slots])
        assert _comparable(before + after) == _comparable(whole)


def test_the_leak_detectors_production_model_is_reached() -> None:
    """The checks above cover the air zones' production model only if it is fitted and judges
    hours within the days they feed."""
    series, group = _instances(ZoneLeaks)[0]
    block = _block(series, group, DAYS_OF["leaks"])
    detector = _new(ZoneLeaks, series)
    _feed(detector, block, [block.slots])
    assert isinstance(detector, ZoneLeaks)
    assert np.isfinite(detector.model).all(axis=1).any()
    assert np.isfinite(detector.m_excess).any()


@pytest.mark.parametrize("cls", [d for d in DETECTORS if d.row_subsets], ids=lambda d: d.name)
def test_row_subsets_fed_apart_give_the_same_findings(cls: type[Detector]) -> None:
    """A detector that takes row subsets (one instance for the park) must not care whether a
    gateway's rows come alone, with others, or in other chunks than its neighbours'."""
    series, group = _instances(cls)[0]
    block = _block(series, group, DAYS_OF.get(cls.name, DAYS))
    ctx = ParkContext(_park())
    whole = _feed(_new(cls, series), block, [block.slots])
    gateway = np.array([ctx.tree.meters[k.meter].gateway for k in series])
    names = sorted(set(gateway.tolist()))
    first = np.flatnonzero(np.isin(gateway, names[::2]))
    second = np.flatnonzero(np.isin(gateway, names[1::2]))
    split = _new(cls, series)
    a = _feed(split, _subset(block, first, [g for g in names[::2]]), [97])
    b = _feed(split, _subset(block, second, [g for g in names[1::2]]), [13, 300])
    assert _comparable(a + b) == _comparable(whole)


def _subset(block: Block, rows: Any, gateways: list[str]) -> Block:
    part = block.take(rows)
    transport = part.transport.only(gateways)
    return Block(
        part.start_ms,
        part.step_ms,
        part.values,
        part.count,
        part.low,
        part.high,
        None,
        transport,
        part.row_index,
    )


def test_input_is_not_mutated(case: Any) -> None:
    cls, series, block = case
    copies = [a.copy() for a in (block.values, block.count, block.low, block.high)]
    _feed(_new(cls, series), block, [500])
    for original, copy in zip(
        (block.values, block.count, block.low, block.high), copies, strict=True
    ):
        assert not original.flags.writeable
        np.testing.assert_array_equal(original, copy)


# what makes each detector speak within the half day below (the engine's params by name)
QUICK_LIVE: dict[str, dict[str, Any]] = {
    "coincident_peaks": {"settle_days": 0},
    "baseline": {"warmup_d": 0.05, "warmup_min_slots": 20},
    "leaks": {"min_days": 1, "min_residuals": 4, "widen": False, "k": 1.0, "model_days": 1},
    "waste_heat": {"min_hours": 6},
}
# detectors that judge hours against days of their own history see the two faulty days the
# checks above use, polled every 5 minutes so that feeding them message by message stays
# quick: (days, poll ms, seed)
DAYS_LIVE: dict[str, tuple[float, int, int]] = {
    "leaks": (3.0, 300_000, 7),  # its spread is each day against the others: a third day
    "waste_heat": (DAYS, 300_000, 7),
}


@cache
def _faulty_rows(days: float, step_ms: int, seed: int) -> Any:
    park = _park()
    faults = random_schedule(park, START_MS, START_MS + int(86_400_000 * days), seed=seed)
    return simulated_rows(park, START_MS, days, seed=seed, faults=faults, step_ms=step_ms)


@cache
def _live_and_replayed(cls: type[Detector]) -> tuple[Any, Any, list[Any], list[Any]]:
    """Events (latest state by id) and points of ``cls`` alone in the engine: fed message by
    message as the live service feeds it, and replayed from the same rows."""
    park = _park()
    rows = _faulty_rows(*DAYS_LIVE.get(cls.name, (0.5, 60_000, 5)))
    params = {cls.name: QUICK_LIVE[cls.name]} if cls.name in QUICK_LIVE else None
    replayed_points: list[Any] = []
    replayed = replay(
        ParkEngine(park, [cls], params), rows, on_advance=lambda a: replayed_points.extend(a.points)
    ).events
    live_points: list[Any] = []
    live = live_events(ParkEngine(park, [cls], params), park, rows, live_points)
    return live, replayed, live_points, replayed_points


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda d: d.name)
def test_live_and_replay_give_the_same_events(cls: type[Detector]) -> None:
    """Each detector alone in the engine: fed message by message as the live service feeds
    it, and replayed from the same rows, it raises the same events."""
    live, replayed, _, _ = _live_and_replayed(cls)

    def final(events: Any) -> list[tuple[Any, ...]]:
        return sorted((e.id, e.kind, e.state.value, e.detected_at_ms, e.end_ms) for e in events)

    assert replayed, f"{cls.name} raised nothing on faulty data: nothing to compare"
    assert final(live.values()) == final(replayed)


@pytest.mark.parametrize(
    "cls",
    [
        pytest.param(
            d,
            marks=pytest.mark.xfail(
                strict=True,
                reason="one hourly point differs (0.2 %): the hour gw-chemco's clock falls 5 "
                "minutes behind, where live counts a second reading late and replay one; events "
                "agree (found in review; 15 points were missing live before 04a6957)",
            ),
        )
        if d.name == "waste_heat"
        else d
        for d in DETECTORS
    ],
    ids=lambda d: d.name,
)
def test_live_and_replay_write_the_same_points(cls: type[Detector]) -> None:
    """The derived series (demand, balances, …) go to InfluxDB live and replayed alike."""
    _, _, live_points, replayed_points = _live_and_replayed(cls)

    def written(points: list[Any]) -> tuple[list[tuple[Any, ...]], list[float]]:
        """Each point's place and field names, and its values apart: sums over slots taken in
        other blocks differ in the last bits."""
        ordered = sorted(points, key=lambda p: (p.measurement, p.t_ms, sorted(p.tags.items())))

        def number(v: Any) -> bool:
            return isinstance(v, int | float) and not isinstance(v, bool)

        keys = [
            (p.measurement, p.t_ms, tuple(sorted(p.tags.items())),
             tuple((k, None if number(v) else v) for k, v in sorted(p.fields.items())))
            for p in ordered
        ]  # fmt: skip
        values = [float(v) for p in ordered for _, v in sorted(p.fields.items()) if number(v)]
        return keys, values

    live_keys, live_values = written(live_points)
    replayed_keys, replayed_values = written(replayed_points)
    assert live_keys == replayed_keys
    assert live_values == pytest.approx(replayed_values, rel=1e-4)
