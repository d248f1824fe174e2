"""Faults and anomalies to inject into a simulated park, with their ground truth.

A :class:`Fault` is one injection: a kind, a target (a meter, a zone, an enterprise or a
gateway), a window ``[start_ms, end_ms)`` in epoch milliseconds, a magnitude and, for faults that
grow, a ramp. A schedule is a plain list of faults: written by hand (:func:`load_schedule` reads
YAML or JSON), or drawn at random for a seed (:func:`random_schedule`).

Three families, applied at three places:

* **process faults** change what happens in the park, so the model applies them before it adds
  meters up and integrates counters (a leak is measured by every meter upstream of it):
  ``water_burst`` (a step), ``water_leak`` (growing over ``ramp_s``), ``air_leak`` (compressed
  air demand that rises and shows most off shift), ``flue_temp_rise``, ``cooling_temp_rise``,
  ``heat_recovery_bypass`` and ``demand_peak`` (coincident starts that push a site past its
  contracted demand);
* **meter faults** change what one meter reports: ``counter_reset``, ``counter_rollover``,
  ``meter_replacement``, ``stuck_value``, ``word_swap``, ``meter_under_registration`` (the
  meter shows ``magnitude`` × the true flow: its balance with its parent no longer closes, though
  nothing leaks);
* **transport faults** change what arrives, and when: ``comm_loss`` (readings missing),
  ``clock_skew`` (timestamps off by ``magnitude`` seconds), ``duplicate_batches`` (every batch
  delivered ``1 + magnitude`` times) and ``late_batches`` (delivered ``magnitude`` seconds late).

The model applies process faults itself; :class:`simulators.fault_layer.FaultLayer` applies
the other two families to its output. :func:`affected` says which meters' readings a fault
changes (for choosing targets a simulator can show).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from parkwatch.calendar import local_ms
from parkwatch.quantities import Utility
from parkwatch.site import Park
from simulators.layout import Kind, Layout, build_layout

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# A counter held in a Modbus U32 register scaled by 0.01 (the common layout of energy and
# volume registers) wraps at 2**32 hundredths: this is where a rollover fault wraps it.
ROLLOVER_MODULUS = 2**32 / 100  # 42,949,672.96

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


class FaultKind(StrEnum):
    WATER_BURST = "water_burst"
    WATER_LEAK = "water_leak"
    AIR_LEAK = "air_leak"
    FLUE_TEMP_RISE = "flue_temp_rise"
    COOLING_TEMP_RISE = "cooling_temp_rise"
    HEAT_RECOVERY_BYPASS = "heat_recovery_bypass"
    DEMAND_PEAK = "demand_peak"
    COUNTER_RESET = "counter_reset"
    COUNTER_ROLLOVER = "counter_rollover"
    METER_REPLACEMENT = "meter_replacement"
    STUCK_VALUE = "stuck_value"
    WORD_SWAP = "word_swap"
    COMM_LOSS = "comm_loss"
    CLOCK_SKEW = "clock_skew"
    DUPLICATE_BATCHES = "duplicate_batches"
    LATE_BATCHES = "late_batches"
    METER_UNDER_REGISTRATION = "meter_under_registration"


K = FaultKind
PROCESS_KINDS = frozenset(
    {
        K.WATER_BURST,
        K.WATER_LEAK,
        K.AIR_LEAK,
        K.FLUE_TEMP_RISE,
        K.COOLING_TEMP_RISE,
        K.HEAT_RECOVERY_BYPASS,
        K.DEMAND_PEAK,
    }
)
METER_KINDS = frozenset(
    {
        K.COUNTER_RESET,
        K.COUNTER_ROLLOVER,
        K.METER_REPLACEMENT,
        K.STUCK_VALUE,
        K.WORD_SWAP,
        K.METER_UNDER_REGISTRATION,
    }
)
TRANSPORT_KINDS = frozenset({K.COMM_LOSS, K.CLOCK_SKEW, K.DUPLICATE_BATCHES, K.LATE_BATCHES})
POINT_KINDS = frozenset({K.COUNTER_RESET, K.COUNTER_ROLLOVER})  # instants: end == start
ZONE_KINDS = frozenset({K.WATER_BURST, K.WATER_LEAK, K.AIR_LEAK})  # target: a zone

# what ``magnitude`` means, per kind (written to the ground truth as "unit")
UNITS: dict[FaultKind, str] = {
    K.WATER_BURST: "m3/h",  # extra flow lost in the zone
    K.WATER_LEAK: "m3/h",  # final flow lost, reached after ramp_s
    K.AIR_LEAK: "Nm3/h",  # final compressed air lost, reached after ramp_s
    K.FLUE_TEMP_RISE: "K",  # flue-gas temperature above normal, reached after ramp_s
    K.COOLING_TEMP_RISE: "K",  # cooling-water return temperature above normal
    K.HEAT_RECOVERY_BYPASS: "fraction",  # share of the recoverable heat bypassed (1: all)
    K.DEMAND_PEAK: "fraction",  # site demand above its contracted maximum (0.15: 115 %)
    K.COUNTER_RESET: "reading",  # the value counters restart from (0)
    K.COUNTER_ROLLOVER: "reading",  # the register modulus the counter wraps at
    K.METER_REPLACEMENT: "reading",  # the new meter's first counter reading
    K.STUCK_VALUE: "",
    K.WORD_SWAP: "",
    K.COMM_LOSS: "",
    K.CLOCK_SKEW: "s",  # source clock minus true time
    K.DUPLICATE_BATCHES: "copies",  # extra copies of every batch
    K.LATE_BATCHES: "s",  # delay of every batch
    K.METER_UNDER_REGISTRATION: "fraction",  # share of the true flow the meter shows (0.85)
}
# what an under-registering meter scales: its flow or power, and the counters integrating them
RATES = frozenset({"p_kw", "q_kvar", "flow_m3h", "flow_nm3h", "steam_th", "heat_kw"})


@dataclass(frozen=True)
class Fault:
    """One injection. Times are epoch ms; ``end_ms`` is exclusive, None: until the end.

    Targets: ``zone`` for leaks (water: the meter whose balance the leak shows in, i.e. the
    leak is downstream of that meter and upstream of its children; air: the enterprise whose
    compressed-air system leaks); ``meter`` for process faults on one meter (the boiler's steam
    meter, the cooling-water meter, the heat-recovery meter, the site's main meter for a demand
    peak) and for meter faults; ``gateway`` (or ``meter``) for transport faults.
    """

    kind: FaultKind
    start_ms: int
    end_ms: int | None = None
    meter: str | None = None
    zone: str | None = None
    gateway: str | None = None
    magnitude: float = 0.0
    ramp_s: float = 0.0  # growing faults reach their magnitude after this long
    quantity: str | None = None  # meter faults: one quantity only (default: see FaultLayer)
    delay_s: float = 0.0  # duplicate_batches: when the copy arrives after the original

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FaultKind(self.kind))
        if self.kind in POINT_KINDS:
            object.__setattr__(self, "end_ms", self.start_ms)
        if self.kind is FaultKind.COUNTER_ROLLOVER and self.magnitude <= 0:
            object.__setattr__(self, "magnitude", ROLLOVER_MODULUS)
        elif self.end_ms is not None and self.end_ms < self.start_ms:
            raise ValueError(f"{self.kind}: end before start")
        if self.kind in ZONE_KINDS and self.zone is None:
            raise ValueError(f"{self.kind} needs a zone")
        if self.kind in TRANSPORT_KINDS and self.gateway is None and self.meter is None:
            raise ValueError(f"{self.kind} needs a gateway or a meter")
        if self.kind not in ZONE_KINDS | TRANSPORT_KINDS and self.meter is None:
            raise ValueError(f"{self.kind} needs a meter")
        if self.kind is FaultKind.METER_UNDER_REGISTRATION and not self.magnitude > 0:
            raise ValueError(
                "meter_under_registration needs a magnitude > 0: the share of the true flow "
                "the meter shows (0.85: it reads 15 % low)"
            )

    @property
    def target(self) -> str:
        return self.zone or self.meter or self.gateway or ""

    def active(self, t_ms: IntArray) -> BoolArray:
        """Which timestamps the fault covers (point faults: every one from ``start_ms`` on)."""
        on = t_ms >= self.start_ms
        if self.end_ms is not None and self.kind not in POINT_KINDS:
            on &= t_ms < self.end_ms
        return on

    def intensity(self, t_ms: IntArray) -> FloatArray:
        """0 outside the window; inside, grows linearly to 1 over ``ramp_s``, then stays 1."""
        on = self.active(t_ms)
        if self.ramp_s > 0:
            level = np.clip((t_ms - self.start_ms) / (self.ramp_s * 1000), 0.0, 1.0)
        else:
            level = np.ones(t_ms.shape)
        return np.where(on, level, 0.0)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """A fault from a schedule entry; times as epoch ms or ISO 8601 (naive: UTC).
        Unknown keys are ignored, so ground-truth records read back as their faults."""
        doc = dict(data)
        for key in ("start", "end"):
            if key in doc:
                doc[f"{key}_ms"] = _to_ms(doc.pop(key))
        # a ground-truth record carries more (id, unit, what was observed): not a schedule's
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


def _to_ms(value: Any) -> int | None:
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def load_schedule(path: Path | str) -> list[Fault]:
    """An explicit schedule: a YAML or JSON list of fault entries (see :meth:`Fault.from_dict`);
    a ground-truth JSONL file is read back as the schedule it records."""
    text = Path(path).read_text(encoding="utf-8")
    if str(path).endswith(".jsonl"):
        entries: Any = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        entries = yaml.safe_load(text) or []
    if isinstance(entries, dict):
        entries = entries.get("faults", [])
    return [Fault.from_dict(e) for e in entries]


def word_swap(values: FloatArray) -> FloatArray:
    """The float a gateway decodes when it reads a FLOAT32's two 16-bit registers in the wrong
    order: the true value as float32, its high and low words exchanged."""
    bits = np.ascontiguousarray(values, dtype=np.float64).astype(np.float32).view(np.uint32)
    swapped = (bits >> np.uint32(16)) | (bits << np.uint32(16))
    with np.errstate(invalid="ignore"):  # swapped words may spell a signalling NaN
        return swapped.view(np.float32).astype(np.float64)


# --- random schedules ----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Something a fault kind can hit, with the size its magnitude is scaled by."""

    kind: FaultKind
    field: str  # "meter", "zone" or "gateway": which Fault field names it
    name: str
    scale: float  # the target's typical flow, power or capacity, in the magnitude's unit


