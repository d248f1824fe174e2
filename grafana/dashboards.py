"""Grafana dashboards for parkwatch, generated from code.

``python -m grafana.dashboards [OUT_DIR]`` (from the repository root) writes one JSON file per
dashboard; ``--check`` only compares; ``--rollup-policy`` names the rollups' retention policy
(default: analytics' ``PW_ANALYTICS_ROLLUP_RETENTION_POLICY`` when set). The files under
``grafana/dashboards/`` are committed output of this module, loaded by Grafana's file
provisioning; a test fails when they differ from what this module generates, so edit this
module, never the JSON.

Every query is raw InfluxQL against the datasource provisioned with uid ``parkwatch-influx``
(``grafana/provisioning/datasources/parkwatch.yaml``). Queries carry no ``tz()`` clause: Grafana
shows times in the viewer's browser zone. Buckets are never wider than an hour where that would
matter (hourly consumption), because a day bucket cut by InfluxDB starts at UTC midnight, not at
the park's; daily figures belong to analytics, which cuts them in the park's zone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from parkwatch.energy import ROLLUP_RETENTION_POLICY

JSON = dict[str, Any]

DATASOURCE_UID = "parkwatch-influx"
DATASOURCE: JSON = {"type": "influxdb", "uid": DATASOURCE_UID}

# the measurements parkwatch writes: one per utility (parkwatch.quantities.Utility), and the
# series analytics derives
UTILITIES = ("electricity", "water", "gas", "steam", "heat", "air", "env")
# (zone_balance: the leak detector's hour per zone; waste_heat: recoverable heat per source)
DERIVED = ("demand_15m", "zone_balance", "waste_heat")
MEASUREMENTS = UTILITIES + DERIVED
# the accounting's rollups (parkwatch.energy.ROLLUP_MEASUREMENTS), in the retention policy
# analytics writes them to: PW_ANALYTICS_ROLLUP_RETENTION_POLICY when set ("" for the
# database's default policy), else parkwatch's default. Grafana does not expand variables in
# dashboard files, so the name is written into the queries when they are generated
# (``--rollup-policy``). Their points sit at local period starts, so they are shown as they are,
# never re-bucketed by time (that would cut at UTC midnight)
ROLLUP_POLICY: str | None = ROLLUP_RETENTION_POLICY
ROLLUP_POLICY_ENV = "PW_ANALYTICS_ROLLUP_RETENTION_POLICY"
ROLLUPS = ("consumption_hourly", "consumption_daily", "consumption_monthly", "consumption_yearly")

OVERVIEW_UID = "parkwatch-overview"
METER_UID = "parkwatch-meter"
ACCOUNTING_UID = "parkwatch-accounting"
SCHEMA_VERSION = 39
TAGS = ["parkwatch"]
DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "dashboards"

# Grafana units; custom ones are "suffix:<text>"
KW = "kwatt"
KWH = "kwatth"
KVAR = "suffix: kvar"
M3H = "suffix: m³/h"
M3 = "suffix: m³"
NM3H = "suffix: Nm³/h"
NM3 = "suffix: Nm³"
TH = "suffix: t/h"
T = "suffix: t"
GJ = "suffix: GJ"
CELSIUS = "celsius"
BAR = "pressurebar"
VOLT = "volt"
AMP = "amp"


def _from(*measurements: str) -> str:
    unknown = [m for m in measurements if m not in MEASUREMENTS]
    if unknown:
        raise ValueError(f"unknown measurements {unknown}")
    return ", ".join(f'"{m}"' for m in measurements)


def _rollup(measurement: str, policy: str | None) -> str:
    if measurement not in ROLLUPS:
        raise ValueError(f"unknown rollup {measurement}")
    if policy is None:
        return f'"{measurement}"'
    if '"' in policy or "\\" in policy:
        raise ValueError(f"retention policy {policy!r}: quotes and backslashes are not allowed")
    return f'"{policy}"."{measurement}"'


def rollup_policy_from_env() -> str | None:
    """The rollups' retention policy as analytics is configured: its environment variable
    (empty: the default policy), else parkwatch's default."""
    value = os.environ.get(ROLLUP_POLICY_ENV)
    if value is None:
        return ROLLUP_POLICY
    return value or None


