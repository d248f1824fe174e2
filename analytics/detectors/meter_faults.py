"""Meter faults: the measurement is wrong, not the consumption.

Flagged as ``Family.METER_FAULT`` (the event book then holds back consumption and leak
findings about that meter), per meter unless said otherwise:

* **counters** (point events): a value that goes back is a *rollover* when the old reading plus
  the usual increment wraps at a register's modulus (16 or 32 bits, at the common scales, or a
  decimal register's width) onto the new one; a *meter replacement* when it comes after a gap
  in the readings (the old meter's last, the new one's first reading are in the evidence); a
  *reset* otherwise. A counter that leaps far beyond its usual increment without a gap is a
  *counter jump*.
* **stuck values**: every instant quantity of the meter repeats its exact value for
  ``stuck_slots`` slots, although it used to change (a battery's state of charge is one of
  them: at a fixed power setpoint only it moves).
* **word-swapped registers**: a value whose 32-bit float, with its two 16-bit words swapped
  back, is close to the meter's last good value while the value itself is far from it — the
  signature of a register map with the wrong word order.
* **silence**: a meter that used to report sends nothing for longer than three of its usual
  spacings or its recent mean gap plus ``spread_k`` standard deviations of its recent gaps
  (silences left out), whichever is longer (at least ``silence_slots``: a regular poller's
  gaps hardly spread, a meter that reports on change is judged by how much its random gaps
  do); a past silence adds only its limit to that spacing, so one long outage does not hide
  the next short one, and ``lasting_gaps`` silences back to back are a new rate: the spacing
  restarts from them, the spread afresh after them; a meter's limit is the longest of its
  quantities' (one sent on change sets it for all); when
  every meter of a gateway falls silent together it is one event about the gateway
  (``zone: gateway:<id>``).
* **transport** (per gateway): batches whose source time runs ahead of their arrival by more
  than ``skew_ms`` (``clock_skew``) or arrive more than ``late_ms`` after it (``late_batches``:
  late delivery, or a clock behind — the two look alike from here); and readings delivered
  more than once (``duplicate_batches``).

Rows of one meter are adjacent (the selection orders them so); every check is vectorised over
rows, with per-row state carried between blocks so any chunking gives the same findings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from analytics.engine.contract import (
    Block,
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
from analytics.kernels.meter_faults import (
    counter_scan,
    silence_scan,
    stuck_meters,
    swap_scan,
    window_medians,
)
from parkwatch.events import Family, Severity
from parkwatch.quantities import Utility
from parkwatch.site import Role

BoolArray = npt.NDArray[np.bool_]

# the main quantities of each utility that are checked (instant and counter)
CHECKED: dict[Utility, tuple[str, ...]] = {
    Utility.ELECTRICITY: ("p_kw", "q_kvar", "v_v", "i_a", "pf", "e_kwh", "e_export_kwh"),
    Utility.WATER: ("flow_m3h", "vol_m3", "level_m", "t_supply_c", "t_return_c"),
    Utility.GAS: ("flow_nm3h", "vol_nm3", "p_bar"),
    Utility.AIR: ("flow_nm3h", "vol_nm3", "p_bar"),
    Utility.STEAM: ("steam_th", "steam_t", "t_supply_c", "t_return_c", "t_flue_c", "p_bar"),
    Utility.HEAT: ("heat_kw", "heat_gj", "flow_m3h", "vol_m3", "t_supply_c", "t_return_c"),
    Utility.ENV: ("t_air_c", "rh_pct", "irr_wm2"),
}

# quantities checked on meters of a role besides their utility's: a battery charging or
# discharging at a fixed power setpoint repeats its power exactly for hours while its state
# of charge moves, and that moving value is what shows the meter is not stuck
ROLE_CHECKED: dict[Role, tuple[str, ...]] = {Role.BATTERY: ("soc_pct",)}

# registers a counter wraps at: 16 and 32 bits at the usual scales, and decimal widths
MODULI = np.array(
    sorted(
        {float(2**bits) * scale for bits in (16, 32) for scale in (1, 0.1, 0.01, 0.001)}
        | {10.0**d for d in range(4, 10)}
    )
)


@dataclass(frozen=True)
class MeterFaultParams:
    stuck_slots: int = 15  # equal values this long (and ≥ 15 min) is stuck
    lively_window: int = 60  # slots over which a quantity's liveliness is judged
    lively_share: float = 0.8  # …a main quantity that changed in this share of them can stick
    lively_readings: int = 10  # …of at least this many (one change after a gap proves nothing)
    # no reading for this many slots (or 3 usual spacings, or the spread term's) is silence
    silence_slots: int = 5
    # this many silences back to back are the meter's new rate, not a fault: its usual spacing
    # restarts from them (a meter slowed from 1 s to 60 s for good raises at most this many
    # comm_loss events; one outage, or two, still leaves the old spacing to find the next)
    lasting_gaps: int = 3
    # a meter whose gaps are random (it reports on change) is silent only past its mean gap
    # plus this many standard deviations of its gaps (exponential gaps: one in e^7 ≈ 1,100
    # gaps is that long; three mean gaps, the rule for a regular poller, was one in 20)
    spread_k: float = 6.0
    # …once this many gaps were seen since the spacing (re)started, and from moments that
    # forget: the gaps' mean and mean square weighted 1/spread_window per reading, silences
    # left out (a link that flapped is judged again by its recent gaps; a flaky one's drops
    # do not widen its limit until they fit)
    spread_gaps: int = 10
    spread_window: int = 100
    gap_slots: int = 3  # a counter restart after a gap this long is a replacement
    counter_quiet_slots: int = 60  # counter anomalies closer than this are one event
    jump_factor: float = 1000.0  # a counter increment this many usual increments is a jump
    swap_far: float = 10.0  # the value is this many times off the last good value…
    swap_near: float = 1.5  # …while its swapped-back value is within this factor of it
    skew_ms: int = 60_000
    late_ms: int = 120_000
    transport_slots: int = 5  # slots with batches over which offsets are judged
    duplicate_slots: int = 3  # slots with duplicates (of the last 10) that make an event


def word_swapped(values: FloatArray) -> FloatArray:
    """Each value as a 32-bit float with its two 16-bit words swapped."""
    with np.errstate(over="ignore", invalid="ignore"):
        bits = values.astype(np.float32).view(np.uint32)
        swapped = (bits << np.uint32(16)) | (bits >> np.uint32(16))
        return swapped.view(np.float32).astype(np.float64)


@dataclass
class _View:
    """The state of the rows (and their meters) a block holds, worked on, then put back."""

    prev: npt.NDArray[Any]
    prev_slot: npt.NDArray[Any]
    prev_inc: npt.NDArray[Any]
    good: npt.NDArray[Any]
    lively: npt.NDArray[Any]
    hist_changed: npt.NDArray[Any]
    hist_seen: npt.NDArray[Any]
    main: npt.NDArray[Any]
    counter: npt.NDArray[Any]
    equal_run: npt.NDArray[Any]
    first_seen: npt.NDArray[Any]
    last_seen: npt.NDArray[Any]
    readings: npt.NDArray[Any]
    skipped: npt.NDArray[Any]
    gap_mean: npt.NDArray[Any]
    gap_sq: npt.NDArray[Any]
    gap_n: npt.NDArray[Any]
    over_run: npt.NDArray[Any]
    over_from: npt.NDArray[Any]
    ep_open: npt.NDArray[Any]
    ep_last: npt.NDArray[Any]
    ep_count: npt.NDArray[Any]
    ep_kind: npt.NDArray[Any]
    stuck_open: npt.NDArray[Any]
    swap_open: npt.NDArray[Any]
    swap_last: npt.NDArray[Any]
    silent_open: npt.NDArray[Any]
    meter_gw: npt.NDArray[Any]
    meter_of: npt.NDArray[np.intp]  # local meter of each local row
    meter_ids: list[str]
    rows: npt.NDArray[np.intp]  # the detector's row of each local row


_SKEW = {1: "clock_skew", 2: "late_batches"}
_ROW_STATE = (
    "prev",
    "prev_slot",
    "prev_inc",
    "good",
    "lively",
    "hist_changed",
    "hist_seen",
    "main",
    "counter",
    "equal_run",
    "first_seen",
    "last_seen",
    "readings",
    "skipped",
    "gap_mean",
    "gap_sq",
    "gap_n",
    "over_run",
    "over_from",
)
_METER_STATE = (
    "ep_open",
    "ep_last",
    "ep_count",
    "ep_kind",
    "stuck_open",
    "swap_open",
    "swap_last",
    "silent_open",
    "meter_gw",
)


class MeterFaults(Detector):
    name: ClassVar[str] = "meter_faults"
    kinds: ClassVar[tuple[str, ...]] = (
        "counter_reset",
        "counter_rollover",
        "meter_replacement",
        "counter_jump",
        "stuck_value",
        "word_swap",
        "comm_loss",
        "clock_skew",
        "late_batches",
        "duplicate_batches",
    )
    scope: ClassVar[Scope] = Scope.METER
    needs: ClassVar[Needs] = Needs((), virtual=False)
    row_subsets: ClassVar[bool] = True
    any_layout: ClassVar[bool] = True  # its block's arrays go to kernels only

    @classmethod
    def select(cls, ctx: ParkContext) -> list[SeriesKey]:
        """The checked quantities each meter reports, then the park's own (``quantities:``):
        any sensor a park declares is watched for faults like a registered one."""
        own = ctx.park.quantities
        out: list[SeriesKey] = []
        for meter in ctx.tree.meters.values():
            if meter.is_virtual:
                continue
            reported = ctx.quantities_of(meter.id)
            role = () if meter.role is None else ROLE_CHECKED.get(meter.role, ())
            checked = [
                *CHECKED[meter.utility],
                *role,
                *(q.name for q in own if meter.utility in q.utilities),
            ]
            out.extend(SeriesKey(meter.id, q) for q in checked if q in reported)
        return out

    def __init__(
        self,
        ctx: ParkContext,
        series: Sequence[SeriesKey],
        params: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(ctx, series, params)
        self.p = MeterFaultParams(**self.params)
        n = len(self.series)
        self.counter = np.array([ctx.is_counter(k.quantity) for k in self.series], dtype=bool)
        meters = [k.meter for k in self.series]
        self.meter_ids = list(dict.fromkeys(meters))
        meter_no = {m: i for i, m in enumerate(self.meter_ids)}
        self.meter_of = np.array([meter_no[m] for m in meters], dtype=np.intp)
        self.meter_start = np.flatnonzero(np.r_[True, self.meter_of[1:] != self.meter_of[:-1]])
        # gateways: their names, and each meter's (as a number)
        self.gw_names = sorted({ctx.tree.meters[m].gateway for m in self.meter_ids})
        self.gw_index = {g: i for i, g in enumerate(self.gw_names)}
        self.meter_gw = np.array(
            [self.gw_index[ctx.tree.meters[m].gateway] for m in self.meter_ids], dtype=np.intp
        )
        m = len(self.meter_ids)
        slot_min = ctx.step_ms / 60_000
        self.stuck_slots = max(self.p.stuck_slots, int(np.ceil(15 / slot_min)))
        # per row
        self.prev = np.full(n, np.nan)  # last finite value
        self.prev_slot = np.full(n, -1, dtype=np.int64)  # its absolute slot (−1: none yet)
        self.prev_inc = np.full(n, np.nan)  # a counter's last increment per slot
        self.good = np.full(n, np.nan)  # last value not taken for a swapped one
        self.lively = np.zeros(n, dtype=bool)
        w = self.p.lively_window
        self.hist_changed = np.zeros((n, w), dtype=np.int8)
        self.hist_seen = np.zeros((n, w), dtype=np.int8)
        # each meter's main instant quantity: the first in CHECKED order it has
        self.main = np.zeros(n, dtype=bool)
        for mi in range(m):
            instant = np.flatnonzero((self.meter_of == mi) & ~self.counter)
            if instant.size:
                self.main[instant[0]] = True
        self.equal_run = np.zeros(n, dtype=np.int64)
        # absolute slot of the first reading (of the latest rate: see lasting_gaps)
        self.first_seen = np.full(n, -1, dtype=np.int64)
        self.last_seen = np.full(n, -1, dtype=np.int64)  # …and of the latest
        self.readings = np.zeros(n, dtype=np.int64)  # slots with a reading
        # slots of silences beyond their limit, left out of the usual spacing
        self.skipped = np.zeros(n, dtype=np.int64)
        # the counted gaps' recent mean and mean square (weighted: see spread_window)
        self.gap_mean = np.zeros(n)
        self.gap_sq = np.zeros(n)
        self.gap_n = np.zeros(n, dtype=np.int64)  # …of how many gaps (since a restart)
        # silences beyond their limit back to back, from the reading at this slot
        self.over_run = np.zeros(n, dtype=np.int64)
        self.over_from = np.full(n, -1, dtype=np.int64)
        # per meter
        self.ep_open = np.zeros(m, dtype=bool)  # a counter episode is open
        self.ep_last = np.zeros(m, dtype=np.int64)  # slot of its latest anomaly
        self.ep_count = np.zeros(m, dtype=np.int64)
        self.ep_kind = np.full(m, "", dtype=object)
        self.stuck_open = np.zeros(m, dtype=bool)
        self.swap_open = np.zeros(m, dtype=bool)
        self.swap_last = np.zeros(m, dtype=bool)  # the last slot seen was word-swapped
        self.silent_open = np.zeros(m, dtype=bool)
        # per gateway
        g = len(self.gw_names)
        self.gw_offsets = np.full((g, max(self.p.transport_slots - 1, 0)), np.nan)
        self.gw_dups = np.zeros((g, 9), dtype=np.int8)  # 1 per recent slot with duplicates
        self.gw_skew = np.zeros(g, dtype=np.int8)  # 0, or 1 clock_skew, 2 late_batches open
        self.gw_dup_open = np.zeros(g, dtype=bool)
        self.gw_silent = np.zeros(g, dtype=bool)  # every meter of the gateway is silent

    # --- the update --------------------------------------------------------------------------

    def update(self, block: Block) -> Output:
        out = Output()
        if block.slots == 0:
            return out
        first_slot = block.start_ms // block.step_ms
        if block.row_index is None:
            # every row (and so every meter): the state itself is worked on, not a copy of
            # it put back after (what a park's every gateway closing together gives)
            rows = np.arange(len(self.series))
            meters = np.arange(len(self.meter_ids))
            st = _View(
                **{a: getattr(self, a) for a in (*_ROW_STATE, *_METER_STATE)},
                meter_of=self.meter_of,
                meter_ids=list(self.meter_ids),
                rows=rows,
            )
        else:
            rows = block.row_index
            meters, local = np.unique(self.meter_of[rows], return_inverse=True)
            st = _View(
                **{a: getattr(self, a)[rows] for a in _ROW_STATE},
                **{a: getattr(self, a)[meters] for a in _METER_STATE},
                meter_of=local.astype(np.intp),
                meter_ids=[self.meter_ids[m] for m in meters],
                rows=rows,
            )
        swapping = self._swaps(st, block, out)
        self._counters(st, block, first_slot, swapping, out)
        st.swap_last = swapping[:, -1].copy()
        self._stuck(st, block, out)
        self._silence(st, block, first_slot, out)
        self._transport(block, out)
        for a in _ROW_STATE:
            if getattr(st, a) is not getattr(self, a):
                getattr(self, a)[rows] = getattr(st, a)
        for a in _METER_STATE:
            if getattr(st, a) is not getattr(self, a):
                getattr(self, a)[meters] = getattr(st, a)
        return out

    def _at(self, block: Block, k: int) -> int:
        return int(block.start_ms + (k + 1) * block.step_ms)

    def _counter_event(
        self,
        st: _View,
        kind: str,
        m: int,
        slot: int,
        block: Block,
        evidence: dict[str, Any],
        out: Output,
    ) -> None:
        """A counter anomaly opens an event; more within ``counter_quiet_slots`` of the last
        are counted in it rather than each raising its own (a meter gone haywire is one
        event); the event closes after that quiet time."""
        self._close_counter_episodes(st, slot, block.step_ms, out)
        if st.ep_open[m]:
            st.ep_last[m] = slot
            st.ep_count[m] += 1
            return
        st.ep_open[m] = True
        st.ep_last[m] = slot
        st.ep_count[m] = 1
        st.ep_kind[m] = kind
        at = (slot + 1) * block.step_ms
        out.findings.append(
            Finding(
                kind,
                Family.METER_FAULT,
                at,
                True,
                meter=st.meter_ids[m],
                severity=Severity.MINOR,
                evidence=evidence,
            )
        )

    def _close_counter_episodes(
        self, st: _View, before_slot: int, step_ms: int, out: Output
    ) -> None:
        """Close the episodes whose quiet time ends before ``before_slot``."""
        ends = st.ep_last + self.p.counter_quiet_slots
        for m in np.flatnonzero(st.ep_open & (ends < before_slot)):
            st.ep_open[m] = False
            at = int(ends[m] + 1) * step_ms
            out.findings.append(
                Finding(
                    st.ep_kind[m],
                    Family.METER_FAULT,
                    at,
                    False,
                    meter=st.meter_ids[m],
                    evidence={"anomalies": int(st.ep_count[m])},
                )
            )

    def _counters(
        self, st: _View, block: Block, first_slot: int, swapping: BoolArray, out: Output
    ) -> None:
        rows = np.flatnonzero(st.counter)
        if rows.size == 0:
            return
        # the readings that go back or leap, against the previous reading (carried across
        # blocks and gaps) and the usual increment: kernels.counter_scan, one compiled pass
        prev, prev_slot, prev_inc = st.prev[rows], st.prev_slot[rows], st.prev_inc[rows]
        found = counter_scan(
            block.values,
            rows,
            first_slot,
            prev,
            prev_slot,
            prev_inc,
            self.p.jump_factor,
            self.p.gap_slots,
        )
        # slot by slot (in row order within a slot), as a block of one slot would find them
        order = np.argsort(found[:, 1], kind="stable")
        for i, k, old, new, gap, leap, usual, step in found[order].tolist():
            row, k = int(rows[int(i)]), int(k)
            evidence: dict[str, Any] = {
                "quantity": self.series[int(st.rows[row])].quantity,
                "old_reading": old,
                "new_reading": new,
                "gap_slots": int(gap),
            }
            m = int(st.meter_of[row])
            if swapping[m, k] or (k > 0 and swapping[m, k - 1]) or (k == 0 and st.swap_last[m]):
                continue  # a word-swapped register: the swap check reports the meter
            if leap:
                evidence["usual_increment"] = usual
                self._counter_event(st, "counter_jump", m, first_slot + k, block, evidence, out)
                continue
            wrapped = new + MODULI - old
            fits = (wrapped >= 0) & (
                np.abs(wrapped - step) <= np.maximum(3 * step, 1e-6 * MODULI + 0.01)
            )
            if fits.any() and gap < self.p.gap_slots:
                evidence["modulus"] = float(MODULI[np.argmax(fits)])
                kind = "counter_rollover"
            elif gap >= self.p.gap_slots:
                kind = "meter_replacement"
            else:
                kind = "counter_reset"
            self._counter_event(st, kind, m, first_slot + k, block, evidence, out)
        self._close_counter_episodes(st, first_slot + block.slots, block.step_ms, out)
        st.prev[rows] = prev
        st.prev_slot[rows] = prev_slot
        st.prev_inc[rows] = prev_inc

    def _stuck(self, st: _View, block: Block, out: Output) -> None:
        rows = np.flatnonzero(~st.counter)
        if rows.size == 0:
            return
        # per row and slot (kernels.stuck_meters: stuck_runs, one compiled pass carrying the state,
        # on the block's shared rows through row-major tiles): a slot repeats when its readings are
        # one value, the previous slot's; the run of equal slots continues the carried one (gaps do
        # not break it); how lively the row was before its run began is the share of its readings in
        # the ``lively_window`` slots up to its last change that changed. Per meter: every
        # reporting row in a long run (some reports, none out of a run) and one of them telling
        # is stuck; any row's life is the meter's
        m = len(st.meter_ids)
        stuck = np.empty((m, block.slots), dtype=bool)
        live = np.empty((m, block.slots), dtype=bool)
        stuck_meters(
            block.values,
            block.low,
            block.high,
            rows,
            st.meter_of[rows],
            st.prev,
            st.equal_run,
            st.hist_changed,
            st.hist_seen,
            st.lively,
            st.main,
            self.stuck_slots,
            self.p.lively_share,
            self.p.lively_readings,
            stuck,
            live,
        )
        self._transitions(
            st,
            block,
            "stuck_value",
            stuck,
            live,
            st.stuck_open,
            out,
            evidence=lambda m, k: {"slots_equal": int(self.stuck_slots)},
        )

    def _transitions(
        self,
        st: _View,
        block: Block,
        kind: str,
        on: BoolArray,
        off: BoolArray,
        state: BoolArray,
        out: Output,
        evidence: Any,
        zones: Sequence[str] | None = None,
    ) -> BoolArray:
        """Open where ``on`` first holds for a closed row (a meter, or with ``zones`` a
        gateway), close where ``off`` holds. Returns where each row is open, slot by slot."""
        is_open_at = np.repeat(state[:, None], block.slots, axis=1)
        for mi in np.flatnonzero(on.any(axis=1) | (state & off.any(axis=1))):
            k = 0
            events: list[tuple[int, bool]] = []
            is_open = bool(state[mi])
            while k < block.slots:
                if not is_open:
                    hits = np.flatnonzero(on[mi, k:])
                    if not hits.size:
                        break
                    k += int(hits[0])
                    is_open = True
                    events.append((k, True))
                else:
                    ends = np.flatnonzero(off[mi, k:] & ~on[mi, k:])
                    if not ends.size:
                        break
                    k += int(ends[0])
                    is_open = False
                    events.append((k, False))
                k += 1
            state[mi] = is_open
            for k_at, active in events:
                is_open_at[mi, k_at:] = active
            meter = None if zones is not None else st.meter_ids[mi]
            zone = None if zones is None else zones[int(mi)]
            for k_at, active in events:
                out.findings.append(
                    Finding(
                        kind,
                        Family.METER_FAULT,
                        self._at(block, k_at),
                        active,
                        meter=meter,
                        zone=zone,
                        severity=Severity.MINOR,
                        evidence=evidence(mi, k_at) if active else {},
                    )
                )
        return is_open_at

    def _swaps(self, st: _View, block: Block, out: Output) -> BoolArray:
        """Per meter and slot: a reading taken for a word-swapped one, or a word-swap episode
        open (its counters' jumps are part of it, not faults of their own)."""
        # per meter and slot (kernels.swap_scan, one compiled pass carrying each row's last
        # good value): readings taken for swapped ones, and the others
        m = len(st.meter_ids)
        on = np.empty((m, block.slots), dtype=bool)
        off = np.empty((m, block.slots), dtype=bool)
        swap_scan(
            block.high,
            st.meter_of,
            st.good,
            st.swap_open[st.meter_of],
            self.p.swap_far,
            self.p.swap_near,
            on,
            off,
        )
        off &= ~on
        episode = self._transitions(
            st,
            block,
            "word_swap",
            on,
            off,
            st.swap_open,
            out,
            evidence=lambda mi, k: {"hint": "FLOAT32 words in the wrong order"},
        )
        # while the episode is open, every reading of the meter is suspect
        return on | episode

    def _silence(self, st: _View, block: Block, first_slot: int, out: Output) -> None:
        m = len(st.meter_ids)
        # per meter and slot (kernels.silence_scan, one compiled pass carrying each row's
        # first and latest reading and count): whether it reported; the limit, from each
        # row's usual spacing at each slot from the readings before it (as a block of one
        # slot would see it: the limit moves as readings come, whatever the chunking); silent
        meter_seen = np.empty((m, block.slots), dtype=bool)
        limit = np.empty((m, block.slots))
        silent = np.empty((m, block.slots), dtype=bool)
        silence_scan(
            block.values,
            np.flatnonzero(np.r_[True, st.meter_of[1:] != st.meter_of[:-1]]),
            first_slot,
            self.p.silence_slots,
            self.p.lasting_gaps,
            self.p.spread_k,
            self.p.spread_gaps,
            self.p.spread_window,
            st.first_seen,
            st.last_seen,
            st.readings,
            st.skipped,
            st.gap_mean,
            st.gap_sq,
            st.gap_n,
            st.over_run,
            st.over_from,
            meter_seen,
            limit,
            silent,
        )
        back = meter_seen
        # a gateway whose meters (more than one) all fall silent at once is one event about it
        gws, gw_local = np.unique(st.meter_gw, return_inverse=True)
        meters_of = np.bincount(gw_local, minlength=gws.size)
        by_gw = np.argsort(gw_local, kind="stable")
        gw_sorted = gw_local[by_gw]
        silent_count = _reduce_by(np.add, silent[by_gw].astype(np.int64), gw_sorted, gws.size, 0)
        whole = (silent_count == meters_of[:, None]) & (meters_of[:, None] >= 2)
        gw_back = _reduce_by(np.logical_or, back[by_gw], gw_sorted, gws.size, False)
        state = self.gw_silent[gws].copy()
        self._transitions(
            st,
            block,
            "comm_loss",
            whole,
            gw_back,
            state,
            out,
            evidence=lambda gi, k: {"meters": int(meters_of[gi])},
            zones=[f"gateway:{self.gw_names[g]}" for g in gws],
        )
        self.gw_silent[gws] = state
        whole_of_meter = whole[gw_local]
        per_meter = silent & ~whole_of_meter
        self._transitions(
            st,
            block,
            "comm_loss",
            per_meter,
            back,
            st.silent_open,
            out,
            evidence=lambda mi, k: {"slots_without_data": int(limit[mi, k])},
        )

    def _transport(self, block: Block, out: Output) -> None:
        """Clock offsets are judged by their median over the last ``transport_slots`` slots
        (those with batches; at least three); duplicates by how many of the last ten slots
        had any. Every gateway of the block at once."""
        stats = block.transport.only(self.gw_index)
        names = stats.gateways
        if not names:
            return
        idx = np.array([self.gw_index[g] for g in names], dtype=np.intp)
        offsets = stats.offset_ms
        dups = (stats.duplicates > 0).astype(np.int8)
        n = self.p.transport_slots
        known = np.concatenate([self.gw_offsets[idx], offsets], axis=1)
        # the median offset of each window of n slots that has enough batches to judge
        median, enough = window_medians(np.ascontiguousarray(known), n, min(3, n))
        code = np.where(median > self.p.skew_ms, 1, np.where(median < -self.p.late_ms, 2, 0))
        slots = np.arange(block.slots)
        decided = np.maximum.accumulate(np.where(enough, slots, -1), axis=1)
        carried = self.gw_skew[idx][:, None]
        kind = np.where(decided >= 0, np.take_along_axis(code, np.maximum(decided, 0), 1), carried)
        before = np.concatenate([carried, kind[:, :-1]], axis=1)
        history = np.concatenate([self.gw_dups[idx], dups], axis=1).astype(np.int64)
        summed = np.cumsum(history, axis=1)
        recent = summed[:, 9:] - np.concatenate(
            [np.zeros((idx.size, 1), np.int64), summed[:, :-10]], axis=1
        )
        dup_now = recent >= self.p.duplicate_slots
        dup_before = np.concatenate([self.gw_dup_open[idx][:, None], dup_now[:, :-1]], axis=1)
        for i, k in zip(*np.nonzero(kind != before), strict=True):
            zone = f"gateway:{names[i]}"
            at = self._at(block, int(k))
            was, now = int(before[i, k]), int(kind[i, k])
            if was:
                out.findings.append(Finding(_SKEW[was], Family.METER_FAULT, at, False, zone=zone))
            if now:
                out.findings.append(
                    Finding(
                        _SKEW[now], Family.METER_FAULT, at, True, zone=zone, severity=Severity.MINOR
                    )
                )
        for i, k in zip(*np.nonzero(dup_now != dup_before), strict=True):
            out.findings.append(
                Finding(
                    "duplicate_batches",
                    Family.METER_FAULT,
                    self._at(block, int(k)),
                    bool(dup_now[i, k]),
                    zone=f"gateway:{names[i]}",
                    severity=Severity.INFO,
                )
            )
        self.gw_offsets[idx] = known[:, -(n - 1) :] if n > 1 else known[:, :0]
        self.gw_dups[idx] = history[:, -9:]
        self.gw_skew[idx] = kind[:, -1]
        self.gw_dup_open[idx] = dup_now[:, -1]

    # --- state --------------------------------------------------------------------------------

    _GATEWAY_STATE = ("gw_offsets", "gw_dups", "gw_skew", "gw_dup_open", "gw_silent")

    def state(self) -> dict[str, Any]:
        names = (*_ROW_STATE, *_METER_STATE, *self._GATEWAY_STATE)
        out: dict[str, Any] = {a: getattr(self, a).copy() for a in names}
        out["ep_kind"] = [str(k) for k in self.ep_kind]
        return out

    def restore(self, state: Mapping[str, Any]) -> None:
        for a in (*_ROW_STATE, *_METER_STATE, *self._GATEWAY_STATE):
            setattr(self, a, np.array(state[a]))
        self.ep_kind = np.array(state["ep_kind"], dtype=object)


def _reduce_by(
    ufunc: np.ufunc, values: npt.NDArray[Any], groups: IntArray, n: int, fill: Any
) -> npt.NDArray[Any]:
    """``ufunc`` over the rows of each group (groups non-decreasing: a meter's rows are
    adjacent), one result row per group ``0..n-1`` (``fill`` where a group has no row)."""
    out = np.full((n, *values.shape[1:]), fill, dtype=values.dtype)
    if groups.size:
        starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        out[groups[starts]] = ufunc.reduceat(values, starts, axis=0)
    return out


def _at_index(values: npt.NDArray[Any], index: IntArray) -> npt.NDArray[Any]:
    """values[r, index[r, k]] for every r, k (index ≥ 0)."""
    return np.take_along_axis(values, np.maximum(index, 0), axis=1)