def affected(
    lay: Layout,
    kind: FaultKind,
    *,
    meter: str | None = None,
    zone: str | None = None,
    gateway: str | None = None,
) -> set[int]:
    """The meters (layout indexes) whose readings a fault of ``kind`` on this target changes:
    a leak shows upstream of its zone, an air leak in the whole air system and the motors'
    feeders, a bypassed heat-recovery unit in the cooling water too."""
    index = lay.index
    if kind in TRANSPORT_KINDS and gateway is not None:
        return {i for i, m in enumerate(lay.meters) if m.gateway == gateway}
    if kind in (K.WATER_BURST, K.WATER_LEAK):
        z = index[zone or ""]
        return {z, *lay.ancestors[z]}
    if kind is K.AIR_LEAK:
        e = lay.ent_ids.index(zone or "")
        hit = set(lay.air_meters.get(e, []))
        for c in lay.compressors.get(e, []):
            hit.add(c.electric)
        return hit | {a for i in hit for a in lay.ancestors[i]}
    i = index[meter or ""]
    if kind is K.FLUE_TEMP_RISE:
        fuel = [g for s, g in lay.boilers if s == i and g >= 0]
        return {i, *fuel, *(a for g in fuel for a in lay.ancestors[g])}
    if kind is K.HEAT_RECOVERY_BYPASS:
        return {i, *lay.ancestors[i], *lay.cooling.get(int(lay.ent[i]), [])}
    if kind is K.DEMAND_PEAK:
        leaves = [
            j
            for j in lay.descendants[i]
            if lay.kind[j] == Kind.CONSUMER and lay.utility[j] is Utility.ELECTRICITY
        ]
        return {i, *lay.ancestors[i], *leaves, *(a for j in leaves for a in lay.ancestors[j])}
    return {i}


