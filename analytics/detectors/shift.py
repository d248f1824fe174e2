"""Level shift: a fast-sampled meter's instant quantities change level within minutes.

The baseline (``baseline``) judges a reading against a day of the meter's own history and
averages over an hour: right for meters read every minute for months, blind on a rig read
every second whose valve closes for seven minutes. This is the change-point rule a
monitoring product runs beside it on such meters, on a time scale of minutes and with no
day of history: for each row (the baseline's rows whose quantity the park names in
``analytics.level_shift``: on a rate that follows machines starting and stopping every start
is a level shift, so only quantities that run steady are watched), the median of the last
``short_s`` against the range the ``short_s`` medians wandered in over the ``reference_s``
before it, in units of that reference's robust spread (1.4826 · MAD, or 1.2533 · its mean
absolute deviation where larger: a quantised reference sitting on one value more than half
the time has a MAD of 0; never below the float's resolution). A meter shifts when at least
``min_rows`` of its rows (all of them, if it has fewer) are ``z_open`` scales beyond that
range for ``persist_s`` on end; the event's reference is the one as that run began, and
judged against it enough rows must have shifted. It closes when every row that shifted is
back within ``z_close`` scales of it for ``short_s`` (or ``persist_s`` if longer: a
return shorter than the window is part of the event) (the level came back: until both
windows hold only later readings, the rows that shifted are judged against that reference
widened by their levels since, the others against their own moving range: a row that drifted
through the event, which one event per meter hid, is not raised for it), or after
``settle_s`` (the new level is the meter's normal now; nothing opens until both windows hold
only later readings).

Windows are in seconds and counted in slots of the park's step, so the rule is scaled by the
meter's sampling: a window is judged only where at least ``min_share`` of the readings
expected in it (its slots, times the park's step over the meter's own ``interval_s``) are
there (a meter reading every minute in a 1-s park, undeclared, never is), and a park whose
step, or a meter whose declared ``interval_s``, leaves the short window fewer than
``min_slots`` readings (any interval over 3 s: the demo's and NAB's minutes) gives the
detector no rows — it adds nothing where the baseline is at home.
Its state is each row's ring of the last ``short_s + reference_s`` of slots and of short
medians, the reference of a run, open event or quiet period, and each meter's run, age and
quiet counts (``kernels.shift``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar

import numpy as np

from analytics.detectors.baseline import BaselineDetector
from analytics.engine.contract import (
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
from analytics.kernels.shift import shift_slots
from parkwatch.events import Estimate, Family, Severity

KIND = "level_shift"
SCALES_CAP = 1000.0  # the evidence's scales are reported up to this


@dataclass(frozen=True, slots=True)
class ShiftParams:
    """Defaults, fixed once for every meter and park (chosen on SKAB's valve1 experiments,
    round numbers; times in seconds, so they mean the same at any fast step)."""

    short_s: float = 30.0  # the recent window whose median is judged …
    reference_s: float = 300.0  # … against the range and spread of the minutes before it …
    min_slots: int = 10  # the short window must span this many slots (step ≤ 3 s)
    min_share: float = 0.5  # a window is judged with readings in this share of its slots
    z_open: float = 5.0  # a row's level left its reference range by this many scales …
    # … in this many of the meter's rows at once (all, if it has fewer; at 2 none of SKAB's
    # valve1 closings was found: the rig's valve shows in its flow alone) …
    min_rows: int = 1
    persist_s: float = 10.0  # … for this long on end
    z_close: float = 2.0  # back within this many scales (every row) for short_s: closed
    settle_s: float = 600.0  # or a shift that lasts this long is the meter's new normal
    resolution: float = 1e-6  # the scale's floor: this share of the level …
    abs_resolution: float = 1e-9  # … and this, in the quantity's unit (a level of 0)

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any]) -> ShiftParams:
        known = {f.name for f in fields(cls)}
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"unknown shift parameter(s): {', '.join(sorted(unknown))}")
        p = replace(cls(), **params)
        if not all(isinstance(getattr(p, n), int) for n in ("min_rows", "min_slots")):
            raise ValueError("shift: min_rows and min_slots must be whole numbers")
        if not all(math.isfinite(getattr(p, f.name)) for f in fields(p)):
            # NaN passes none of the comparisons below and fails none
            raise ValueError("shift: every parameter must be a finite number")
        if p.resolution < 0 or p.abs_resolution <= 0:
            # the scale's floor: a flat reference's scale is never 0
            raise ValueError("shift: resolution >= 0 and abs_resolution > 0")
        if p.short_s <= 0 or p.reference_s <= p.short_s:
            raise ValueError("shift: 0 < short_s < reference_s")
        if p.min_rows < 1 or p.min_slots < 1:
            raise ValueError("shift: min_rows and min_slots must be at least 1")
        if not 0 < p.min_share <= 1:
            raise ValueError("shift: min_share must be in (0, 1]")
        if not 0 <= p.z_close < p.z_open:
            raise ValueError("shift: 0 <= z_close < z_open")
        if p.persist_s <= 0 or p.settle_s < p.short_s + p.reference_s:
            # a new level is accepted only once both windows hold it alone
            raise ValueError("shift: persist_s > 0 and settle_s >= short_s + reference_s")
        return p


def _slots(seconds: float, step_ms: int) -> int:
    return max(1, round(seconds * 1000 / step_ms))


class ShiftDetector(Detector):
    """A fast-sampled meter's level shifts within minutes (change points)."""

    name: ClassVar[str] = "shift"
    kinds: ClassVar[tuple[str, ...]] = (KIND,)
    scope: ClassVar[Scope] = Scope.METER
    needs: ClassVar[Needs] = Needs(quantities=())
    values_only: ClassVar[bool] = True  # its kernel reads values alone

    @classmethod
    def select(cls, ctx: ParkContext) -> list[SeriesKey]:
        """The baseline's rows of the meters read fast enough for the windows at their
        defaults: the park's step and the meter's own interval (``interval_s``, else the
        park's) leave the short window ``min_slots`` readings (else none: the rule has
        nothing to judge on minutes)."""
        p = ShiftParams()
        fastest_ms = p.short_s * 1000 / p.min_slots
        if ctx.step_ms > fastest_ms:
            return []

        def fast(meter: str) -> bool:
            # the short window must hold min_slots of the meter's readings (its coverage is
            # then judged against those it should hold: ShiftDetector._share)
            own = ctx.tree.meters[meter].spec.interval_s
            return own is None or own * 1000 <= fastest_ms

        # only the quantities the park names: on most meters a level change within minutes
        # is a machine starting (a power meter's rate), and would alert at every start
        wanted = set(ctx.park.analytics.level_shift)
        return [
            key
            for key in BaselineDetector.select(ctx)
            if key.quantity in wanted and fast(key.meter)
        ]

    def __init__(
        self,
        ctx: ParkContext,
        series: Sequence[SeriesKey],
        params: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(ctx, series, params)
        self.p = ShiftParams.from_mapping(self.params)
        rows = len(self.series)
        self._meters = list(dict.fromkeys(key.meter for key in self.series))
        index = {m: i for i, m in enumerate(self._meters)}
        meter_of = np.array([index[k.meter] for k in self.series], dtype=np.int64)
        # each meter's rows, order[first[i]:first[i + 1]]: the kernel visits only those
        self._order = np.argsort(meter_of, kind="stable").astype(np.int64)
        counts = np.bincount(meter_of, minlength=len(self._meters))
        self._first = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        # the share of the park's slots a row is expected to fill: a meter read every 3 s in
        # a 1-s park fills a third, and its windows' coverage is judged against that
        step = ctx.step_ms
        own = [ctx.tree.meters[k.meter].spec.interval_s for k in self.series]
        self._share = np.array(
            [1.0 if o is None else min(1.0, step / (o * 1000)) for o in own], dtype=np.float64
        )
        self._need = np.minimum(counts, self.p.min_rows).astype(np.int64)
        self._units = [ctx.quantity(k.quantity).unit for k in self.series]
        self._short = _slots(self.p.short_s, step)
        self._reference = _slots(self.p.reference_s, step)
        self.s: dict[str, Any] = {
            "ring": np.full((self._short + self._reference, rows), np.nan),
            "med_ring": np.full((self._short + self._reference, rows), np.nan),
            "fed": np.zeros(rows, dtype=np.int64),
            # the reference of a run, open event or quiet period: median, lowest and highest
            # level (short median), scale
            "ref": np.full((4, rows), np.nan),
            "row_shifted": np.zeros(rows, dtype=bool),
            # per meter: run, open, age, calm, quiet (kernels.shift_slots)
            "meter": np.zeros((len(self._meters), 5), dtype=np.int64),
            "run_start_ms": np.zeros(len(self._meters), dtype=np.int64),
            "step_ms": step,
        }

    # -- contract -----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return copy_state(self.s)

    def restore(self, state: Mapping[str, Any]) -> None:
        restore_state(self.s, state, "shift")

    def update(self, block: Block) -> Output:
        out = Output()
        if block.slots == 0 or block.rows == 0:
            return out
        if block.rows != len(self.series):
            raise ValueError(f"block has {block.rows} rows, the detector {len(self.series)}")
        step = block.step_ms
        if step != self.s["step_ms"]:
            # its windows were counted in slots of the park's step
            raise ValueError(f"slot step {step} ms, the detector's {self.s['step_ms']} ms")
        p = self.p
        s = self.s
        opened, closed = shift_slots(
            np.ascontiguousarray(block.values, dtype=np.float64),
            block.start_ms,
            step,
            self._order,
            self._first,
            self._share,
            self._need,
            np.array([p.z_open, p.z_close, p.min_share, p.resolution, p.abs_resolution]),
            np.array(
                [
                    self._short,
                    self._reference,
                    _slots(p.persist_s, step),
                    _slots(p.settle_s, step),
                ],
                dtype=np.int64,
            ),
            s["ring"],
            s["med_ring"],
            s["fed"],
            s["ref"],
            s["row_shifted"],
            s["meter"],
            s["run_start_ms"],
        )
        findings: list[tuple[int, Finding]] = []
        for k, m, row, value, expected, z, n_shift, onset, low, high, scale in opened.tolist():
            at_ms = block.start_ms + (int(k) + 1) * step
            findings.append(
                (int(k), self._opening(int(m), int(row), value, (expected, low, high, scale),
                                       z, int(n_shift), at_ms, int(onset)))
            )  # fmt: skip
        for k, m, came_back in closed.tolist():
            at_ms = block.start_ms + (k + 1) * step
            findings.append(
                (
                    k,
                    Finding(
                        KIND,
                        Family.CONSUMPTION,
                        at_ms,
                        False,
                        meter=self._meters[m],
                        evidence={"ended": "level_back" if came_back else "new_level"},
                    ),
                )
            )
        # slot by slot, an opening before a closing of the same slot (another meter's)
        out.findings.extend(
            f for _, f in sorted(findings, key=lambda kf: (kf[0], not kf[1].active))
        )
        return out

    def _opening(
        self,
        meter: int,
        row: int,
        value: float,
        reference: tuple[float, float, float, float],
        z: float,
        shifted: int,
        at_ms: int,
        onset_ms: int,
    ) -> Finding:
        if row < 0:
            # the kernel opens only with a row shifted against the frozen reference
            raise ValueError("shift: an opening without a shifted row")
        key = self.series[row]
        expected, low, high, scale = reference
        # the step beyond the range the level wandered in (what ``scales`` measures); the
        # reference's median is ``expected``
        dev = value - (high if value > high else low)
        return Finding(
            kind=KIND,
            family=Family.CONSUMPTION,
            at_ms=at_ms,
            active=True,
            meter=self._meters[meter],
            start_ms=min(onset_ms, at_ms),
            severity=Severity.MAJOR if abs(z) >= 3 * self.p.z_open else Severity.MINOR,
            estimate=Estimate(value - expected, self._units[row]),
            evidence={
                "quantity": key.quantity,
                "direction": "high" if z >= 0 else "low",
                "value": value,
                "expected": expected,
                "range_low": low,
                "range_high": high,
                "scale": scale,
                # (value − the range's nearer end) / scale; capped: past it the scale is the
                # float's resolution (a flat reference, e.g. an exact 0) and says nothing more
                "scales": round(max(-SCALES_CAP, min(SCALES_CAP, dev / scale)), 2),
                "rows_shifted": shifted,
                "window_s": self.p.short_s,
                "reference_s": self.p.reference_s,
            },
        )


def params_doc() -> dict[str, Any]:
    """The defaults, for documentation."""
    return asdict(ShiftParams())