def _where(*tags: str) -> str:
    """Tag filters on dashboard variables; regex match so that multi-value and All work."""
    return " AND ".join(f'"{tag}" =~ /^${tag}$/' for tag in tags)


OVERVIEW_FILTER = _where("park", "enterprise", "meter")
METER_FILTER = _where("park", "meter")


# --- building blocks ------------------------------------------------------------------------


def _variable(
    name: str,
    label: str,
    query: str,
    *,
    multi: bool,
    include_all: bool,
) -> JSON:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "query": query,
        "definition": query,
        "refresh": 1,  # on dashboard load: meters come and go rarely
        "sort": 1,
        "regex": "",
        "multi": multi,
        "includeAll": include_all,
        # ".*" instead of Grafana's (a|b|c|...) keeps queries short for parks with many meters
        "allValue": ".*" if include_all else None,
        "current": {},
        "options": [],
        "hide": 0,
        "skipUrlSync": False,
    }


def _tag_values(key: str, where: str = "") -> str:
    clause = f" WHERE {where}" if where else ""
    return f'SHOW TAG VALUES FROM {_from(*UTILITIES)} WITH KEY = "{key}"{clause}'


def _target(
    ref_id: str,
    query: str,
    *,
    alias: str = "",
    result_format: str = "time_series",
) -> JSON:
    target: JSON = {
        "refId": ref_id,
        "datasource": DATASOURCE,
        "query": query,
        "rawQuery": True,
        "resultFormat": result_format,
    }
    if alias:
        target["alias"] = alias
    return target


def _grid(x: int, y: int, w: int, h: int) -> JSON:
    return {"x": x, "y": y, "w": w, "h": h}


def _unit_overrides(units: dict[str, str]) -> list[JSON]:
    """One unit per query (refId): a panel may mix quantities of different utilities."""
    return [
        {
            "matcher": {"id": "byFrameRefID", "options": ref_id},
            "properties": [{"id": "unit", "value": unit}],
        }
        for ref_id, unit in units.items()
    ]