def gateways_touched(lay: Layout, fault: Fault) -> set[str]:
    """The gateways that publish readings ``fault`` changes."""
    hit = affected(lay, fault.kind, meter=fault.meter, zone=fault.zone, gateway=fault.gateway)
    return {lay.meters[i].gateway for i in hit} | ({fault.gateway} if fault.gateway else set())


def fault_targets(park: Park) -> list[Target]:
    """Every target each fault kind can hit in ``park``, with the scale of its magnitude."""
    lay = build_layout(park)
    fk = FaultKind
    out: list[Target] = []
    for i, m in enumerate(lay.meters):
        kind = lay.kind[i]
        if m.utility is Utility.WATER and kind == Kind.PARENT:
            out.append(Target(fk.WATER_BURST, "zone", m.id, float(lay.rated[i])))
            out.append(Target(fk.WATER_LEAK, "zone", m.id, float(lay.rated[i])))
        if kind == Kind.BOILER:
            out.append(Target(fk.FLUE_TEMP_RISE, "meter", m.id, 1.0))
        if kind == Kind.COOLING:
            out.append(Target(fk.COOLING_TEMP_RISE, "meter", m.id, 1.0))
        if kind == Kind.HEAT_RECOVERY:
            out.append(Target(fk.HEAT_RECOVERY_BYPASS, "meter", m.id, 1.0))
        if m.utility is Utility.ELECTRICITY and m.spec.contracted_demand_kw is not None:
            out.append(Target(fk.DEMAND_PEAK, "meter", m.id, 1.0))
        if kind in (Kind.CONSUMER, Kind.PARENT) and m.utility is not Utility.ENV:
            meter_faults = (
                fk.COUNTER_RESET,
                fk.COUNTER_ROLLOVER,
                fk.METER_REPLACEMENT,
                fk.STUCK_VALUE,
                fk.WORD_SWAP,
                fk.COMM_LOSS,
            )
            out.extend(Target(k, "meter", m.id, 1.0) for k in meter_faults)
        if (
            m.utility in (Utility.WATER, Utility.GAS)
            and kind in (Kind.CONSUMER, Kind.PARENT, Kind.COOLING)
            and lay.ancestors[i]
        ):
            # a sub-meter: its parent's balance shows what it no longer registers
            out.append(Target(fk.METER_UNDER_REGISTRATION, "meter", m.id, 1.0))
    for e, group in lay.compressors.items():
        out.append(Target(fk.AIR_LEAK, "zone", lay.ent_ids[e], sum(c.fad for c in group)))
    for gw in sorted({m.gateway for m in lay.meters}):
        transport = (fk.COMM_LOSS, fk.CLOCK_SKEW, fk.DUPLICATE_BATCHES, fk.LATE_BATCHES)
        out.extend(Target(k, "gateway", gw, 1.0) for k in transport)
    return out


