"""The ``parkwatch`` command: one sub-command per service, plus ``demo`` and ``stack``.

Services read their settings from the environment (``PW_INGEST_…``, ``PW_API_…``); options
given here override them. Service modules are imported inside each command, so the CLI
starts fast and no service is built at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from parkwatch.logs import setup_logging
from parkwatch.settings import InfluxSettings, MqttSettings, ServiceSettings

app = typer.Typer(
    help="parkwatch: energy and water monitoring for industrial parks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

S = TypeVar("S", bound=ServiceSettings)

SiteOpt = Annotated[
    list[Path] | None,
    typer.Option("--site", help="park.yaml (repeat for several parks)", exists=True),
]
MqttOpt = Annotated[str | None, typer.Option(help="broker URL, mqtt://host:port or mqtts://")]
InfluxOpt = Annotated[str | None, typer.Option(help="InfluxDB URL, http://host:8086")]
DatabaseOpt = Annotated[str | None, typer.Option(help="InfluxDB database (v1) / bucket")]
JsonLogOpt = Annotated[bool, typer.Option("--json-logs", help="structured JSON log lines")]


def _override(
    settings: S,
    sites: list[Path] | None,
    mqtt_url: str | None,
    influx_url: str | None,
    database: str | None,
    **extra: Any,
) -> S:
    update: dict[str, Any] = {k: v for k, v in extra.items() if v is not None}
    if sites:
        update["sites"] = sites
    if mqtt_url:
        update["mqtt"] = MqttSettings(**{**settings.mqtt.model_dump(), "url": mqtt_url})
    influx: dict[str, Any] = {}
    if influx_url:
        influx["url"] = influx_url
    if database:
        influx["database"] = database
    if influx:
        update["influx"] = InfluxSettings(**{**settings.influx.model_dump(), **influx})
    result = settings.model_copy(update=update)
    if not result.sites:
        raise typer.BadParameter("no park.yaml given: use --site or the *_SITES variable")
    return result


def _run(coro: Any) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(coro)


@app.command()
def ingest(
    site: SiteOpt = None,
    mqtt_url: MqttOpt = None,
    influx_url: InfluxOpt = None,
    database: DatabaseOpt = None,
    client_id: Annotated[str | None, typer.Option(help="stable id of this replica")] = None,
    http_port: Annotated[int | None, typer.Option(help="port of /metrics and /health")] = None,
    json_logs: JsonLogOpt = False,
) -> None:
    """Broker → validate → InfluxDB, with dead letters for what is rejected."""
    from ingest.service import run_ingest
    from ingest.settings import IngestSettings

    settings = _override(
        IngestSettings(),
        site,
        mqtt_url,
        influx_url,
        database,
        client_id=client_id,
        http_port=http_port,
    )
    setup_logging(settings.log_level, json_logs)
    _run(run_ingest(settings))


@app.command()
def analytics(
    site: SiteOpt = None,
    mqtt_url: MqttOpt = None,
    influx_url: InfluxOpt = None,
    database: DatabaseOpt = None,
    json_logs: JsonLogOpt = False,
) -> None:
    """Streaming analytics: 15-minute demand per electricity meter, written back."""
    from analytics.service import run_analytics
    from analytics.settings import AnalyticsSettings

    settings = _override(AnalyticsSettings(), site, mqtt_url, influx_url, database)
    setup_logging(settings.log_level, json_logs)
    _run(run_analytics(settings))


@app.command()
def api(
    site: SiteOpt = None,
    influx_url: InfluxOpt = None,
    database: DatabaseOpt = None,
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    json_logs: JsonLogOpt = False,
) -> None:
    """The HTTP API (FastAPI, served by uvicorn)."""
    import uvicorn

    from api.app import create_app
    from api.settings import ApiSettings

    settings = _override(ApiSettings(), site, None, influx_url, database, host=host, port=port)
    setup_logging(settings.log_level, json_logs)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")


@app.command()
def simulate(
    site: Annotated[Path | None, typer.Option(help="park.yaml; the demo park by default")] = None,
    mqtt_url: Annotated[str, typer.Option(help="broker URL")] = "mqtt://127.0.0.1:1883",
    interval: Annotated[float, typer.Option(help="seconds between poll cycles")] = 5.0,
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Publish a simulated park's readings over MQTT in real time."""
    from simulators.publisher import ParkSimulator, Schedule

    setup_logging("INFO")
    park = _load_park(site)
    cycles = None if duration is None else max(1, int(duration / interval))
    sim = ParkSimulator(
        park,
        MqttSettings(url=mqtt_url),
        seed=seed,
        schedule=Schedule(interval_s=interval, cycles=cycles),
    )
    started = time.monotonic()
    _run(sim.run())
    typer.echo(
        f"sent {sim.sent.messages} messages, {sim.sent.readings} readings, "
        f"{sim.sent.value_count} values in {time.monotonic() - started:.1f}s"
    )


def _load_park(site: Path | None) -> Any:
    from parkwatch.site import Park
    from simulators import DEMO_PARK

    return Park.from_yaml(site or DEMO_PARK)


@app.command()
def stack(
    state_dir: Annotated[Path | None, typer.Option(help="where servers keep data")] = None,
    mqtt_port: Annotated[int, typer.Option()] = 0,
    influx_port: Annotated[int, typer.Option()] = 0,
) -> None:
    """Run only Mosquitto and InfluxDB (free ports unless given) until Ctrl-C."""
    import tempfile

    from parkwatch.stack import LocalStack

    setup_logging("INFO")
    with contextlib.ExitStack() as exits:
        root = state_dir or Path(exits.enter_context(tempfile.TemporaryDirectory()))
        with LocalStack(root, mqtt_port=mqtt_port, influx_port=influx_port) as running:
            typer.echo(f"MQTT:     {running.mqtt_url}\nInfluxDB: {running.influx_url}")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)


@app.command()
def demo(
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    port: Annotated[int, typer.Option(help="API port (0: a free one)")] = 8000,
    interval: Annotated[float, typer.Option(help="simulated poll interval, seconds")] = 5.0,
    state_dir: Annotated[Path | None, typer.Option(help="keep data here (default: temp)")] = None,
    site: Annotated[Path | None, typer.Option(help="park.yaml; the demo park by default")] = None,
) -> None:
    """Start the local stack and every service on a simulated park."""
    from parkwatch.demo import run_demo

    setup_logging("WARNING")
    raise typer.Exit(run_demo(duration, port, interval, state_dir, site))


if __name__ == "__main__":
    app()
