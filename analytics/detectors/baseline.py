"""Baseline deviation: an instant quantity departs from what the meter's own history predicts.

Every row (a meter's consumption rate, or any instant quantity the park declares) keeps, in
numpy arrays across all rows (updated slot after slot, row by row, by the compiled recursion
``analytics.kernels.baseline.baseline_slots``):

* a **baseline**: a time-of-day profile per day type (workday, Saturday, Sunday, holiday,
  from ``ctx.day_types``, make-up workdays counting as workdays) in ``season_bins`` bins,
  plus an offset per day type that follows a lasting change over ``offset_tau_h`` (one
  shared offset carried a workday profile's lag after a step onto the Saturday profile,
  already at the new level: a step for good on a flat series was remarked two Saturdays on).
  A reading is compared with the band its bin and the two next to it span (the bins of the
  slots next to it, where a slot is longer than a bin: an hourly meter's neighbours are an
  hour away, not empty half hours), so a shift a little earlier or later than usual is no
  deviation. A day type's profile is trusted once ``season_days`` days of that type have
  been seen; until then (cold start, a first Saturday or holiday) the band is what the
  trusted profiles of the other day types and the recent level explain. A profile met
  again after a while (a Saturday, a holiday weeks on) keeps its shape and level but follows
  the lasting change the workdays' recent level (over ``recent_d``) saw meanwhile, less what
  it learnt of it itself (``kernels._remeet``): a step for good is one event, and a plant run
  like a workday through a holiday is flagged (learnt afresh, no holiday waste was found);
* a **robust scale**: the exponential mean of the profile's misses over ``scale_tau_h``,
  each clipped at ``clip`` scales so that one spike does not blind it, floored by the same
  mean over ``scale_slow_tau_h`` (a calm day does not make the usual swings look large), and
  by the float's resolution: ``resolution`` (1e-6) of its level, at least ``abs_resolution``
  (1e-9 of the quantity's unit: at a level of 0, a virtual meter's a − b residue), and by
  ``1 / quantum_scales`` of its own quantum. A new extreme within ``z_min`` resolutions is
  none: a change of 1e-9 on a flat series is nothing. The resolution is no meter's accuracy:
  0.25 % of the level hid dips of 30 scales on a steady 50 Hz, 10 MW or 100 m³/h series
  (the quantities' plausibility bounds are ±1e12 unless declared, no span to take a share of);
* a **quantum**: the smallest step between readings seen ``quantum_repeats`` times and at
  most ``quantum_share`` of the largest value seen (a first change off a constant, 0 → 500,
  a load's stage, 25 of 50 kW, or a load switching on and off is no sensor's step, and a
  stage's change for good is alerted; the smallest change ever, once 500, hid every later
  change under half of it). A reading one quantum off the band, reached in
  one step (under 1.5 quanta, as the band lies off the readings' grid), is nothing: neither
  a deviation, nor an extreme, nor a record. A quantised sensor's flicker 2.0 ↔ 2.1 is one
  event, its first, before the step has repeated;
* **records**: the largest scaled deviation of recent weeks (halving every
  ``record_half_life_d``), and the highest and lowest value, smoothed level, jump between
  readings and smoothed deviation ever seen.

An anomaly opens when

* a deviation from a *trusted* profile goes beyond ``record_margin`` × the record and
  ``z_min`` scales (without a trusted baseline there is nothing to deviate from), and no
  deviation opened an event in the last ``deviation_quiet_h`` (a day: the operator has heard
  of this meter's baseline today), or
* the value or its smoothed level leaves the range seen so far by ``extreme_margin`` of it
  and by ``extreme_scales`` scales (0 by default: at 1, pure noise raised none of the 6–9
  extremes of under 4 scales of its first 15 days, but NAB lost 3 windows); or the jump
  between readings or the smoothed deviation beats its largest so far by ``peak_margin``.
  (A new high of the smoothed variability is no reason: noise growing is not consumption
  departing, and on NAB it raised 9 false alarms for no window.)

These are the tricks that win the Numenta Anomaly Benchmark — alarms on new extremes, no
repeated alarm while an anomaly lasts, and calibration on each series' own history instead
of a global threshold on values — without its look-ahead (NAB's best detectors scale every
file by its whole-file minimum and maximum; a live meter cannot). While an anomaly lasts the
baseline does not follow it and the record grows at most to ``record_growth`` × its value at
the opening (so does a deviation the day of quiet silences: the operator has heard of it);
the anomaly closes after ``hold_h`` once the deviation is back under ``z_close`` scales.
Nothing fires in the first ``warmup_d`` of a series, and a slot without a reading is no
evidence. A series that has read one value only (a meter at 0 until its plant starts) has a
scale of 0: its first change is judged against that (a new extreme, ``1 / range_floor``
scales), and the clip of a miss is never at 0 scales (at least ``range_floor`` of the range,
this reading in it). A flat series' scale (under that floor) is seeded from its change
(``|change| / clip``) so that the change's event closes in hours, not in the days the scale
took to regrow from the floor while it hid what came next. Rows of one meter share one
event: it opens when any of its rows fires and closes when all are quiet. The evidence says
why it opened (``reason``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from analytics.engine.contract import (
    DAY_MS,
    Block,
    Detector,
    Finding,
    Needs,
    Output,
    ParkContext,
    Scope,
    SeriesKey,
    copy_state,
    restore_state,
)
from analytics.kernels.baseline import baseline_slots
from parkwatch.events import Estimate, Family, Severity
from parkwatch.quantities import Utility

KIND = "baseline_deviation"
HOUR_MS = 3_600_000
DAY_TYPES = 4  # ctx.day_types: workday, Saturday, Sunday, holiday
BoolArray = npt.NDArray[np.bool_]

# each utility's consumption rates: what the detector watches by default
RATES: dict[Utility, tuple[str, ...]] = {
    Utility.ELECTRICITY: ("p_kw",),
    Utility.WATER: ("flow_m3h",),
    Utility.GAS: ("flow_nm3h",),
    Utility.AIR: ("flow_nm3h",),
    Utility.STEAM: ("steam_th", "heat_kw"),
    Utility.HEAT: ("heat_kw", "flow_m3h"),
}
# rate units and what they integrate to over a day
_PER_DAY = {"kW": "kWh/d", "MW": "MWh/d", "m³/h": "m³/d", "Nm³/h": "Nm³/d", "t/h": "t/d"}
# the unit a utility's tariff prices (ctx.unit_price): a daily amount in it can be costed
_PRICED_UNIT = {
    Utility.ELECTRICITY: "kWh/d",
    Utility.WATER: "m³/d",
    Utility.GAS: "Nm³/d",
    Utility.AIR: "Nm³/d",
    Utility.STEAM: "t/d",
}


@dataclass(frozen=True, slots=True)
class BaselineParams:
    """Defaults, fixed once for every meter and file (chosen on the NAB files and kept round;
    times are in hours or days, so they mean the same at any slot step)."""

    season_bins: int = 48  # time-of-day bins per profile (30 min)
    season_days: int = 1  # days of a type seen before its profile is trusted
    season_rate: float = 0.1  # profile's exponential rate once a bin has 10 samples
    level_tau_h: float = 0.25  # the fast level used before any profile exists
    offset_tau_h: float = 12.0  # how fast the profile's offset follows a lasting change
    recent_d: float = 2.0  # the workdays' recent level, followed by a profile met again
    scale_tau_h: float = 24.0  # memory of the deviation scale …
    scale_slow_tau_h: float = 72.0  # … and of a slower one, its floor
    feature_tau_h: float = 3.0  # smoothing of the level and deviation for their records
    record_half_life_d: float = 14.0  # how fast the deviation record is forgotten
    record_margin: float = 1.2  # fire above this × the record …
    z_min: float = 4.0  # … and at least this many scales
    z_close: float = 2.0  # an anomaly ends under this many scales …
    hold_h: float = 1.0  # … once it has lasted this long
    extreme_margin: float = 0.05  # a new extreme must pass the old by this share of the range
    extreme_scales: float = 0.0  # … and by this many scales (0: NAB lost 3 windows at 1)
    peak_margin: float = 0.3  # a new largest jump or deviation level: this share above the old
    record_growth: float = 2.0  # the record may grow to this × its value at an opening
    clip: float = 3.0  # misses are clipped at this many scales for the scale (winsorising)
    range_floor: float = 0.001  # scale floor as a share of the range seen (flat series)
    resolution: float = 1e-6  # and as a share of the level (a float's rounding, no accuracy)
    abs_resolution: float = 1e-9  # and this, in the quantity's unit (at a level of 0)
    quantum_scales: float = 8.0  # and one step of the series' own quantum is this many scales
    quantum_repeats: int = 3  # a quantum is a step size seen this many times …
    quantum_share: float = 0.25  # … and at most this share of the largest value seen
    warmup_d: float = 1.0  # no alarm during the first day of a series …
    warmup_min_slots: int = 50  # … nor before this many readings
    record_skip_slots: int = 10  # the first readings set no record (the scale is not known)
    deviation_quiet_h: float = 24.0  # after a deviation opened an event, none for this long

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any]) -> BaselineParams:
        known = {f.name for f in fields(cls)}
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"unknown baseline parameter(s): {', '.join(sorted(unknown))}")
        return replace(cls(), **params)


# the kernel's arguments (kernels.baseline_slots): float state rows, integer state rows,
# rates and parameters in its order
_FLOAT_ROWS = (
    "record", "record_cold", "level", "lo", "hi", "scale", "level_scale",
    "feat_level", "scale_slow", "level_lo", "level_hi", "prev_x", "jump_hi", "feat_dev",
    "dev_hi", "record_open", "dev", "expected", "quantum", "quantum_cand",
)  # fmt: skip
_INT_ROWS = ("seen", "quiet", "own_seen", "hold", "quantum_n")
_RATES = ("level", "offset", "scale", "feature", "decay", "scale_slow")
_PARAMS = (
    "season_rate", "record_margin", "z_min", "z_close", "extreme_margin", "peak_margin",
    "record_growth", "clip", "range_floor", "resolution",
    "quantum_scales", "abs_resolution", "quantum_share",
)  # fmt: skip
_RATES_AFTER = ("recent", "extreme_scales")
_COUNTS = ("warm", "hold", "quiet", "near")
_INT_PARAMS = (
    "season_bins", "season_days", "warmup_min_slots", "record_skip_slots",
    "quantum_repeats",
)  # fmt: skip

# a new row's float state (counts, day bookkeeping and profiles are set up beside): no
# level yet, an empty range, nothing recorded
_FRESH = {name: 0.0 for name in _FLOAT_ROWS} | {
    "level": np.nan, "feat_level": np.nan, "prev_x": np.nan, "dev": np.nan, "expected": np.nan,
    "lo": np.inf, "hi": -np.inf, "level_lo": np.inf, "level_hi": -np.inf,
}  # fmt: skip


class BaselineDetector(Detector):
    """Deviation of any instant quantity from the meter's own baseline."""

    name: ClassVar[str] = "baseline"
    kinds: ClassVar[tuple[str, ...]] = (KIND,)
    scope: ClassVar[Scope] = Scope.METER
    needs: ClassVar[Needs] = Needs(quantities=())
    row_subsets: ClassVar[bool] = True  # rows are independent: one instance per park
    values_only: ClassVar[bool] = True  # its kernel reads values alone

    @classmethod
    def select(cls, ctx: ParkContext) -> list[SeriesKey]:
        """Of every meter (virtual ones too), the consumption rates of its utility and the
        park's own instant quantities (``quantities:`` in park.yaml, any sensor) that it
        reports; rows of a meter adjacent. The detector works on any instant quantity: these
        are the ones worth an operator's alert by default."""
        custom = {q.name for q in ctx.park.quantities}
        out: list[SeriesKey] = []
        for meter in ctx.tree.meters.values():
            wanted = RATES.get(meter.utility, ())
            out.extend(
                SeriesKey(meter.id, q)
                for q in ctx.quantities_of(meter.id)
                if (q in wanted or q in custom) and not ctx.is_counter(q)
            )
        return out

    def __init__(
        self,
        ctx: ParkContext,
        series: Sequence[SeriesKey],
        params: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(ctx, series, params)
        self.p = BaselineParams.from_mapping(self.params)
        rows = len(self.series)
        meters = list(dict.fromkeys(key.meter for key in self.series))
        self._meters = meters
        index = {m: i for i, m in enumerate(meters)}
        self._meter_of = np.array([index[k.meter] for k in self.series], dtype=np.int64)
        units = [ctx.quantity(k.quantity).unit for k in self.series]
        self._units = units
        self.s: dict[str, Any] = {name: np.full(rows, _FRESH[name]) for name in _FLOAT_ROWS}
        self.s["seen"] = np.zeros(rows, dtype=np.int64)
        self.s["quiet"] = np.zeros(rows, dtype=np.int64)  # slots until a deviation may open
        self.s["hold"] = np.zeros(rows, dtype=np.int64)
        self.s["own_seen"] = np.zeros(rows, dtype=np.int64)
        self.s["quantum_n"] = np.zeros(rows, dtype=np.int64)  # times quantum_cand was seen
        # one profile per day type: workday, Saturday, Sunday, holiday (ctx.day_types)
        # [day type, …, row]: a slot touches one bin of every row, contiguous in memory
        self.s["days_seen"] = np.zeros((DAY_TYPES, rows), dtype=np.int64)
        self.s["last_day"] = np.full((DAY_TYPES, rows), -1, dtype=np.int64)
        self.s["profile"] = np.full((DAY_TYPES, self.p.season_bins, rows), np.nan)
        self.s["profile_n"] = np.zeros((DAY_TYPES, self.p.season_bins, rows), dtype=np.int32)
        self.s["offsets"] = np.zeros((DAY_TYPES, rows))
        # each day type's last day as it began: the workday's prediction then and its own
        # (kernels._remeet: a profile met again after a while follows a lasting change)
        self.s["recent"] = np.full((self.p.season_bins, rows), np.nan)
        self.s["ref_then"] = np.full((DAY_TYPES, self.p.season_bins, rows), np.nan)
        self.s["own_then"] = np.full((DAY_TYPES, self.p.season_bins, rows), np.nan)
        self.s["open"] = np.zeros(rows, dtype=bool)
        self.s["meter_open"] = np.zeros(len(meters), dtype=bool)
        self.s["step_ms"] = 0

    # -- contract -----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return copy_state(self.s)

    def restore(self, state: Mapping[str, Any]) -> None:
        restore_state(self.s, state, "baseline")

    def update(self, block: Block) -> Output:
        out = Output()
        if block.slots == 0 or block.rows == 0:
            return out
        index = block.row_index
        if index is None and block.rows != len(self.series):
            raise ValueError(f"block has {block.rows} rows, the detector {len(self.series)}")
        step = block.step_ms
        if self.s["step_ms"] and self.s["step_ms"] != step:
            raise ValueError(f"slot step changed from {self.s['step_ms']} to {step} ms")
        self.s["step_ms"] = step
        times = block.times()
        local = self.ctx.local_ms(times)
        day = local // DAY_MS
        kinds = self.ctx.day_types(times).astype(np.int64)
        bins = ((local % DAY_MS) * self.p.season_bins // DAY_MS).astype(np.int64)
        rates = self._rates(step)
        s = self.s
        fs = np.stack([s[name] for name in _FLOAT_ROWS])
        ints = np.stack([s[name] for name in _INT_ROWS])
        ids = np.arange(len(self.series)) if index is None else index.astype(np.int64)
        opened, closed = baseline_slots(
            np.ascontiguousarray(block.values, dtype=np.float64),
            ids,
            day.astype(np.int64),
            kinds,
            bins,
            np.array(
                [rates[n] for n in _RATES]
                + [getattr(self.p, n) for n in _PARAMS]
                + [rates[n] for n in _RATES_AFTER]
            ),
            np.array([int(rates[n]) for n in _COUNTS] + [getattr(self.p, n) for n in _INT_PARAMS]),
            fs,
            ints,
            s["days_seen"],
            s["last_day"],
            s["profile"],
            s["profile_n"],
            s["offsets"],
            s["recent"],
            s["ref_then"],
            s["own_then"],
            s["open"],
            s["meter_open"],
            self._meter_of,
        )
        for i, name in enumerate(_FLOAT_ROWS):
            s[name] = fs[i]
        for i, name in enumerate(_INT_ROWS):
            s[name] = ints[i]
        # findings slot by slot: those that opened, then those that closed
        slots_with = sorted(set(opened[:, 0].astype(int).tolist()) | set(closed[:, 0].tolist()))
        for k in slots_with:
            at_ms = int(times[k]) + step
            for _, row, dev, expected, z, reason in opened[opened[:, 0] == k].tolist():
                out.findings.append(
                    self._opening(int(row), dev, expected, z, int(reason), at_ms, step)
                )
            for m in closed[closed[:, 0] == k, 1].tolist():
                out.findings.append(
                    Finding(KIND, Family.CONSUMPTION, at_ms, False, meter=self._meters[m])
                )
        return out

    # -- the recursion: kernels.baseline_slots, slot after slot for all rows ---------------

    def _rates(self, step: int) -> dict[str, float]:
        p = self.p

        def rate(tau_h: float) -> float:
            return min(1.0, step / (tau_h * HOUR_MS))

        return {
            "level": rate(p.level_tau_h),
            "offset": rate(p.offset_tau_h),
            "scale": rate(p.scale_tau_h),
            "feature": rate(p.feature_tau_h),
            "decay": 0.5 ** (step / (p.record_half_life_d * DAY_MS)),
            "scale_slow": rate(p.scale_slow_tau_h),
            # a bin's share of a reading: its recent workday level spans recent_d days
            "recent": min(1.0, step * p.season_bins / (p.recent_d * DAY_MS)),
            "extreme_scales": p.extreme_scales,
            "warm": max(int(p.warmup_d * DAY_MS / step), p.warmup_min_slots),
            "hold": max(1, round(p.hold_h * HOUR_MS / step)),
            "quiet": round(p.deviation_quiet_h * HOUR_MS / step),
            "near": max(1, round(step * p.season_bins / DAY_MS)),
        }

    # -- findings ---------------------------------------------------------------------------

    def _opening(
        self, row: int, dev: float, expected: float, z: float, reason: int, at_ms: int, step: int
    ) -> Finding:
        key = self.series[row]
        unit = self._units[row]
        per_day_unit = _PER_DAY.get(unit)
        per_day = dev * 24.0 if per_day_unit else None
        cny = None
        utility = self.ctx.tree.meters[key.meter].utility
        if per_day is not None and dev > 0 and _PRICED_UNIT.get(utility) == per_day_unit:
            price = self.ctx.unit_price(utility, at_ms)
            cny = None if price is None else per_day * price
        return Finding(
            kind=KIND,
            family=Family.CONSUMPTION,
            at_ms=at_ms,
            active=True,
            meter=key.meter,
            start_ms=at_ms - step,
            severity=Severity.MAJOR if z >= 3 * self.p.z_min else Severity.MINOR,
            estimate=Estimate(dev, unit, per_day, per_day_unit, cny),
            evidence={
                "quantity": key.quantity,
                "direction": "high" if dev >= 0 else "low",
                "value": expected + dev,
                "expected": expected,
                "scales": round(z, 2),
                "reason": _REASONS[reason],
            },
        )


# why an anomaly opened (evidence["reason"]); -1: the deviation from a trusted profile
_REASONS = {
    -1: "deviation",
    0: "new_value_extreme",
    1: "new_level_extreme",
    2: "new_largest_jump",
    3: "new_deviation_high",
}


def params_doc() -> dict[str, Any]:
    """The defaults, for documentation and the benchmark's report."""
    return asdict(BaselineParams())
