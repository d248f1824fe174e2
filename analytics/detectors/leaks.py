"""Leaks: a zone consuming more than its own history says it should — water bursts and slowly
growing leaks, compressed-air leaks, gas and steam losses — told apart from a sub-meter that
under-registers.

One instance per park watches every zone (``zones:`` in park.yaml) at once, with numpy over
zones; the only loop is over the hours a block completes. Per zone:

* **consumption** per slot, ``Σ inflow − Σ outflow − area · d(level)/dt``
  (:mod:`analytics.detectors.networks`), summed into local hours: the hour's median slot (what
  is judged: one wild reading does not move it) and mean (what is estimated);
* a **baseline** for each hour of the day: the median of the same hour on the last
  ``days`` days of the same kind (workday, Saturday, Sunday, holiday, from the park's
  calendar: ``ctx.day_types``; make-up workdays are workdays), at least ``min_days`` of
  them (else the workdays, or the rest days; else nothing is judged yet),
  and a robust spread (1.4826 × the median absolute residual of the zone's hours around their
  baselines, this hour of the day and two either side, pooled over the days kept), floored
  at ``floor_share`` of the zone's meter accuracy times its inflow, so that meters that
  agree to a fraction of their class do not make a hair-trigger;
* a **CUSUM** of the hours' scores ``z = (hour − baseline) / spread``: it climbs by ``z − k``
  each hour and alarms past ``h``. A burst (a score of ``burst_z`` or more) alarms within the
  hour it began; a leak that grows over days alarms once it stands out from the zone's own
  scatter — at night first, where the scatter is smallest, which is what watching the
  minimum night flow means. At the end of each local night the **minimum night flow** (the
  lowest hour between ``night`` hours) is compared with the same nights' baseline as well,
  and says so in the evidence.

Before a leak is reported, the excess of the hours since it began is compared with each
meter of the zone: an outflow meter reading ``f`` of the truth leaves ``(1/f − 1)`` of its own
flow unaccounted, so the excess follows that meter's daily curve; a leak's does not. When
one meter's flow explains the excess far better than a constant (and beyond the zones' meter
accuracy), the event is ``meter_under_registration`` on that meter (a meter fault: no leak is
reported for it); when a constant does, it is a leak; while neither can yet be told (too few
hours, a meter whose flow hardly varied), the decision waits, at most ``decide_h`` hours.

Kinds: ``water_burst`` (a water zone's excess arrived as a step) and ``water_leak``,
``air_leak``, ``gas_leak``, ``steam_loss``; ``meter_under_registration``. Estimates: the
excess in the zone's unit per hour, per day and, where the park prices the utility, ¥ per day;
an air leak also in kWh and ¥ a year, at the compressors' own specific power. An event
closes once ``close_h`` hours in a row score under 1. Each zone's hour is also written to
InfluxDB (``zone_balance``: consumption, inflow, baseline and score, tagged with the zone), so
the boards show what the detector judged.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from analytics.detectors.networks import ZoneLayout, zone_net
from analytics.engine.contract import (
    Block,
    DerivedPoint,
    Detector,
    Finding,
    FloatArray,
    IntArray,
    Needs,
    Output,
    ParkContext,
    Scope,
    SeriesKey,
)
from parkwatch.calendar import WORKDAY
from parkwatch.events import Estimate, Family, Severity
from parkwatch.quantities import Utility

HOUR_MS = 3_600_000
BoolArray = npt.NDArray[np.bool_]

LEAK_KIND: dict[Utility, str] = {
    Utility.WATER: "water_leak",
    Utility.AIR: "air_leak",
    Utility.GAS: "gas_leak",
    Utility.STEAM: "steam_loss",
}
BURST_KIND = "water_burst"
BALANCE_MEASUREMENT = "zone_balance"  # each zone's hourly consumption, baseline and score
SPECIFIC_KW_PER_NM3H = 6.5 / 60.0  # a screw compressor: 6.5 kW per m³/min of free air
METER_KIND = "meter_under_registration"
_UNIT = {"flow_m3h": "m³/h", "flow_nm3h": "Nm³/h", "steam_th": "t/h"}
_PER_DAY = {"m³/h": "m³/d", "Nm³/h": "Nm³/d", "t/h": "t/d"}

# zone states
QUIET, DECIDING, LEAK, METER = 0, 1, 2, 3


@dataclass(frozen=True)
class LeakParams:
    days: int = 21  # days of hourly history kept for the baselines
    min_days: int = 3  # days of a kind a baseline needs
    min_residuals: int = 48  # hours of residuals the spread needs
    floor_share: float = 0.25  # the spread's floor: this × accuracy × the zone's inflow
    k: float = 2.0  # CUSUM allowance, in spreads (a day that uses a little more is no leak)
    h: float = 6.0  # CUSUM alarm, in spreads
    z_cap: float = 15.0  # an hour adds at most this much
    burst_z: float = 6.0  # an hour this far out is a burst (water)
    decide_h: int = 12  # the longest a leak waits for the meter check
    meter_fit: float = 0.35  # a meter explains the excess: its fit's error < this × a constant's
    min_swing: float = 0.25  # …if its flow swung by this share of its mean
    close_h: int = 6  # quiet hours that close an event
    night: tuple[int, int] = (1, 5)  # local hours [from, to) of the minimum night flow


def off_production_share(load: FloatArray, producing: BoolArray) -> float:
    """The load that runs while production is off as a share of the load while it is on:
    for compressed air, the leaks' share (a plant whose compressors still deliver 30 % of
    their working load at night and on Sundays loses about that much to leaks)."""
    on = load[producing & np.isfinite(load)]
    off = load[~producing & np.isfinite(load)]
    if on.size == 0 or off.size == 0 or float(on.mean()) <= 0:
        return float("nan")
    return float(off.mean() / on.mean())


class ZoneLeaks(Detector):
    name: ClassVar[str] = "leaks"
    kinds: ClassVar[tuple[str, ...]] = (
        "water_leak",
        BURST_KIND,
        "air_leak",
        "gas_leak",
        "steam_loss",
        METER_KIND,
    )
    scope: ClassVar[Scope] = Scope.PARK
    needs: ClassVar[Needs] = Needs(("flow_m3h", "flow_nm3h", "steam_th", "level_m"))

    @classmethod
    def select(cls, ctx: ParkContext) -> list[SeriesKey]:
        return ZoneLayout.of(ctx).series

    def __init__(
        self,
        ctx: ParkContext,
        series: Sequence[SeriesKey],
        params: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(ctx, series, params)
        p = dict(self.params)
        if "night" in p:
            p["night"] = tuple(p["night"])
        self.p = LeakParams(**p)
        self.layout = ZoneLayout.of(ctx)
        lay = self.layout
        nz, nr = len(lay.zones), len(lay.series)
        self.hour_slots = max(1, HOUR_MS // ctx.step_ms)
        self.ring = self.p.days * 24
        self.flow_rows = np.flatnonzero(~lay.is_level)
        self.inflow = np.where(lay.sign > 0, 1.0, 0.0)  # [zones, rows]
        self.accuracy = np.array([z.accuracy for z in lay.zones])
        # meters of each zone, the sign they enter its balance with
        self.zone_meters: list[list[tuple[int, float]]] = [
            [(int(r), float(lay.sign[z, r])) for r in np.flatnonzero(lay.sign[z] != 0)]
            for z in range(nz)
        ]
        self.specific_kw = self._specific_power(ctx)
        # the running hour
        self.last_level = np.full(nr, np.nan)
        self.hour = -1  # local hour number (hours since 1970 on the park's wall clock)
        self.buf = np.full((nz, self.hour_slots), np.nan)  # this hour's slot consumptions
        self.flow_sum = np.zeros(nr)
        self.flow_n = np.zeros(nr)
        # the ring of finished hours
        self.h_id = np.full(self.ring, -1, dtype=np.int64)
        self.h_daytype = np.zeros(self.ring, dtype=np.int8)
        self.h_median = np.full((nz, self.ring), np.nan)
        self.h_mean = np.full((nz, self.ring), np.nan)
        self.h_excess = np.full((nz, self.ring), np.nan)  # hour mean − baseline
        self.h_resid = np.full((nz, self.ring), np.nan)  # hour median − baseline
        self.h_clean = np.zeros((nz, self.ring), dtype=bool)  # usable for baselines
        self.h_flow = np.full((nr, self.ring), np.nan)
        # per zone
        self.cusum = np.zeros(nz)
        self.state_ = np.zeros(nz, dtype=np.int64)
        self.onset = np.full(nz, -1, dtype=np.int64)  # local hour the excess began
        self.quiet = np.zeros(nz, dtype=np.int64)
        self.burst = np.zeros(nz, dtype=bool)
        self.meter = np.full(nz, -1, dtype=np.int64)  # the under-registering meter's row

    # --- the contract ------------------------------------------------------------------

    def update(self, block: Block) -> Output:
        out = Output()
        if not self.layout.zones or block.slots == 0:
            return out
        net, self.last_level = zone_net(self.layout, block.values, self.last_level, block.step_ms)
        times = block.times()
        local = self.ctx.local_ms(times)
        hours = local // HOUR_MS
        within = (local % HOUR_MS) // block.step_ms
        ends = times + block.step_ms
        cuts = np.flatnonzero(np.r_[True, hours[1:] != hours[:-1], True])
        for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
            hour = int(hours[a])
            if hour != self.hour:
                self._start_hour(hour)
            self.buf[:, within[a:b]] = net[:, a:b]
            flows = block.values[:, a:b]
            seen = np.isfinite(flows)
            self.flow_sum += np.where(seen, flows, 0.0).sum(axis=1)
            self.flow_n += seen.sum(axis=1)
            if (int(local[b - 1]) + block.step_ms) % HOUR_MS == 0:
                self._finish_hour(int(ends[b - 1]), out)
        return out

    def state(self) -> dict[str, Any]:
        return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self._fields()}

    def restore(self, state: Mapping[str, Any]) -> None:
        for k, v in self._fields():
            saved = state[k]
            setattr(self, k, np.array(saved, dtype=v.dtype) if isinstance(v, np.ndarray) else saved)

    def _fields(self) -> list[tuple[str, Any]]:
        names = [
            "last_level",
            "hour",
            "buf",
            "flow_sum",
            "flow_n",
            "h_id",
            "h_daytype",
            "h_median",
            "h_mean",
            "h_excess",
            "h_resid",
            "h_clean",
            "h_flow",
            "cusum",
            "state_",
            "onset",
            "quiet",
            "burst",
            "meter",
        ]
        return [(n, getattr(self, n)) for n in names]

    # --- hours -------------------------------------------------------------------------

    def _start_hour(self, hour: int) -> None:
        self.hour = hour
        self.buf[:] = np.nan
        self.flow_sum[:] = 0.0
        self.flow_n[:] = 0.0

    def _finish_hour(self, at_ms: int, out: Output) -> None:
        hour = self.hour
        pos = hour % self.ring
        start_ms = at_ms - HOUR_MS
        daytype = int(self.ctx.day_types(np.array([start_ms]))[0])
        enough = np.isfinite(self.buf).sum(axis=1) >= self.hour_slots / 2
        with np.errstate(all="ignore"):
            median = np.where(enough, np.nanmedian(self.buf, axis=1), np.nan)
            mean = np.where(enough, np.nanmean(self.buf, axis=1), np.nan)
            flow = np.where(self.flow_n > 0, self.flow_sum / np.maximum(self.flow_n, 1), np.nan)
        base, spread = self._baseline(hour, daytype)
        median = np.where(self._plausible(flow), median, np.nan)
        inflow = self.inflow @ np.nan_to_num(flow)
        floor = self.p.floor_share * self.accuracy * np.abs(inflow)
        # no spread yet (too few hours judged): nothing to score against
        scale = np.where(np.isfinite(spread), np.maximum(spread, np.maximum(floor, 1e-6)), np.nan)
        with np.errstate(invalid="ignore"):
            z = (median - base) / scale
        judged = np.isfinite(z)
        self.h_id[pos] = hour
        self.h_daytype[pos] = daytype
        self.h_median[:, pos] = median
        self.h_mean[:, pos] = mean
        self.h_excess[:, pos] = mean - base
        self.h_resid[:, pos] = median - base
        self.h_flow[:, pos] = flow
        zc = np.where(judged, np.minimum(z, self.p.z_cap), 0.0)
        self.cusum = np.where(judged, np.maximum(0.0, self.cusum + zc - self.p.k), self.cusum)
        rising = (self.cusum > 0) & (self.onset < 0)
        self.onset[rising] = hour
        self.onset[(self.cusum == 0) & (self.state_ == QUIET)] = -1
        self.burst |= judged & (z >= self.p.burst_z) & (self.state_ == QUIET)
        self.burst[(self.cusum == 0) & (self.state_ == QUIET)] = False
        self.quiet = np.where(judged & (z < 1.0), self.quiet + 1, np.where(judged, 0, self.quiet))
        for zi in np.flatnonzero(np.isfinite(mean)).tolist():
            fields: dict[str, float | int | str | bool] = {
                "consumption": round(float(mean[zi]), 4),
                "inflow": round(float(inflow[zi]), 4),
            }
            if judged[zi]:
                fields["baseline"] = round(float(base[zi]), 4)
                fields["score"] = round(float(z[zi]), 3)
            zone = self.layout.zones[zi]
            out.points.append(
                DerivedPoint(
                    BALANCE_MEASUREMENT,
                    {"zone": zone.id, "utility": zone.utility.value},
                    fields,
                    start_ms,
                )
            )
        night = self._night_flow(hour, at_ms)
        for zi in range(len(self.layout.zones)):
            self._judge(zi, hour, at_ms, float(z[zi]) if judged[zi] else None, night, out)
        # an hour of an open event, or one being told apart, is not what the zone normally does
        self.h_clean[:, pos] = np.isfinite(median) & (self.state_ == QUIET)

    def _window(self, hour: int, count: int, step: int) -> tuple[IntArray, BoolArray]:
        """Ring positions of ``count`` hours before ``hour`` spaced ``step`` apart, and which
        of them hold that hour's data."""
        wanted = hour - step * np.arange(1, count + 1, dtype=np.int64)
        pos = wanted % self.ring
        return pos, self.h_id[pos] == wanted

    def _baseline(self, hour: int, daytype: int) -> tuple[FloatArray, FloatArray]:
        """Each zone's usual value for this hour of the day and kind of day, and the spread of
        the zone's hours around their baselines (this hour of the day and the two either side,
        over the days kept: a pooled, stable figure, never one from three numbers)."""
        pos, held = self._window(hour, self.p.days - 1, 24)
        values = self.h_median[:, pos]
        ok = self.h_clean[:, pos] & held[None, :]
        kinds = self.h_daytype[pos]
        # the same kind of day (a Sunday like Sundays), else workdays or rest days, else any
        same = ok & (kinds == daytype)[None, :]
        rest = ok & ((kinds == WORKDAY) == (daytype == WORKDAY))[None, :]
        enough_same = (same.sum(axis=1) >= self.p.min_days)[:, None]
        # (never workdays for a Sunday: a plant's rest days are not its working days)
        use = np.where(enough_same, same, rest)
        use &= (use.sum(axis=1) >= self.p.min_days)[:, None]
        chosen = np.where(use, values, np.nan)
        near = np.concatenate(
            [self._window(hour + shift, self.p.days - 1, 24)[0] for shift in (-2, -1, 0, 1, 2)]
        )
        near_held = np.concatenate(
            [self._window(hour + shift, self.p.days - 1, 24)[1] for shift in (-2, -1, 0, 1, 2)]
        )
        resid = np.where(self.h_clean[:, near] & near_held[None, :], self.h_resid[:, near], np.nan)
        enough = np.isfinite(resid).sum(axis=1) >= self.p.min_residuals
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            base = np.nanmedian(chosen, axis=1)
            spread = 1.4826 * np.nanmedian(np.abs(resid), axis=1)
        return base, np.where(enough, spread, np.nan)

    def _plausible(self, flow: FloatArray) -> BoolArray:
        """Per zone: every meter's hourly flow within what that meter has shown (its range
        over the days kept, widened by the range itself): a word-swapped or stuck register
        is a meter's fault, not consumption, and the meter-fault detector reports it."""
        held = self.h_id >= 0
        if held.sum() < 24:
            return np.ones(len(self.layout.zones), dtype=bool)
        history = self.h_flow[:, held]
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo = np.nanmin(history, axis=1)
            hi = np.nanmax(history, axis=1)
        room = np.fmax(hi - lo, 0.1 * np.abs(hi))
        bad = ~((flow >= lo - room) & (flow <= hi + room)) & np.isfinite(lo)
        bad &= ~self.layout.is_level
        implausible: BoolArray = (self.layout.uses.astype(np.float64) @ bad.astype(np.float64)) > 0
        return ~implausible

    def _night_flow(self, hour: int, at_ms: int) -> dict[str, Any] | None:
        """At the end of the local night: each zone's minimum night flow, and the same for the
        nights before (their median), for the evidence."""
        first, last = self.p.night
        if (hour + 1) % 24 != last % 24:
            return None
        span = last - first
        pos, held = self._window(hour + 1, span, 1)
        tonight = np.where(held[None, :], self.h_median[:, pos], np.nan)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mnf = np.nanmin(tonight, axis=1)
            before = []
            for d in range(1, self.p.days - 1):
                p2, h2 = self._window(hour + 1 - 24 * d, span, 1)
                v = np.where(h2[None, :] & self.h_clean[:, p2], self.h_median[:, p2], np.nan)
                before.append(np.nanmin(v, axis=1))
            usual = np.nanmedian(np.array(before), axis=0) if before else mnf * np.nan
        del at_ms
        return {"mnf": mnf, "usual": usual}

    # --- decisions ---------------------------------------------------------------------

    def _judge(
        self,
        zi: int,
        hour: int,
        at_ms: int,
        z: float | None,
        night: dict[str, Any] | None,
        out: Output,
    ) -> None:
        state = int(self.state_[zi])
        if state in (LEAK, METER):
            if self.quiet[zi] >= self.p.close_h:
                out.findings.append(self._closing(zi, at_ms))
                self._reset(zi)
            return
        if state == QUIET and self.cusum[zi] > self.p.h:
            self.state_[zi] = state = DECIDING
        if state != DECIDING:
            return
        if self.cusum[zi] == 0:
            self.state_[zi] = QUIET  # it faded before it could be told apart
            self.onset[zi] = -1
            return
        verdict, meter_row, beta = self._explain(zi, hour)
        if verdict == "wait" and hour - int(self.onset[zi]) < self.p.decide_h:
            if not self.burst[zi]:
                return
            verdict = "leak"  # a burst is reported at once
        if verdict == "meter":
            self.state_[zi] = METER
            self.meter[zi] = meter_row
            out.findings.append(self._meter_finding(zi, at_ms, meter_row, beta))
            return
        self.state_[zi] = LEAK
        out.findings.append(self._leak_finding(zi, hour, at_ms, night))

    def _explain(self, zi: int, hour: int) -> tuple[str, int, float]:
        """Whether the excess since the onset is a leak (a constant), one meter's
        under-registration (proportional to its flow), or cannot be told yet."""
        count = max(1, hour - int(self.onset[zi]) + 1)
        pos, held = self._window(hour + 1, min(count, self.ring - 1), 1)
        e = np.where(held, self.h_excess[zi, pos], np.nan)
        ok = np.isfinite(e)
        if ok.sum() < 3:
            return "wait", -1, 0.0
        e = e[ok]
        constant = float(((e - e.mean()) ** 2).sum())
        best: tuple[float, int, float] | None = None
        for row, sign in self.zone_meters[zi]:
            f = self.h_flow[row, pos][ok]
            if not np.isfinite(f).all() or float(np.abs(f).sum()) == 0.0:
                continue
            swing = (float(f.max()) - float(f.min())) / max(abs(float(f.mean())), 1e-9)
            if swing < self.p.min_swing:
                continue
            beta = float((e * f).sum() / (f * f).sum())
            # an outflow meter reading low raises the excess (β > 0); an inflow meter lowers it
            if beta * -sign <= 0:
                continue
            sse = float(((e - beta * f) ** 2).sum())
            if best is None or sse < best[0]:
                best = (sse, row, beta)
        if best is not None:
            sse, row, beta = best
            # a meter showing f of the truth leaves (1/f − 1) of what it shows unaccounted
            under = abs(beta) / (1 + abs(beta))
            if sse < self.p.meter_fit * constant and under > self.accuracy[zi]:
                return "meter", row, beta
            if constant < self.p.meter_fit * sse:
                return "leak", -1, 0.0
            return "wait", -1, 0.0
        return "leak" if ok.sum() >= 3 else "wait", -1, 0.0

    # --- findings ----------------------------------------------------------------------

    def _recent_excess(self, zi: int, hour: int, hours: int = 3) -> float:
        pos, held = self._window(hour + 1, hours, 1)
        e = self.h_excess[zi, pos][held]
        e = e[np.isfinite(e)]
        return float(e.mean()) if e.size else 0.0

    def _leak_finding(
        self, zi: int, hour: int, at_ms: int, night: dict[str, Any] | None
    ) -> Finding:
        zone = self.layout.zones[zi]
        unit = _UNIT[zone.flow_quantity]
        rate = max(0.0, self._recent_excess(zi, hour))
        burst = bool(self.burst[zi]) and zone.utility is Utility.WATER
        kind = BURST_KIND if burst else LEAK_KIND[zone.utility]
        evidence: dict[str, Any] = {
            "utility": zone.utility.value,
            "cusum": round(float(self.cusum[zi]), 2),
            "onset_hours_ago": int(hour - self.onset[zi] + 1),
        }
        if night is not None and np.isfinite(night["mnf"][zi]):
            evidence["min_night_flow"] = round(float(night["mnf"][zi]), 3)
            if np.isfinite(night["usual"][zi]):
                evidence["usual_min_night_flow"] = round(float(night["usual"][zi]), 3)
        price = self.ctx.unit_price(zone.utility, at_ms)
        if zone.utility is Utility.AIR:
            # compressed air is paid for in the compressors' electricity
            kw = rate * self.specific_kw.get(zone.id, 0.0)
            evidence["kw"] = round(kw, 2)
            evidence["kwh_per_year"] = round(kw * 8760.0, 0)
            power_price = self.ctx.unit_price(Utility.ELECTRICITY, at_ms)
            if power_price is not None:
                evidence["cny_per_year"] = round(kw * 8760.0 * power_price, 0)
            price = None if power_price is None else power_price * self.specific_kw.get(zone.id, 0)
            inflow = self.inflow[zi] @ np.nan_to_num(self._last_flows(hour))
            if inflow > 0:
                evidence["share_of_load"] = round(rate / inflow, 3)
        per_day = rate * 24.0
        return Finding(
            kind,
            Family.LEAK,
            at_ms,
            True,
            zone=zone.id,
            start_ms=int(self._hour_start_ms(int(self.onset[zi]), at_ms, hour)),
            severity=Severity.MAJOR if burst or self.cusum[zi] > 3 * self.p.h else Severity.MINOR,
            estimate=Estimate(
                round(rate, 3),
                unit,
                round(per_day, 2),
                _PER_DAY[unit],
                None if price is None else per_day * price,
            ),
            evidence=evidence,
        )

    def _meter_finding(self, zi: int, at_ms: int, row: int, beta: float) -> Finding:
        zone = self.layout.zones[zi]
        meter = self.layout.series[row].meter
        share = abs(beta) / (1 + abs(beta))
        return Finding(
            METER_KIND,
            Family.METER_FAULT,
            at_ms,
            True,
            meter=meter,
            start_ms=int(self._hour_start_ms(int(self.onset[zi]), at_ms, self.hour)),
            severity=Severity.MINOR,
            estimate=Estimate(round(100 * share, 1), "% of its flow not registered"),
            evidence={
                "zone": zone.id,
                "accuracy_pct": round(100 * float(self.accuracy[zi]), 2),
                "why": "the zone's excess follows this meter's flow, not a constant",
            },
        )

    def _closing(self, zi: int, at_ms: int) -> Finding:
        zone = self.layout.zones[zi]
        if self.state_[zi] == METER:
            meter = self.layout.series[int(self.meter[zi])].meter
            return Finding(METER_KIND, Family.METER_FAULT, at_ms, False, meter=meter)
        kind = (
            BURST_KIND
            if self.burst[zi] and zone.utility is Utility.WATER
            else LEAK_KIND[zone.utility]
        )
        return Finding(kind, Family.LEAK, at_ms, False, zone=zone.id)

    def _reset(self, zi: int) -> None:
        self.state_[zi] = QUIET
        self.cusum[zi] = 0.0
        self.onset[zi] = -1
        self.quiet[zi] = 0
        self.burst[zi] = False
        self.meter[zi] = -1

    def _last_flows(self, hour: int) -> FloatArray:
        pos = hour % self.ring
        return self.h_flow[:, pos] if self.h_id[pos] == hour else np.full(len(self.series), np.nan)

    @staticmethod
    def _hour_start_ms(onset_hour: int, at_ms: int, hour: int) -> int:
        """Epoch ms of the start of local hour ``onset_hour``, knowing that local ``hour``
        ended at ``at_ms``."""
        return at_ms - (hour - onset_hour + 1) * HOUR_MS

    @staticmethod
    def _specific_power(ctx: ParkContext) -> dict[str, float]:
        """kW of compressor motor per Nm³/h of air for each air zone: a screw compressor's
        typical 6.5 kW per m³/min of free air delivery (what an air leak costs in power)."""
        return {z.id: SPECIFIC_KW_PER_NM3H for z in ctx.park.zones if z.utility is Utility.AIR}