# kind: (duration range in hours, magnitude range relative to the target's scale, ramp share)
_RANDOM: dict[FaultKind, tuple[tuple[float, float], tuple[float, float], float]] = {
    K.WATER_BURST: ((2, 12), (0.10, 0.25), 0.0),
    K.WATER_LEAK: ((48, 120), (0.04, 0.10), 0.8),
    K.AIR_LEAK: ((72, 144), (0.06, 0.15), 0.6),
    K.FLUE_TEMP_RISE: ((96, 192), (15, 40), 0.7),
    K.COOLING_TEMP_RISE: ((48, 96), (3, 8), 0.5),
    K.HEAT_RECOVERY_BYPASS: ((6, 48), (0.6, 1.0), 0.0),
    K.DEMAND_PEAK: ((0.33, 0.75), (0.08, 0.25), 0.0),
    K.COUNTER_RESET: ((0, 0), (0, 0), 0.0),
    K.COUNTER_ROLLOVER: ((0, 0), (1, 1), 0.0),
    K.METER_REPLACEMENT: ((0.5, 3), (0, 10), 0.0),
    K.STUCK_VALUE: ((2, 12), (0, 0), 0.0),
    K.WORD_SWAP: ((1, 6), (0, 0), 0.0),
    K.COMM_LOSS: ((0.17, 4), (0, 0), 0.0),
    K.CLOCK_SKEW: ((6, 48), (30, 600), 0.0),
    K.DUPLICATE_BATCHES: ((0.17, 1), (1, 1), 0.0),
    K.LATE_BATCHES: ((0.17, 2), (300, 3600), 0.0),
    K.METER_UNDER_REGISTRATION: ((48, 168), (0.80, 0.92), 0.0),
}


