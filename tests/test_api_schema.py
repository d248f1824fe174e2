"""schemathesis against the API's OpenAPI schema (issue 11): the app served over real HTTP with a
real InfluxDB, fed what the schema allows and what it nearly allows. No answer is a 500, and
none is a 503 while the database is up — a client's mistake is a 4xx.

Half of the generated cases name the demo park, its meters and its quantities, so the requests
get past the 404s and the 422s into the queries.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from api.app import create_app
from api.settings import ApiSettings
from parkwatch.influx import InfluxReader, InfluxWriter
from parkwatch.quantities import QUANTITIES
from parkwatch.settings import InfluxSettings
from parkwatch.site import Park, SiteRegistry
from parkwatch.stack import LocalStack, free_port

DEMO = Path(__file__).resolve().parent.parent / "simulators" / "parks" / "demo.yaml"
PARK = Park.from_yaml(DEMO)
METERS = sorted(PARK.tree.meters)
# the schema only: building the app opens nothing (the database is reached in its lifespan)
SCHEMA = schemathesis.openapi.from_dict(create_app(ApiSettings()).openapi())
EXAMPLES = 40  # per operation and phase: the whole file stays well under a minute


ZONES = st.sampled_from(
    [None, UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12)), PARK.zone]
)
# any year, often near the years the store can hold
TIMES = st.one_of(
    st.datetimes(timezones=ZONES),
    st.datetimes(datetime(1600, 1, 1), datetime(2400, 1, 1), timezones=ZONES),
).map(datetime.isoformat)


def _real_series(case: Any, meter: str) -> Any:
    """``case`` on a real meter with one of its utility's quantities, and any window."""
    case.path_parameters = {"park": PARK.park, "meter": meter}
    utility = PARK.tree.meters[meter].utility
    quantities = sorted(q.name for q in QUANTITIES.values() if utility in q.utilities)
    query = st.fixed_dictionaries(
        {"quantity": st.sampled_from(quantities)},
        optional={
            "every": st.from_regex(r"\A[0-9]{1,6}[smhdw]\Z"),
            "start": TIMES,
            "end": TIMES,
        },
    )
    return query.map(lambda q: setattr(case, "query", q) or case)


def _real_path(case: Any, meter: str) -> Any:
    params = {"park": PARK.park}
    if "meter" in case.path_parameters:
        params["meter"] = meter
    case.path_parameters = params
    return st.just(case)


@SCHEMA.hook
def flatmap_case(context: Any, case: Any) -> Any:
    if not isinstance(case.path_parameters, dict) or "park" not in case.path_parameters:
        return st.just(case)
    real = _real_series if case.operation.path.endswith("/series") else _real_path
    return st.one_of(st.just(case), st.sampled_from(METERS).flatmap(lambda m: real(case, m)))


@pytest.fixture(scope="module")
def api_url(stack: LocalStack) -> Iterator[str]:
    influx = InfluxSettings(url=stack.influx_url, database="test_api_schema")
    meter = PARK.tree.meters["elecco-main"]
    start = int(datetime.fromisoformat("2026-03-01T22:00:00+08:00").timestamp() * 1000)
    lines = [
        f"{meter.series} p_kw={h}.0,e_kwh={1000 + h}.0 {start + h * 3_600_000}" for h in range(6)
    ]

    async def fill() -> None:
        async with InfluxReader(influx) as reader:
            await reader.create_database()
        async with InfluxWriter(influx) as writer:
            await writer.write(lines)

    asyncio.run(fill())
    app = create_app(ApiSettings(influx=influx), SiteRegistry([PARK]))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="api-under-test")
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive(), "the API stopped while starting"
            assert time.monotonic() < deadline, "the API did not start within 30 s"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def not_a_database_outage(ctx: Any, response: Any, case: Any) -> bool | None:
    """The database is up all along: a 503 would blame it for the client's request."""
    if response.status_code == 503:
        raise AssertionError(f"503 while InfluxDB is up: {response.text[:300]}")
    return None


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_server_error_and_no_false_outage(case: Any, api_url: str) -> None:
    case.call_and_validate(
        base_url=api_url, checks=[not_a_server_error, not_a_database_outage], timeout=30
    )
