"""The API app: ``create_app(settings)`` builds everything; nothing happens at import time.

Client mistakes are answered 422 (or 404) with a short message before anything reaches the
database; 503 means only that InfluxDB cannot be reached. Error bodies name what was given but
never echo more than ``ECHO_CHARS`` of it.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.accounting import router as accounting_router
from api.common import (
    ECHO_CHARS,
    MAX_EVERY_S,
    State,
    StateDep,
    _in_store_range,
    _park,
    _query,
    shown,
)
from api.reports import router as reports_router
from api.settings import ApiSettings
from parkwatch import __version__
from parkwatch.influx import (
    InfluxReader,
    ms_literal,
    quote_ident,
    where_tags,
)
from parkwatch.quantities import QUANTITIES, quantities_for
from parkwatch.site import Meter, Park, SiteRegistry

_EVERY = re.compile(r"^(\d{1,6})(s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _cut_input(value: object) -> object:
    """A validation error's ``input``, left as it is when short."""
    if isinstance(value, str):
        return value if len(value) <= ECHO_CHARS else f"{value[: ECHO_CHARS - 1]}…"
    return value if len(repr(value)) <= ECHO_CHARS else shown(value)


class ParkOut(BaseModel):
    park: str
    name: str
    timezone: str
    enterprises: int
    meters: int


class MeterOut(BaseModel):
    id: str
    name: str
    utility: str
    enterprise: str
    workshop: str | None
    parent: str | None
    gateway: str
    quantities: list[str]


class LatestOut(BaseModel):
    park: str
    meter: str
    time: datetime
    t_ms: int
    values: dict[str, float]
    quality: str


class Point(BaseModel):
    time: datetime
    value: float | None


class SeriesOut(BaseModel):
    park: str
    meter: str
    quantity: str
    unit: str
    aggregate: Literal["mean", "last"]
    every: str
    timezone: str
    start: datetime
    end: datetime
    points: list[Point]


def _meter(state: State, park: str, meter: str) -> tuple[Park, Meter]:
    p = _park(state, park)
    found = state.registry.meter(park, meter)
    if found is None:
        raise HTTPException(404, f"unknown meter {shown(meter)} in park {park!r}")
    return p, found


def _localize(value: datetime, park: Park) -> datetime:
    return value.replace(tzinfo=park.zone) if value.tzinfo is None else value


def _bucket_seconds(every: str) -> int:
    match = _EVERY.fullmatch(every)
    seconds = 0 if match is None else int(match.group(1)) * _UNIT_S[match.group(2)]
    if not 0 < seconds <= MAX_EVERY_S:
        raise HTTPException(
            422, f"every={shown(every)}: expected a duration like 15m, 1h or 1d, at most 366d"
        )
    return seconds


def create_app(settings: ApiSettings, registry: SiteRegistry | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sites = registry or SiteRegistry.from_files(settings.sites)
        async with InfluxReader(settings.influx) as reader:
            app.state.pw = State(settings, sites, reader)
            yield

    app = FastAPI(title="parkwatch", version=__version__, lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own 422 repeats each invalid input whole: cut it as our messages do
        errors = [
            {**error, "input": _cut_input(error["input"])} if "input" in error else error
            for error in exc.errors()
        ]
        return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)

    @app.get("/health")
    async def health(state: StateDep, response: Response) -> dict[str, Any]:
        database = await state.reader.ping()
        response.status_code = 200 if database else 503
        return {"status": "ok" if database else "degraded", "database": database}

    @app.get("/parks")
    async def parks(state: StateDep) -> list[ParkOut]:
        return [
            ParkOut(
                park=p.park,
                name=p.name,
                timezone=p.timezone,
                enterprises=len(p.enterprises),
                meters=len(state.registry.meters(p.park)),
            )
            for p in state.registry.parks.values()
        ]

    @app.get("/parks/{park}/meters")
    async def meters(state: StateDep, park: str) -> list[MeterOut]:
        _park(state, park)
        return [
            MeterOut(
                id=m.id,
                name=m.spec.name,
                utility=m.utility.value,
                enterprise=m.enterprise,
                workshop=m.workshop,
                parent=m.spec.parent,
                gateway=m.gateway,
                quantities=list(state.reported[park][m.id]),
            )
            for m in state.registry.meters(park)
        ]

    @app.get("/parks/{park}/meters/{meter}/latest")
    async def latest(state: StateDep, park: str, meter: str) -> LatestOut:
        p, m = _meter(state, park, meter)
        series = await _query(
            state,
            f"SELECT * FROM {quote_ident(m.utility.value)} "
            f"WHERE {where_tags({'park': park, 'meter': meter})} ORDER BY time DESC LIMIT 1",
        )
        if not series or not series[0].values:
            raise HTTPException(404, f"no readings for meter {meter!r} yet")
        record = series[0].records()[0]
        t_ms = int(record["time"])
        values = {k: float(v) for k, v in record.items() if k in QUANTITIES and v is not None}
        return LatestOut(
            park=park,
            meter=meter,
            time=datetime.fromtimestamp(t_ms / 1000, tz=p.zone),
            t_ms=t_ms,
            values=values,
            quality=record.get("quality") or "ok",
        )

    @app.get("/parks/{park}/meters/{meter}/series")
    async def series(
        state: StateDep,
        park: str,
        meter: str,
        quantity: str,
        start: datetime | None = None,
        end: datetime | None = None,
        every: Annotated[str, Query(description="bucket: 30s, 15m, 1h, 1d; at most 366d")] = "15m",
    ) -> SeriesOut:
        p, m = _meter(state, park, meter)
        spec = QUANTITIES.get(quantity)
        if spec is None or m.utility not in spec.utilities:
            allowed = ", ".join(q.name for q in quantities_for(m.utility))
            raise HTTPException(422, f"quantity {shown(quantity)} is not one of {allowed}")
        bucket_s = _bucket_seconds(every)
        end_at = _in_store_range("end", _localize(end or datetime.now(tz=p.zone), p))
        start_at = _in_store_range(
            "start", _localize(start, p) if start else end_at - timedelta(days=1)
        )
        if start_at >= end_at:
            raise HTTPException(422, "start must be before end")
        buckets = (end_at - start_at).total_seconds() / bucket_s
        if buckets > state.settings.max_points:
            raise HTTPException(
                422, f"{buckets:.0f} buckets > {state.settings.max_points}: use a larger every"
            )
        aggregate: Literal["mean", "last"] = "last" if spec.is_counter else "mean"
        rows = await _query(
            state,
            f"SELECT {aggregate}({quote_ident(quantity)}) FROM {quote_ident(m.utility.value)} "
            f"WHERE {where_tags({'park': park, 'meter': meter})} "
            f"AND time >= {ms_literal(start_at.timestamp() * 1000)} "
            f"AND time < {ms_literal(end_at.timestamp() * 1000)} "
            f"GROUP BY time({every}) fill(none) tz('{p.timezone}')",
        )
        points = [
            Point(time=datetime.fromtimestamp(int(t) / 1000, tz=p.zone), value=v)
            for s in rows
            for t, v in s.values
        ]
        return SeriesOut(
            park=park,
            meter=meter,
            quantity=quantity,
            unit=spec.unit,
            aggregate=aggregate,
            every=every,
            timezone=p.timezone,
            start=start_at,
            end=end_at,
            points=points,
        )

    app.include_router(accounting_router)
    app.include_router(reports_router)

    @app.middleware("http")
    async def server_timing(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response

    return app
