"""The generated Grafana dashboards: well-formed, wired to the provisioned datasource, querying
measurements that exist, committed exactly as generated, and accepted by a real InfluxDB."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from analytics.detectors.leaks import BALANCE_MEASUREMENT
from analytics.detectors.waste_heat import WASTE_MEASUREMENT
from analytics.settings import AnalyticsSettings
from api.settings import ApiSettings
from parkwatch.energy import ROLLUP_MEASUREMENTS
from parkwatch.quantities import Utility
from parkwatch.stack import LocalStack

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    # grafana/ is not an installed package: it is imported from the work tree
    sys.path.insert(0, str(ROOT))

from grafana import dashboards  # noqa: E402

GRAFANA = ROOT / "grafana"
COMMITTED = GRAFANA / "dashboards"
# Grafana's own macros; every other $name in a query must be a dashboard variable
MACROS = {"timeFilter", "__interval"}


def _targets(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield panel, target


def _queries(dashboard: dict[str, Any]) -> list[str]:
    variables = [v["query"] for v in dashboard["templating"]["list"]]
    return variables + [t["query"] for _, t in _targets(dashboard)]


def _all_queries() -> list[str]:
    return [q for d in dashboards.build_dashboards().values() for q in _queries(d)]


def _measurements(query: str) -> list[str]:
    """The measurements named in every FROM clause (subqueries included) of an InfluxQL query."""
    found: list[str] = []
    for match in re.finditer(r"\bFROM\s+", query):
        rest = query[match.end() :]
        if rest.startswith("("):
            continue  # a subquery: its own FROM is matched in turn
        # quoted measurements, each optionally after its retention policy ("rp"."m")
        item = r'(?:"[^"]+"\.)?"[^"]+"'
        listed = re.match(rf"{item}(?:\s*,\s*{item})*", rest)
        assert listed, f"FROM not followed by quoted measurements: {query}"
        found += [m.split('"."')[-1].strip('"') for m in re.findall(item, listed.group(0))]
    return found


@pytest.fixture(scope="module")
def built() -> dict[str, dict[str, Any]]:
    return dashboards.build_dashboards()


def test_two_dashboards_with_unique_uids(built: dict[str, dict[str, Any]]) -> None:
    assert set(built) == {"park-overview.json", "meter-detail.json", "accounting.json"}
    uids = [d["uid"] for d in built.values()]
    assert len(set(uids)) == len(uids)
    for dashboard in built.values():
        assert dashboard["timezone"] == "browser"
        assert dashboard["panels"]


def test_dashboards_are_plain_json(built: dict[str, dict[str, Any]]) -> None:
    for dashboard in built.values():
        assert json.loads(dashboards.render(dashboard)) == dashboard


def test_panel_ids_unique(built: dict[str, dict[str, Any]]) -> None:
    for name, dashboard in built.items():
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(set(ids)) == len(ids), name
        assert all(isinstance(i, int) and i > 0 for i in ids)


def test_panels_do_not_overlap(built: dict[str, dict[str, Any]]) -> None:
    for name, dashboard in built.items():
        cells: dict[tuple[int, int], str] = {}
        for panel in dashboard["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, panel["title"]
            for x in range(grid["x"], grid["x"] + grid["w"]):
                for y in range(grid["y"], grid["y"] + grid["h"]):
                    assert (x, y) not in cells, f"{name}: {panel['title']} overlaps {cells[x, y]}"
                    cells[x, y] = panel["title"]


def test_everything_uses_the_provisioned_datasource(built: dict[str, dict[str, Any]]) -> None:
    expected = {"type": "influxdb", "uid": "parkwatch-influx"}
    for dashboard in built.values():
        for variable in dashboard["templating"]["list"]:
            assert variable["datasource"] == expected, variable["name"]
        for panel, target in _targets(dashboard):
            assert panel["datasource"] == expected, panel["title"]
            assert target["datasource"] == expected, panel["title"]
            assert target["rawQuery"] is True


def test_ref_ids_unique_per_panel(built: dict[str, dict[str, Any]]) -> None:
    for dashboard in built.values():
        for panel in dashboard["panels"]:
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(set(ref_ids)) == len(ref_ids), panel["title"]


def test_measurement_names_match_the_quantity_registry() -> None:
    assert set(dashboards.UTILITIES) == {u.value for u in Utility}


def test_every_query_reads_known_measurements() -> None:
    known = {u.value for u in Utility} | {"demand_15m", BALANCE_MEASUREMENT, WASTE_MEASUREMENT}
    known |= set(ROLLUP_MEASUREMENTS.values())
    for query in _all_queries():
        named = _measurements(query)
        assert named, f"no measurement in {query}"
        assert set(named) <= known, query


def test_the_overview_shows_zone_balances_and_waste_heat() -> None:
    """Issue 8: what the leak and waste-heat detectors judged is on a board, not only in the
    alerts."""
    overview = dashboards.overview_dashboard()
    read = {m for q in _queries(overview) for m in _measurements(q)}
    assert {BALANCE_MEASUREMENT, WASTE_MEASUREMENT} <= read


def test_every_query_variable_is_defined(built: dict[str, dict[str, Any]]) -> None:
    for dashboard in built.values():
        defined = {v["name"] for v in dashboard["templating"]["list"]} | MACROS
        for query in _queries(dashboard):
            used = set(re.findall(r"\$(\w+)", query))
            assert used <= defined, query


def test_no_query_sets_a_time_zone() -> None:
    # Grafana shows the browser's zone; a tz() clause would shift the buckets, not the display
    for query in _all_queries():
        assert "tz(" not in query


def test_committed_json_is_what_the_generator_writes(built: dict[str, dict[str, Any]]) -> None:
    committed = sorted(p.name for p in COMMITTED.glob("*.json"))
    assert committed == sorted(built), "regenerate: python -m grafana.dashboards"
    for name, dashboard in built.items():
        text = (COMMITTED / name).read_text(encoding="utf-8")
        assert text == dashboards.render(dashboard), (
            f"grafana/dashboards/{name} differs from the generator: edit grafana/dashboards.py "
            "and run python -m grafana.dashboards"
        )


def test_main_writes_and_checks(tmp_path: Path) -> None:
    assert dashboards.main(["--check", str(tmp_path)]) == 1  # nothing there yet
    assert dashboards.main([str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(dashboards.build_dashboards())
    assert dashboards.main(["--check", str(tmp_path)]) == 0
    (tmp_path / "meter-detail.json").write_text("{}\n")
    assert dashboards.main(["--check", str(tmp_path)]) == 1


def test_rollup_queries_follow_the_configured_retention_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def rollup_sources(built: dict[str, Any]) -> set[str]:
        queries = [q for d in built.values() for q in _queries(d)]
        return {m for q in queries for m in re.findall(r'(?:"[^"]+"\.)?"consumption_\w+"', q)}

    used = ("consumption_hourly", "consumption_daily", "consumption_monthly")
    assert rollup_sources(dashboards.build_dashboards()) == {f'"rollups"."{m}"' for m in used}
    assert rollup_sources(dashboards.build_dashboards("kept_years")) == {
        f'"kept_years"."{m}"' for m in used
    }
    # analytics writing to the database's default policy: no policy in the queries
    assert rollup_sources(dashboards.build_dashboards(None)) == {f'"{m}"' for m in used}
    # the generator follows analytics' setting, and --rollup-policy overrides it
    monkeypatch.setenv("PW_ANALYTICS_ROLLUP_RETENTION_POLICY", "from_env")
    assert dashboards.main([str(tmp_path)]) == 0
    assert '\\"from_env\\".\\"consumption_daily\\"' in (tmp_path / "accounting.json").read_text()
    assert dashboards.main(["--check", str(tmp_path)]) == 0
    assert dashboards.main(["--rollup-policy", "other", "--check", str(tmp_path)]) == 1
    monkeypatch.setenv("PW_ANALYTICS_ROLLUP_RETENTION_POLICY", "")
    assert dashboards.main(["--check", str(tmp_path)]) == 1
    # empty is the default policy for the services too, as for the boards
    monkeypatch.setenv("PW_API_ROLLUP_RETENTION_POLICY", "")
    assert AnalyticsSettings().rollup_retention_policy is None
    assert ApiSettings().rollup_retention_policy is None
    with pytest.raises(ValueError, match="quotes"):
        dashboards.build_dashboards('a"b')


def test_provisioning_matches_dashboards_and_compose() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/parkwatch.yaml").read_text())
    (source,) = datasources["datasources"]
    assert source["uid"] == dashboards.DATASOURCE_UID
    assert source["type"] == "influxdb"
    assert source["jsonData"]["version"] == "InfluxQL"
    assert source["jsonData"]["dbName"] == "parkwatch"
    assert source["url"] == "http://influxdb:8086"

    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/parkwatch.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    assert path == "/var/lib/grafana/dashboards/parkwatch"

    compose = yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"../grafana/dashboards:{path}:ro" in mounts
    assert "../grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


# --- against a real InfluxDB ----------------------------------------------------------------

PARK = "lj-demo"
# (measurement, enterprise, meter, fields): a meter of each kind the dashboards show
SAMPLE_METERS = [
    ("electricity", "steelco", "steelco-main", "p_kw=4100,e_kwh={c},q_kvar=900,pf=0.95,v_v=231"),
    ("electricity", "steelco", "steelco-furnace", "p_kw=2500,e_kwh={c},i_a=3600"),
    ("electricity", "chemco", "chemco-main", "p_kw=3000,e_kwh={c}"),
    ("water", "steelco", "steelco-water", "flow_m3h=42,vol_m3={c},p_bar=3.1"),
    ("gas", "steelco", "steelco-gas", "flow_nm3h=880,vol_nm3={c},t_flue_c=182"),
    ("heat", "steelco", "steelco-heat", "heat_kw=640,heat_gj={c},t_supply_c=82,t_return_c=61"),
    ("steam", "chemco", "chemco-steam", "steam_th=3.2,steam_t={c},heat_kw=2200,heat_gj={c}"),
    ("air", "chemco", "chemco-air", "flow_nm3h=1200,vol_nm3={c},p_bar=7"),
    ("env", "park", "park-weather", "t_air_c=21.5,rh_pct=60"),
]


def _bind(query: str, meter: str) -> str:
    """Substitute what Grafana substitutes; ``.*`` is the dashboards' All value."""
    return (
        query.replace("$timeFilter", "time > now() - 4h")
        .replace("$__interval", "5m")
        .replace("$park", PARK)
        .replace("$enterprise", ".*")
        .replace("$meter", meter)
    )


