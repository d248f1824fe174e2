"""A deterministic park model with ground truth: every meter's readings, computed with numpy.

``ParkModel(park, seed, faults)`` turns a ``park.yaml`` into readings. :meth:`ParkModel.frame`
computes a whole array of timestamps for every meter at once (``[time, series]`` arrays, one
series per meter and quantity); :meth:`ParkModel.step` and :meth:`ParkModel.step_by_gateway`
are the one-timestamp form the publisher and the Modbus servers use, and :meth:`batches` adds
late and duplicated deliveries. Stepping one timestamp at a time or computing them in blocks
gives the same values.

Where things are
----------------
* :mod:`simulators.layout`: what each meter is (its :class:`~simulators.layout.Kind`), its
  size, the systems it belongs to and the quantities it publishes.
* :mod:`simulators.physics`: the sub-models — noise, weather, production activity
  (:mod:`simulators.industries` shift calendars on the park's local clock, Chinese holidays from
  :mod:`parkwatch.calendar`), PV and battery, the storage tank, compressors, the boiler, hot
  and cooling water.
* :mod:`simulators.counters`: cumulative registers.
* :mod:`simulators.faults`: the fault schedule; process faults act here, in
  :meth:`ParkModel._instant`, meter and transport faults on the output (``FaultLayer``).

Conventions
-----------
* Sign: ``p_kw`` is power drawn through the meter towards its loads. PV generation and
  battery discharge are negative; ``e_kwh`` integrates the positive part and ``e_export_kwh``
  (on PV, battery and the meters upstream of them) the negative part. ``pf`` is
  ``|p| / sqrt(p² + q²)`` (1 when both are 0).
* Balance trees: a parent meter reads the sum of its children plus its own unmetered load
  (losses, small consumers). Electricity: ``parent = Σ children + own``. Water, with the
  storage tank floating on the network downstream of the main meter::

      main = Σ districts + tank_in − tank_out + own_losses + leaks(main zone)
      district = Σ sub-meters + own_unmetered + leaks(district zone)

  where ``tank_in − tank_out = area × d(level)/dt`` and a leak in a zone is measured by the
  zone's meter and every meter upstream of it, never by its children.
* Counters integrate the published (rounded) instantaneous values with the trapezoid rule
  (:mod:`simulators.counters`), so analytics can check them against each other.
* Determinism: all randomness is a hash of (seed, meter id, time), not a random stream, so
  any timestamp's values are the same whichever way the model got there; counters start at
  seeded readings at the first timestamp simulated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from parkwatch import calendar
from parkwatch.quantities import Utility
from parkwatch.site import Meter, Park, Role
from simulators import industries
from simulators.counters import COUNTERS, Counters
from simulators.fault_layer import Delivery, FaultLayer, SeriesLayout
from simulators.faults import PROCESS_KINDS, Fault, FaultKind
from simulators.layout import DECIMALS, PRIMARY, Kind, Layout, build_layout
from simulators.physics import air, boiler, electric, heat, loads, water
from simulators.physics.electric import PV_PERFORMANCE_RATIO
from simulators.physics.heat import RHO_C
from simulators.physics.noise import fast, key, slow
from simulators.physics.weather import clear_sky_ghi, weather
from simulators.physics.weather import location as weather_location

__all__ = [
    "COUNTERS",
    "DECIMALS",
    "PRIMARY",
    "PV_PERFORMANCE_RATIO",
    "RHO_C",
    "Batch",
    "Frame",
    "Kind",
    "Layout",
    "ParkModel",
    "clear_sky_ghi",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


# --- frames and batches --------------------------------------------------------------------


@dataclass
class Frame:
    """Every series (one per meter and quantity: ``ParkModel.series``) at every timestamp.

    ``values[k, s]`` is what series ``s`` reports at ``t_ms[k]``; ``present`` is False where
    nothing is reported (communication loss, a batch that arrives late); ``t_offset_ms`` is
    added to the timestamp a source reports (clock skew). ``truth`` holds the values before
    meter faults. ``deliveries`` are late and duplicated batches, when asked for.
    """

    t_ms: IntArray
    values: FloatArray
    present: BoolArray | None = None
    t_offset_ms: IntArray | None = None
    truth: FloatArray | None = None
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def true_values(self) -> FloatArray:
        return self.values if self.truth is None else self.truth


@dataclass(frozen=True)
class Batch:
    """One gateway's readings as they arrive: a poll cycle, a late batch or a duplicate."""

    gateway: str
    readings: list[dict[str, Any]]
    arrival_ms: int
    late: bool = False
    duplicate: bool = False


