"""A service's small HTTP face: Prometheus ``/metrics`` and ``/health`` (503 when degraded)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

HealthCheck = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]


def status_app(name: str, registry: CollectorRegistry, health: HealthCheck) -> FastAPI:
    app = FastAPI(title=f"parkwatch {name}", docs_url=None, redoc_url=None)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    async def check(response: Response) -> dict[str, Any]:
        ok, details = await health()
        response.status_code = 200 if ok else 503
        return {"status": "ok" if ok else "degraded", **details}

    return app


@contextlib.asynccontextmanager
async def serve_status(
    app: FastAPI, host: str, port: int, name: str
) -> AsyncIterator[uvicorn.Server]:
    """Serve ``app`` for the duration of the block (port 0: a free one, see ``servers``)."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name=f"{name}-http")
    try:
        yield server
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=5)
