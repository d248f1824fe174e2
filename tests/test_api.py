"""The API against a real InfluxDB: hierarchy, latest, series buckets on the park's local
clock, counters vs instantaneous quantities, and clear errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.settings import ApiSettings
from parkwatch.influx import InfluxReader, InfluxWriter
from parkwatch.settings import InfluxSettings
from parkwatch.site import Park, SiteRegistry
from parkwatch.stack import free_port
from tests.support import serve

pytestmark = pytest.mark.anyio


@pytest.fixture
async def api(
    influx_settings: InfluxSettings, demo_park_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Park]]:
    park = Park.from_yaml(demo_park_path)
    registry = SiteRegistry([park])
    meter = registry.meter(park.park, "elecco-main")
    assert meter is not None
    start = int(datetime.fromisoformat("2026-03-01T22:00:00+08:00").timestamp() * 1000)
    # one point an hour for 6 hours, across local midnight: p_kw = hour index, e_kwh grows
    lines = [
        f"{meter.series} p_kw={float(h)},e_kwh={1000.0 + 10 * h} {start + h * 3_600_000}"
        for h in range(6)
    ]
    async with InfluxReader(influx_settings) as reader:
        await reader.create_database()
    async with InfluxWriter(influx_settings) as writer:
        await writer.write(lines)
    app = create_app(ApiSettings(influx=influx_settings), registry)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        yield client, park


async def test_latest_and_series_in_local_time(api: tuple[httpx.AsyncClient, Park]) -> None:
    client, _ = api
    latest = (await client.get("/parks/lj-demo/meters/elecco-main/latest")).json()
    assert latest["values"] == {"p_kw": 5.0, "e_kwh": 1050.0}
    assert latest["time"] == "2026-03-02T03:00:00+08:00"

    window = {"start": "2026-03-01T00:00:00", "end": "2026-03-03T00:00:00"}  # park-local
    days = await client.get(
        "/parks/lj-demo/meters/elecco-main/series",
        params={"quantity": "p_kw", "every": "1d", **window},
    )
    assert days.status_code == 200, days.text
    body = days.json()
    assert body["aggregate"] == "mean"
    # day buckets start at local midnight: 22:00 and 23:00 on the 1st, 00:00–03:00 on the 2nd
    assert body["points"] == [
        {"time": "2026-03-01T00:00:00+08:00", "value": 0.5},
        {"time": "2026-03-02T00:00:00+08:00", "value": 3.5},
    ]
    counter = await client.get(
        "/parks/lj-demo/meters/elecco-main/series",
        params={"quantity": "e_kwh", "every": "1d", **window},
    )
    assert counter.json()["aggregate"] == "last"
    assert [p["value"] for p in counter.json()["points"]] == [1010.0, 1050.0]


SERIES = "/parks/lj-demo/meters/elecco-main/series"


def _days(year: str) -> dict[str, str]:
    return {"start": f"{year}-01-01T00:00:00", "end": f"{year}-01-02T00:00:00"}


@pytest.mark.parametrize(
    ("path", "params", "status", "detail"),
    [
        ("/parks/nowhere/meters", {}, 404, "unknown park"),
        ("/parks/lj-demo/meters/ghost/latest", {}, 404, "unknown meter"),
        ("/parks/lj-demo/meters/chemco-main/latest", {}, 404, "no readings"),
        ("/parks/lj-demo/meters/elecco-main/series", {"quantity": "flow_m3h"}, 422, "p_kw"),
        (
            "/parks/lj-demo/meters/elecco-main/series",
            {"quantity": "p_kw", "every": "5x"},
            422,
            "every",
        ),
        (
            "/parks/lj-demo/meters/elecco-main/series",
            {"quantity": "p_kw", "every": "1s", "start": "2025-01-01T00:00:00"},
            422,
            "buckets",
        ),
        (
            "/parks/lj-demo/meters/elecco-main/series",
            {"quantity": "p_kw", "start": "2026-03-02T00:00:00", "end": "2026-03-01T00:00:00"},
            422,
            "before",
        ),
        # issue 11: a window or a bucket the store cannot represent is the client's mistake
        # (422), never a 500 (OverflowError) nor a 503 (InfluxDB's "overflowed duration")
        (SERIES, {"quantity": "p_kw", "end": "0001-01-01T00:00:00"}, 422, "between"),
        (SERIES, {"quantity": "p_kw", "end": "0001-01-01T00:00:00+14:00"}, 422, "between"),
        (SERIES, {"quantity": "p_kw", "every": "999999w"}, 422, "every"),
        (SERIES, {"quantity": "p_kw", "every": "367d"}, 422, "every"),
        (SERIES, {"quantity": "p_kw", **_days("2300")}, 422, "between"),
        (SERIES, {"quantity": "p_kw", **_days("1600")}, 422, "between"),
        (SERIES, {"quantity": "p_kw", **_days("9999")}, 422, "between"),
        (SERIES, {"quantity": "p_kw", "start": "9999-12-31T23:59:59-23:59"}, 422, "between"),
        # the same for the accounting (schemathesis found these: 500s and a 503)
        ("/parks/lj-demo/accounting/targets", {"year": "1355"}, 422, "year 1355"),
        ("/parks/lj-demo/accounting/summary", {"period": "1600-01"}, 422, "year 1600"),
        ("/parks/lj-demo/accounting/consumption", {"end": "0001-01-01T00:00:00"}, 422, "end"),
    ],
)
async def test_clear_errors(
    api: tuple[httpx.AsyncClient, Park], path: str, params: dict[str, str], status: int, detail: str
) -> None:
    client, _ = api
    response = await client.get(path, params=params)
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]


async def test_hierarchy(api: tuple[httpx.AsyncClient, Park]) -> None:
    client, park = api
    [listed] = (await client.get("/parks")).json()
    assert listed["park"] == park.park
    assert listed["timezone"] == "Asia/Shanghai"
    meters = {m["id"]: m for m in (await client.get("/parks/lj-demo/meters")).json()}
    assert meters["elecco-smt"]["parent"] == "elecco-main"
    assert meters["elecco-smt"]["enterprise"] == "elecco"
    assert meters["park-main"]["enterprise"] == "park"
    assert "p_kw" in meters["elecco-smt"]["quantities"]
    # issue 11, item 10: a name for every meter, and the quantities each one reports
    assert [m for m, body in meters.items() if not body["name"]] == []
    assert meters["elecco-smt"]["quantities"] == ["p_kw", "q_kvar", "pf", "e_kwh"]
    assert meters["elecco-bess"]["quantities"][-1] == "soc_pct"
    assert meters["park-tank"]["quantities"] == ["level_m"]
    assert meters["water-d1"]["quantities"] == ["flow_m3h", "vol_m3"]
    assert (await client.get("/health")).json() == {"status": "ok", "database": True}


async def test_range_edges_the_store_keeps_are_served(api: tuple[httpx.AsyncClient, Park]) -> None:
    """The validation refuses only what InfluxDB cannot hold: the oldest and newest windows
    it accepts, with the largest bucket, answer 200."""
    client, _ = api
    for window in (_days("1700"), _days("2200")):
        response = await client.get(SERIES, params={"quantity": "p_kw", "every": "366d", **window})
        assert response.status_code == 200, response.text
        assert response.json()["points"] == []


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/parks/" + "p" * 50_000 + "/meters", {}),
        ("/parks/lj-demo/meters/" + "m" * 50_000 + "/latest", {}),
        (SERIES, {"quantity": "q" * 50_000}),
        (SERIES, {"quantity": "p_kw", "every": "e" * 50_000}),
        (SERIES, {"quantity": "p_kw", "start": "s" * 50_000}),
        ("/parks/lj-demo/accounting/bill", {"enterprise": "x" * 50_000, "month": "2026-01"}),
        ("/parks/lj-demo/accounting/targets", {"year": "2026", "enterprise": "x" * 50_000}),
        ("/parks/lj-demo/accounting/report", {"month": "2026-01", "enterprise": "x" * 50_000}),
    ],
)
async def test_error_bodies_cut_what_they_echo(
    api: tuple[httpx.AsyncClient, Park], path: str, params: dict[str, str]
) -> None:
    """A 50,000-character id or parameter is named in the error, not echoed whole (the issue
    saw 100,000; httpx sends at most 65,536 in a URL)."""
    client, _ = api
    response = await client.get(path, params=params)
    assert response.status_code in (404, 422), response.text[:300]
    assert len(response.content) < 1_000, response.text[:300]


async def test_accounting_before_its_first_rollup(api: tuple[httpx.AsyncClient, Park]) -> None:
    """No rollups yet (the job creates their retention policy): nothing to show, not a 500."""
    client, _ = api
    response = await client.get("/parks/lj-demo/accounting/consumption")
    assert response.status_code == 200, response.text
    assert response.json() == []


async def test_a_replacement_at_a_time_the_store_cannot_hold(
    api: tuple[httpx.AsyncClient, Park],
) -> None:
    client, _ = api
    body = {"time": "0454-08-23T18:01:40-03:38", "old_final": 1.0, "new_initial": 0.0}
    response = await client.post("/parks/lj-demo/meters/steelco-main/replacements", json=body)
    assert response.status_code == 422, response.text
    assert "time must be between" in response.json()["detail"]


@pytest.mark.integration
async def test_a_database_that_cannot_be_reached_is_a_503(demo_park_path: Path) -> None:
    """Issue 11, item 2: the client's mistakes are 422s; 503 is kept for a real outage."""
    registry = SiteRegistry([Park.from_yaml(demo_park_path)])
    nowhere = InfluxSettings(url=f"http://127.0.0.1:{free_port()}")
    app = create_app(ApiSettings(influx=nowhere), registry)
    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        answer = await client.get(
            "/parks/lj-demo/meters/park-main/series", params={"quantity": "p_kw"}
        )
    assert answer.status_code == 503, answer.text
    assert answer.json()["detail"].startswith("database unavailable")