def _timeseries(
    title: str,
    description: str,
    targets: list[JSON],
    grid: JSON,
    *,
    unit: str = "",
    units: dict[str, str] | None = None,
    bars: bool = False,
    min_interval: str = "",
) -> JSON:
    panel: JSON = {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": grid,
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "unit": unit or "none",
                "custom": {
                    "drawStyle": "bars" if bars else "line",
                    "lineWidth": 1,
                    "fillOpacity": 80 if bars else 10,
                    "showPoints": "never",
                    # a gap is a meter or gateway that did not report: show it, do not bridge it
                    "spanNulls": False,
                    "stacking": {"mode": "none", "group": "A"},
                },
            },
            "overrides": _unit_overrides(units or {}),
        },
        "options": {
            "legend": {
                "showLegend": True,
                "displayMode": "table",
                "placement": "bottom",
                "calcs": ["mean", "max", "lastNotNull"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }
    if min_interval:
        # Grafana's $__interval never goes below this: finer buckets would only repeat values
        panel["interval"] = min_interval
    return panel


def _numbered(panels: list[JSON]) -> list[JSON]:
    return [{"id": number, **panel} for number, panel in enumerate(panels, start=1)]


def _dashboard(
    uid: str,
    title: str,
    description: str,
    variables: list[JSON],
    panels: list[JSON],
    *,
    time_from: str,
) -> JSON:
    return {
        "id": None,
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "timezone": "browser",
        "editable": False,  # provisioned from code: changes belong in grafana/dashboards.py
        "graphTooltip": 1,  # shared crosshair
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": time_from, "to": "now"},
        "refresh": "1m",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "title": "parkwatch",
                "tags": TAGS,
                "asDropdown": False,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "templating": {"list": variables},
        "panels": _numbered(panels),
    }


# --- Park overview --------------------------------------------------------------------------


def _mean_per_meter(field: str, *measurements: str) -> str:
    return (
        f'SELECT mean("{field}") AS "{field}" FROM {_from(*measurements)} '
        f'WHERE {OVERVIEW_FILTER} AND $timeFilter GROUP BY time($__interval), "meter" fill(null)'
    )


def _latest(measurement: str, fields: Sequence[str]) -> str:
    columns = ", ".join(f'last("{f}") AS "{f}"' for f in fields)
    return (
        f"SELECT {columns} FROM {_from(measurement)} "
        f'WHERE {OVERVIEW_FILTER} AND $timeFilter GROUP BY "enterprise", "meter"'
    )


def _overview_variables() -> list[JSON]:
    return _variables(one_meter=False)


def _variables(one_meter: bool) -> list[JSON]:
    """park → enterprise → meter; the meter-detail board shows exactly one meter."""
    return [
        _variable("park", "Park", _tag_values("park"), multi=False, include_all=False),
        _variable(
            "enterprise",
            "Enterprise",
            _tag_values("enterprise", _where("park")),
            multi=True,
            include_all=True,
        ),
        _variable(
            "meter",
            "Meter",
            _tag_values("meter", _where("park", "enterprise")),
            multi=not one_meter,
            include_all=not one_meter,
        ),
    ]


def _latest_table(grid: JSON) -> JSON:
    latest = {
        "electricity": ("p_kw", "e_kwh", "pf"),
        "water": ("flow_m3h", "vol_m3"),
        "gas": ("flow_nm3h", "vol_nm3"),
        "heat": ("heat_kw", "heat_gj", "t_supply_c", "t_return_c"),
        "steam": ("steam_th", "heat_kw", "heat_gj"),
    }
    targets = [
        _target(chr(ord("A") + i), _latest(measurement, fields), result_format="table")
        for i, (measurement, fields) in enumerate(latest.items())
    ]
    units = {
        "p_kw": KW,
        "e_kwh": KWH,
        "flow_m3h": M3H,
        "vol_m3": M3,
        "flow_nm3h": NM3H,
        "vol_nm3": NM3,
        "heat_kw": KW,
        "heat_gj": GJ,
        "steam_th": TH,
        "t_supply_c": CELSIUS,
        "t_return_c": CELSIUS,
    }
    meter_link = {
        "title": "Meter detail",
        "url": (
            f"/d/{METER_UID}/meter-detail?var-park=${{park}}&var-meter=${{__value.raw}}"
            "&${__url_time_range}"
        ),
    }
    overrides: list[JSON] = [
        {
            "matcher": {"id": "byName", "options": name},
            "properties": [{"id": "unit", "value": unit}],
        }
        for name, unit in units.items()
    ]
    overrides.append(
        {
            "matcher": {"id": "byName", "options": "meter"},
            "properties": [{"id": "links", "value": [meter_link]}],
        }
    )
    return {
        "type": "table",
        "title": "Latest readings",
        "description": (
            "The last value of each quantity in the time range, per meter. A meter missing here "
            "sent nothing in the range."
        ),
        "datasource": DATASOURCE,
        "gridPos": grid,
        "targets": targets,
        # one query per utility; merge makes one table with a row per meter
        "transformations": [
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    # last() of several fields has no single timestamp: InfluxDB answers epoch 0
                    "excludeByName": {"Time": True},
                    "indexByName": {"enterprise": 0, "meter": 1},
                    "renameByName": {},
                },
            },
        ],
        "fieldConfig": {"defaults": {"decimals": 2}, "overrides": overrides},
        "options": {
            "showHeader": True,
            "cellHeight": "sm",
            "sortBy": [{"displayName": "enterprise", "desc": False}],
        },
    }


