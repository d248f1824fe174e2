"""The live rollup job, pass after pass with a long outage and a late backlog, stores exactly
what one pass over the final raw data computes: every hour, day, month and year of every meter,
workshop, enterprise and the park (the strongest form of "rollups add up" for the late path)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from analytics.accounting.job import RollupConfig, RollupJob, ensure_retention
from analytics.accounting.rollup import Period
from parkwatch.influx import InfluxReader, InfluxWriter
from parkwatch.lineprotocol import encode_point
from parkwatch.settings import InfluxSettings
from parkwatch.site import Park
from tests.test_accounting_job import FEB28, MIN, PARK, H, rows

pytestmark = pytest.mark.integration

RATE = {"main": 50.0, "a-main": 20.0, "a-sub": 7.0, "b-main": 13.0}  # kWh an hour
T0 = FEB28 - 2 * 86_400_000
END = FEB28 + 3 * H
T = np.arange(T0, END + 1, 15 * MIN)
DEAD = T0 + 6 * H + 15 * MIN  # a-sub's last reading before its outage (about 44 h)
BACK = FEB28 + 2 * H  # its first reading after it, on the next month
# the backlog that arrives after the outage: a stretch from its middle
BACKLOG = (T >= FEB28 - 20 * H) & (T <= FEB28 - 10 * H)
Key = tuple[str, str | None, str, str | None, int]


def lines(sel: npt.NDArray[np.bool_], meter: str, bump: bool = False) -> list[str]:
    """Energy registers of ``meter`` at the times ``sel`` picks; ``bump``: a correction that
    moves the readings inside the backlog's stretch (not its ends)."""
    tags = {"park": "acct", "enterprise": "x", "meter": meter}
    t = T[sel]
    v = 1000.0 + RATE[meter] * (t - T0) / H
    if bump:
        a, b = T[BACKLOG][0], T[BACKLOG][-1]
        v = v + np.where((t > a) & (t < b), 6.0 * np.minimum(t - a, b - t) / (b - a), 0.0)
    return [
        encode_point("electricity", tags, {"e_kwh": float(x)}, int(ti))
        for ti, x in zip(t, v, strict=True)
    ]


def alive(meter: str) -> npt.NDArray[np.bool_]:
    if meter == "a-sub":
        return (T <= DEAD) | (T >= BACK)
    return np.ones(T.size, dtype=bool)


async def everything(reader: InfluxReader) -> dict[Key, float]:
    out: dict[Key, float] = {}
    for period in (Period.HOUR, Period.DAY, Period.MONTH, Period.YEAR):
        for (i, t), rec in (await rows(reader, period, "park = 'acct'")).items():
            out[(period.value, rec.get("level"), i, rec.get("quantity"), t)] = rec["value"]
    return out


def config(step_s: float = 86_400.0) -> RollupConfig:
    return RollupConfig(retention_policy="rollups", catch_up_s=3 * 86400, catch_up_step_s=step_s)


async def incremental(settings: InfluxSettings, resent: str | None) -> dict[Key, float]:
    """Hourly passes as live; then a-sub's backlog (and, with ``resent``, a-main's readings
    over the same stretch again, ``"corrected"`` with other values) arrives late."""
    park = Park.model_validate(PARK)
    async with InfluxReader(settings) as reader:
        await reader.create_database()
        await ensure_retention(reader, config())
        async with InfluxWriter(settings, flush_interval_s=0.05, retention_policy="rollups") as out:
            job = RollupJob(park, reader, out, config())
            before = T0 - 1
            for now in range(T0 + 10 * MIN, END + 1, H):
                async with InfluxWriter(settings, flush_interval_s=0.05) as raw:
                    await raw.write(
                        [x for m in RATE for x in lines(alive(m) & (before < T) & (now >= T), m)]
                    )
                before = now
                await job.run(now)
            async with InfluxWriter(settings, flush_interval_s=0.05) as raw:
                late = lines(BACKLOG, "a-sub")
                late += [x for m in RATE for x in lines(alive(m) & (before < T), m)]
                if resent is not None:
                    late += lines(BACKLOG, "a-main", bump=resent == "corrected")
                await raw.write(late)
            first, last = int(T[BACKLOG][0]), int(T[BACKLOG][-1])
            job.mark_late("a-sub", first, last)  # what the engine reports
            if resent is not None:
                job.mark_late("a-main", first, last)
            await job.run(END + 10 * MIN)
            await job.run(END + 20 * MIN)
        return await everything(reader)


