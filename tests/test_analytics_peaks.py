"""Peaks: 15-minute demand on the park's local clock, a forecast that alerts before the
contract is broken, and the analytics service end to end (MQTT in; ``demand_15m``, the
``anomaly`` point and the alert on ``pw/v1/{park}/alerts/demand_peak`` out)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pytest

from analytics.detectors.peaks import Peaks
from analytics.engine.contract import Block, ParkContext, SeriesKey
from analytics.engine.events import EventBook
from analytics.engine.slots import slot_block
from analytics.service import AnalyticsService
from analytics.settings import AnalyticsSettings
from parkwatch import mqtt, topics
from parkwatch.events import State, iso
from parkwatch.influx import InfluxReader
from parkwatch.settings import InfluxSettings, MqttSettings
from parkwatch.site import Park, SiteRegistry
from parkwatch.wire import encode_batch
from tests.support import background, eventually

QUARTER_MS = 15 * 60_000


def ms(text: str, tz: ZoneInfo) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=tz).timestamp() * 1000)


def one_meter_park(tz: str, contract: float | None = 1000.0) -> Park:
    return Park.model_validate(
        {"park": "p", "timezone": tz,
         "meters": [{"id": "main", "utility": "electricity", "contracted_demand_kw": contract}]}
    )  # fmt: skip


def minutes(park: Park, start: int, powers: list[float]) -> Block:
    t = start + np.arange(len(powers)) * 60_000
    return slot_block(np.zeros(len(powers), dtype=np.int64), t, np.array(powers), 1, start,
                      60_000, len(powers))  # fmt: skip


def detector(park: Park) -> Peaks:
    return Peaks(ParkContext(park), [SeriesKey("main", "p_kw")])


def test_blocks_are_cut_on_the_local_clock() -> None:
    kathmandu = ZoneInfo("Asia/Kathmandu")  # UTC+5:45: local quarter hours are not UTC ones
    park = one_meter_park("Asia/Kathmandu", None)
    start = ms("2026-03-02 10:00:00", kathmandu)
    out = detector(park).update(minutes(park, start, [4.0] * 15 + [9.0]))
    [point] = out.points
    assert point.t_ms == start
    assert point.fields == {"p_kw_avg": 4.0, "p_kw_max": 4.0, "samples": 15}


def test_demand_is_the_mean_with_its_peak_and_samples() -> None:
    park = one_meter_park("Asia/Shanghai", None)
    start = ms("2026-03-02 08:00:00", ZoneInfo("Asia/Shanghai"))
    out = detector(park).update(minutes(park, start, [float(k) for k in range(30)]))
    assert [(p.t_ms - start, p.fields["p_kw_avg"], p.fields["p_kw_max"]) for p in out.points] == [
        (0, 7.0, 14.0),  # (0 + … + 14) / 15
        (QUARTER_MS, 22.0, 29.0),
    ]


def test_the_forecast_alerts_before_the_block_ends_and_says_how_long_was_left() -> None:
    park = one_meter_park("Asia/Shanghai", 1000.0)
    start = ms("2026-03-02 09:00:00", ZoneInfo("Asia/Shanghai"))
    # 800 kW for 5 minutes, then 1,150 kW: the block ends at (5·800 + 10·1150)/15 = 1,033 kW
    out = detector(park).update(minutes(park, start, [800.0] * 5 + [1150.0] * 10 + [700.0] * 15))
    opened, closed = out.findings
    # after minute 6: (5·800 + 1150)/6 = 858.3 so far, 1,150 held for 9 more minutes:
    # (858.3·6 + 1150·9) / 15 = 1,033.3 ≥ 1,000 — raised with 9 minutes left
    assert opened.active
    assert opened.at_ms == start + 6 * 60_000
    assert opened.evidence["minutes_left"] == 9.0
    assert opened.evidence["forecast_kw"] == pytest.approx(1033.3, abs=0.1)
    assert opened.start_ms == start
    # the next block ends under the contract: the episode closes at its end
    assert not closed.active
    assert closed.at_ms == start + 2 * QUARTER_MS
    assert closed.evidence["last_block_kw"] == 700.0


def test_the_closed_event_keeps_the_warning_and_says_how_far_over_the_block_went() -> None:
    """The closed event is what replay's EVENTS.jsonl keeps: the block under the contract
    that ends the episode must not replace its minutes left and excess."""
    park = one_meter_park("Asia/Shanghai", 1000.0)
    start = ms("2026-03-02 09:00:00", ZoneInfo("Asia/Shanghai"))
    out = detector(park).update(minutes(park, start, [800.0] * 5 + [1150.0] * 10 + [700.0] * 15))
    book = EventBook("p")
    opened, closed = book.apply(out.findings)
    assert closed.state is State.CLOSED
    assert closed.evidence["minutes_left"] == opened.evidence["minutes_left"] == 9.0
    assert closed.evidence["forecast_kw"] == pytest.approx(1033.3, abs=0.1)
    assert closed.evidence["peak_block_kw"] == pytest.approx(1033.3, abs=0.1)
    assert closed.estimate is not None
    assert closed.estimate.value == pytest.approx(33.3, abs=0.1)  # the block's excess
    assert closed.end_ms == start + 2 * QUARTER_MS


def test_severity_changes_are_the_same_whatever_the_chunks() -> None:
    """A forecast that crosses 105 % of the contract and back several times in one block
    reports each crossing, whether the block comes slot by slot or whole."""
    park = one_meter_park("Asia/Shanghai", 1000.0)
    start = ms("2026-03-02 09:00:00", ZoneInfo("Asia/Shanghai"))
    powers = [1000.0, 1000.0, 1300.0, 1000.0, 1300.0, 1000.0] + [1000.0] * 9 + [500.0] * 15
    block = minutes(park, start, powers)
    whole = detector(park).update(block).findings
    one_by_one = detector(park)
    sliced = [
        f for k in range(block.slots) for f in one_by_one.update(block.window(k, k + 1)).findings
    ]
    assert [(f.at_ms, f.active, f.severity) for f in sliced] == [
        (f.at_ms, f.active, f.severity) for f in whole
    ]
    severities = [f.severity.value for f in whole if f.active]
    assert severities == ["major", "critical", "major", "critical", "major"]


def test_a_steady_load_under_the_contract_raises_nothing() -> None:
    park = one_meter_park("Asia/Shanghai", 1000.0)
    start = ms("2026-03-02 09:00:00", ZoneInfo("Asia/Shanghai"))
    rng = np.random.default_rng(1)
    out = detector(park).update(minutes(park, start, list(900 + rng.normal(0, 20, 600))))
    assert out.findings == []


@pytest.mark.anyio
async def test_service_writes_demand_and_alerts_a_peak(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, demo_park_path: Path
) -> None:
    park = Park.from_yaml(demo_park_path)
    service = AnalyticsService(
        AnalyticsSettings(mqtt=mqtt_settings, influx=influx_settings, warmup_s=0, rebuild_s=0),
        SiteRegistry([park]),
    )
    # three hours ago, on a quarter hour: the live service analyses what is at most a day old
    # (max_hold_ms); older readings are late
    start = (int(time.time() * 1000) - 3 * 3_600_000) // QUARTER_MS * QUARTER_MS
    alerts: list[dict[str, object]] = []
    async with (
        background(service.run()),
        InfluxReader(influx_settings) as reader,
        mqtt.client(mqtt_settings, "alert-watcher") as watcher,
    ):
        await watcher.subscribe(topics.alerts_filter(park.park), qos=1)

        async def collect() -> None:
            async for message in watcher.messages:
                assert isinstance(message.payload, bytes)
                alerts.append(orjson.loads(message.payload))

        async with background(collect()):
            await asyncio.wait_for(service.subscribed.wait(), timeout=10)
            await asyncio.wait_for(service.warm.wait(), timeout=10)
            async with mqtt.client(mqtt_settings, "demand-gw") as gateway:
                for minute in range(31):  # two quarter hours and one sample of the third
                    t = start + minute * 60_000
                    # foodco's contract is 1,200 kW: the second quarter hour goes over
                    power = 100.0 if minute < 15 else 1300.0
                    readings = [{"m": "foodco-main", "t": t, "q": {"p_kw": power + minute % 3}}]
                    payload = encode_batch("gw-foodco", minute + 1, readings)
                    await gateway.publish(topics.data_topic(park.park, "gw-foodco"), payload,
                                          qos=1)  # fmt: skip

            async def written() -> bool:
                try:
                    demand = await reader.count("demand_15m", "p_kw_avg")
                    anomalies = await reader.count("anomaly", "severity_rank")
                except Exception:
                    return False
                return demand == 2 and anomalies >= 1 and bool(alerts)

            await eventually(written, 20, "two demand intervals and a peak alert")
        [series] = await reader.query(
            "SELECT p_kw_avg, p_kw_max, samples, meter FROM demand_15m ORDER BY time"
        )
    rows = [r[1:] for r in series.values]
    assert rows == [[101.0, 102.0, 15, "foodco-main"], [1301.0, 1302.0, 15, "foodco-main"]]
    assert [r[0] for r in series.values] == [start, start + QUARTER_MS]
    [alert] = [a for a in alerts if a["kind"] == "demand_peak"][:1]
    assert alert["state"] == "opened"
    assert alert["meter"] == "foodco-main"
    # raised two minutes into the block that went over, with the park's offset, not back-dated
    assert alert["detected_at"] == iso(start + QUARTER_MS + 2 * 60_000, park.zone)
    assert alert["start"] == iso(start + QUARTER_MS, park.zone)
    assert str(alert["detected_at"]).endswith("+08:00")


def test_a_coincident_peak_names_the_enterprises_that_made_it() -> None:
    from analytics.detectors.peaks import CoincidentPeaks

    def enterprise(e: str) -> dict[str, object]:
        meter = {"id": f"{e}-main", "utility": "electricity"}
        return {"id": e, "workshops": [{"id": "w", "meters": [meter]}]}

    park = Park.model_validate({"park": "p", "enterprises": [enterprise(e) for e in "abc"]})
    ctx = ParkContext(park)
    series = CoincidentPeaks.select(ctx)
    assert [k.meter for k in series] == ["a-main", "b-main", "c-main"]
    tz = ZoneInfo("Asia/Shanghai")
    start = ms("2026-03-10 08:00:00", tz)
    # three quarter hours: a and b at their highs in the third, c low throughout
    powers = {"a-main": [100] * 30 + [200] * 15, "b-main": [50] * 30 + [90] * 15,
              "c-main": [300] * 30 + [150] * 15}  # fmt: skip
    rows, t, v = [], [], []
    for r, key in enumerate(series):
        for k, p in enumerate(powers[key.meter]):
            rows.append(r)
            t.append(start + k * 60_000)
            v.append(float(p))
    block = slot_block(np.array(rows), np.array(t), np.array(v), 3, start, 60_000, 45)
    quick = {"settle_days": 0}  # report from the first day this worker sees
    out = CoincidentPeaks(ctx, series, quick).update(block)
    opened = [f for f in out.findings if f.active]
    # block 1 sets the month's first high (450 kW) silently; block 3 (440 kW) is lower; only
    # a block above 450 with two enterprises near their highs would count: none here
    assert opened == []
    # now a fourth quarter hour where a and b peak together and the park tops 450 kW
    more = {"a-main": [210] * 15, "b-main": [95] * 15, "c-main": [160] * 15}
    rows, t, v = [], [], []
    for r, key in enumerate(series):
        for k, p in enumerate(more[key.meter]):
            rows.append(r)
            t.append(start + (45 + k) * 60_000)
            v.append(float(p))
    detector = CoincidentPeaks(ctx, series, quick)
    detector.update(block)
    out = detector.update(
        slot_block(np.array(rows), np.array(t), np.array(v), 3, start + 45 * 60_000, 60_000, 15)
    )
    [finding] = [f for f in out.findings if f.active]
    assert finding.zone == "park"
    assert finding.evidence["park_kw"] == 465.0  # 210 + 95 + 160
    assert finding.evidence["previous_month_max_kw"] == 450.0
    # a and b are at their month's highs; c (160) is far under its 300
    assert set(finding.evidence["coinciding"]) == {"a", "b"}


def test_the_enterprise_contract_goes_to_its_one_grid_intake_only() -> None:
    from analytics.detectors.peaks import CoincidentPeaks, contracted_demands

    def park_with(meters: list[dict[str, object]]) -> ParkContext:
        ent = {"id": "e", "contracted_demand_kw": 800,
               "workshops": [{"id": "w", "meters": meters}]}  # fmt: skip
        other = {"id": "f", "workshops": [{"id": "w", "meters": [
            {"id": "f-main", "utility": "electricity"}]}]}  # fmt: skip
        return ParkContext(Park.model_validate({"park": "p", "enterprises": [ent, other]}))

    def contract(ctx: ParkContext, *meters: str) -> list[float | None]:
        return contracted_demands(ctx, [ctx.tree.meters[m] for m in meters])

    # a parentless PV meter beside the intake is a source, not a second intake
    ctx = park_with([{"id": "main", "utility": "electricity"},
                     {"id": "pv", "utility": "electricity", "role": "pv"},
                     {"id": "line", "utility": "electricity", "parent": "main"}])  # fmt: skip
    assert contract(ctx, "main", "pv", "line") == [800, None, None]
    assert [k.meter for k in CoincidentPeaks.select(ctx)] == ["main", "f-main"]
    # two intakes share one contract for their sum: neither alone is held against all of it
    ctx = park_with([{"id": "in1", "utility": "electricity"},
                     {"id": "in2", "utility": "electricity"}])  # fmt: skip
    assert contract(ctx, "in1", "in2") == [None, None]
    # …unless each intake carries its own
    ctx = park_with([{"id": "in1", "utility": "electricity", "contracted_demand_kw": 500},
                     {"id": "in2", "utility": "electricity"}])  # fmt: skip
    assert contract(ctx, "in1", "in2") == [500, None]


def test_power_no_supply_can_draw_stays_out_of_demand() -> None:
    # contract 1000 kW: a reading of 10⁶ kW (a word-swapped register taken for a good one)
    # is above 3 × 1000 and counts as an empty slot, not as a forecast of millions of kW
    tz = ZoneInfo("Asia/Shanghai")
    park = one_meter_park("Asia/Shanghai")
    start = ms("2026-03-02 10:00:00", tz)
    out = detector(park).update(minutes(park, start, [500.0] * 5 + [1e6] + [500.0] * 9 + [1.0]))
    assert out.findings == []
    point = out.points[0]
    # 14 believed slots of 500 kW: the mean, the peak and the samples leave the 10⁶ out
    assert (point.fields["p_kw_avg"], point.fields["p_kw_max"], point.fields["samples"]) == (
        500.0, 500.0, 14)  # fmt: skip
    # a load at 2.9 times the contract is still believed (and alerts)
    out = detector(park).update(minutes(park, start, [2900.0] * 15))
    assert [f.kind for f in out.findings][:1] == ["demand_peak"]


def test_a_virtual_net_meter_beside_the_main_is_no_second_intake() -> None:
    from analytics.detectors.peaks import CoincidentPeaks, contracted_demands

    def contracts(ctx: ParkContext, ids: list[str]) -> list[float | None]:
        return contracted_demands(ctx, [ctx.tree.meters[m] for m in ids])

    # the README's pattern: a net meter main - pv beside the main (no parent). It measures no
    # supply of its own; taken for a second intake it left the enterprise with no contract
    meters = [{"id": "main", "utility": "electricity"},
              {"id": "pv", "utility": "electricity", "role": "pv", "parent": "main"},
              {"id": "net", "utility": "electricity", "formula": "main - pv"}]  # fmt: skip
    ent = {"id": "e", "contracted_demand_kw": 800, "workshops": [{"id": "w", "meters": meters}]}
    other = {"id": "f", "workshops": [{"id": "w", "meters": [
        {"id": "f-main", "utility": "electricity"}]}]}  # fmt: skip
    ctx = ParkContext(Park.model_validate({"park": "p", "enterprises": [ent, other]}))
    assert contracts(ctx, ["main", "net"]) == [800, None]
    # the park's demand counts the enterprise once, not main and net both
    assert [k.meter for k in CoincidentPeaks.select(ctx)] == ["main", "f-main"]
    # a virtual meter summing two intakes below it is still the one intake
    sums = [{"id": "sum", "utility": "electricity", "formula": "in1 + in2"},
            {"id": "in1", "utility": "electricity", "parent": "sum"},
            {"id": "in2", "utility": "electricity", "parent": "sum"}]  # fmt: skip
    ent["workshops"] = [{"id": "w", "meters": sums}]
    ctx = ParkContext(Park.model_validate({"park": "p", "enterprises": [ent, other]}))
    assert contracts(ctx, ["sum", "in1", "in2"]) == [800, None, None]
    # …and so is a virtual meter that measures the enterprise by difference from others'
    ent["workshops"] = [{"id": "w", "meters": [
        {"id": "rest", "utility": "electricity", "formula": "feeder - f-main"}]}]  # fmt: skip
    park = {"park": "p", "meters": [{"id": "feeder", "utility": "electricity"}],
            "enterprises": [ent, other]}  # fmt: skip
    ctx = ParkContext(Park.model_validate(park))
    assert contracts(ctx, ["rest"]) == [800]


def test_a_swapped_negative_reading_beside_good_ones_stays_out_of_demand() -> None:
    # two readings a minute; in the sixth minute the second is a swapped -10⁶ kW. The slot's
    # highest reading (500) is believable, its lowest is not: the slot counts as empty
    tz = ZoneInfo("Asia/Shanghai")
    park = one_meter_park("Asia/Shanghai")
    start = ms("2026-03-02 10:00:00", tz)
    t = start + np.arange(32) * 30_000
    v = np.full(32, 500.0)
    v[11] = -1e6
    block = slot_block(np.zeros(32, dtype=np.int64), t, v, 1, start, 60_000, 16)
    point = detector(park).update(block).points[0]
    assert (point.fields["p_kw_avg"], point.fields["samples"]) == (500.0, 28)


def test_a_coincident_peak_believes_no_power_above_the_ceiling() -> None:
    from analytics.detectors.peaks import CoincidentPeaks

    def enterprise(e: str, contract: float) -> dict[str, object]:
        meter = {"id": f"{e}-main", "utility": "electricity"}
        return {"id": e, "contracted_demand_kw": contract,
                "workshops": [{"id": "w", "meters": [meter]}]}  # fmt: skip

    park = Park.model_validate(
        {"park": "p", "enterprises": [enterprise("a", 300), enterprise("b", 200)]}
    )
    ctx = ParkContext(park)
    series = CoincidentPeaks.select(ctx)
    start = ms("2026-03-10 08:00:00", ZoneInfo("Asia/Shanghai"))
    # a quarter hour at 100 + 50 kW; one with a swapped 10⁶ kW on a-main (ceiling 900 kW);
    # then a true new high, a and b at their highs together
    powers = {"a-main": [100.0] * 15 + [100.0] * 7 + [1e6] + [100.0] * 7 + [210.0] * 15,
              "b-main": [50.0] * 30 + [95.0] * 15}  # fmt: skip
    rows, t, v = [], [], []
    for r, key in enumerate(series):
        for k, p in enumerate(powers[key.meter]):
            rows.append(r)
            t.append(start + k * 60_000)
            v.append(p)
    block = slot_block(np.array(rows), np.array(t), np.array(v), 2, start, 60_000, 45)
    out = CoincidentPeaks(ctx, series, {"settle_days": 0}).update(block)
    opened = [f for f in out.findings if f.active]
    assert [f.evidence["park_kw"] for f in opened] == [305.0]  # 210 + 95, after 150


def _running_in_numpy(
    block: Block, a: int, b: int, ceiling: np.ndarray | None, carry: dict[str, np.ndarray]
) -> tuple[np.ndarray, ...]:
    """The running sums as ``peaks.segments`` computed them with numpy before
    ``kernels.demand_running``: the reference the kernel must match to the bit."""
    v = block.values[:, a:b]
    if ceiling is not None:
        extreme = np.fmax(np.abs(block.high[:, a:b]), np.abs(block.low[:, a:b]))
        with np.errstate(invalid="ignore"):
            v = np.where(extreme > ceiling[:, None], np.nan, v)
    seen = np.isfinite(v)
    same = carry["same"]
    psum = np.cumsum(np.where(seen, v, 0.0), axis=1) + np.where(same, carry["psum"], 0.0)[:, None]
    slots = np.cumsum(seen, axis=1) + np.where(same, carry["slots"], 0)[:, None]
    high = np.where(seen, block.high[:, a:b], -np.inf)
    pmax = np.maximum.accumulate(
        np.maximum(high, np.where(same, carry["pmax"], -np.inf)[:, None]), axis=1
    )
    samples = (
        np.cumsum(np.where(seen, block.count[:, a:b], 0).astype(np.int64), axis=1)
        + np.where(same, carry["samples"], 0)[:, None]
    )
    idx = np.maximum.accumulate(np.where(seen, np.arange(b - a), -1), axis=1)
    rows = np.arange(v.shape[0])[:, None]
    last = np.where(
        idx >= 0, v[rows, np.maximum(idx, 0)], np.where(same, carry["last"], np.nan)[:, None]
    )
    return psum, slots, pmax, samples, last


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("bounded", [False, True])
def test_the_compiled_running_sums_are_numpys_to_the_bit(seed: int, bounded: bool) -> None:
    """``kernels.demand_running`` against the numpy code it replaced, on readings with gaps,
    -0.0, huge swapped values, several readings per slot and carried blocks (bit for bit:
    the events and ``demand_15m`` points must not change)."""
    from analytics.kernels.peaks import demand_running

    rng = np.random.default_rng(seed)
    rows, slots = 40, 20
    n = rng.integers(0, 4, size=(rows, slots))
    t0 = 1_795_968_000_000
    row, t, value = [], [], []
    for r in range(rows):
        for k in range(slots):
            for j in range(int(n[r, k])):
                row.append(r)
                t.append(t0 + k * 60_000 + j * 1000)
                x = float(rng.normal(500.0, 300.0))
                pick = rng.random()
                x = -0.0 if pick < 0.05 else -1e6 if pick < 0.08 else x
                value.append(x)
    block = slot_block(np.array(row), np.array(t), np.array(value), rows, t0, 60_000, slots)
    ceiling = np.where(rng.random(rows) < 0.2, np.nan, 3000.0) if bounded else None
    carry = {
        "same": rng.random(rows) < 0.5,
        "psum": rng.normal(1000.0, 500.0, rows),
        "slots": rng.integers(0, 10, rows),
        "pmax": np.where(rng.random(rows) < 0.2, -np.inf, rng.normal(800.0, 200.0, rows)),
        "samples": rng.integers(0, 30, rows),
        "last": np.where(rng.random(rows) < 0.2, np.nan, rng.normal(500.0, 100.0, rows)),
    }
    for a, b in ((0, slots), (3, 11), (19, 20)):
        want = _running_in_numpy(block, a, b, ceiling, carry)
        got = [np.empty((rows, b - a), dtype=d) for d in (float, np.int64, float, np.int64, float)]
        demand_running(
            block.values, block.high, block.low, block.count, a, b,
            np.empty(0) if ceiling is None else ceiling, carry["same"], carry["psum"],
            carry["slots"], carry["pmax"], carry["samples"], carry["last"], *got,
        )  # fmt: skip
        for w, g in zip(want, got, strict=True):
            assert w.dtype == g.dtype
            assert w.tobytes() == g.tobytes()
