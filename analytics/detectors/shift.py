"""Level shift: a fast-sampled meter's instant quantities change level within minutes.

The baseline (``baseline``) judges a reading against a day of the meter's own history and
averages over an hour: right for meters read every minute for months, blind on a rig read
every second whose valve closes for seven minutes. This is the change-point rule a
monitoring product runs beside it on such meters, on a time scale of minutes and with no
day of history: for each row (the same rows as the baseline: the utility's rates and the
park's own instant quantities), the median of the last ``short_s`` against the median of
the ``reference_s`` before it, in units of that reference's robust spread (1.4826 · MAD, or
1.2533 · its mean absolute deviation where larger: a quantised reference sitting on one
value more than half the time has a MAD of 0; never below the float's resolution). A meter
shifts when at least ``min_rows`` of its rows (all of them, if it has fewer) are
``z_open`` scales off for ``persist_s`` on end; the event's reference is the one as that
run began. It closes when every row is back within ``z_close`` scales of it for
``persist_s`` (the level came back), or after ``settle_s`` (the new level is the meter's
normal now); then no event opens until both windows hold only readings after that end.

Windows are in seconds and counted in slots of the park's step, so the rule is scaled by the
meter's sampling: a window is judged only where at least ``min_share`` of its slots hold a
reading (a meter reading every minute in a 1-s park never is), and a park whose step, or a
meter whose declared ``interval_s``, leaves the short window fewer than ``min_slots`` readings
(any interval over 3 s: the demo's and NAB's minutes) gives the detector no rows — it adds
nothing where the baseline is at home.
Its state is each row's ring of the last ``short_s + reference_s`` of slots, the reference
of a run or open event, and each meter's run, age and quiet counts (``kernels.shift``).
"""

from __future__ import annotations

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
)
from analytics.kernels.shift import shift_slots
from parkwatch.events import Estimate, Family, Severity

KIND = "level_shift"


@dataclass(frozen=True, slots=True)
class ShiftParams:
    """Defaults, fixed once for every meter and park (chosen on SKAB's valve1 experiments,
    round numbers; times in seconds, so they mean the same at any fast step)."""

    short_s: float = 30.0  # the recent window whose median is judged …
    reference_s: float = 300.0  # … against the median and spread of the minutes before it
    min_slots: int = 10  # the short window must span this many slots (step ≤ 3 s)
    min_share: float = 0.5  # a window is judged with readings in this share of its slots
    z_open: float = 5.0  # a row's level left its reference range by this many scales …
    # … in this many of the meter's rows at once (all, if it has fewer; at 2 none of SKAB's
    # valve1 closings was found: the rig's valve shows in its flow alone) …
    min_rows: int = 1
    persist_s: float = 10.0  # … for this long on end
    z_close: float = 2.0  # back within this many scales (every row) for persist_s: closed
    settle_s: float = 600.0  # or a shift that lasts this long is the meter's new normal
    resolution: float = 1e-6  # the scale's floor: this share of the level …
    abs_resolution: float = 1e-9  # … and this, in the quantity's unit (a level of 0)

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any]) -> ShiftParams:
        known = {f.name for f in fields(cls)}
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"unknown shift parameter(s): {', '.join(sorted(unknown))}")
        return replace(cls(), **params)


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
            own = ctx.tree.meters[meter].spec.interval_s
            return own is None or own * 1000 <= fastest_ms

        return [key for key in BaselineDetector.select(ctx) if fast(key.meter)]

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
        self._meter_of = np.array([index[k.meter] for k in self.series], dtype=np.int64)
        counts = np.bincount(self._meter_of, minlength=len(self._meters))
        self._need = np.minimum(counts, self.p.min_rows).astype(np.int64)
        self._units = [ctx.quantity(k.quantity).unit for k in self.series]
        step = ctx.step_ms
        self._short = _slots(self.p.short_s, step)
        self._reference = _slots(self.p.reference_s, step)
        self.s: dict[str, Any] = {
            "ring": np.full((self._short + self._reference, rows), np.nan),
            "med_ring": np.full((self._short + self._reference, rows), np.nan),
            "fed": np.zeros(rows, dtype=np.int64),
            # the reference of a run or open event: median, lowest and highest short
            # median, scale
            "ref": np.full((4, rows), np.nan),
            "row_shifted": np.zeros(rows, dtype=bool),
            # per meter: run, open, age, calm, quiet (kernels.shift_slots)
            "meter": np.zeros((len(self._meters), 5), dtype=np.int64),
            "run_start_ms": np.zeros(len(self._meters), dtype=np.int64),
            "step_ms": step,
        }

    # -- contract -----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self.s.items()}

    def restore(self, state: Mapping[str, Any]) -> None:
        for key, value in state.items():
            if key not in self.s:
                raise ValueError(f"unknown shift state {key!r}")
            self.s[key] = np.array(value, copy=True) if isinstance(value, np.ndarray) else value

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
            self._meter_of,
            self._need,
            np.array([p.z_open, p.z_close, p.min_share, p.resolution, p.abs_resolution]),
            np.array(
                [self._short, self._reference, _slots(p.persist_s, step), _slots(p.settle_s, step)],
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
        for k, m, row, value, expected, z, n_shift, onset in opened.tolist():
            at_ms = block.start_ms + (int(k) + 1) * step
            findings.append(
                (int(k), self._opening(int(m), int(row), value, expected, z, int(n_shift),
                                       at_ms, int(onset)))
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
        expected: float,
        z: float,
        shifted: int,
        at_ms: int,
        onset_ms: int,
    ) -> Finding:
        key = self.series[row]
        dev = value - expected
        return Finding(
            kind=KIND,
            family=Family.CONSUMPTION,
            at_ms=at_ms,
            active=True,
            meter=self._meters[meter],
            start_ms=min(onset_ms, at_ms),
            severity=Severity.MAJOR if abs(z) >= 3 * self.p.z_open else Severity.MINOR,
            estimate=Estimate(dev, self._units[row]),
            evidence={
                "quantity": key.quantity,
                "direction": "high" if dev >= 0 else "low",
                "value": value,
                "expected": expected,
                "scales": round(z, 2),
                "rows_shifted": shifted,
                "window_s": self.p.short_s,
                "reference_s": self.p.reference_s,
            },
        )


def params_doc() -> dict[str, Any]:
    """The defaults, for documentation."""
    return asdict(ShiftParams())
