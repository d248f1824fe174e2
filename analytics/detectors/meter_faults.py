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
  ``stuck_slots`` slots, although it used to change.
* **word-swapped registers**: a value whose 32-bit float, with its two 16-bit words swapped
  back, is close to the meter's last good value while the value itself is far from it — the
  signature of a register map with the wrong word order.
* **silence**: a meter that used to report sends nothing for longer than three of its usual
  spacings (at least ``silence_slots``); when every meter of a gateway falls silent together it
  is one event about the gateway (``zone: gateway:<id>``).
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
from parkwatch.events import Family, Severity
from parkwatch.quantities import Utility

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
    silence_slots: int = 5  # no reading for this many slots (or 3 usual spacings) is silence
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

    @classmethod
    def select(cls, ctx: ParkContext) -> list[SeriesKey]:
        out: list[SeriesKey] = []
        for meter in ctx.tree.meters.values():
            if meter.is_virtual:
                continue
            reported = ctx.quantities_of(meter.id)
            out.extend(SeriesKey(meter.id, q) for q in CHECKED[meter.utility] if q in reported)
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
        self.gateway = ctx.tree.meters[meters[0]].gateway if meters else ""
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
        for mi in range(len(self.meter_ids)):
            instant = np.flatnonzero((self.meter_of == mi) & ~self.counter)
            if instant.size:
                self.main[instant[0]] = True
        self.equal_run = np.zeros(n, dtype=np.int64)
        self.first_seen = np.full(n, -1, dtype=np.int64)  # absolute slot of the first reading
        self.last_seen = np.full(n, -1, dtype=np.int64)  # …and of the latest
        self.readings = np.zeros(n, dtype=np.int64)  # slots with a reading
        # per meter
        self.ep_open = np.zeros(m, dtype=bool)  # a counter episode is open
        self.ep_last = np.zeros(m, dtype=np.int64)  # slot of its latest anomaly
        self.ep_count = np.zeros(m, dtype=np.int64)
        self.ep_kind = [""] * m
        self.stuck_open = np.zeros(m, dtype=bool)
        self.swap_open = np.zeros(m, dtype=bool)
        self.swap_last = np.zeros(m, dtype=bool)  # the last slot seen was word-swapped
        self.silent_open = np.zeros(m, dtype=bool)
        self.gateway_silent = False
        # per gateway: recent transport slots
        self.offsets: list[float] = []
        self.dup_history: list[int] = []
        self.skew_open = ""  # "", "clock_skew" or "late_batches"
        self.dup_open = False

    # --- the update --------------------------------------------------------------------------

    def update(self, block: Block) -> Output:
        out = Output()
        if block.slots == 0:
            return out
        first_slot = block.start_ms // block.step_ms
        swapping = self._swaps(block, out)
        self._counters(block, first_slot, swapping, out)
        self.swap_last = swapping[:, -1].copy()
        self._stuck(block, out)
        self._silence(block, first_slot, out)
        self._transport(block, out)
        return out

    def _at(self, block: Block, k: int) -> int:
        return int(block.start_ms + (k + 1) * block.step_ms)

    def _counter_event(
        self,
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
        self._close_counter_episodes(slot, block.step_ms, out)
        if self.ep_open[m]:
            self.ep_last[m] = slot
            self.ep_count[m] += 1
            return
        self.ep_open[m] = True
        self.ep_last[m] = slot
        self.ep_count[m] = 1
        self.ep_kind[m] = kind
        at = (slot + 1) * block.step_ms
        out.findings.append(
            Finding(
                kind,
                Family.METER_FAULT,
                at,
                True,
                meter=self.meter_ids[m],
                severity=Severity.MINOR,
                evidence=evidence,
            )
        )

    def _close_counter_episodes(self, before_slot: int, step_ms: int, out: Output) -> None:
        """Close the episodes whose quiet time ends before ``before_slot``."""
        ends = self.ep_last + self.p.counter_quiet_slots
        for m in np.flatnonzero(self.ep_open & (ends < before_slot)):
            self.ep_open[m] = False
            at = int(ends[m] + 1) * step_ms
            out.findings.append(
                Finding(
                    self.ep_kind[m],
                    Family.METER_FAULT,
                    at,
                    False,
                    meter=self.meter_ids[m],
                    evidence={"anomalies": int(self.ep_count[m])},
                )
            )

    def _counters(self, block: Block, first_slot: int, swapping: BoolArray, out: Output) -> None:
        rows = np.flatnonzero(self.counter)
        if rows.size == 0:
            return
        v = block.values[rows]
        seen = np.isfinite(v)
        k_idx = np.arange(block.slots)
        # previous finite value and its slot at each slot, continuing the carried ones
        last_k = np.maximum.accumulate(np.where(seen, k_idx, -1), axis=1)
        prev_k = np.concatenate([np.full((rows.size, 1), -1), last_k[:, :-1]], axis=1)
        r = np.arange(rows.size)[:, None]
        prev_v = np.where(prev_k >= 0, v[r, np.maximum(prev_k, 0)], self.prev[rows][:, None])
        prev_abs = np.where(prev_k >= 0, first_slot + prev_k, self.prev_slot[rows][:, None])
        gap = (first_slot + k_idx)[None, :] - prev_abs  # slots since the previous reading
        inc = v - prev_v
        valid = seen & np.isfinite(prev_v)
        # the usual increment per slot: the last non-negative one before each slot
        rate = np.where(valid & (inc >= 0), inc / np.maximum(gap, 1), np.nan)
        rate_k = np.maximum.accumulate(np.where(np.isfinite(rate), k_idx, -1), axis=1)
        usual_prev = np.concatenate([np.full((rows.size, 1), -1), rate_k[:, :-1]], axis=1)
        usual = np.where(
            usual_prev >= 0, rate[r, np.maximum(usual_prev, 0)], self.prev_inc[rows][:, None]
        )
        tol = np.maximum(1e-6 * np.abs(prev_v), 1e-3)
        back = valid & (inc < -tol)
        expected = np.nan_to_num(usual, nan=0.0) * gap
        leap = (
            valid
            & (inc > self.p.jump_factor * np.maximum(expected, tol))
            & (gap < self.p.gap_slots)
        )
        leap &= np.isfinite(usual) & (usual > 0)
        found = np.nonzero(back | leap)
        for i, k in sorted(
            zip(found[0].tolist(), found[1].tolist(), strict=True), key=lambda x: x[1]
        ):
            row = int(rows[i])
            old, new = float(prev_v[i, k]), float(v[i, k])
            evidence = {
                "quantity": self.series[row].quantity,
                "old_reading": old,
                "new_reading": new,
                "gap_slots": int(gap[i, k]),
            }
            m = int(self.meter_of[row])
            if swapping[m, k] or (k > 0 and swapping[m, k - 1]) or (k == 0 and self.swap_last[m]):
                continue  # a word-swapped register: the swap check reports the meter
            if leap[i, k]:
                evidence["usual_increment"] = float(usual[i, k])
                self._counter_event("counter_jump", m, first_slot + k, block, evidence, out)
                continue
            step = float(expected[i, k])
            wrapped = new + MODULI - old
            fits = (wrapped >= 0) & (
                np.abs(wrapped - step) <= np.maximum(3 * step, 1e-6 * MODULI + 0.01)
            )
            if fits.any() and gap[i, k] < self.p.gap_slots:
                evidence["modulus"] = float(MODULI[np.argmax(fits)])
                kind = "counter_rollover"
            elif gap[i, k] >= self.p.gap_slots:
                kind = "meter_replacement"
            else:
                kind = "counter_reset"
            self._counter_event(kind, m, first_slot + k, block, evidence, out)
        self._close_counter_episodes(first_slot + block.slots, block.step_ms, out)
        # carry
        any_seen = seen.any(axis=1)
        last_idx = np.maximum(last_k[:, -1], 0)
        self.prev[rows] = np.where(any_seen, v[np.arange(rows.size), last_idx], self.prev[rows])
        self.prev_slot[rows] = np.where(any_seen, first_slot + last_k[:, -1], self.prev_slot[rows])
        last_rate = rate_k[:, -1]
        self.prev_inc[rows] = np.where(
            last_rate >= 0,
            rate[np.arange(rows.size), np.maximum(last_rate, 0)],
            self.prev_inc[rows],
        )

    def _stuck(self, block: Block, out: Output) -> None:
        rows = np.flatnonzero(~self.counter)
        if rows.size == 0:
            return
        v = block.values[rows]
        seen = np.isfinite(v)
        k_idx = np.arange(block.slots)
        r = np.arange(rows.size)[:, None]
        last_k = np.maximum.accumulate(np.where(seen, k_idx, -1), axis=1)
        prev_k = np.concatenate([np.full((rows.size, 1), -1), last_k[:, :-1]], axis=1)
        prev = np.where(prev_k >= 0, v[r, np.maximum(prev_k, 0)], self.prev[rows][:, None])
        # a slot repeats when its readings are one value, the previous slot's
        flat = block.low[rows] == block.high[rows]
        equal = seen & flat & (v == prev)
        changed = seen & ~equal & np.isfinite(prev)
        # run of equal slots at each slot, continuing the carried run (gaps do not break it)
        counted = np.cumsum(equal, axis=1)
        last_change = np.maximum.accumulate(np.where(seen & ~equal, k_idx, -1), axis=1)
        run = np.where(
            last_change >= 0,
            counted - _at_index(counted, last_change),
            self.equal_run[rows][:, None] + counted,
        )
        # how lively each row was before its run began: the share of its readings in the
        # ``lively_window`` slots up to its last change that changed
        w = self.p.lively_window
        ch = np.concatenate([self.hist_changed[rows], changed.astype(np.int8)], axis=1)
        se = np.concatenate([self.hist_seen[rows], seen.astype(np.int8)], axis=1)
        c_ch = np.cumsum(ch, axis=1, dtype=np.int64)
        c_se = np.cumsum(se, axis=1, dtype=np.int64)
        sum_ch = c_ch[:, w:] - c_ch[:, :-w]
        sum_se = c_se[:, w:] - c_se[:, :-w]
        lively_now = sum_ch >= self.p.lively_share * np.maximum(sum_se, 1)
        last_ch = np.maximum.accumulate(np.where(changed, k_idx, -1), axis=1)
        lively = np.where(last_ch >= 0, _at_index(lively_now, last_ch), self.lively[rows][:, None])
        long_run = run >= self.stuck_slots
        main = self.main[rows][:, None]
        telling = long_run & lively & main & (np.abs(np.nan_to_num(v)) > 0)
        meter_rows = self.meter_of[rows]
        all_long, _ = self._per_meter(meter_rows, long_run, np.zeros_like(seen), seen)
        any_telling = np.zeros_like(all_long)
        np.logical_or.at(any_telling, meter_rows, telling)
        live = np.zeros_like(all_long)
        np.logical_or.at(live, meter_rows, seen & ~equal)
        self._transitions(
            block,
            "stuck_value",
            all_long & any_telling,
            live,
            self.stuck_open,
            out,
            evidence=lambda m, k: {"slots_equal": int(self.stuck_slots)},
        )
        self.equal_run[rows] = run[:, -1]
        self.lively[rows] = lively[:, -1]
        self.hist_changed[rows] = ch[:, -w:]
        self.hist_seen[rows] = se[:, -w:]
        has = last_k[:, -1] >= 0
        self.prev[rows] = np.where(
            has, v[np.arange(rows.size), np.maximum(last_k[:, -1], 0)], self.prev[rows]
        )

    def _per_meter(
        self, meter_rows: IntArray, flag: BoolArray, clear: BoolArray, seen: BoolArray
    ) -> tuple[BoolArray, BoolArray]:
        """Per meter and slot: every reporting row flagged; any row clear."""
        m = len(self.meter_ids)
        slots = flag.shape[1]
        flagged = np.zeros((m, slots), dtype=np.int64)
        reporting = np.zeros((m, slots), dtype=np.int64)
        cleared = np.zeros((m, slots), dtype=bool)
        np.add.at(flagged, meter_rows, (flag & seen).astype(np.int64))
        np.add.at(reporting, meter_rows, seen.astype(np.int64))
        np.logical_or.at(cleared, meter_rows, clear)
        return (reporting > 0) & (flagged == reporting), cleared

    def _transitions(
        self,
        block: Block,
        kind: str,
        on: BoolArray,
        off: BoolArray,
        state: BoolArray,
        out: Output,
        evidence: Any,
        zone: str | None = None,
    ) -> None:
        """Open where ``on`` first holds for a closed meter, close where ``off`` holds."""
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
            meter = self.meter_ids[mi]
            for k_at, active in events:
                out.findings.append(
                    Finding(
                        kind,
                        Family.METER_FAULT,
                        self._at(block, k_at),
                        active,
                        meter=None if zone else meter,
                        zone=zone,
                        severity=Severity.MINOR,
                        evidence=evidence(mi, k_at) if active else {},
                    )
                )

    def _swaps(self, block: Block, out: Output) -> BoolArray:
        """Per meter and slot: a reading taken for a word-swapped one."""
        rows = np.arange(len(self.series))
        v = block.high[rows]
        seen = np.isfinite(v)
        back = word_swapped(np.nan_to_num(v))
        good = self.good[rows].copy()
        flagged = np.zeros_like(seen)
        # candidate rows only: a value ten times off its forward-filled previous one
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.abs(v) / np.abs(np.concatenate([good[:, None], v[:, :-1]], axis=1))
        candidates = np.flatnonzero(
            ((ratio > self.p.swap_far) | (ratio < 1 / self.p.swap_far)).any(axis=1)
            | np.isin(self.meter_of[rows], np.flatnonzero(self.swap_open))
        )
        for i in candidates:
            g = good[i]
            for k in np.flatnonzero(seen[i]):
                x, b = abs(v[i, k]), abs(back[i, k])
                if (
                    np.isfinite(g)
                    and g > 0
                    and (x > self.p.swap_far * g or x < g / self.p.swap_far)
                    and g / self.p.swap_near <= b <= g * self.p.swap_near
                ):
                    flagged[i, k] = True
                else:
                    g = x
            good[i] = g
        others = np.setdiff1d(np.arange(rows.size), candidates)
        if others.size:
            last = np.maximum.accumulate(np.where(seen[others], np.arange(block.slots), -1), axis=1)
            has = last[:, -1] >= 0
            vals = np.abs(v[others, np.maximum(last[:, -1], 0)])
            good[others] = np.where(has, vals, good[others])
        self.good[rows] = good
        meter_rows = self.meter_of[rows]
        m = len(self.meter_ids)
        on = np.zeros((m, block.slots), dtype=bool)
        np.logical_or.at(on, meter_rows, flagged)
        off = np.zeros((m, block.slots), dtype=bool)
        np.logical_or.at(off, meter_rows, seen & ~flagged)
        off &= ~on
        self._transitions(
            block,
            "word_swap",
            on,
            off,
            self.swap_open,
            out,
            evidence=lambda mi, k: {"hint": "FLOAT32 words in the wrong order"},
        )
        return on

    def _silence(self, block: Block, first_slot: int, out: Output) -> None:
        seen = np.isfinite(block.values)
        m = len(self.meter_ids)
        meter_seen = np.zeros((m, block.slots), dtype=bool)
        np.logical_or.at(meter_seen, self.meter_of, seen)
        k_idx = np.arange(block.slots)
        abs_k = first_slot + k_idx
        last_m = np.full(m, -1, dtype=np.int64)
        np.maximum.at(last_m, self.meter_of, self.last_seen)
        last_seen = np.maximum.accumulate(np.where(meter_seen, abs_k, -1), axis=1)
        last_seen = np.maximum(last_seen, last_m[:, None])
        with np.errstate(invalid="ignore", divide="ignore"):
            row_spacing = np.where(
                self.readings > 1, (self.last_seen - self.first_seen) / (self.readings - 1), 0.0
            )
        spacing = np.zeros(m)
        np.maximum.at(spacing, self.meter_of, row_spacing)
        limit = np.maximum(self.p.silence_slots, np.ceil(3 * spacing))[:, None]
        silent = (last_seen >= 0) & (abs_k[None, :] - last_seen >= limit)
        back = meter_seen
        if m > 1 and block.group is not None:
            whole: BoolArray = np.all(silent, axis=0)  # every meter of the gateway silent
        else:
            whole = np.zeros(block.slots, dtype=np.bool_)
        zone = f"gateway:{self.gateway}"
        gw_on = whole[None, :]
        gw_state = np.array([self.gateway_silent])
        self._transitions(
            block,
            "comm_loss",
            gw_on,
            np.any(back, axis=0, keepdims=True),
            gw_state,
            out,
            evidence=lambda mi, k: {"meters": m},
            zone=zone,
        )
        self.gateway_silent = bool(gw_state[0])
        per_meter = silent & ~whole[None, :]
        self._transitions(
            block,
            "comm_loss",
            per_meter,
            back,
            self.silent_open,
            out,
            evidence=lambda mi, k: {"slots_without_data": int(limit[mi, 0])},
        )
        # how often each row reports: its first and latest reading and how many slots had one
        any_seen = seen.any(axis=1)
        first_k = np.argmax(seen, axis=1)
        last_k = block.slots - 1 - np.argmax(seen[:, ::-1], axis=1)
        self.first_seen = np.where(
            any_seen & (self.first_seen < 0), first_slot + first_k, self.first_seen
        )
        self.last_seen = np.where(any_seen, first_slot + last_k, self.last_seen)
        self.readings += seen.sum(axis=1)

    def _transport(self, block: Block, out: Output) -> None:
        stats = block.transport.get(self.gateway)
        if stats is None:
            return
        zone = f"gateway:{self.gateway}"
        for k in range(block.slots):
            if stats.batches[k] > 0 and np.isfinite(stats.offset_ms[k]):
                self.offsets = [
                    *self.offsets[-(self.p.transport_slots - 1) :],
                    float(stats.offset_ms[k]),
                ]
            self.dup_history = [*self.dup_history[-9:], int(stats.duplicates[k] > 0)]
            at = self._at(block, k)
            if len(self.offsets) >= self.p.transport_slots:
                typical = float(np.median(self.offsets))
                kind = (
                    "clock_skew"
                    if typical > self.p.skew_ms
                    else "late_batches"
                    if typical < -self.p.late_ms
                    else ""
                )
                if kind != self.skew_open:
                    if self.skew_open:
                        out.findings.append(
                            Finding(self.skew_open, Family.METER_FAULT, at, False, zone=zone)
                        )
                    if kind:
                        out.findings.append(
                            Finding(
                                kind,
                                Family.METER_FAULT,
                                at,
                                True,
                                zone=zone,
                                severity=Severity.MINOR,
                                evidence={"offset_s": round(typical / 1000, 1)},
                            )
                        )
                    self.skew_open = kind
            dup_now = sum(self.dup_history) >= self.p.duplicate_slots
            if dup_now != self.dup_open:
                out.findings.append(
                    Finding(
                        "duplicate_batches",
                        Family.METER_FAULT,
                        at,
                        dup_now,
                        zone=zone,
                        severity=Severity.INFO,
                        evidence={"slots_with_duplicates": sum(self.dup_history)}
                        if dup_now
                        else {},
                    )
                )
                self.dup_open = dup_now

    # --- state --------------------------------------------------------------------------------

    _ARRAYS = (
        "prev",
        "prev_slot",
        "prev_inc",
        "good",
        "lively",
        "hist_changed",
        "hist_seen",
        "equal_run",
        "first_seen",
        "last_seen",
        "readings",
        "stuck_open",
        "swap_open",
        "swap_last",
        "silent_open",
        "ep_open",
        "ep_last",
        "ep_count",
    )

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k).copy() for k in self._ARRAYS}
        out.update(
            ep_kind=list(self.ep_kind),
            gateway_silent=self.gateway_silent,
            offsets=list(self.offsets),
            dup_history=list(self.dup_history),
            skew_open=self.skew_open,
            dup_open=self.dup_open,
        )
        return out

    def restore(self, state: Mapping[str, Any]) -> None:
        for k in self._ARRAYS:
            setattr(self, k, np.array(state[k]))
        self.ep_kind = [str(k) for k in state["ep_kind"]]
        self.gateway_silent = bool(state["gateway_silent"])
        self.offsets = [float(x) for x in state["offsets"]]
        self.dup_history = [int(x) for x in state["dup_history"]]
        self.skew_open = str(state["skew_open"])
        self.dup_open = bool(state["dup_open"])


def _at_index(values: IntArray, index: IntArray) -> IntArray:
    """values[r, index[r, k]] for every r, k (index ≥ 0)."""
    return np.take_along_axis(values, np.maximum(index, 0), axis=1)
