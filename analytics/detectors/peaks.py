"""Peaks: 15-minute demand, a forecast of the running block, alerts before a contract is broken.

Demand (需量) is the mean active power over the utility's fixed 15-minute blocks on the park's
local clock. For every electricity meter the detector writes ``demand_15m`` (``p_kw_avg``,
``p_kw_max``, ``samples``) when a block ends. Where the meter has a contracted maximum demand
(its own ``contracted_demand_kw``, or its enterprise's for the enterprise's one grid intake), it
forecasts the running block's final demand after every slot — the mean so far over the elapsed
minutes plus the latest power held for the minutes left, as demand controllers do — and opens a
``demand_peak`` event as soon as the forecast reaches the contract, saying how many minutes were
left; the event stays open while consecutive blocks exceed and closes at the end of the first
block that does not. Above 105 % of the contract the excess is billed at double (发改办价格
〔2016〕1583号), so the severity turns critical there.

Coincident peaks (:class:`CoincidentPeaks`, park scope): a block in which the park's own demand
sets a new high for the month while several enterprises are at or near their own highs — the
peaks that build the park's bill.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import repeat
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

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
from analytics.kernels.peaks import demand_running
from parkwatch.events import Estimate, Family, Severity
from parkwatch.formula import parse_formula
from parkwatch.quantities import Utility
from parkwatch.site import PARK_ENTERPRISE, Meter

# a DerivedPoint from its four fields in one tuple, without the named tuple's Python __new__
_point: Any = partial(tuple.__new__, DerivedPoint)

DEMAND_MS = 15 * 60_000
_NO_CEILING = np.empty(0)  # demand_running's "no ceiling"
DEMAND_MEASUREMENT = "demand_15m"
DOUBLE_CHARGE_SHARE = 1.05  # above 105 % of the contract, the excess is charged double
# A supply is sized at most about 2.5 times its contracted demand (the contract may not be set
# under 40 % of the transformer capacity) and a load at its nameplate: power three times the
# larger of the two cannot be drawn, so it is a measurement fault (a word-swapped register
# taken for a good reading, say) and stays out of demand instead of forecasting millions of kW
CEILING_SHARE = 3.0


@dataclass(frozen=True)
class PeakParams:
    alert_share: float = 1.0  # alert when the forecast reaches this share of the contract
    min_elapsed_min: float = 2.0  # no forecast from less of a block than this


def contracted_demands(ctx: ParkContext, meters: Sequence[Meter]) -> list[float | None]:
    """Each meter's contract, or its enterprise's for the enterprise's one grid intake.

    An enterprise fed by several intakes has one contract for their sum, which no single
    meter's demand can be held against: it needs the contract on each intake (or on a
    virtual meter summing them), so none of them takes the enterprise's.
    """
    intakes: dict[str, list[str]] = {}
    for m in enterprise_intakes(ctx):
        intakes.setdefault(m.enterprise, []).append(m.id)
    contract = {e.id: e.contracted_demand_kw for e in ctx.park.enterprises}
    return [
        m.spec.contracted_demand_kw
        if m.spec.contracted_demand_kw is not None
        else contract[m.enterprise]
        if intakes.get(m.enterprise) == [m.id]
        else None
        for m in meters
    ]


def enterprise_intakes(ctx: ParkContext, enterprise: str | None = None) -> list[Meter]:
    """Each enterprise's grid intakes: the top of its electricity tree (no parent, or a parent
    of another enterprise), leaving out what has a role — on-site PV or a battery without a
    parent is a source beside the intake, not the intake — and a virtual meter computed from
    meters outside its own subtree: a net meter ``main - pv`` beside its main measures no
    supply of its own (taken for a second intake, it took the contract from the main)."""
    out = []
    for meter in ctx.tree.meters.values():
        if meter.utility is not Utility.ELECTRICITY or meter.enterprise == PARK_ENTERPRISE:
            continue
        if enterprise is not None and meter.enterprise != enterprise:
            continue
        if meter.role is not None or _reads_beside(ctx, meter):
            continue
        parent = ctx.tree.parent(meter.id)
        if parent is None or parent.enterprise != meter.enterprise:
            out.append(meter)
    return out


def _reads_beside(ctx: ParkContext, meter: Meter) -> bool:
    """Whether ``meter`` is virtual and reads a meter of its own enterprise that is not below
    it (``main - pv``); a tenant metered by difference from other enterprises' meters
    (``feeder - a-main``) is still its enterprise's intake."""
    if not meter.is_virtual:
        return False
    below = {d.id for d in ctx.tree.descendants(meter.id)}
    reads = parse_formula(meter.spec.formula or "", ctx.tree.meters).meters
    return any(m not in below and ctx.tree.meters[m].enterprise == meter.enterprise for m in reads)


