"""Baseline deviation: an instant quantity departs from what the meter's own history predicts.

Every row (a meter's consumption rate, or any instant quantity the park declares) keeps, in
numpy arrays across all rows, with a loop over slots only:

* a **baseline**: a time-of-day profile per day type (workday, Saturday, Sunday, holiday, from
  ``ctx.day_types``, make-up workdays counting as workdays) in ``season_bins`` bins, plus an
  offset that follows a lasting change over ``offset_tau_h``. A reading is compared with the
  band its bin and the two next to it span (the bins of the slots next to it, where a slot is
  longer than a bin: an hourly meter's neighbours are an hour away, not empty half hours), so
  a shift a little earlier or later than usual is no deviation. A day type's profile is
  trusted once ``season_days`` days of that type have been seen; until then (cold start, a
  first Saturday or holiday) the band is what the trusted profiles of the other day types
  and the recent level explain;
* a **robust scale**: the exponential mean of the profile's misses, each clipped at ``clip``
  scales so that one spike does not blind it;
* **records**: the largest scaled deviation of recent weeks (halving every
  ``record_half_life_d``), and the highest and lowest value, smoothed level and smoothed
  variability, jump between readings and smoothed deviation ever seen.

An anomaly opens when

* a deviation from a *trusted* profile goes beyond ``record_margin`` × the record and
  ``z_min`` scales (without a trusted baseline there is nothing to deviate from), and no
  deviation opened an event in the last ``deviation_quiet_h`` (a day: the operator has heard
  of this meter's baseline today), or
* the value or its smoothed level leaves the range seen so far by ``extreme_margin`` of it, or
  the smoothed variability does upwards; or the jump between readings or the smoothed
  deviation beats its largest so far by ``peak_margin``.

These are the tricks that win the Numenta Anomaly Benchmark — alarms on new extremes, no
repeated alarm while an anomaly lasts, and calibration on each series' own history instead of
a global threshold on values — without its look-ahead (NAB's best detectors scale every file
by its whole-file minimum and maximum; a live meter cannot). While an anomaly lasts the
baseline does not follow it and the record grows at most to ``record_growth`` × its value at
the opening; the anomaly closes after ``hold_h`` once the deviation is back under ``z_close``
scales. Nothing fires in the first ``warmup_d`` of a series, and a slot without a reading is
no evidence. Rows of one meter share one event: it opens when any of its rows fires and closes
when all are quiet. The evidence says why it opened (``reason``).
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
    FloatArray,
    Needs,
    Output,
    ParkContext,
    Scope,
    SeriesKey,
)
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
    scale_tau_h: float = 24.0  # memory of the deviation scale
    feature_tau_h: float = 3.0  # smoothing of level and variability for their records
    record_half_life_d: float = 14.0  # how fast the deviation record is forgotten
    record_margin: float = 1.2  # fire above this × the record …
    z_min: float = 4.0  # … and at least this many scales
    z_close: float = 2.0  # an anomaly ends under this many scales …
    hold_h: float = 1.0  # … once it has lasted this long
    extreme_margin: float = 0.05  # a new extreme must pass the old by this share of the range
    peak_margin: float = 0.3  # a new largest jump or deviation level: this share above the old
    record_growth: float = 2.0  # the record may grow to this × its value at an opening
    clip: float = 4.0  # deviations are clipped at this many scales for the scale
    range_floor: float = 0.001  # scale floor as a share of the range seen (flat series)
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


# the per-row float state (counts, day bookkeeping and profiles are set up beside)
_ROW_STATE = (
    "level", "offset", "scale", "record", "record_cold", "record_open", "lo", "hi",
    "feat_level", "feat_var", "level_lo", "level_hi", "var_lo", "var_hi", "dev", "expected",
    "level_scale", "prev_x", "jump_hi", "feat_dev", "dev_hi",
)  # fmt: skip


class BaselineDetector(Detector):
    """Deviation of any instant quantity from the meter's own baseline."""

    name: ClassVar[str] = "baseline"
    kinds: ClassVar[tuple[str, ...]] = (KIND,)
    scope: ClassVar[Scope] = Scope.METER
    needs: ClassVar[Needs] = Needs(quantities=())
    row_subsets: ClassVar[bool] = True  # rows are independent: one instance per park

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
        self._one_row_per_meter = len(meters) == rows
        units = [ctx.quantity(k.quantity).unit for k in self.series]
        self._units = units
        nan = np.full(rows, np.nan)
        self.s: dict[str, Any] = {name: nan.copy() for name in _ROW_STATE}
        for name in (
            "record", "record_cold", "record_open", "feat_var", "scale", "level_scale", "offset",
            "jump_hi", "feat_dev", "dev_hi",
        ):  # fmt: skip
            self.s[name] = np.zeros(rows)
        self.s["lo"] = np.full(rows, np.inf)
        self.s["hi"] = np.full(rows, -np.inf)
        self.s["level_lo"] = np.full(rows, np.inf)
        self.s["level_hi"] = np.full(rows, -np.inf)
        self.s["var_lo"] = np.full(rows, np.inf)
        self.s["var_hi"] = np.full(rows, -np.inf)
        # what the last slot with a new event saw (not state: read right after that slot)
        self._z: dict[int, float] = {}
        self._reason: dict[int, int] = {}
        self.s["seen"] = np.zeros(rows, dtype=np.int64)
        self.s["quiet"] = np.zeros(rows, dtype=np.int64)  # slots until a deviation may open
        self.s["hold"] = np.zeros(rows, dtype=np.int64)
        self.s["own_seen"] = np.zeros(rows, dtype=np.int64)
        # one profile per day type: workday, Saturday, Sunday, holiday (ctx.day_types)
        # [day type, …, row]: a slot touches one bin of every row, contiguous in memory
        self.s["days_seen"] = np.zeros((DAY_TYPES, rows), dtype=np.int64)
        self.s["last_day"] = np.full((DAY_TYPES, rows), -1, dtype=np.int64)
        self.s["profile"] = np.full((DAY_TYPES, self.p.season_bins, rows), np.nan)
        self.s["profile_n"] = np.zeros((DAY_TYPES, self.p.season_bins, rows), dtype=np.int32)
        self.s["open"] = np.zeros(rows, dtype=bool)
        self.s["meter_open"] = np.zeros(len(meters), dtype=bool)
        self.s["step_ms"] = 0

    # -- contract -----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self.s.items()}

    def restore(self, state: Mapping[str, Any]) -> None:
        for key, value in state.items():
            if key not in self.s:
                raise ValueError(f"unknown baseline state {key!r}")
            self.s[key] = np.array(value, copy=True) if isinstance(value, np.ndarray) else value

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
        for k in range(block.slots):
            fired, closed = self._slot(
                block.values[:, k], index, int(day[k]), int(kinds[k]), int(bins[k]), rates
            )
            at_ms = int(times[k]) + step
            if fired.size or closed.size:
                self._findings(out, fired, closed, at_ms, step)
        return out

    # -- the recursion, one slot for all rows ----------------------------------------------

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
            "warm": max(int(p.warmup_d * DAY_MS / step), p.warmup_min_slots),
            "hold": max(1, round(p.hold_h * HOUR_MS / step)),
            "quiet": round(p.deviation_quiet_h * HOUR_MS / step),
            "near": max(1, round(step * p.season_bins / DAY_MS)),
        }

    def _slot(
        self,
        x: FloatArray,
        index: npt.NDArray[np.intp] | None,
        day: int,
        kind: int,
        b: int,
        r: dict[str, float],
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """One slot of the block's rows (``index``: which of the detector's rows they are;
        None: all of them, in order)."""
        s, p = self.s, self.p
        block_rows: slice | npt.NDArray[np.intp] = slice(None) if index is None else index
        s["record"][block_rows] *= r["decay"]
        s["record_cold"][block_rows] *= r["decay"]
        quiet_all = s["quiet"]
        quiet_all[block_rows] = np.maximum(quiet_all[block_rows] - 1, 0)
        ok = ~np.isnan(x)
        valid = int(np.count_nonzero(ok))
        if valid == 0:
            return _NONE, _NONE
        # the state rows of the readings: all rows (the usual case) as a slice, so that
        # reading and writing the state needs no gathers and scatters
        rows: slice | npt.NDArray[np.intp]
        if valid == x.size:
            rows, xv = block_rows, x
        else:
            rows = np.flatnonzero(ok) if index is None else index[ok]
            xv = x[ok]

        def get(name: str) -> npt.NDArray[Any]:
            return np.array(s[name][rows])  # a copy: the state is written back below

        seen = get("seen") + 1
        s["seen"][rows] = seen
        first = seen == 1
        # days of each type seen, counted when a new local day of that type starts
        last_day = s["last_day"][kind]
        days_seen = s["days_seen"]
        days_seen[kind, rows] += last_day[rows] != day
        last_day[rows] = day

        level = np.where(first, xv, get("level"))
        lo, hi = get("lo"), get("hi")
        span = hi - lo
        span[~np.isfinite(span)] = 0.0
        # the expected band: where this day type's profile is trusted, its bin and the two
        # next to it (plus the offset); otherwise whatever the trusted profiles of the other
        # day types or the recent level explain (a first Saturday or holiday is no anomaly)
        # (the next bins *with readings*: where a slot spans several bins, the next slot's)
        near = int(r["near"])
        near_bins = (b + np.array([-near, 0, near])) % p.season_bins
        profile, counts = s["profile"], s["profile_n"]  # [day types, bins, rows]
        own_bins = profile[kind]
        # a bin never seen is NaN, which fmin and fmax pass over
        near_prev, own_v, near_next = (own_bins[j][rows] for j in near_bins.tolist())
        own_n = counts[kind, b][rows]
        ready_types = days_seen[:, rows] > p.season_days  # [day types, rows]
        own = ready_types[kind] & (own_n > 0)
        offset = get("offset")
        band_lo = np.fmin(np.fmin(near_prev, own_v), near_next) + offset
        band_hi = np.fmax(np.fmax(near_prev, own_v), near_next) + offset
        cold = np.flatnonzero(~own)
        if cold.size:
            band_lo[cold], band_hi[cold] = self._cold_band(
                rows, cold, near_bins, ready_types, b, level
            )
        dev = np.where(xv > band_hi, xv - band_hi, np.where(xv < band_lo, xv - band_lo, 0.0))
        scale = get("scale")
        # without a trusted profile the level predicts, and a level lags behind every ramp:
        # measure against the level's own typical miss as well
        level_scale = get("level_scale")
        unit = np.where(own, scale, np.maximum(scale, level_scale))
        z = np.abs(dev) / (unit + 1e-12 + p.range_floor * span)
        z[first] = 0.0

        own_seen_prev = get("own_seen")
        # new extremes: of the value, of its smoothed level (high or low), of its smoothed
        # variability, of the jump between readings, and of the smoothed deviation from a
        # trusted profile (a new peak of these beats the old one by peak_margin)
        a_f = r["feature"]
        f_level = np.where(first, xv, get("feat_level"))
        f_var = get("feat_var")
        f_level_new = f_level + a_f * (xv - f_level)
        f_var_new = f_var + a_f * (np.abs(xv - f_level) - f_var)
        margin = p.extreme_margin
        lvl_lo, lvl_hi = get("level_lo"), get("level_hi")
        var_lo, var_hi = get("var_lo"), get("var_hi")
        lvl_span = lvl_hi - lvl_lo
        var_span = var_hi - var_lo
        jump = np.abs(xv - get("prev_x"))
        jump[np.isnan(jump)] = 0.0
        jump_hi = get("jump_hi")
        f_dev = get("feat_dev")
        f_dev_new = np.where(own, f_dev + a_f * (np.abs(dev) - f_dev), f_dev)
        dev_hi = get("dev_hi")
        peak = 1.0 + p.peak_margin
        with np.errstate(invalid="ignore"):
            # one mask per reason, in the order the evidence names them
            reasons = np.stack(
                [
                    (xv > hi + margin * span) | (xv < lo - margin * span),
                    (lvl_span > 0)
                    & (
                        (f_level_new > lvl_hi + margin * lvl_span)
                        | (f_level_new < lvl_lo - margin * lvl_span)
                    ),
                    (var_span > 0) & (f_var_new > var_hi + margin * var_span),
                    (jump_hi > 0) & (jump > jump_hi * peak),
                    own & (own_seen_prev > r["warm"]) & (dev_hi > 0) & (f_dev_new > dev_hi * peak),
                ]
            )
        extreme = reasons.any(axis=0)
        warm = seen > r["warm"]
        # each way of predicting (a trusted profile; the cold-start band) has its own record:
        # the misses of one say nothing about the other's
        record_own, record_cold = get("record"), get("record_cold")
        own_seen = get("own_seen") + own
        s["own_seen"][rows] = own_seen
        # until the profile has a day of its own misses, the cold-start record stands too
        settled_own = own_seen > r["warm"]
        record = np.where(
            own, np.where(settled_own, record_own, np.maximum(record_own, record_cold)), record_cold
        )
        # a deviation counts only against a trusted profile: before one, only new extremes
        z_ok = own & (z > np.maximum(record * p.record_margin, p.z_min))
        # a deviation opens no new event within a day of the last one it opened: the
        # operator has heard about this meter's baseline today (new extremes still do)
        quiet = get("quiet")
        z_ok &= quiet == 0
        fire = warm & (z_ok | extreme)

        # row events: open on fire; close after the hold once the deviation is small
        was_open = get("open")
        opening = fire & ~was_open
        hold = np.where(opening, r["hold"], np.maximum(get("hold") - 1, 0))
        closing = was_open & ~fire & (hold <= 0) & (z < p.z_close)
        is_open = (was_open | opening) & ~closing
        s["quiet"][rows] = np.where(opening & ~extreme, int(r["quiet"]), quiet)
        s["open"][rows] = is_open
        s["hold"][rows] = hold
        rec_open = np.where(opening, np.maximum(record, p.z_min), get("record_open"))
        s["record_open"][rows] = rec_open
        # records: during an anomaly the record grows at most to record_growth × its opening
        settled = seen > p.record_skip_slots
        z_rec = np.where(is_open, np.minimum(z, p.record_growth * rec_open), z)
        s["record"][rows] = np.where(settled & own, np.maximum(record_own, z_rec), record_own)
        s["record_cold"][rows] = np.where(
            settled & ~own, np.maximum(record_cold, z_rec), record_cold
        )
        s["dev"][rows] = dev
        s["expected"][rows] = np.where(dev > 0, band_hi, band_lo)

        # learn: scale, level, offset, profile, ranges
        grown = seen > p.warmup_min_slots
        rate_scale = np.maximum(1.0 / seen, r["scale"])
        # the scale is the typical miss of the profile's own bin (not of the band, which
        # forgives most readings), clipped so that one spike does not blind it
        resid = np.where(own, xv - (own_v + offset), xv - level)
        resid = np.where(grown, np.clip(resid, -p.clip * scale, p.clip * scale), resid)
        s["scale"][rows] = scale + rate_scale * (np.abs(resid) - scale)
        miss = xv - level
        miss = np.where(grown, np.clip(miss, -p.clip * level_scale, p.clip * level_scale), miss)
        s["level_scale"][rows] = level_scale + rate_scale * (np.abs(miss) - level_scale)
        s["level"][rows] = level + r["level"] * (xv - level)
        # the baseline does not follow an anomaly while it lasts
        follow = own & ~is_open
        s["offset"][rows] = np.where(follow, offset + r["offset"] * ((xv - own_v) - offset), offset)
        known = own_n > 0
        step_ = np.where(known, xv - own_v, xv)
        bound = p.clip * scale + np.abs(offset)
        step_ = np.where(known & grown, np.clip(step_, -bound, bound), step_)
        rate = np.where(known, np.maximum(1.0 / (own_n + 1), p.season_rate), 1.0)
        profile[kind, b, rows] = np.where(known, own_v + rate * step_, xv)
        counts[kind, b, rows] = own_n + 1
        s["lo"][rows] = np.minimum(lo, xv)
        s["hi"][rows] = np.maximum(hi, xv)
        s["feat_level"][rows] = f_level_new
        s["feat_var"][rows] = f_var_new
        s["level_lo"][rows] = np.where(settled, np.minimum(lvl_lo, f_level_new), lvl_lo)
        s["level_hi"][rows] = np.where(settled, np.maximum(lvl_hi, f_level_new), lvl_hi)
        s["var_lo"][rows] = np.where(settled, np.minimum(var_lo, f_var_new), var_lo)
        s["var_hi"][rows] = np.where(settled, np.maximum(var_hi, f_var_new), var_hi)
        s["prev_x"][rows] = xv
        s["jump_hi"][rows] = np.where(settled, np.maximum(jump_hi, jump), jump_hi)
        s["feat_dev"][rows] = f_dev_new
        s["dev_hi"][rows] = np.where(settled & own, np.maximum(dev_hi, f_dev_new), dev_hi)

        # meters: one event per meter, open while any of its rows is
        if not (opening.any() or closing.any()):
            return _NONE, _NONE
        meter_now = self._meter_any(s["open"])
        before = s["meter_open"]
        s["meter_open"] = meter_now
        fired_meters = np.flatnonzero(meter_now & ~before)
        closed_meters = np.flatnonzero(before & ~meter_now)
        if fired_meters.size == 0 and closed_meters.size == 0:
            return _NONE, _NONE
        ids = np.arange(s["seen"].size)[rows]
        self._z = dict(zip(ids.tolist(), z.tolist(), strict=True))
        why = np.where(extreme, reasons.argmax(axis=0), -1)
        self._reason = dict(zip(ids.tolist(), why.tolist(), strict=True))
        opened_rows = ids[opening]
        # the row that opened each meter's event (the first, in row order)
        firing = [int(opened_rows[self._meter_of[opened_rows] == m][0]) for m in fired_meters]
        return np.array(firing, dtype=np.intp), closed_meters.astype(np.intp)

    def _cold_band(
        self,
        rows: slice | npt.NDArray[np.intp],
        cold: npt.NDArray[np.intp],
        near_bins: npt.NDArray[np.int64],
        ready_types: npt.NDArray[np.bool_],
        b: int,
        level: FloatArray,
    ) -> tuple[FloatArray, FloatArray]:
        """The band of rows without a trusted profile of today's type: what the trusted
        profiles of the other day types (near this bin) and the recent level explain."""
        lv = level[cold]
        ready = ready_types[:, cold]
        if not ready.any():  # cold start: nothing but the level yet
            return lv, lv
        ids = np.arange(self.s["seen"].size)[rows][cold]
        lo = lv.copy()
        hi = lv.copy()
        for day_type in np.flatnonzero(ready.any(axis=1)).tolist():
            near = self.s["profile"][day_type][near_bins][:, ids]  # [3, cold rows]; NaN: unseen
            usable = ready[day_type] & ~np.isnan(near[1])
            near_lo = np.fmin(np.fmin(near[0], near[1]), near[2])
            near_hi = np.fmax(np.fmax(near[0], near[1]), near[2])
            lo = np.where(usable, np.minimum(lo, near_lo), lo)
            hi = np.where(usable, np.maximum(hi, near_hi), hi)
        return lo, hi

    def _meter_any(self, row_open: BoolArray) -> BoolArray:
        if self._one_row_per_meter:
            return row_open.copy()
        out = np.zeros(len(self._meters), dtype=bool)
        np.logical_or.at(out, self._meter_of, row_open)
        return out

    # -- findings ---------------------------------------------------------------------------

    def _findings(
        self,
        out: Output,
        fired_rows: npt.NDArray[np.intp],
        closed_meters: npt.NDArray[np.intp],
        at_ms: int,
        step: int,
    ) -> None:
        s = self.s
        z_of, reason_of = self._z, self._reason
        for row in fired_rows.tolist():
            key = self.series[row]
            dev = float(s["dev"][row])
            expected = float(s["expected"][row])
            z = float(z_of.get(row, 0.0))
            unit = self._units[row]
            per_day_unit = _PER_DAY.get(unit)
            per_day = dev * 24.0 if per_day_unit else None
            cny = None
            utility = self.ctx.tree.meters[key.meter].utility
            if per_day is not None and dev > 0 and _PRICED_UNIT.get(utility) == per_day_unit:
                price = self.ctx.unit_price(utility, at_ms)
                cny = None if price is None else per_day * price
            out.findings.append(
                Finding(
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
                        "reason": _REASONS[reason_of.get(row, -1)],
                    },
                )
            )
        for m in closed_meters.tolist():
            out.findings.append(
                Finding(KIND, Family.CONSUMPTION, at_ms, False, meter=self._meters[m])
            )


_NONE: npt.NDArray[np.intp] = np.zeros(0, dtype=np.intp)
# why an anomaly opened (evidence["reason"]); -1: the deviation from a trusted profile
_REASONS = {
    -1: "deviation",
    0: "new_value_extreme",
    1: "new_level_extreme",
    2: "new_variability_high",
    3: "new_largest_jump",
    4: "new_deviation_high",
}


def params_doc() -> dict[str, Any]:
    """The defaults, for documentation and the benchmark's report."""
    return asdict(BaselineParams())