def random_schedule(
    park: Park,
    start_ms: int,
    end_ms: int,
    seed: int,
    *,
    kinds: Iterable[FaultKind | str] | None = None,
    per_kind: int = 1,
    exclude_gateways: Iterable[str] = (),
) -> list[Fault]:
    """``per_kind`` faults of each kind the park has a target for, at random for the seed.

    Faults fit in ``[start_ms, end_ms)`` (durations shrink to a third of a short span), start
    on whole minutes, and are sorted by start. Demand peaks start on a working hour (in a span
    of a day or more). A target
    whose fault would show in readings of an ``exclude_gateways`` gateway (served by something
    that does not inject faults, such as the Modbus meters) is never chosen.
    """
    rng = np.random.default_rng([seed, 0xFA17])
    targets = fault_targets(park)
    excluded = set(exclude_gateways)
    if excluded:
        lay = build_layout(park)
        targets = [
            t
            for t in targets
            if not excluded & gateways_touched(lay, _aimed(t, start_ms, None, magnitude=1))
        ]
    wanted = [FaultKind(k) for k in kinds] if kinds is not None else list(FaultKind)
    span = end_ms - start_ms
    margin = min(HOUR_MS, span // 10)  # faults end this long before the span does
    out: list[Fault] = []
    for kind in wanted:
        options = [t for t in targets if t.kind is kind]
        if not options:
            continue
        (d_lo, d_hi), (m_lo, m_hi), ramp_share = _RANDOM[kind]
        for _ in range(per_kind):
            target = options[int(rng.integers(len(options)))]
            duration = int(min(rng.uniform(d_lo, d_hi) * HOUR_MS, span / 3))
            duration -= duration % MINUTE_MS
            latest = max(start_ms, end_ms - duration - margin)
            start = int(rng.uniform(start_ms + span * 0.05, max(latest, start_ms + span * 0.05)))
            if kind is K.DEMAND_PEAK:  # coincident starts happen when a shift starts machines
                hour = int(rng.integers(9, 16))
                if span >= DAY_MS:  # (a shorter span, a live demo's, takes it when it can)
                    offset = int(local_ms(np.array([start]), park.zone)[0]) - start
                    local_midnight = (start + offset) // DAY_MS * DAY_MS - offset
                    start = local_midnight + hour * HOUR_MS
                    if start < start_ms:
                        start += DAY_MS
                    if start + duration > end_ms and start - DAY_MS >= start_ms:
                        start -= DAY_MS
            start -= start % MINUTE_MS
            if start < start_ms:  # a span that does not start on a whole minute
                start += MINUTE_MS
            magnitude = float(rng.uniform(m_lo, m_hi))
            if kind in (K.WATER_BURST, K.WATER_LEAK, K.AIR_LEAK):
                magnitude *= target.scale
            if kind is K.COUNTER_ROLLOVER:
                magnitude = ROLLOVER_MODULUS
            if kind is K.CLOCK_SKEW and rng.random() < 0.5:
                magnitude = -magnitude
            fault = _aimed(
                target,
                start,
                None if kind in POINT_KINDS else start + max(duration, MINUTE_MS),
                magnitude=round(magnitude, 3),
                ramp_s=round(duration * ramp_share / 1000),
            )
            if kind is K.DUPLICATE_BATCHES:
                fault = replace(fault, delay_s=float(rng.integers(0, 30)))
            out.append(fault)
    out.sort(key=lambda f: (f.start_ms, f.kind))
    return out


def _aimed(
    target: Target, start_ms: int, end_ms: int | None, magnitude: float, ramp_s: float = 0.0
) -> Fault:
    """A fault of the target's kind on the target."""
    named = {"meter": None, "zone": None, "gateway": None, target.field: target.name}
    return Fault(
        target.kind,
        start_ms,
        end_ms,
        meter=named["meter"],
        zone=named["zone"],
        gateway=named["gateway"],
        magnitude=magnitude,
        ramp_s=ramp_s,
    )