def overview_dashboard() -> JSON:
    power = (
        # per meter first, then summed: mean() over all of an enterprise's points would be the
        # average meter, not the enterprise's total
        'SELECT sum("p_kw") AS "p_kw" FROM ('
        f'SELECT mean("p_kw") AS "p_kw" FROM {_from("electricity")} '
        f'WHERE {OVERVIEW_FILTER} AND $timeFilter GROUP BY time($__interval), "enterprise", "meter"'
        ') WHERE $timeFilter GROUP BY time($__interval), "enterprise" fill(null)'
    )
    demand = (
        f'SELECT max("p_kw_avg") AS "p_kw_avg" FROM {_from("demand_15m")} '
        f'WHERE {OVERVIEW_FILTER} AND $timeFilter GROUP BY time($__interval), "meter" fill(null)'
    )
    # the leak and waste-heat detectors' hourly points (analytics writes them at hour starts)
    zone_balance = (
        'SELECT mean("consumption") AS "consumption", mean("baseline") AS "baseline" '
        f"FROM {_from('zone_balance')} WHERE {_where('park')} AND $timeFilter "
        'GROUP BY time($__interval), "zone" fill(null)'
    )
    zone_score = (
        f'SELECT mean("score") AS "score" FROM {_from("zone_balance")} '
        f'WHERE {_where("park")} AND $timeFilter GROUP BY time($__interval), "zone" fill(null)'
    )
    waste_heat = (
        f'SELECT mean("kw") AS "kw" FROM {_from("waste_heat")} WHERE {OVERVIEW_FILTER} '
        'AND $timeFilter GROUP BY time($__interval), "meter", "source" fill(null)'
    )
    panels = [
        _timeseries(
            "Electric power per enterprise",
            (
                "Active power summed over the selected meters of each enterprise. A main meter "
                "and its sub-meters are both summed: select only main meters in 'Meter' for a "
                "true total."
            ),
            [_target("A", power, alias="$tag_enterprise")],
            _grid(0, 0, 24, 9),
            unit=KW,
        ),
        _timeseries(
            "15-minute demand",
            (
                "Average power over each 15-minute demand interval (analytics' demand_15m), the "
                "highest interval per bar when zoomed out: what the contracted maximum demand "
                "is compared with."
            ),
            [_target("A", demand, alias="$tag_meter")],
            _grid(0, 9, 12, 9),
            unit=KW,
            bars=True,
            min_interval="15m",
        ),
        _timeseries(
            "Water flow per meter",
            "Mean volume flow per meter.",
            [_target("A", _mean_per_meter("flow_m3h", "water"), alias="$tag_meter")],
            _grid(12, 9, 12, 9),
            unit=M3H,
        ),
        _timeseries(
            "Gas flow per meter",
            "Mean normalised volume flow per meter.",
            [_target("A", _mean_per_meter("flow_nm3h", "gas"), alias="$tag_meter")],
            _grid(0, 18, 12, 9),
            unit=NM3H,
        ),
        _timeseries(
            "Heat power per meter",
            "Mean thermal power per heat and steam meter.",
            [_target("A", _mean_per_meter("heat_kw", "heat", "steam"), alias="$tag_meter")],
            _grid(12, 18, 12, 9),
            unit=KW,
        ),
        _latest_table(_grid(0, 27, 24, 12)),
        _timeseries(
            "Zone balance: consumption against its baseline",
            (
                "Each zone's hourly consumption (Σ inflow − Σ outflow − tank filling, in the "
                "zone's unit per hour: m³/h for water, Nm³/h for air and gas, t/h for steam) "
                "and the baseline the leak detector judges it against (the same hour on recent "
                "days of the same kind). A leak is consumption that stays above its baseline."
            ),
            [_target("A", zone_balance, alias="$tag_zone $col")],
            _grid(0, 39, 12, 9),
        ),
        _timeseries(
            "Zone leak score",
            (
                "How far each zone's hour lies above its baseline, in the zone's own "
                "day-to-day spreads; the leak detector sums the hours above 2.5 and alarms "
                "past 6 (a burst: one hour at 6)."
            ),
            [_target("A", zone_score, alias="$tag_zone")],
            _grid(12, 39, 12, 9),
        ),
        _timeseries(
            "Recoverable waste heat",
            (
                "Heat leaving in flue gas and cooling water above the configured recovery "
                "temperature (Q = ṁ·cp·ΔT), per source, hourly: what heat recovery could take."
            ),
            [_target("A", waste_heat, alias="$tag_meter ($tag_source)")],
            _grid(0, 48, 24, 9),
            unit=KW,
            min_interval="1h",
        ),
    ]
    return _dashboard(
        OVERVIEW_UID,
        "Park overview",
        "Power, demand, water, gas and heat across a park's enterprises and meters; zone "
        "balances and recoverable waste heat.",
        _overview_variables(),
        panels,
        time_from="now-24h",
    )


# --- Meter detail ---------------------------------------------------------------------------


