"""Waste heat: how much heat leaves the park unused, and the faults that make it more.

One instance per park, over every heat source its plant has (``parkwatch.plant``), with numpy
across sources and a loop only over the hours a block completes:

* **recoverable heat** ``Q = ṁ · cp · (T − T_recovery)`` each hour, in the flue gas of every
  boiler (its burner's gas × ``flue_gas_kg_per_nm3_fuel``, cp 1.1 kJ/kg·K, down to
  ``flue_recovery_c``) and in every cooling-water return (cp 4.186 kJ/kg·K, down to
  ``water_recovery_c``; ``waste_heat:`` in park.yaml), written to InfluxDB as
  ``waste_heat`` (kW, GJ/day, tce/day and, at the park's heat price, ¥/day);
* a **flue temperature rising at steady load** (fouling, excess air): the flue temperature
  against the boiler's load (steam ÷ rated), a straight line fitted on the boiler's own
  clean hours; ``flue_temp_rise``;
* **cooling water returning hotter than it should**: the return−supply spread against the
  loop's flow, fitted the same way; ``cooling_temp_rise`` — unless the enterprise's
  heat-recovery unit is bypassed at the time, which explains it (the heat it no longer takes
  out goes to the cooling water) and is reported instead;
* a **heat-recovery unit bypassed or fouled**: its supply−return spread against its flow
  (the flow keeps running while the spread collapses); ``heat_recovery_bypass``.

Each residual is scored against the source's own scatter (1.4826 × the median absolute
residual of its clean hours, at least ``min_scale`` K) and summed in a CUSUM (``k``, ``h``
as in the leak detector): a bypass, a step of many kelvin, alarms within the hour; a flue
fouling slowly alarms once it stands out from the boiler's scatter. Nothing is judged before
``min_hours`` clean hours of a source, and an hour at low load (``min_load``) says nothing.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from analytics.detectors.robust import nanmedian_rows
from analytics.engine.contract import (
    Block,
    DerivedPoint,
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
from parkwatch.plant import Plant
from parkwatch.quantities import Utility

HOUR_MS = 3_600_000
BoolArray = npt.NDArray[np.bool_]

WATER_CP = 4.186  # kJ/(kg·K)
WATER_KG_PER_M3 = 1000.0
FLUE_CP = 1.1  # kJ/(kg·K), flue gas of natural gas
GJ_PER_TCE = 29.3076  # a tonne of standard coal equivalent (GB/T 2589)
KW_TO_GJ_PER_DAY = 86_400 / 1e6
GAS_NM3_PER_T_STEAM = 2550.0 / (35.9 * 0.92)  # a 92 % gas boiler, when its burner is unmetered
WASTE_MEASUREMENT = "waste_heat"

FLUE, COOLING, RECOVERY = 0, 1, 2
KINDS = ("flue_temp_rise", "cooling_temp_rise", "heat_recovery_bypass")


def water_heat_kw(flow_m3h: FloatArray | float, t_c: FloatArray | float, recovery_c: float) -> Any:
    """Heat water at ``t_c`` flowing at ``flow_m3h`` gives cooling to ``recovery_c``, kW
    (0 when it is no warmer)."""
    kg_s = np.asarray(flow_m3h) * WATER_KG_PER_M3 / 3600.0
    return kg_s * WATER_CP * np.maximum(np.asarray(t_c) - recovery_c, 0.0)


def flue_heat_kw(
    fuel_nm3h: FloatArray | float,
    t_flue_c: FloatArray | float,
    recovery_c: float,
    kg_per_nm3_fuel: float,
) -> Any:
    """Heat in the flue gas of ``fuel_nm3h`` of natural gas leaving at ``t_flue_c``, were it
    cooled to ``recovery_c``, kW."""
    kg_s = np.asarray(fuel_nm3h) * kg_per_nm3_fuel / 3600.0
    return kg_s * FLUE_CP * np.maximum(np.asarray(t_flue_c) - recovery_c, 0.0)


@dataclass(frozen=True)
class WasteHeatParams:
    days: int = 14  # hours kept for the fits
    min_hours: int = 24  # clean hours a fit needs
    min_scale: float = 1.0  # K: the scatter's floor
    min_load: float = 0.15  # share of rated below which an hour is not judged
    k: float = 1.0
    h: float = 6.0
    z_cap: float = 15.0
    close_h: int = 6


@dataclass(frozen=True)
class _Source:
    kind: int  # FLUE, COOLING, RECOVERY
    meter: str
    enterprise: str
    rated: float
    x: int  # row of the load or flow
    hot: int  # row of the hot temperature (flue, return or supply)
    cold: int  # row of the other temperature (-1 for flue)
    fuel: int  # row of the burner's gas (-1: derived from steam)


class WasteHeat(Detector):
    name: ClassVar[str] = "waste_heat"
    kinds: ClassVar[tuple[str, ...]] = KINDS
    scope: ClassVar[Scope] = Scope.PARK
    needs: ClassVar[Needs] = Needs(("steam_th", "t_flue_c", "flow_m3h", "t_supply_c"))
    values_only: ClassVar[bool] = True  # hourly means of the values alone

    @classmethod
    def select(cls, ctx: ParkContext) -> list[SeriesKey]:
        return _sources(ctx)[1]

    def __init__(
        self,
        ctx: ParkContext,
        series: Sequence[SeriesKey],
        params: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(ctx, series, params)
        self.p = WasteHeatParams(**self.params)
        self.sources = _sources(ctx)[0]
        self.options = ctx.park.waste_heat
        n, r = len(self.sources), len(self.series)
        self.ring = self.p.days * 24
        self.hour = -1
        self.sum = np.zeros(r)
        self.n = np.zeros(r)
        self.h_x = np.full((n, self.ring), np.nan)
        self.h_y = np.full((n, self.ring), np.nan)
        self.h_clean = np.zeros((n, self.ring), dtype=bool)
        self.cusum = np.zeros(n)
        self.open = np.zeros(n, dtype=bool)
        self.quiet = np.zeros(n, dtype=np.int64)
        self.onset_ms = np.full(n, -1, dtype=np.int64)

    def update(self, block: Block) -> Output:
        out = Output()
        if not self.sources or block.slots == 0:
            return out
        times = block.times()
        local = self.ctx.local_ms(times)
        hours = local // HOUR_MS
        ends = times + block.step_ms
        cuts = np.flatnonzero(np.r_[True, hours[1:] != hours[:-1], True])
        for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
            if int(hours[a]) != self.hour:
                self.hour = int(hours[a])
                self.sum[:] = 0.0
                self.n[:] = 0.0
            v = block.values[:, a:b]
            seen = np.isfinite(v)
            self.sum += np.where(seen, v, 0.0).sum(axis=1)
            self.n += seen.sum(axis=1)
            if (int(local[b - 1]) + block.step_ms) % HOUR_MS == 0:
                self._finish_hour(int(ends[b - 1]), out)
        return out

    def state(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _STATE}

    def restore(self, state: Mapping[str, Any]) -> None:
        for k in _STATE:
            old = getattr(self, k)
            value = state[k]
            setattr(
                self, k, np.array(value, dtype=old.dtype) if isinstance(old, np.ndarray) else value
            )

    # --- hours -------------------------------------------------------------------------

    def _finish_hour(self, at_ms: int, out: Output) -> None:
        with np.errstate(all="ignore"):
            mean = np.where(self.n > 0, self.sum / np.maximum(self.n, 1), np.nan)
        src = self.sources
        x = np.array([mean[s.x] / s.rated for s in src])
        hot = np.array([mean[s.hot] for s in src])
        cold = np.array([mean[s.cold] if s.cold >= 0 else np.nan for s in src])
        kind = np.array([s.kind for s in src])
        # what is fitted: the flue temperature; the cooling water's rise; the recovery spread
        y = np.where(kind == FLUE, hot, np.where(kind == COOLING, hot - cold, hot - cold))
        pos = self.hour % self.ring
        fit, scale = self._fits(x)
        with np.errstate(invalid="ignore"):
            z = (y - fit) / scale
        z = np.where(kind == RECOVERY, -z, z)  # a recovery unit fails by a spread too small
        judged = np.isfinite(z) & (x >= self.p.min_load)
        zc = np.where(judged, np.minimum(z, self.p.z_cap), 0.0)
        self.cusum = np.where(judged, np.maximum(0.0, self.cusum + zc - self.p.k), self.cusum)
        self.quiet = np.where(judged & (z < 1.0), self.quiet + 1, np.where(judged, 0, self.quiet))
        starting = (self.cusum > 0) & (self.onset_ms < 0)
        self.onset_ms[starting] = at_ms - HOUR_MS
        self.onset_ms[(self.cusum == 0) & ~self.open] = -1
        # recovery units first: a bypass found this hour explains its cooling water's rise
        order = sorted(range(len(src)), key=lambda j: src[j].kind != RECOVERY)
        bypassed = self._bypassed()  # taken again when a recovery unit opens or closes
        for i in order:
            s = src[i]
            if not self.open[i] and self.cusum[i] > self.p.h:
                if s.kind == COOLING and s.enterprise in bypassed:
                    continue  # the bypassed recovery unit's heat: reported as that
                self.open[i] = True
                out.findings.append(self._finding(i, at_ms, float(y[i] - fit[i]), float(fit[i])))
            elif self.open[i] and self.quiet[i] >= self.p.close_h:
                self.open[i] = False
                self.cusum[i] = 0.0
                self.onset_ms[i] = -1
                out.findings.append(
                    Finding(KINDS[s.kind], Family.WASTE_HEAT, at_ms, False, meter=s.meter)
                )
            else:
                continue
            if s.kind == RECOVERY:
                bypassed = self._bypassed()
        # while a recovery unit is bypassed its heat goes to the cooling water: that water's
        # rise is the bypass's, neither a fault of its own nor its normal
        bypassed = self._bypassed()
        explained = np.array(
            [
                s.kind == COOLING and s.enterprise in bypassed and not self.open[i]
                for i, s in enumerate(src)
            ],
            dtype=bool,
        )
        self.cusum[explained] = 0.0
        self.onset_ms[explained] = -1
        self.h_x[:, pos] = x
        self.h_y[:, pos] = y
        self.h_clean[:, pos] = (
            np.isfinite(x) & np.isfinite(y) & ~self.open & (self.cusum == 0) & ~explained
        )
        self._recoverable(mean, at_ms, out)

    def _bypassed(self) -> set[str]:
        """Enterprises whose heat-recovery unit is bypassed, or on its way to being found so."""
        return {
            s.enterprise
            for i, s in enumerate(self.sources)
            if s.kind == RECOVERY and (self.open[i] or self.cusum[i] > 0)
        }

    def _fits(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Each source's line y = a + b·x through its clean hours, at this hour's x, and the
        scatter around it."""
        ok = self.h_clean & np.isfinite(self.h_x) & np.isfinite(self.h_y)
        w = ok.astype(np.float64)
        n = w.sum(axis=1)
        hx = np.where(ok, self.h_x, 0.0)
        hy = np.where(ok, self.h_y, 0.0)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mx = hx.sum(axis=1) / n
            my = hy.sum(axis=1) / n
            dx = np.where(ok, self.h_x - mx[:, None], 0.0)
            dy = np.where(ok, self.h_y - my[:, None], 0.0)
            var = (dx * dx).sum(axis=1)
            slope = np.where(var > 1e-9, (dx * dy).sum(axis=1) / np.maximum(var, 1e-12), 0.0)
            resid = np.where(ok, dy - slope[:, None] * dx, np.nan)
            scale = 1.4826 * nanmedian_rows(np.abs(resid))
        fit = my + slope * (x - mx)
        scale = np.fmax(scale, self.p.min_scale)
        enough = n >= self.p.min_hours
        return np.where(enough, fit, np.nan), np.where(enough, scale, np.nan)

    def _finding(self, i: int, at_ms: int, excess: float, usual: float) -> Finding:
        s = self.sources[i]
        kind = KINDS[s.kind]
        evidence: dict[str, Any] = {
            "usual": round(usual, 2),
            "cusum": round(float(self.cusum[i]), 2),
        }
        if s.kind == RECOVERY:
            share = 1.0 - (usual + excess) / usual if usual > 0 else 1.0
            estimate = Estimate(round(100 * share, 1), "% of its heat not recovered")
            evidence["why"] = "bypassed" if share > 0.5 else "fouled"
            evidence["spread_k"] = round(usual + excess, 2)
        elif s.kind == FLUE:
            estimate = Estimate(round(excess, 2), "K hotter flue gas at this load")
            evidence["efficiency_loss_pct"] = round(0.05 * excess, 2)
        else:
            estimate = Estimate(round(excess, 2), "K hotter cooling-water return")
        return Finding(
            kind,
            Family.WASTE_HEAT,
            at_ms,
            True,
            meter=s.meter,
            start_ms=int(self.onset_ms[i]) if self.onset_ms[i] >= 0 else at_ms - HOUR_MS,
            severity=Severity.MAJOR if self.cusum[i] > 3 * self.p.h else Severity.MINOR,
            estimate=estimate,
            evidence=evidence,
        )

    def _recoverable(self, mean: FloatArray, at_ms: int, out: Output) -> None:
        price = self.options.cny_per_gj
        if price is None:
            price = self.ctx.unit_price(Utility.HEAT, at_ms)
        for s in self.sources:
            if s.kind == FLUE:
                fuel = mean[s.fuel] if s.fuel >= 0 else mean[s.x] * GAS_NM3_PER_T_STEAM
                kw = flue_heat_kw(
                    fuel,
                    mean[s.hot],
                    self.options.flue_recovery_c,
                    self.options.flue_gas_kg_per_nm3_fuel,
                )
            elif s.kind == COOLING:
                kw = water_heat_kw(mean[s.x], mean[s.hot], self.options.water_recovery_c)
            else:
                continue
            kw = float(kw)
            if not np.isfinite(kw):
                continue
            gj = kw * KW_TO_GJ_PER_DAY
            fields: dict[str, float | int | str | bool] = {
                "kw": round(kw, 2),
                "gj_per_day": round(gj, 4),
                "tce_per_day": round(gj / GJ_PER_TCE, 5),
            }
            if price is not None:
                fields["cny_per_day"] = round(gj * price, 2)
            out.points.append(
                DerivedPoint(
                    WASTE_MEASUREMENT,
                    {"meter": s.meter, "enterprise": s.enterprise, "source": KINDS[s.kind]},
                    fields,
                    at_ms - HOUR_MS,
                )
            )


