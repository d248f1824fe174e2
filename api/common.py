"""What the API's app and its routers share: the request state, the park look-up, the store's
time range, the query wrapper and how client input is echoed in errors. The routers import
this module, never ``api.app``, which includes them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from api.settings import ApiSettings
from parkwatch.influx import InfluxQueryError, InfluxReader, InfluxUnavailableError
from parkwatch.plant import reported_quantities
from parkwatch.site import Park, SiteRegistry

# InfluxDB keeps int64 nanoseconds since 1970 (1677-09-21 … 2262-04-11); outside that it answers
# "overflowed duration". The margins keep GROUP BY time()'s bucket edges (at most MAX_EVERY_S
# before the start) inside the range too.
EARLIEST = datetime(1678, 1, 1, tzinfo=UTC)
LATEST = datetime(2262, 1, 1, tzinfo=UTC)
MAX_EVERY_S = 366 * 86_400
ECHO_CHARS = 64  # how much of a client's input an error message repeats


def shown(value: object) -> str:
    """``repr`` of a client's input for an error message, cut to ``ECHO_CHARS``."""
    text = repr(value)
    return text if len(text) <= ECHO_CHARS else f"{text[: ECHO_CHARS - 1]}…"


class State:
    def __init__(self, settings: ApiSettings, registry: SiteRegistry, reader: InfluxReader):
        self.settings = settings
        self.registry = registry
        self.reader = reader
        # park → meter → the quantities it reports (declared in park.yaml, or of its kind)
        self.reported = {p.park: reported_quantities(p) for p in registry.parks.values()}


def _state(request: Request) -> State:
    state: State = request.app.state.pw
    return state


StateDep = Annotated[State, Depends(_state)]


def _park(state: State, park: str) -> Park:
    found = state.registry.parks.get(park)
    if found is None:
        raise HTTPException(404, f"unknown park {shown(park)}")
    return found


def _in_store_range(name: str, value: datetime) -> datetime:
    # aware datetimes compare without converting, so year 1 or 9999 cannot overflow here
    if not EARLIEST <= value <= LATEST:
        raise HTTPException(
            422, f"{name} must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)"
        )
    return value


async def _query(state: State, statement: str) -> list[Any]:
    try:
        return await state.reader.query(statement)
    except InfluxUnavailableError as exc:
        raise HTTPException(503, f"database unavailable: {exc}") from exc
    except InfluxQueryError as exc:
        if "database not found" in str(exc):  # nothing written yet: the store is not ready
            raise HTTPException(503, f"database: {exc}") from exc
        # the statement is ours and its inputs were checked: a refusal is a bug, not an outage
        raise