def _meter_means(fields: Sequence[str], *measurements: str) -> str:
    columns = ", ".join(f'mean("{f}") AS "{f}"' for f in fields)
    return (
        f"SELECT {columns} FROM {_from(*measurements)} "
        f"WHERE {METER_FILTER} AND $timeFilter GROUP BY time($__interval) fill(null)"
    )


def _hourly_consumption(quantity: str, policy: str | None) -> str:
    # the accounting's hourly rollup (local hours; rollovers, resets and replacements handled,
    # gaps marked): the meter's own points, not re-bucketed
    return (
        f'SELECT "value" AS "{quantity}" FROM {_rollup("consumption_hourly", policy)} '
        f'WHERE "park" =~ /^$park$/ AND "level" = \'meter\' AND "id" =~ /^$meter$/ '
        f"AND \"quantity\" = '{quantity}' AND $timeFilter"
    )


def _meter_variables() -> list[JSON]:
    return _variables(one_meter=True)


def meter_dashboard(rollup_policy: str | None = ROLLUP_POLICY) -> JSON:
    demand = (
        f'SELECT max("p_kw_avg") AS "p_kw_avg" FROM {_from("demand_15m")} '
        f"WHERE {METER_FILTER} AND $timeFilter GROUP BY time($__interval) fill(null)"
    )
    panels = [
        _timeseries(
            "Power",
            "Active and reactive power (electricity), thermal power (heat, steam).",
            [
                _target("A", _meter_means(["p_kw"], "electricity"), alias="$col"),
                _target("B", _meter_means(["q_kvar"], "electricity"), alias="$col"),
                _target("C", _meter_means(["heat_kw"], "heat", "steam"), alias="$col"),
            ],
            _grid(0, 0, 12, 9),
            units={"A": KW, "B": KVAR, "C": KW},
        ),
        _timeseries(
            "15-minute demand",
            "Average power per 15-minute demand interval (demand_15m).",
            [_target("A", demand, alias="$col")],
            _grid(12, 0, 12, 9),
            unit=KW,
            bars=True,
            min_interval="15m",
        ),
        _timeseries(
            "Hourly consumption",
            (
                "Consumption per local hour from the accounting's rollups: counter rollovers, "
                "resets and meter replacements are accounted, gaps are estimated and marked "
                "(see the Consumption and carbon board for completeness)."
            ),
            [
                _target("A", _hourly_consumption("e_kwh", rollup_policy), alias="$col"),
                _target("B", _hourly_consumption("vol_m3", rollup_policy), alias="$col"),
                _target("C", _hourly_consumption("vol_nm3", rollup_policy), alias="$col"),
                _target("D", _hourly_consumption("heat_gj", rollup_policy), alias="$col"),
                _target("E", _hourly_consumption("steam_t", rollup_policy), alias="$col"),
            ],
            _grid(0, 9, 12, 9),
            units={"A": KWH, "B": M3, "C": NM3, "D": GJ, "E": T},
            bars=True,
        ),
        _timeseries(
            "Flow",
            "Volume flow (water, heat), normalised flow (gas, air), steam mass flow.",
            [
                _target("A", _meter_means(["flow_m3h"], "water", "heat"), alias="$col"),
                _target("B", _meter_means(["flow_nm3h"], "gas", "air"), alias="$col"),
                _target("C", _meter_means(["steam_th"], "steam"), alias="$col"),
            ],
            _grid(12, 9, 12, 9),
            units={"A": M3H, "B": NM3H, "C": TH},
        ),
        _timeseries(
            "Temperatures",
            "Supply, return and flue-gas temperatures.",
            [
                _target(
                    "A",
                    _meter_means(
                        ["t_supply_c", "t_return_c", "t_flue_c"], "heat", "steam", "water", "gas"
                    ),
                    alias="$col",
                )
            ],
            _grid(0, 18, 12, 9),
            unit=CELSIUS,
        ),
        _timeseries(
            "Pressure",
            "Gauge pressure.",
            [_target("A", _meter_means(["p_bar"], "water", "gas", "steam", "air"), alias="$col")],
            _grid(12, 18, 12, 9),
            unit=BAR,
        ),
        _timeseries(
            "Voltage and current",
            "Phase-average voltage and current.",
            [
                _target("A", _meter_means(["v_v"], "electricity"), alias="$col"),
                _target("B", _meter_means(["i_a"], "electricity"), alias="$col"),
            ],
            _grid(0, 27, 12, 9),
            units={"A": VOLT, "B": AMP},
        ),
        _timeseries(
            "Power factor",
            "Power factor.",
            [_target("A", _meter_means(["pf"], "electricity"), alias="$col")],
            _grid(12, 27, 12, 9),
        ),
        {
            "type": "table",
            "title": "Latest values",
            "description": "The last value of every quantity the meter reported in the range.",
            "datasource": DATASOURCE,
            "gridPos": _grid(0, 36, 24, 6),
            # one query per utility rather than one over all of them, which would answer a
            # column for every field of every utility; only the meter's own utility has rows
            "targets": [
                _target(
                    chr(ord("A") + i),
                    f"SELECT last(*) FROM {_from(utility)} WHERE {METER_FILTER} AND $timeFilter",
                    result_format="table",
                )
                for i, utility in enumerate(UTILITIES)
            ],
            "transformations": [
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    # last(*) answers epoch 0 as its time: the fields come from different points
                    "options": {"excludeByName": {"Time": True}, "renameByName": {}},
                },
                {"id": "renameByRegex", "options": {"regex": "^last_(.*)$", "renamePattern": "$1"}},
            ],
            "fieldConfig": {"defaults": {"decimals": 2}, "overrides": []},
            "options": {"showHeader": True, "cellHeight": "sm"},
        },
    ]
    return _dashboard(
        METER_UID,
        "Meter detail",
        "Every quantity of one meter: power, demand, hourly consumption, flow, temperatures.",
        _meter_variables(),
        panels,
        time_from="now-7d",
    )