class DemandBlocks:
    """The running (unfinished) 15-minute block of many rows, carried between updates."""

    def __init__(self, rows: int) -> None:
        self.block = np.full(rows, -1, dtype=np.int64)  # local block id being summed
        self.psum = np.zeros(rows)  # Σ of slot means with data
        self.slots = np.zeros(rows, dtype=np.int64)  # slots with data
        self.pmax = np.full(rows, -np.inf)
        self.samples = np.zeros(rows, dtype=np.int64)
        self.last = np.full(rows, np.nan)  # the latest slot's power

    def subset(self, idx: npt.NDArray[np.intp]) -> DemandBlocks:
        out = DemandBlocks(0)
        for k in _DEMAND_FIELDS:
            setattr(out, k, getattr(self, k)[idx])
        return out

    def put(self, idx: npt.NDArray[np.intp], part: DemandBlocks) -> None:
        for k in _DEMAND_FIELDS:
            getattr(self, k)[idx] = getattr(part, k)

    def state(self) -> dict[str, Any]:
        return {k: getattr(self, k).copy() for k in _DEMAND_FIELDS}

    def restore(self, state: Mapping[str, Any]) -> None:
        for k in _DEMAND_FIELDS:
            setattr(self, k, np.array(state[k]))


_DEMAND_FIELDS = ("block", "psum", "slots", "pmax", "samples", "last")


@dataclass
class Segment:
    """The slots of one demand block inside an update, with the running sums at each slot."""

    block_id: int
    block_start_ms: int
    ends_ms: IntArray  # end of each slot
    elapsed_min: FloatArray  # minutes of the block elapsed at each slot's end
    psum: FloatArray  # [rows, slots] cumulative
    slots: IntArray
    pmax: FloatArray
    samples: IntArray
    last: FloatArray  # the latest power seen, at each slot

    def mean(self) -> FloatArray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.slots > 0, self.psum / self.slots, np.nan)

    def forecast(self) -> FloatArray:
        """Final demand at each slot if the latest power held for the rest of the block."""
        remaining = 15.0 - self.elapsed_min
        return (self.mean() * self.elapsed_min + self.last * remaining) / 15.0

    @property
    def complete(self) -> bool:
        return bool(self.elapsed_min[-1] >= 15.0)


def power_ceiling(meters: Sequence[Meter], contract: FloatArray) -> FloatArray:
    """Per meter, the power above which a reading is not believed (NaN: no limit known)."""
    rated = np.array([m.spec.rated or np.nan for m in meters], dtype=np.float64)
    return CEILING_SHARE * np.fmax(rated, contract)


def segments(
    block: Block, ctx: ParkContext, carry: DemandBlocks, ceiling: FloatArray | None = None
) -> list[Segment]:
    """Cut a block's slots into demand blocks, continuing the carried partial block, and
    advance ``carry`` to the state after the last slot. Slots whose power is above the row's
    ``ceiling`` count as empty."""
    times = block.times()
    ends = times + block.step_ms
    ids = ctx.local_ms(times) // DEMAND_MS
    local_end = ctx.local_ms(ends)
    elapsed_all = ((local_end - 1) % DEMAND_MS + 1) / 60_000.0
    cuts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    # demand_running trusts these shapes (numba checks no bounds: a mismatch would read and
    # write past the arrays, not raise)
    rows, width = block.values.shape
    assert block.high.shape == block.low.shape == block.count.shape == (rows, width)
    assert ids.size == width
    assert all(getattr(carry, k).shape == (rows,) for k in _DEMAND_FIELDS)
    assert ceiling is None or ceiling.shape == (rows,)
    out: list[Segment] = []
    for a, b in zip(cuts.tolist(), [*cuts[1:].tolist(), ids.size], strict=True):
        bid = int(ids[a])
        shape = (rows, b - a)
        psum, pmax, last = np.empty(shape), np.empty(shape), np.empty(shape)
        slots = np.empty(shape, dtype=np.int64)
        samples = np.empty(shape, dtype=np.int64)
        # the running sums in one compiled pass, not a dozen numpy passes over rows × slots; a
        # slot above the ceiling by either extreme counts as empty (a slot's mean takes a
        # swapped -10⁶ kW beside good readings too)
        demand_running(
            block.values, block.high, block.low, block.count, a, b,
            _NO_CEILING if ceiling is None else ceiling, carry.block == bid, carry.psum,
            carry.slots, carry.pmax, carry.samples, carry.last, psum, slots, pmax, samples, last,
        )  # fmt: skip
        seg_ends = ends[a:b]
        elapsed = elapsed_all[a:b]
        start_ms = int(seg_ends[0] - round(elapsed[0] * 60_000))
        out.append(Segment(bid, start_ms, seg_ends, elapsed, psum, slots, pmax, samples, last))
        carry.block[:] = bid
        carry.psum, carry.slots = psum[:, -1].copy(), slots[:, -1].copy()
        carry.pmax, carry.samples, carry.last = (
            pmax[:, -1].copy(),
            samples[:, -1].copy(),
            last[:, -1].copy(),
        )
    return out


