"""Ingest's own small HTTP face: Prometheus ``/metrics`` and a ``/health`` that fails when the
broker or the database cannot be reached."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from parkwatch.influx import InfluxReader

if TYPE_CHECKING:
    from ingest.service import IngestService


def create_app(service: IngestService) -> FastAPI:
    app = FastAPI(title="parkwatch ingest", docs_url=None, redoc_url=None)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    async def health(response: Response) -> dict[str, object]:
        async with InfluxReader(service.settings.influx) as reader:
            database = await reader.ping()
        writer_ok = service.writer is not None and not service.writer.outage.is_down
        broker = service.subscribed.is_set()
        ok = database and broker and writer_ok
        response.status_code = 200 if ok else 503
        return {
            "status": "ok" if ok else "degraded",
            "broker": broker,
            "database": database,
            "writes_failing": not writer_ok,
        }

    return app


@contextlib.asynccontextmanager
async def serve_http(service: IngestService) -> AsyncIterator[uvicorn.Server]:
    s = service.settings
    config = uvicorn.Config(
        create_app(service),
        host=s.http_host,
        port=s.http_port,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="ingest-http")
    try:
        yield server
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=5)