# --- Consumption and carbon (the accounting's rollups) ---------------------------------------


def _rollup_query(
    measurement: str, field: str, level: str, quantity: str | None, by: str, policy: str | None
) -> str:
    which = f" AND \"quantity\" = '{quantity}'" if quantity else ""
    return (
        f'SELECT "{field}" FROM {_rollup(measurement, policy)} '
        f'WHERE "park" =~ /^$park$/ AND "level" = \'{level}\'{which} AND $timeFilter '
        f"GROUP BY {by}"
    )


def accounting_dashboard(rollup_policy: str | None = ROLLUP_POLICY) -> JSON:
    def rollups(measurement: str, field: str, level: str, quantity: str | None, by: str) -> str:
        return _rollup_query(measurement, field, level, quantity, by, rollup_policy)

    panels = [
        _timeseries(
            "Electricity per enterprise, per day",
            "Grid electricity through each enterprise's intake meters, per local day.",
            [
                _target(
                    "A",
                    rollups("consumption_daily", "value", "enterprise", "e_kwh", '"id"'),
                    alias="$tag_id",
                )
            ],
            _grid(0, 0, 12, 9),
            unit=KWH,
            bars=True,
        ),
        _timeseries(
            "CO₂ per enterprise, per day",
            (
                "kg CO₂ per local day and energy carrier (grid factor of the period's year, "
                "fuel factors of the national guidelines); stacked per enterprise."
            ),
            [
                _target(
                    "A",
                    rollups("consumption_daily", "co2_kg", "enterprise", None, '"id", "quantity"'),
                    alias="$tag_id $tag_quantity",
                )
            ],
            _grid(12, 0, 12, 9),
            unit="suffix: kg CO₂",
            bars=True,
        ),
        _timeseries(
            "Park electricity per hour",
            "The park's intake per local hour, with the share of the hour covered by readings.",
            [
                _target(
                    "A",
                    rollups("consumption_hourly", "value", "park", "e_kwh", '"id"'),
                    alias="kWh",
                ),
                _target(
                    "B",
                    rollups("consumption_hourly", "completeness", "park", "e_kwh", '"id"'),
                    alias="completeness",
                ),
            ],
            _grid(0, 9, 12, 9),
            units={"A": KWH, "B": "percentunit"},
        ),
        _timeseries(
            "Standard coal per enterprise, per month",
            "Comprehensive energy, kgce per month and carrier (GB/T 2589, the park's convention).",
            [
                _target(
                    "A",
                    rollups("consumption_monthly", "kgce", "enterprise", None, '"id", "quantity"'),
                    alias="$tag_id $tag_quantity",
                )
            ],
            _grid(12, 9, 12, 9),
            unit="suffix: kgce",
            bars=True,
        ),
        _timeseries(
            "Water per enterprise, per day",
            "Water through each enterprise's meters, per local day.",
            [
                _target(
                    "A",
                    rollups("consumption_daily", "value", "enterprise", "vol_m3", '"id"'),
                    alias="$tag_id",
                )
            ],
            _grid(0, 18, 12, 9),
            unit=M3,
            bars=True,
        ),
        _timeseries(
            "On-site PV per enterprise, per day",
            "Generation of the enterprises' PV meters per local day (zero-carbon electricity).",
            [
                _target(
                    "A",
                    rollups("consumption_daily", "value", "enterprise", "pv_kwh", '"id"'),
                    alias="$tag_id",
                )
            ],
            _grid(12, 18, 12, 9),
            unit=KWH,
            bars=True,
        ),
    ]
    panels.append(
        _timeseries(
            "Water per zone, per day",
            (
                "Each district metered area's inflow minus outflow per local day: its own use "
                "and its losses."
            ),
            [
                _target(
                    "A",
                    rollups("consumption_daily", "value", "zone", "vol_m3", '"id"'),
                    alias="$tag_id",
                )
            ],
            _grid(0, 27, 24, 9),
            unit=M3,
            bars=True,
        )
    )
    variables = [_variable("park", "Park", _tag_values("park"), multi=False, include_all=False)]
    return _dashboard(
        ACCOUNTING_UID,
        "Consumption and carbon",
        "The accounting's rollups: consumption, CO₂ and standard coal per local day, month, hour.",
        variables,
        panels,
        time_from="now-30d",
    )