class Peaks(Detector):
    name: ClassVar[str] = "peaks"
    kinds: ClassVar[tuple[str, ...]] = ("demand_peak",)
    scope: ClassVar[Scope] = Scope.METER
    needs: ClassVar[Needs] = Needs(("p_kw",), frozenset({Utility.ELECTRICITY}))
    row_subsets: ClassVar[bool] = True

    def __init__(
        self,
        ctx: ParkContext,
        series: Sequence[SeriesKey],
        params: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(ctx, series, params)
        self.p = PeakParams(**self.params)
        meters = [ctx.tree.meters[k.meter] for k in self.series]
        self.meters = [m.id for m in meters]
        self.enterprise = [m.enterprise for m in meters]
        # each meter's demand points' tags, one dict shared by all of them (a 10,000-meter
        # park makes about a million points a day; nothing changes a point's tags)
        self.tags = [{"enterprise": m.enterprise, "meter": m.id} for m in meters]
        self.contract = np.array(
            [c or np.nan for c in contracted_demands(ctx, meters)], dtype=np.float64
        )
        self.ceiling = power_ceiling(meters, self.contract)
        self.demand = DemandBlocks(len(self.series))
        self.open = np.zeros(len(self.series), dtype=bool)
        self.critical = np.zeros(len(self.series), dtype=bool)
        self.peak_kw = np.full(len(self.series), np.nan)  # open episode's highest block over

    @classmethod
    def select(cls, ctx: ParkContext) -> list[SeriesKey]:
        if DEMAND_MS % ctx.step_ms:
            return []  # a step that does not divide the quarter hour cannot cut its blocks
        return cls.needs.select(ctx)

    def update(self, block: Block) -> Output:
        out = Output()
        idx = np.arange(len(self.series)) if block.row_index is None else block.row_index
        carry = self.demand.subset(idx)
        for seg in segments(block, self.ctx, carry, self.ceiling[idx]):
            self._alerts(seg, idx, out)
            if seg.complete:
                self._close_block(seg, idx, out)
        self.demand.put(idx, carry)
        return out

    def _alerts(self, seg: Segment, idx: npt.NDArray[np.intp], out: Output) -> None:
        forecast = seg.forecast()
        contract = self.contract[idx][:, None]
        with np.errstate(invalid="ignore"):
            over = forecast >= self.p.alert_share * contract
            critical = forecast > DOUBLE_CHARGE_SHARE * contract
        over &= (seg.elapsed_min >= self.p.min_elapsed_min)[None, :]
        # closed rows open at their first slot over; open rows report a change of severity
        for i in np.flatnonzero(over.any(axis=1) | self.open[idx]):
            g = int(idx[i])
            k_open = 0
            if not self.open[g]:
                k_open = int(np.argmax(over[i]))
                self.open[g] = True
                self.critical[g] = bool(critical[i, k_open])
                out.findings.append(self._finding(g, seg, k_open, True, forecast[i, k_open]))
            # every change of severity while over, each against the one before it (a block
            # fed slot by slot reports each too: any chunking gives the same findings)
            ks = k_open + np.flatnonzero(over[i, k_open:])
            changed = critical[i, ks] != np.r_[self.critical[g], critical[i, ks[:-1]]]
            for k in ks[changed].tolist():
                out.findings.append(self._finding(g, seg, k, True, forecast[i, k]))
            if ks.size:
                self.critical[g] = bool(critical[i, ks[-1]])

    def _close_block(self, seg: Segment, idx: npt.NDArray[np.intp], out: Output) -> None:
        final = seg.mean()[:, -1]
        # one point per meter with data: plain Python numbers taken in one go (tolist), not
        # one numpy scalar at a time; the tuples made by tuple.__new__ itself (the named
        # tuple's own __new__ is a Python function: a third of the points' cost)
        some = np.flatnonzero(seg.slots[:, -1] > 0)
        fields = [
            {"p_kw_avg": avg, "p_kw_max": top, "samples": n}
            for avg, top, n in zip(
                final[some].tolist(),
                seg.pmax[some, -1].tolist(),
                seg.samples[some, -1].tolist(),
                strict=True,
            )
        ]
        tags = map(self.tags.__getitem__, idx[some].tolist())
        parts = zip(repeat(DEMAND_MEASUREMENT), tags, fields, repeat(seg.block_start_ms))
        out.points.extend(map(_point, parts))
        with np.errstate(invalid="ignore"):
            held = final >= self.p.alert_share * self.contract[idx]
        # the episode's highest block that did end over the contract: what the event closes on
        over = self.open[idx] & held
        self.peak_kw[idx[over]] = np.fmax(self.peak_kw[idx[over]], final[over])
        # an episode lasts while blocks end over the contract; a forecast the block did not
        # bear out ends with the block too
        last = seg.ends_ms.size - 1
        for i in np.flatnonzero(self.open[idx] & ~held):
            g = int(idx[i])
            self.open[g] = False
            self.critical[g] = False
            out.findings.append(self._closing(g, seg, last, final[i]))
            self.peak_kw[g] = np.nan

    def _finding(self, i: int, seg: Segment, k: int, active: bool, demand: float) -> Finding:
        contract = float(self.contract[i])
        critical = demand > DOUBLE_CHARGE_SHARE * contract
        left = 15.0 - float(seg.elapsed_min[k])
        return Finding(
            "demand_peak",
            Family.DEMAND,
            int(seg.ends_ms[k]),
            active,
            meter=self.meters[i],
            start_ms=seg.block_start_ms,
            severity=Severity.CRITICAL if critical else Severity.MAJOR,
            estimate=Estimate(round(float(demand) - contract, 1), "kW over contract"),
            evidence={
                "contract_kw": contract,
                "forecast_kw": round(float(demand), 1),
                "minutes_left": round(left, 1),
                "block_start_ms": seg.block_start_ms,
            },
        )

    def _closing(self, i: int, seg: Segment, k: int, demand: float) -> Finding:
        """The end of an episode. Its evidence joins the event's, so it names its own keys and
        leaves the warning's (forecast, minutes left) as they were; the estimate becomes the
        episode's highest block over the contract, or stays the forecast's when no block
        ended over it."""
        contract = float(self.contract[i])
        peak = float(self.peak_kw[i])
        evidence: dict[str, Any] = {"last_block_kw": round(float(demand), 1)}
        estimate = None
        if np.isfinite(peak):
            evidence["peak_block_kw"] = round(peak, 1)
            estimate = Estimate(round(peak - contract, 1), "kW over contract")
        return Finding(
            "demand_peak",
            Family.DEMAND,
            int(seg.ends_ms[k]),
            False,
            meter=self.meters[i],
            estimate=estimate,
            evidence=evidence,
        )

    def state(self) -> dict[str, Any]:
        return {
            "demand": self.demand.state(),
            "open": self.open.copy(),
            "critical": self.critical.copy(),
            "peak_kw": self.peak_kw.copy(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.demand.restore(state["demand"])
        self.open = np.array(state["open"], dtype=bool)
        self.critical = np.array(state["critical"], dtype=bool)
        self.peak_kw = np.array(state["peak_kw"], dtype=np.float64)


@dataclass(frozen=True)
class CoincidentParams:
    near_share: float = 0.9  # an enterprise within this share of its month's peak coincides
    min_enterprises: int = 2  # …and a coincident peak needs at least this many
    settle_days: int = 3  # the first days seen of a month set every peak: not reported


class CoincidentPeaks(Detector):
    """Blocks in which the park's demand sets a new high for the month while several
    enterprises are at or near their own month's highs: the peaks that build the park's bill
    and that only moving one enterprise's load can lower."""

    name: ClassVar[str] = "coincident_peaks"
    kinds: ClassVar[tuple[str, ...]] = ("coincident_peak",)
    scope: ClassVar[Scope] = Scope.PARK
    needs: ClassVar[Needs] = Needs(("p_kw",), frozenset({Utility.ELECTRICITY}))

    @classmethod
    def select(cls, ctx: ParkContext) -> list[SeriesKey]:
        if DEMAND_MS % ctx.step_ms:
            return []
        roots = enterprise_intakes(ctx)
        if len({m.enterprise for m in roots}) < 2:
            return []
        return [SeriesKey(m.id, "p_kw") for m in roots]

    def __init__(
        self,
        ctx: ParkContext,
        series: Sequence[SeriesKey],
        params: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(ctx, series, params)
        self.p = CoincidentParams(**self.params)
        meters = [ctx.tree.meters[k.meter] for k in self.series]
        self.enterprise = [m.enterprise for m in meters]
        # each meter's demand points' tags, one dict shared by all of them (a 10,000-meter
        # park makes about a million points a day; nothing changes a point's tags)
        self.tags = [{"enterprise": m.enterprise, "meter": m.id} for m in meters]
        # the same ceiling as Peaks: one swapped reading would set the month's park peak
        contract = np.array([c or np.nan for c in contracted_demands(ctx, meters)])
        self.ceiling = power_ceiling(meters, contract)
        self.demand = DemandBlocks(len(self.series))
        self.month = -1  # local month being tracked (months since 1970)
        self.month_since = -1  # first local day (days since 1970) seen in that month
        self.month_max = np.full(len(self.series), -np.inf)  # per enterprise row
        self.park_max = -np.inf

    def update(self, block: Block) -> Output:
        out = Output()
        for seg in segments(block, self.ctx, self.demand, self.ceiling):
            if not seg.complete:
                continue
            final = seg.mean()[:, -1]
            local_start = int(self.ctx.local_ms(np.array([seg.block_start_ms]))[0])
            day = np.datetime64(local_start // 86_400_000, "D")
            month = int(day.astype("datetime64[M]").astype(np.int64))
            if month != self.month:
                self.month = month
                self.month_since = int(day.astype(np.int64))
                self.month_max[:] = -np.inf
                self.park_max = -np.inf
            if np.isnan(final).any():
                continue  # a block with an enterprise missing says nothing of the park's peak
            park = float(final.sum())
            # days of this month seen: a worker started mid-month does not know its peaks yet
            into_month = int(day.astype(np.int64)) - self.month_since
            near = final >= self.p.near_share * np.maximum(self.month_max, final)
            if (
                np.isfinite(self.park_max)
                and park > self.park_max
                and into_month >= self.p.settle_days
                and int(near.sum()) >= self.p.min_enterprises
            ):
                at = int(seg.ends_ms[-1])
                shares = {
                    self.enterprise[i]: round(float(final[i] / park), 3)
                    for i in np.flatnonzero(near)
                }
                out.findings.append(
                    Finding(
                        "coincident_peak",
                        Family.DEMAND,
                        at,
                        True,
                        zone="park",
                        start_ms=seg.block_start_ms,
                        severity=Severity.MINOR,
                        estimate=Estimate(round(park, 1), "kW park demand"),
                        evidence={
                            "park_kw": round(park, 1),
                            "previous_month_max_kw": round(float(self.park_max), 1),
                            "coinciding": shares,
                        },
                    )
                )
                out.findings.append(
                    Finding("coincident_peak", Family.DEMAND, at, False, zone="park")
                )
            self.park_max = max(self.park_max, park)
            self.month_max = np.fmax(self.month_max, final)
        return out

    def state(self) -> dict[str, Any]:
        return {
            "demand": self.demand.state(),
            "month": self.month,
            "month_since": self.month_since,
            "month_max": self.month_max.copy(),
            "park_max": self.park_max,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.demand.restore(state["demand"])
        self.month = int(state["month"])
        self.month_since = int(state["month_since"])
        self.month_max = np.array(state["month_max"], dtype=np.float64)
        self.park_max = float(state["park_max"])