@pytest.mark.integration
def test_queries_run_and_find_data_in_influxdb(stack: LocalStack) -> None:
    database = "grafana_queries"
    url = stack.influx_url
    httpx.post(f"{url}/query", params={"q": f'CREATE DATABASE "{database}"'}).raise_for_status()
    now_s = int(time.time()) // 60 * 60
    lines = []
    for minute in range(180):
        t_ns = (now_s - minute * 60) * 1_000_000_000
        counter = 1_000_000 - minute * 3  # counters grow with time
        for measurement, enterprise, meter, fields in SAMPLE_METERS:
            tags = f"park={PARK},enterprise={enterprise},meter={meter}"
            lines.append(f"{measurement},{tags} {fields.format(c=counter)} {t_ns}")
        if minute % 15 == 0:
            tags = f"park={PARK},enterprise=steelco,meter=steelco-main"
            lines.append(f"demand_15m,{tags} p_kw_avg=4050,samples=15i {t_ns}")
        if minute % 60 == 0:  # the leak and waste-heat detectors' hours, as analytics writes
            tags = f"park={PARK},zone=water-d1,utility=water"
            fields = "consumption=3.2,inflow=40.1,baseline=2.9,score=0.41"
            lines.append(f"{BALANCE_MEASUREMENT},{tags} {fields} {t_ns}")
            tags = f"park={PARK},enterprise=steelco,meter=steelco-heat,source=cooling_temp_rise"
            fields = "kw=310.5,gj_per_day=26.83,tce_per_day=0.9154"
            lines.append(f"{WASTE_MEASUREMENT},{tags} {fields} {t_ns}")
    write = httpx.post(f"{url}/write", params={"db": database}, content="\n".join(lines))
    assert write.status_code == 204, write.text
    # the accounting's rollups, in their own retention policy
    policy = f'CREATE RETENTION POLICY "rollups" ON "{database}" DURATION INF REPLICATION 1'
    httpx.post(f"{url}/query", params={"q": policy}).raise_for_status()
    rollups = []
    for measurement in ROLLUP_MEASUREMENTS.values():
        for minutes in (0, 60, 120):
            t_ns = (now_s - minutes * 60) * 1_000_000_000
            for level, sid, quantity in (
                ("enterprise", "steelco", "e_kwh"),
                ("enterprise", "steelco", "vol_m3"),
                ("enterprise", "steelco", "pv_kwh"),
                ("park", PARK, "e_kwh"),
                ("zone", "water-d1", "vol_m3"),
                ("meter", "steelco-main", "e_kwh"),
                ("meter", "steelco-water", "vol_m3"),
                ("meter", "steelco-gas", "vol_nm3"),
                ("meter", "steelco-heat", "heat_gj"),
                ("meter", "chemco-steam", "steam_t"),
            ):
                tags = f"park={PARK},level={level},id={sid},quantity={quantity}"
                fields = "value=100,completeness=1,estimated=0,kgce=12.29,co2_kg=52.27"
                rollups.append(f"{measurement},{tags} {fields} {t_ns}")
    write = httpx.post(
        f"{url}/write", params={"db": database, "rp": "rollups"}, content="\n".join(rollups)
    )
    assert write.status_code == 204, write.text

    meters = [".*"] + [meter for _, _, meter, _ in SAMPLE_METERS]
    for query in _all_queries():
        series_found = 0
        for meter in meters:
            answer = httpx.get(
                f"{url}/query", params={"db": database, "q": _bind(query, meter)}
            ).json()
            (result,) = answer["results"]
            assert "error" not in result, f"{result['error']}: {_bind(query, meter)}"
            series_found += len(result.get("series", []))
        assert series_found, f"no data for {query}"