# --- the model -----------------------------------------------------------------------------


class ParkModel:
    """Steps a park through time; see the module docstring for what and how.

    ``faults`` is a schedule (see :mod:`simulators.faults`): process faults change the
    physics, meter and transport faults what is reported. ``location`` (latitude, longitude)
    places the sun; the default follows the park's time zone.
    """

    def __init__(
        self,
        park: Park,
        seed: int = 0,
        faults: Iterable[Fault] = (),
        *,
        location: tuple[float, float] | None = None,
    ) -> None:
        self.park = park
        self.seed = seed
        self.faults = list(faults)
        self.location = location or weather_location(park)
        self._zone = park.zone
        lay = self.layout = build_layout(park)
        n = len(lay.meters)
        self._keys = np.array([key(seed, m.id) for m in lay.meters], dtype=np.uint64)
        self._ent_keys = np.array([key(seed, "enterprise", e) for e in lay.ent_ids])
        self._park_keys = np.array([key(seed, "weather", s) for s in range(4)])
        self._tables = np.stack(list(industries.INDUSTRIES.values()))  # [industry, row, minute]
        self._hvac = np.array([r is Role.HVAC for r in lay.role], dtype=bool)
        self._follows = np.flatnonzero(
            np.isin(
                lay.kind,
                [Kind.CONSUMER, Kind.PARENT, Kind.COOLING, Kind.HEAT_RECOVERY, Kind.BOILER],
            )
        )

        # series: one column per (meter, quantity), meters in park order
        self.series: list[tuple[str, str]] = []
        series_meter: list[int] = []
        for i, m in enumerate(lay.meters):
            for q in lay.quantities[i]:
                self.series.append((m.id, q))
                series_meter.append(i)
        self._series_meter = np.array(series_meter, dtype=np.int64)
        self.column = {s: k for k, s in enumerate(self.series)}
        self.decimals = np.array([DECIMALS[q] for _, q in self.series], dtype=np.int64)
        self.is_counter = np.array([q in COUNTERS for _, q in self.series], dtype=bool)
        self._meter_columns: list[list[int]] = [[] for _ in range(n)]
        for k, i in enumerate(series_meter):
            self._meter_columns[i].append(k)
        by_quantity: dict[str, list[int]] = {}
        for k, (_, q) in enumerate(self.series):
            if q not in COUNTERS:
                by_quantity.setdefault(q, []).append(k)
        self._instant_groups = {
            q: (np.array(cols), self._series_meter[cols]) for q, cols in by_quantity.items()
        }
        counter_cols = np.flatnonzero(self.is_counter)
        self._counters = Counters(
            counter_cols,
            [self.series[k][1] for k in counter_cols],
            self._series_meter[counter_cols],
            self._keys,
        )

        self._check_faults()
        self._process = [(i, f) for i, f in enumerate(self.faults) if f.kind in PROCESS_KINDS]
        gateways = {m.id: m.gateway for m in lay.meters}
        others = [f for f in self.faults if f.kind not in PROCESS_KINDS]
        self._layer: FaultLayer | None = None
        if others:
            self._layer = FaultLayer(
                SeriesLayout(
                    [s[0] for s in self.series],
                    [s[1] for s in self.series],
                    self.is_counter,
                    gateways,
                    [COUNTERS[q][0] if q in COUNTERS else None for _, q in self.series],
                ),
                self.faults,
            )
        self._primed = False
        self._peak_cache: dict[int, dict[str, float]] = {}
        self._pending: list[Delivery] = []

    # --- public API ----------------------------------------------------------------------

    @property
    def meters(self) -> list[Meter]:
        return self.layout.meters

    def fault_details(self) -> dict[int, dict[str, Any]]:
        """What the simulation learnt about each fault while applying it (by schedule index):
        the readings a counter was reset or rolled over from, a demand peak's extra kW, ..."""
        out: dict[int, dict[str, Any]] = {i: dict(d) for i, d in self._peak_cache.items()}
        if self._layer is not None:
            for i, d in self._layer.details.items():
                out.setdefault(i, {}).update(d)
        return out

    def prime(self, start_ms: int, step_ms: int) -> None:
        """Tell the model the time grid it will be stepped on, from ``start_ms`` every
        ``step_ms``: a counter rollover must know the true counter at its start in advance
        (to wrap exactly then), so the model runs a twin up to it. Called by itself on the
        first frame (assuming its step, or 60 s) when the caller did not."""
        self._primed = True
        if self._layer is None or not self._layer.rollovers:
            return
        # the twin measures what the meters measure (an under-registering one reads low),
        # before what they show is changed
        measured = PROCESS_KINDS | {FaultKind.METER_UNDER_REGISTRATION}
        twin = ParkModel(
            self.park,
            self.seed,
            [f for f in self.faults if f.kind in measured],
            location=self.location,
        )
        todo = {i: (f, col) for i, f, col in self._layer.rollovers}
        chunk = max(1, DAY_MS // step_ms)
        t0, previous = start_ms, None
        while todo:
            times = t0 + np.arange(chunk, dtype=np.int64) * step_ms
            values = twin.frame(times).values
            for i, (fault, col) in list(todo.items()):
                hit = np.flatnonzero(times >= fault.start_ms)
                if hit.size:
                    r = int(hit[0])
                    at = float(values[r, col])
                    if r > 0:
                        before = float(values[r - 1, col])
                    else:
                        before = at if previous is None else float(previous[col])
                    self._layer.anchors[i] = (at, before)
                    del todo[i]
            previous, t0 = values[-1], int(times[-1]) + step_ms

    def frame(self, t_ms: Sequence[int] | IntArray, *, transport: bool = False) -> Frame:
        """Every series at the timestamps ``t_ms`` (increasing, normally after those of the
        previous call: counters integrate from one call to the next).

        Meter faults, communication loss and clock skew are applied; with ``transport`` late
        batches are taken out and returned, with duplicates, as ``frame.deliveries``.
        """
        t = np.asarray(t_ms, dtype=np.int64).ravel()
        if t.size == 0:
            raise ValueError("no timestamps")
        if np.any(np.diff(t) <= 0):
            raise ValueError("timestamps must increase")
        if not self._primed:
            self.prime(int(t[0]), int(t[1] - t[0]) if t.size > 1 else MINUTE_MS)
        instant = self._instant(t)
        values = np.empty((t.size, len(self.series)))
        for q, (cols, meters) in self._instant_groups.items():
            values[:, cols] = instant[q][:, meters]
        values[:, self._counters.columns] = self._counters.integrate(t, instant)
        frame = Frame(t, values)
        if self._layer is not None:
            frame.truth = values.copy()
            frame.deliveries = self._layer.apply(frame, transport=transport)
        return frame

    def own_loads(self, t_ms: Sequence[int] | IntArray) -> FloatArray:
        """Each meter's own load ``[time, meter]`` in its primary quantity (``p_kw``,
        ``flow_m3h``, ...), before balance trees add children: for a parent, the unmetered
        load (losses, small consumers) and any leak in its zone. Ground truth for balances;
        it does not advance the model."""
        t = np.asarray(t_ms, dtype=np.int64).ravel()
        return self._instant(t)["_own"]

    def readings(self, frame: Frame, row: int) -> list[dict[str, Any]]:
        """The readings of one row of a frame in the wire format, meters in park order."""
        t = int(frame.t_ms[row])
        values = frame.values[row]
        present = None if frame.present is None else frame.present[row]
        offsets = None if frame.t_offset_ms is None else frame.t_offset_ms[row]
        out: list[dict[str, Any]] = []
        for i, m in enumerate(self.layout.meters):
            cols = self._meter_columns[i]
            q = {
                self.series[c][1]: round(float(values[c]), int(self.decimals[c]))
                for c in cols
                if present is None or present[c]
            }
            if q:
                skew = 0 if offsets is None else int(offsets[cols[0]])
                out.append({"m": m.id, "t": t + skew, "q": q})
        return out

    def step(self, t_ms: int) -> list[dict[str, Any]]:
        """Every meter's reading at ``t_ms`` (as its meter shows it; a meter that cannot be
        read is left out)."""
        return self.readings(self.frame([t_ms]), 0)

    def step_by_gateway(self, t_ms: int) -> dict[str, list[dict[str, Any]]]:
        gateway = {m.id: m.gateway for m in self.meters}
        out: dict[str, list[dict[str, Any]]] = {}
        for reading in self.step(t_ms):
            out.setdefault(gateway[reading["m"]], []).append(reading)
        return out

    def batches(self, t_ms: int) -> list[Batch]:
        """What arrives at ``t_ms``, in order: late batches that are due, each gateway's poll
        cycle, and duplicates. Use this instead of :meth:`step_by_gateway` to publish
        transport faults; a duplicate should be sent with the same ``seq`` as its original."""
        frame = self.frame([t_ms], transport=True)
        self._pending.extend(frame.deliveries)
        gateway = {m.id: m.gateway for m in self.meters}
        fresh: dict[str, list[dict[str, Any]]] = {}
        for reading in self.readings(frame, 0):
            fresh.setdefault(gateway[reading["m"]], []).append(reading)
        due = sorted((d for d in self._pending if d.arrival_ms <= t_ms), key=lambda d: d.arrival_ms)
        self._pending = [d for d in self._pending if d.arrival_ms > t_ms]
        out = [Batch(gw, rs, t_ms) for gw, rs in fresh.items()]
        early = [self._delivered(d) for d in due if d.arrival_ms < t_ms or not d.duplicate]
        late_dups = [self._delivered(d) for d in due if d.arrival_ms == t_ms and d.duplicate]
        return early + out + late_dups

    def delivery_readings(self, delivery: Delivery) -> list[dict[str, Any]]:
        """The readings a late or duplicated delivery carries, in the wire format."""
        by_meter: dict[int, dict[str, Any]] = {}
        for col, value, offset in zip(
            delivery.columns, delivery.values, delivery.t_offset_ms, strict=True
        ):
            i = int(self._series_meter[col])
            reading = by_meter.setdefault(
                i, {"m": self.layout.meters[i].id, "t": delivery.t_ms + int(offset), "q": {}}
            )
            reading["q"][self.series[col][1]] = round(float(value), int(self.decimals[col]))
        return [by_meter[i] for i in sorted(by_meter)]

    def _delivered(self, d: Delivery) -> Batch:
        return Batch(
            d.gateway,
            self.delivery_readings(d),
            d.arrival_ms,
            late=not d.duplicate,
            duplicate=d.duplicate,
        )

    # --- the physics ---------------------------------------------------------------------

    def _check_faults(self) -> None:
        lay = self.layout
        gateways = {m.gateway for m in lay.meters}
        for f in self.faults:
            if f.kind in (FaultKind.WATER_BURST, FaultKind.WATER_LEAK):
                i = lay.index.get(f.zone or "")
                if i is None or lay.utility[i] is not Utility.WATER:
                    raise ValueError(f"{f.kind}: zone {f.zone!r} is not a water meter")
            elif f.kind is FaultKind.AIR_LEAK:
                e = lay.ent_ids.index(f.zone) if f.zone in lay.ent_ids else -1
                if e < 0 or e not in lay.compressors:
                    raise ValueError(f"air_leak: {f.zone!r} is no enterprise with compressors")
            elif f.gateway is not None and f.gateway not in gateways:
                raise ValueError(f"{f.kind}: unknown gateway {f.gateway!r}")
            elif f.meter is not None and f.meter not in lay.index:
                raise ValueError(f"{f.kind}: unknown meter {f.meter!r}")
            if f.kind is FaultKind.FLUE_TEMP_RISE and not any(
                lay.meters[s].id == f.meter for s, _ in lay.boilers
            ):
                raise ValueError(f"flue_temp_rise: {f.meter!r} is not a boiler steam meter")
            if f.kind is FaultKind.DEMAND_PEAK:
                spec = lay.meters[lay.index[f.meter or ""]].spec
                if spec.contracted_demand_kw is None:
                    raise ValueError(f"demand_peak: {f.meter!r} has no contracted demand")

    def _process_faults(self, t: IntArray, own: FloatArray) -> ProcessEffects:
        """Leaks (own load of the zone meter they are downstream of, or extra compressed-air
        demand), and what flue, cooling and bypass faults add, at every timestamp."""
        lay = self.layout
        n = len(lay.meters)
        fx = ProcessEffects(
            air_leaks={},
            flue_rise=np.zeros((t.size, n)),
            cooling_rise=np.zeros((t.size, n)),
            bypass=np.zeros((t.size, n)),
        )
        for _, f in self._process:
            level = f.intensity(t)
            if not level.any():
                continue
            if f.kind in (FaultKind.WATER_BURST, FaultKind.WATER_LEAK):
                own[:, lay.index[f.zone or ""]] += f.magnitude * level
            elif f.kind is FaultKind.AIR_LEAK:
                e = lay.ent_ids.index(f.zone or "")
                fx.air_leaks[e] = fx.air_leaks.get(e, 0.0) + f.magnitude * level
            elif f.kind is FaultKind.FLUE_TEMP_RISE:
                fx.flue_rise[:, lay.index[f.meter or ""]] += f.magnitude * level
            elif f.kind is FaultKind.COOLING_TEMP_RISE:
                fx.cooling_rise[:, lay.index[f.meter or ""]] += f.magnitude * level
            elif f.kind is FaultKind.HEAT_RECOVERY_BYPASS:
                fx.bypass[:, lay.index[f.meter or ""]] += min(f.magnitude, 1.0) * level
        fx.bypass = np.minimum(fx.bypass, 1.0)
        return fx

    def _instant(self, t: IntArray, *, peaks: bool = True) -> dict[str, FloatArray]:
        """Every instantaneous quantity for every meter, [T, N] each, rounded as published."""
        lay = self.layout
        n = len(lay.meters)
        local = calendar.local_ms(t, self._zone)
        day = local // DAY_MS
        tod = (local - day * DAY_MS) / HOUR_MS
        sky = weather(t, day, tod, self._park_keys, self.location)
        act = loads.activity(t, day, tod, self._tables, lay.ent_table, self._ent_keys)
        kind = lay.kind
        own = np.zeros((t.size, n))

        # own loads: consumers follow production; PV the sun; the battery its daily curve
        follows = self._follows
        own[:, follows] = loads.consumers(
            act[:, lay.ent[follows]],
            lay.own_rated[follows],
            lay.standby[follows],
            loads.wiggle(t, self._keys)[:, follows],
        )
        if self._hvac.any():
            own[:, self._hvac] *= loads.hvac_factor(sky["t_air_c"][:, None])
        pv = np.flatnonzero(kind == Kind.PV)
        if pv.size:
            own[:, pv] = electric.pv(
                sky["irr_wm2"][:, None], lay.rated[pv], fast(t, self._keys[pv])
            )
        battery = np.flatnonzero(kind == Kind.BATTERY)
        soc = electric.state_of_charge(tod)
        if battery.size:
            own[:, battery] = electric.battery(tod, lay.rated[battery])

        fx = self._process_faults(t, own)
        out: dict[str, FloatArray] = {}
        pressure = np.full((t.size, n), 7.0)
        for e, group in lay.compressors.items():
            state = air.run(
                t,
                group,
                act[:, e],
                fx.air_leaks.get(e),
                lay.rated,
                self._keys,
                self._ent_keys[e : e + 1],
            )
            for i, kw in state.power.items():
                own[:, i] = kw
            for i, flow in state.air.items():
                own[:, i] = flow
            for h in lay.headers.get(e, []):
                own[:, h] = state.delivered
            for i in lay.air_meters.get(e, []):
                pressure[:, i] = state.pressure

        flue = np.zeros((t.size, n))
        for s_idx, g_idx in lay.boilers:
            load = own[:, s_idx] / lay.rated[s_idx]
            flue[:, s_idx] = boiler.flue_c(load, fx.flue_rise[:, s_idx])
            if g_idx >= 0:
                efficiency = boiler.efficiency(fx.flue_rise[:, s_idx])
                own[:, g_idx] = boiler.gas_nm3h(own[:, s_idx], efficiency)

        t_in, t_out, t_level = lay.tank
        if t_in >= 0:
            own[:, t_in] = water.inflow(tod, lay.tank_volume)
        if t_out >= 0:
            own[:, t_out] = water.outflow(tod, lay.tank_volume)

        hot = np.flatnonzero(np.array([u is Utility.HEAT for u in lay.utility]))
        basis = own.copy() if hot.size else own  # what heat meters would carry, unbypassed
        if hot.size:
            own[:, hot] *= 1 - fx.bypass[:, hot]

        if peaks:
            self._demand_peaks(t, own)

        # balance trees add the own loads up
        total = own @ lay.accumulate
        util = lay.utility
        q = (own * lay.tan_phi) @ lay.accumulate
        out["p_kw"] = total
        out["q_kvar"] = q
        out["pf"] = electric.power_factor(total, q)
        out["soc_pct"] = np.repeat(soc[:, None], n, axis=1)
        out["flow_nm3h"] = total
        out["p_bar"] = pressure + 0.01 * fast(t, self._keys ^ np.uint64(0xBA))
        out["steam_th"] = total

        # water and hot-water heat: flow, and the two temperatures
        flow = total.copy()
        t_supply = np.zeros((t.size, n))
        t_return = np.zeros((t.size, n))
        slow_t = slow(t, self._keys ^ np.uint64(0x7E), 2 * HOUR_MS)
        if hot.size:
            basis_total = basis @ lay.accumulate
            flow[:, hot], t_supply[:, hot], t_return[:, hot] = heat.hot_water(
                basis_total[:, hot],
                total[:, hot],
                lay.rated[hot],
                kind[hot] == Kind.HEAT_RECOVERY,
                slow_t[:, hot],
                fx.cooling_rise[:, hot],
            )
        for e, cool in lay.cooling.items():
            if not cool:
                continue
            # heat the recovery unit no longer takes out ends up in the cooling water
            recovered = lay.heat_recovery[e]
            dumped = fx.bypass[:, recovered].max(axis=1) if recovered else np.zeros(t.size)
            cols = np.array(cool)
            t_supply[:, cols], t_return[:, cols] = heat.cooling_water(
                sky["t_air_c"], slow_t[:, cols], act[:, [e]], dumped, fx.cooling_rise[:, cols]
            )
        for s_idx, _ in lay.boilers:
            t_supply[:, s_idx] = boiler.supply_c(slow_t[:, s_idx])
            t_return[:, s_idx] = boiler.feedwater_c(slow_t[:, s_idx], fx.cooling_rise[:, s_idx])
            out["p_bar"][:, s_idx] = boiler.boiler_bar(slow_t[:, s_idx])
        steam_consumers = [
            i for i in range(n) if util[i] is Utility.STEAM and kind[i] != Kind.BOILER
        ]
        for i in steam_consumers:
            out["p_bar"][:, i] = boiler.network_bar(slow_t[:, i])
        out["flow_m3h"] = flow
        out["heat_kw"] = total
        out["t_supply_c"] = t_supply
        out["t_return_c"] = t_return
        out["t_flue_c"] = flue + 1.5 * slow_t
        out["level_m"] = np.zeros((t.size, n))
        if t_level >= 0:
            out["level_m"][:, t_level] = water.level(tod, lay.tank_height)
        out["t_air_c"] = np.repeat(sky["t_air_c"][:, None], n, axis=1)
        out["rh_pct"] = np.repeat(sky["rh_pct"][:, None], n, axis=1)
        out["irr_wm2"] = np.repeat(sky["irr_wm2"][:, None], n, axis=1)
        for name, arr in out.items():
            # +0.0 turns -0.0 into 0.0: a PV meter at night reads 0, not "-0"
            out[name] = np.round(arr, DECIMALS[name]) + 0.0
        out["_own"] = own
        return out

    def _demand_peaks(self, t: IntArray, own: FloatArray) -> None:
        """Coincident starts: for a demand peak, the site's leaf consumers all step up at
        once by what it takes to put the site ``magnitude`` above its contracted demand."""
        lay = self.layout
        for index, f in self._process:
            if f.kind is not FaultKind.DEMAND_PEAK:
                continue
            level = f.intensity(t)
            if not level.any():
                continue
            main = lay.index[f.meter or ""]
            leaves = [
                i
                for i in lay.descendants[main]
                if lay.kind[i] == Kind.CONSUMER and lay.utility[i] is Utility.ELECTRICITY
            ] or [main]
            if index not in self._peak_cache:
                contracted = float(lay.meters[main].spec.contracted_demand_kw or 0.0)
                at_start = self._instant(np.array([f.start_ms]), peaks=False)
                baseline = float(at_start["p_kw"][0, main])
                target = contracted * (1 + f.magnitude)
                extra = max(target - baseline, 0.05 * contracted)
                self._peak_cache[index] = {
                    "contracted_kw": contracted,
                    "baseline_kw": round(baseline, 3),
                    "extra_kw": round(extra, 3),
                    "target_kw": round(target, 3),
                }
            extra = self._peak_cache[index]["extra_kw"]
            weights = lay.rated[leaves] / max(float(lay.rated[leaves].sum()), 1e-9)
            own[:, leaves] += extra * level[:, None] * weights[None, :]


@dataclass
class ProcessEffects:
    """What the process faults add at each timestamp: extra air demand per enterprise (Nm³/h),
    flue-gas and cooling-water temperature rises (K) and bypassed heat-recovery shares, per
    meter."""

    air_leaks: dict[int, FloatArray]
    flue_rise: FloatArray
    cooling_rise: FloatArray
    bypass: FloatArray
