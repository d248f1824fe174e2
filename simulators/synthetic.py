"""Synthetic parks of any size, for benchmarks and load: ``synthetic_park(200)`` has 200 meters.

The park has the demo park's shape — park intakes, water districts and a storage tank, a
weather station, then enterprises of every industry, each with a main meter, sub-meters, and
by turns PV, a battery, compressors with an air header, a steam boiler and heat meters — and
is filled up with electricity sub-meters to exactly the size asked for.

``python -m simulators.synthetic --meters 200 > park.yaml`` writes one as YAML.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import yaml

from parkwatch.site import Park

INDUSTRIES = ("casting", "chemicals", "electronics", "auto_parts", "food")
DISTRICTS = 3


def _m(meter_id: str, utility: str, **extra: Any) -> dict[str, Any]:
    return {"id": meter_id, "utility": utility} | {k: v for k, v in extra.items() if v is not None}


def _park_level() -> list[dict[str, Any]]:
    main = "park-water-main"
    return [
        _m("park-main", "electricity"),
        _m(main, "water"),
        _m("park-gas-main", "gas"),
        *(_m(f"water-d{d}", "water", parent=main, role="district") for d in range(1, 4)),
        _m("park-tank-in", "water", parent=main, role="tank_in"),
        _m("park-tank-out", "water", parent=main, role="tank_out"),
        _m("park-tank", "water", role="tank", rated=6),
        _m("park-weather", "env"),
    ]


def _enterprise(k: int, rng: np.random.Generator) -> dict[str, Any]:
    industry = INDUSTRIES[k % len(INDUSTRIES)]
    eid = f"e{k:03d}"
    main = f"{eid}-main"
    contracted = float(rng.choice([800, 1200, 2000, 3000, 5000]))
    meters = [
        _m(main, "electricity", parent="park-main", contracted_demand_kw=contracted),
        _m(f"{eid}-line1", "electricity", parent=main),
        _m(f"{eid}-line2", "electricity", parent=main),
        _m(f"{eid}-hvac", "electricity", parent=main, role="hvac"),
        _m(f"{eid}-water", "water", parent=f"water-d{k % DISTRICTS + 1}"),
        _m(f"{eid}-gas", "gas", parent="park-gas-main"),
    ]
    pv_kwp = round(contracted * float(rng.uniform(0.15, 0.35)))
    meters.append(
        _m(f"{eid}-pv", "electricity", parent=main, role="pv", rated=pv_kwp, gateway=f"gw-{eid}-pv")
    )
    if k % 4 == 1:
        bess = round(contracted * 0.15)
        meters.append(_m(f"{eid}-bess", "electricity", parent=main, role="battery", rated=bess))
    mqtt = f"gw-{eid}-mqtt"  # meters without a shipped Modbus register map
    if industry in ("casting", "auto_parts", "electronics"):
        for c in (1, 2):
            kw = float(rng.choice([75, 90, 110, 160]))
            comp = _m(f"{eid}-comp{c}", "electricity", parent=main, role="compressor", rated=kw)
            meters.append(comp)
        meters.append(_m(f"{eid}-air", "air", gateway=mqtt))
    if industry == "chemicals":
        t_h = float(rng.choice([4, 6, 10]))
        meters.append(_m(f"{eid}-boiler", "steam", role="boiler", rated=t_h, gateway=mqtt))
        meters.append(_m(f"{eid}-boiler-gas", "gas", parent=f"{eid}-gas", role="boiler"))
    if industry in ("casting", "food"):
        role = "heat_recovery" if industry == "casting" else None
        meters.append(_m(f"{eid}-heat", "heat", role=role))
    if industry == "casting":
        meters.append(_m(f"{eid}-cooling", "water", parent=f"{eid}-water", role="cooling"))
    return {
        "id": eid,
        "name": f"{industry} plant {k}",
        "industry": industry,
        "value_added_cny": round(float(rng.uniform(1e8, 1.5e9))),
        "contracted_demand_kw": contracted,
        "workshops": [{"id": "main", "meters": meters}],
    }


def synthetic_park_dict(n_meters: int = 200, seed: int = 0) -> dict[str, Any]:
    """The ``park.yaml`` document of a synthetic park with exactly ``n_meters`` meters."""
    park_meters = _park_level()
    rng = np.random.default_rng([seed, 0x5EC])
    enterprises: list[dict[str, Any]] = []
    count = len(park_meters)
    while True:
        candidate = _enterprise(len(enterprises), rng)
        size = len(candidate["workshops"][0]["meters"])
        if count + size > n_meters:
            break
        enterprises.append(candidate)
        count += size
    # fill up with sub-meters, round robin over the enterprises
    extra = 0
    while count < n_meters:
        ent = enterprises[extra % len(enterprises)]
        meters = ent["workshops"][0]["meters"]
        meters.append(
            {
                "id": f"{ent['id']}-sub{extra // len(enterprises) + 1}",
                "utility": "electricity",
                "parent": f"{ent['id']}-line{extra % 2 + 1}",
            }
        )
        extra += 1
        count += 1
    if not enterprises:
        raise ValueError(f"{n_meters} meters are too few for a synthetic park")
    return {
        "park": f"synthetic-{n_meters}",
        "name": f"synthetic park, {n_meters} meters",
        "timezone": "Asia/Shanghai",
        "meters": park_meters,
        "enterprises": enterprises,
    }


def synthetic_park(n_meters: int = 200, seed: int = 0) -> Park:
    """A synthetic :class:`Park` with exactly ``n_meters`` meters."""
    return Park.model_validate(synthetic_park_dict(n_meters, seed))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--meters", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    doc = synthetic_park_dict(args.meters, args.seed)
    yaml.safe_dump(doc, sys.stdout, allow_unicode=True, sort_keys=False)


if __name__ == "__main__":
    main()