# --- output ---------------------------------------------------------------------------------


def build_dashboards(rollup_policy: str | None = ROLLUP_POLICY) -> dict[str, JSON]:
    """File name → dashboard JSON, for every parkwatch dashboard; the accounting's rollups are
    read from ``rollup_policy`` (None: the database's default policy)."""
    return {
        "park-overview.json": overview_dashboard(),
        "meter-detail.json": meter_dashboard(rollup_policy),
        "accounting.json": accounting_dashboard(rollup_policy),
    }


def render(dashboard: JSON) -> str:
    """The exact text written for a dashboard: stable, so a diff shows a real change."""
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def write_dashboards(out_dir: Path, rollup_policy: str | None = ROLLUP_POLICY) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, dashboard in build_dashboards(rollup_policy).items():
        path = out_dir / name
        path.write_text(render(dashboard), encoding="utf-8")
        written.append(path)
    return written


def stale_files(out_dir: Path, rollup_policy: str | None = ROLLUP_POLICY) -> list[Path]:
    """Dashboard files in ``out_dir`` that are missing or differ from what this module builds."""
    stale = []
    for name, dashboard in build_dashboards(rollup_policy).items():
        path = out_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != render(dashboard):
            stale.append(path)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m grafana.dashboards", description="Write parkwatch's Grafana dashboards."
    )
    parser.add_argument(
        "out_dir",
        nargs="?",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help=f"where to write the JSON files (default: {DEFAULT_OUT_DIR})",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a file is missing or differs from the generator's output",
    )
    parser.add_argument(
        "--rollup-policy",
        default=None,
        metavar="NAME",
        help=(
            "the retention policy analytics writes the rollups to ('' for the default policy; "
            f"default: ${ROLLUP_POLICY_ENV} if set, else {ROLLUP_POLICY!r})"
        ),
    )
    args = parser.parse_args(argv)
    out_dir: Path = args.out_dir
    policy = rollup_policy_from_env() if args.rollup_policy is None else args.rollup_policy or None
    if args.check:
        stale = stale_files(out_dir, policy)
        for path in stale:
            print(f"out of date: {path}", file=sys.stderr)
        return 1 if stale else 0
    for path in write_dashboards(out_dir, policy):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