_STATE = ("hour", "sum", "n", "h_x", "h_y", "h_clean", "cusum", "open", "quiet", "onset_ms")


def _sources(ctx: ParkContext) -> tuple[list[_Source], list[SeriesKey]]:
    """Every heat source of the park's plant whose meters report what it takes, and the
    series they need (each once)."""
    plant = Plant(ctx.park)
    series: list[SeriesKey] = []

    def row(meter: str, quantity: str) -> int:
        key = SeriesKey(meter, quantity)
        if key not in series:
            series.append(key)
        return series.index(key)

    def has(meter: str, *quantities: str) -> bool:
        return all(q in ctx.quantities_of(meter) for q in quantities)

    out: list[_Source] = []
    for b in plant.boilers:
        m = b.steam
        if not has(m.id, "steam_th", "t_flue_c") or not m.spec.rated:
            continue
        fuel = b.fuel.id if b.fuel is not None and has(b.fuel.id, "flow_nm3h") else None
        out.append(
            _Source(
                FLUE,
                m.id,
                m.enterprise,
                float(m.spec.rated),
                row(m.id, "steam_th"),
                row(m.id, "t_flue_c"),
                -1,
                row(fuel, "flow_nm3h") if fuel else -1,
            )
        )
    for m in plant.cooling:
        if not has(m.id, "flow_m3h", "t_supply_c", "t_return_c"):
            continue
        rated = float(m.spec.rated or 1.0)
        x = row(m.id, "flow_m3h")
        out.append(
            _Source(
                COOLING,
                m.id,
                m.enterprise,
                rated,
                x,
                row(m.id, "t_return_c"),
                row(m.id, "t_supply_c"),
                -1,
            )
        )
    for m in plant.heat_recovery:
        if not has(m.id, "flow_m3h", "t_supply_c", "t_return_c"):
            continue
        # sized by its flow: the design flow of a unit of this rating at a 15 K spread
        rated = float(m.spec.rated or 1.0) / (1.163 * 15.0)
        x = row(m.id, "flow_m3h")
        out.append(
            _Source(
                RECOVERY,
                m.id,
                m.enterprise,
                rated,
                x,
                row(m.id, "t_supply_c"),
                row(m.id, "t_return_c"),
                -1,
            )
        )
    return out, series