async def fresh(
    settings: InfluxSettings, resent: str | None, step_s: float = 86_400.0
) -> dict[Key, float]:
    """The same final raw data, rolled up in one run (its catch-up of 3 days in steps of
    ``step_s``)."""
    park = Park.model_validate(PARK)
    async with InfluxReader(settings) as reader:
        await reader.create_database()
        await ensure_retention(reader, config(step_s))
        async with InfluxWriter(settings, flush_interval_s=0.05) as raw:
            data = [x for m in RATE for x in lines(alive(m) | (BACKLOG & (m == "a-sub")), m)]
            if resent == "corrected":
                data += lines(BACKLOG, "a-main", bump=True)
            await raw.write(data)
        async with InfluxWriter(settings, flush_interval_s=0.05, retention_policy="rollups") as out:
            job = RollupJob(park, reader, out, config(step_s))
            await job.run(END + 10 * MIN)
            await job.run(END + 20 * MIN)
        return await everything(reader)


@pytest.mark.anyio
@pytest.mark.parametrize("resent", [None, "same", "corrected"])
async def test_passes_with_a_late_backlog_store_what_one_pass_computes(
    influx_settings: InfluxSettings, resent: str | None
) -> None:
    passes = await incremental(influx_settings, resent)
    other = influx_settings.model_copy(update={"database": influx_settings.database + "_fresh"})
    once = await fresh(other, resent)
    assert passes.keys() == once.keys()
    differ = {k: (passes[k], once[k]) for k in passes if abs(passes[k] - once[k]) > 1e-6}
    assert not differ
    # and the periods add up: every meter's and group's hours, days, months and years agree
    totals: dict[tuple[str | None, str, str | None], dict[str, float]] = {}
    for (period, level, i, quantity, _), v in passes.items():
        per = totals.setdefault((level, i, quantity), {})
        per[period] = per.get(period, 0.0) + v
    assert any(level == "park" for level, _, _ in totals)
    for per in totals.values():
        assert per["day"] == pytest.approx(per["hour"], abs=1e-6)
        assert per["month"] == pytest.approx(per["hour"], abs=1e-6)
        assert per["year"] == pytest.approx(per["hour"], abs=1e-6)


@pytest.mark.anyio
async def test_a_catch_up_in_day_steps_stores_what_one_unsliced_pass_computes(
    influx_settings: InfluxSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catch-up from days back (a new worker from an earlier one's mark) goes a day at a
    time — no read of raw data spans much more than a day — and stores what one pass does."""
    spans: list[int] = []
    raw = RollupJob._raw

    async def spy(job: RollupJob, rows: list[int], a_ms: int, b_ms: int, **kw: bool) -> object:
        spans.append(b_ms - a_ms)
        return await raw(job, rows, a_ms, b_ms, **kw)

    monkeypatch.setattr(RollupJob, "_raw", spy)
    stepped = await fresh(influx_settings, None)
    assert spans
    # a day and its margins (the pairs across its ends), not the 3 days
    assert max(spans) < 2 * 86_400_000
    spans.clear()
    other = influx_settings.model_copy(update={"database": influx_settings.database + "_once"})
    once = await fresh(other, None, step_s=10 * 86_400.0)
    assert max(spans) > 3 * 86_400_000  # (one read: the 3 days)
    assert stepped.keys() == once.keys()
    assert not {k: (stepped[k], once[k]) for k in once if abs(stepped[k] - once[k]) > 1e-6}
