"""The ``parkwatch`` command: one sub-command per service, plus ``demo`` and ``stack``.

Services read their settings from the environment (``PW_INGEST_…``, ``PW_API_…``); options
given here override them. Service modules are imported inside each command, so the CLI
starts fast and no service is built at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import time
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from parkwatch.logs import setup_logging
from parkwatch.settings import MqttSettings, ServiceSettings
from parkwatch_cli.accounting import accounting_app
from parkwatch_cli.analysis import replay, score_app
from parkwatch_cli.edge import edge_app
from parkwatch_cli.errors import DEBUG_KEY, CommandGroup, load_park
from parkwatch_cli.runner import run_service as _run

app = typer.Typer(
    cls=CommandGroup,  # a user's mistake is one or two lines, not a traceback
    help="parkwatch: energy and water monitoring for industrial parks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # click's plain help: rich's tables cut option names and defaults at 80 columns
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},  # a wide terminal gets wider help
)


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[
        bool,
        typer.Option("--debug", envvar="PW_DEBUG", help="show the traceback of an error"),
    ] = False,
) -> None:
    ctx.meta[DEBUG_KEY] = debug


S = TypeVar("S", bound=ServiceSettings)

SiteOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--site", help="park.yaml (repeat for several parks)", exists=True, metavar="<path>"
    ),
]
MqttOpt = Annotated[str | None, typer.Option(help="broker URL, mqtt://host:port or mqtts://")]
InfluxOpt = Annotated[str | None, typer.Option(help="InfluxDB URL, http://host:8086")]
DatabaseOpt = Annotated[str | None, typer.Option(help="InfluxDB database (v1) / bucket")]
LogLevelOpt = Annotated[
    str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR (default INFO)")
]
JsonLogOpt = Annotated[bool, typer.Option("--json-logs", help="structured JSON log lines")]
HttpHostOpt = Annotated[str | None, typer.Option(help="address of /metrics and /health")]
PortRange = {"min": 0, "max": 65_535}


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
        update["mqtt"] = {**settings.mqtt.model_dump(), "url": mqtt_url}
    influx: dict[str, Any] = {}
    if influx_url:
        influx["url"] = influx_url
    if database:
        influx["database"] = database
    if influx:
        update["influx"] = {**settings.influx.model_dump(), **influx}
    # validated as a whole (model_copy would not check the options at all), so an invalid
    # option is reported like an invalid variable: "invalid setting mqtt.url …"
    result = type(settings).model_validate({**settings.model_dump(), **update})
    if not result.sites:
        raise typer.BadParameter("no park.yaml given: use --site or the *_SITES variable")
    for path in result.sites:
        load_park(path)  # the service would fail on it later, with a traceback
    return result


@app.command(short_help="Broker → validate → InfluxDB; dead letters for the rejected.")
def ingest(
    site: SiteOpt = None,
    mqtt_url: MqttOpt = None,
    influx_url: InfluxOpt = None,
    database: DatabaseOpt = None,
    client_id: Annotated[
        str | None, typer.Option(help="stable id of this replica: the broker keeps its session")
    ] = None,
    share_group: Annotated[
        str | None,
        typer.Option(help="share the data topics with the replicas of this group (MQTT v5)"),
    ] = None,
    track_seq: Annotated[
        bool | None,
        typer.Option(
            "--track-seq/--no-track-seq",
            help="count seq gaps and replays per gateway (default: on, off with a share group)",
        ),
    ] = None,
    park: Annotated[
        list[str] | None,
        typer.Option(
            "--park",
            help="ingest only this park's data (repeat; default: every park)",
            metavar="<park>",
        ),
    ] = None,
    http_host: HttpHostOpt = None,
    http_port: Annotated[
        int | None, typer.Option(help="port of /metrics and /health; 0: none", **PortRange)
    ] = None,
    log_level: LogLevelOpt = None,
    json_logs: JsonLogOpt = False,
) -> None:
    """Broker → validate → InfluxDB, with dead letters for what is rejected.

    Every option has a PW_INGEST_… variable (PW_INGEST_MQTT__URL, PW_INGEST_PARKS, …); an
    option wins over its variable."""
    from ingest.service import event_loop_factory, run_ingest
    from ingest.settings import IngestSettings

    settings = _override(
        IngestSettings(),
        site,
        mqtt_url,
        influx_url,
        database,
        client_id=client_id,
        share_group=share_group,
        track_seq=track_seq,
        parks=park or None,
        http_host=http_host,
        http_port=http_port,
        log_level=log_level,
    )
    known = {load_park(path).park for path in settings.sites}
    if unknown := sorted(set(settings.parks) - known):
        raise typer.BadParameter(
            f"{', '.join(unknown)}: not a park of the given park.yaml files ({', '.join(known)})",
            param_hint="--park",
        )
    setup_logging(settings.log_level, json_logs)
    # the factory first: if uvloop fails to import, no run_ingest coroutine is left unawaited
    loop_factory = event_loop_factory(settings)
    _run(run_ingest(settings), loop_factory=loop_factory)


@app.command(short_help="Streaming analytics: demand, leaks, peaks, events.")
def analytics(
    site: SiteOpt = None,
    mqtt_url: MqttOpt = None,
    influx_url: InfluxOpt = None,
    database: DatabaseOpt = None,
    client_id: Annotated[
        str | None, typer.Option(help="MQTT client id (default: unique per process)")
    ] = None,
    http_host: HttpHostOpt = None,
    http_port: Annotated[
        int | None, typer.Option(help="port of /metrics and /health (default: none)", **PortRange)
    ] = None,
    log_level: LogLevelOpt = None,
    json_logs: JsonLogOpt = False,
) -> None:
    """Streaming analytics: 15-minute demand per electricity meter, written back.

    Every option has a PW_ANALYTICS_… variable (PW_ANALYTICS_MQTT__URL, …); an option wins
    over its variable."""
    from analytics.service import run_analytics
    from analytics.settings import AnalyticsSettings

    settings = _override(
        AnalyticsSettings(),
        site,
        mqtt_url,
        influx_url,
        database,
        client_id=client_id,
        http_host=http_host,
        http_port=http_port,
        log_level=log_level,
    )
    setup_logging(settings.log_level, json_logs)
    _run(run_analytics(settings))


@app.command()
def api(
    site: SiteOpt = None,
    influx_url: InfluxOpt = None,
    database: DatabaseOpt = None,
    host: Annotated[
        str | None, typer.Option(help="address to listen on (default 127.0.0.1)")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="port to listen on (default 8000)", **PortRange)
    ] = None,
    log_level: LogLevelOpt = None,
    json_logs: JsonLogOpt = False,
) -> None:
    """The HTTP API (FastAPI, served by uvicorn).

    Every option has a PW_API_… variable (PW_API_INFLUX__URL, PW_API_PORT, …); an option wins
    over its variable."""
    import uvicorn

    from api.app import create_app
    from api.settings import ApiSettings

    settings = _override(
        ApiSettings(), site, None, influx_url, database, host=host, port=port, log_level=log_level
    )
    setup_logging(settings.log_level, json_logs)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")


@app.command(short_help="A simulated park: live over MQTT or Modbus, a load, a history.")
def simulate(
    site: Annotated[Path | None, typer.Option(help="park.yaml; the demo park by default")] = None,
    mqtt_url: Annotated[str, typer.Option(help="broker URL")] = "mqtt://127.0.0.1:1883",
    interval: Annotated[float, typer.Option(help="seconds between poll cycles")] = 5.0,
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    seed: Annotated[int, typer.Option(help="the same seed, the same park and faults")] = 0,
    load: Annotated[bool, typer.Option("--load", help="load test: N gateways × M meters")] = False,
    gateways: Annotated[int, typer.Option(help="--load: gateways")] = 10,
    meters: Annotated[int, typer.Option(help="--load: meters per gateway")] = 1000,
    rate: Annotated[float, typer.Option(help="--load: readings/s in all; 0 = max")] = 0.0,
    max_readings: Annotated[int | None, typer.Option(help="--load: stop after")] = None,
    write_site: Annotated[
        Path | None, typer.Option(help="--load: write the load park's park.yaml here")
    ] = None,
    exclude_gateway: Annotated[
        list[str] | None,
        typer.Option(help="leave out this gateway (served another way)", metavar="<gateway>"),
    ] = None,
    modbus_gateway: Annotated[
        str | None, typer.Option(help="serve this gateway's meters as Modbus devices instead")
    ] = None,
    modbus_port: Annotated[int, typer.Option(help="--modbus-gateway: TCP port")] = 5020,
    mqtt_native_gateway: Annotated[
        str | None,
        typer.Option(help="publish this gateway's meters as MQTT-native devices (own JSON)"),
    ] = None,
    transport: Annotated[str, typer.Option(help="--modbus-gateway: tcp or rtu")] = "tcp",
    gateway_config: Annotated[
        Path | None, typer.Option(help="--modbus-gateway: write the edge agent's gateway.yaml")
    ] = None,
    history: Annotated[
        float | None, typer.Option(help="write DAYS of history (CSV + ground truth) to --out")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="--history: output directory")] = None,
    step: Annotated[float, typer.Option(help="--history: seconds between readings")] = 60.0,
    faults: Annotated[
        Path | None,
        typer.Option(help="fault schedule (YAML/JSON); --history defaults to a random one"),
    ] = None,
    random_faults: Annotated[
        bool,
        typer.Option("--random-faults", help="live: inject a random fault schedule for the seed"),
    ] = False,
    faults_within: Annotated[
        float | None,
        typer.Option(
            help="live --random-faults: over this many seconds (default --duration, or a day)"
        ),
    ] = None,
    ground_truth: Annotated[
        Path | None,
        typer.Option(help="live: ground-truth JSONL of the faults (default: in --out, else .)"),
    ] = None,
    no_faults: Annotated[
        bool, typer.Option("--no-faults", help="--history: inject no faults")
    ] = False,
    start_ms: Annotated[
        int | None,
        typer.Option(
            help="live: start at this data time (epoch ms); one in the past is caught up "
            "(--catch-up-step apart, as fast as acknowledged), then real time"
        ),
    ] = None,
    catch_up_step: Annotated[
        float, typer.Option(help="live --start-ms: seconds between the cycles caught up")
    ] = 60.0,
    quiet_until_ms: Annotated[
        int | None,
        typer.Option(
            help="live --start-ms: simulate but publish nothing before this time (an earlier "
            "run sent it: counters and seq go on from there)"
        ),
    ] = None,
    until_ms: Annotated[
        int | None, typer.Option(help="live: stop before this data time (epoch ms)")
    ] = None,
    fast: Annotated[
        bool, typer.Option("--fast", help="live: publish back to back, not in real time")
    ] = False,
    plain: Annotated[
        bool, typer.Option("--plain", help="--history: readings.csv, not .csv.gz")
    ] = False,
) -> None:
    """Publish a simulated park over MQTT in real time; or (--modbus-gateway) serve one
    gateway's meters as real Modbus devices; or (--load) run a load test."""
    setup_logging("INFO")
    if history is not None:
        from simulators.history import main_history

        if out is None:
            raise typer.BadParameter("--history needs --out DIR")
        _load_park(site)  # a bad park.yaml is reported before any work
        main_history(site, history, out, seed, not plain, step_s=step, faults=faults,
                     no_faults=no_faults)  # fmt: skip
        return
    if not (math.isfinite(interval) and interval > 0):  # 0 divided by zero, below
        raise ValueError(f"--interval must be a positive number of seconds, not {interval}")
    if mqtt_native_gateway is not None:
        from simulators.mqtt_meters import run_mqtt_meters

        _run(
            run_mqtt_meters(
                _load_park(site),
                mqtt_native_gateway,
                mqtt_url=mqtt_url,
                interval_s=interval,
                seed=seed,
            )
        )
        return
    if modbus_gateway is not None:
        _serve_modbus(
            site, modbus_gateway, modbus_port, transport, gateway_config, mqtt_url, interval, seed
        )
        return
    if load:
        if gateways < 1 or meters < 1:  # 0 published nothing and exited 0
            raise ValueError(
                f"--load needs --gateways and --meters of at least 1, not {gateways} and {meters}"
            )
        if not (math.isfinite(rate) and rate >= 0):
            raise ValueError(
                f"--rate must be readings a second (0 = as fast as it goes), not {rate}"
            )
        _simulate_load(mqtt_url, gateways, meters, rate, duration or 10.0, max_readings, write_site)
        return
    from simulators.publisher import ParkSimulator, Schedule

    park = _load_park(site)
    cycles = None if duration is None else max(1, int(duration / interval))
    excluded = frozenset(exclude_gateway or [])
    window = faults_within or duration
    schedule = _live_faults(park, faults, random_faults, window, seed, excluded)
    if ground_truth is None and schedule:
        ground_truth = (out or Path(".")) / "ground_truth.jsonl"
    mqtt = MqttSettings(url=mqtt_url)  # before the try: a bad URL is a setting, not a fault
    try:
        sim = ParkSimulator(
            park,
            mqtt,
            seed=seed,
            schedule=Schedule(
                interval_s=interval,
                cycles=cycles,
                start_ms=start_ms,
                realtime=not fast,
                catch_up_s=catch_up_step,
                quiet_until_ms=quiet_until_ms,
                until_ms=until_ms,
            ),
            exclude_gateways=excluded,
            faults=schedule,
            ground_truth=ground_truth,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if ground_truth is not None:
        typer.echo(f"ground truth: {ground_truth}", err=True)
    started = time.monotonic()
    _run(sim.run())
    typer.echo(
        f"sent {sim.sent.messages} messages, {sim.sent.readings} readings, "
        f"{sim.sent.value_count} values in {time.monotonic() - started:.1f}s"
    )


def _live_faults(
    park: Any,
    path: Path | None,
    random_faults: bool,
    window: float | None,
    seed: int,
    excluded: frozenset[str],
) -> list[Any]:
    from simulators.faults import load_schedule, random_schedule

    if path is not None:
        return load_schedule(path)
    if not random_faults:
        return []
    now_ms = int(time.time() * 1000)
    end_ms = now_ms + int((window or 86_400) * 1000)
    schedule = random_schedule(park, now_ms, end_ms, seed, exclude_gateways=excluded)
    for fault in schedule:
        typer.echo(f"fault: {fault}", err=True)
    return schedule


def _serve_modbus(
    site: Path | None,
    gateway: str,
    port: int,
    transport: str,
    gateway_config: Path | None,
    mqtt_url: str,
    interval: float,
    seed: int,
) -> None:
    import tempfile

    from simulators.modbus import serve_gateway

    if transport not in ("tcp", "rtu"):
        raise typer.BadParameter("--transport is tcp or rtu")
    with tempfile.TemporaryDirectory(prefix="pw-modbus-") as state:
        _run(
            serve_gateway(
                _load_park(site),
                gateway,
                transport="rtu" if transport == "rtu" else "tcp",
                port=port,
                state_dir=Path(state),
                seed=seed,
                config_out=gateway_config,
                mqtt_url=mqtt_url,
                poll_interval_s=interval,
            )
        )


def _simulate_load(
    mqtt_url: str,
    gateways: int,
    meters: int,
    rate: float,
    duration: float,
    max_readings: int | None,
    write_site: Path | None,
) -> None:
    import json

    import yaml

    from simulators.load import LoadPlan, load_park, run_load

    plan = LoadPlan(
        gateways=gateways, meters=meters, rate=rate, duration_s=duration, max_readings=max_readings
    )
    if write_site is not None:
        write_site.write_text(yaml.safe_dump(load_park(plan).model_dump(mode="json")))
        typer.echo(f"wrote {write_site}", err=True)
    report = asyncio.run(run_load(MqttSettings(url=mqtt_url), plan))
    typer.echo(
        f"sent {report.readings:,} readings in {report.messages:,} messages over "
        f"{report.seconds:.1f}s: {report.readings_per_s:,.0f} readings/s",
        err=True,
    )
    typer.echo(json.dumps(report.as_dict()))


def _load_park(site: Path | None) -> Any:
    from simulators import DEMO_PARK

    return load_park(site or DEMO_PARK)


@app.command(short_help="Run only Mosquitto and InfluxDB until Ctrl-C.")
def stack(
    state_dir: Annotated[Path | None, typer.Option(help="where servers keep data")] = None,
    mqtt_port: Annotated[
        int, typer.Option(help="Mosquitto's port; 0: a free one", **PortRange)
    ] = 0,
    influx_port: Annotated[
        int, typer.Option(help="InfluxDB's port; 0: a free one", **PortRange)
    ] = 0,
) -> None:
    """Run only Mosquitto and InfluxDB (free ports unless given) until Ctrl-C."""
    import tempfile

    from parkwatch.stack import LocalStack

    setup_logging("INFO")
    with contextlib.ExitStack() as exits:
        root = state_dir or Path(exits.enter_context(tempfile.TemporaryDirectory()))
        with LocalStack(root, mqtt_port=mqtt_port, influx_port=influx_port) as running:
            typer.echo(f"MQTT:     {running.mqtt_url}\nInfluxDB: {running.influx_url}")
            # SIGTERM stops as Ctrl-C does: servers stopped, temporary directory removed
            signal.signal(signal.SIGTERM, signal.default_int_handler)
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
    faults: Annotated[
        Path | None, typer.Option(help="inject this fault schedule (YAML/JSON)", exists=True)
    ] = None,
    random_faults: Annotated[
        bool,
        typer.Option(
            "--random-faults",
            help="inject random faults (leaks, peaks, meter faults) to see alerts",
        ),
    ] = False,
    history: Annotated[
        float,
        typer.Option(
            help="days of simulated history first (the leak baselines need them; a burst and "
            "a flue-gas step come live in the first minutes); 0: start cold"
        ),
    ] = 4.0,
) -> None:
    """Start the local stack and every service on a simulated park."""
    from parkwatch_cli.demo import run_demo

    setup_logging("WARNING")
    raise typer.Exit(
        run_demo(duration, port, interval, state_dir, site, faults, random_faults, history)
    )


app.add_typer(edge_app, name="edge", short_help="A gateway, and the tools to set one up.")
app.command("replay", short_help="Replay a history through the analytics engine.")(replay)
app.add_typer(score_app, name="score", short_help="How well events match the truth.")
app.add_typer(
    accounting_app, name="accounting", short_help="Energy, carbon and cost accounting tools."
)

bench_app = typer.Typer(help="Benchmarks that print their figures (last line: JSON).")
app.add_typer(bench_app, name="bench")


@bench_app.command("ingest", short_help="Ingest end to end against a plain bulk writer.")
def bench_ingest(
    readings: Annotated[int, typer.Option(help="readings to push end to end")] = 2_000_000,
    gateways: Annotated[int, typer.Option(help="simulated gateways publishing")] = 10,
    meters: Annotated[int, typer.Option(help="meters per gateway (readings per message)")] = 1000,
    replicas: Annotated[int, typer.Option(help="ingest processes")] = 1,
    writes_in_flight: Annotated[int, typer.Option(help="ingest's concurrent writes")] = 4,
    batch_lines: Annotated[int, typer.Option(help="lines per InfluxDB write")] = 20_000,
    gzip_level: Annotated[
        int, typer.Option(help="0: plain bodies (ingest's default); 1–9: gzip'd")
    ] = 0,
    rate: Annotated[
        float, typer.Option(help="pace the load at this many readings/s (0: a burst)")
    ] = 0.0,
    window: Annotated[
        int, typer.Option(help="QoS 1 publishes each load gateway keeps unacknowledged")
    ] = 64,
) -> None:
    """Ingest end to end vs. a plain bulk writer into the same InfluxDB, in one run."""
    import json

    from parkwatch_cli.bench import BenchPlan, run_ingest_bench

    setup_logging("WARNING")
    plan = BenchPlan(
        gateways=gateways,
        meters=meters,
        readings=readings,
        replicas=replicas,
        batch_lines=batch_lines,
        writes_in_flight=writes_in_flight,
        gzip_level=gzip_level,
        rate=rate,
        window=window,
    )
    typer.echo(json.dumps(run_ingest_bench(plan)))


@bench_app.command("ingest-path", short_help="Ingest's CPU per reading in one process.")
def bench_ingest_path_command(
    meters: Annotated[
        str, typer.Option(help="readings per message, comma-separated")
    ] = "1,10,50,1000",
    readings: Annotated[int, typer.Option(help="readings per batch size")] = 200_000,
    chunk: Annotated[int, typer.Option(help="messages per socket read")] = 64,
    gzip_level: Annotated[
        int | None,
        typer.Option(min=0, max=9, help="batch body compression (default: ingest's, 0 = plain)"),
    ] = None,
) -> None:
    """Where ingest's CPU per reading goes, without a broker or a database: the parser, the
    encoder and the whole in-process path, per batch size."""
    import json

    from parkwatch_cli.bench_ingest_path import bench_ingest_path

    setup_logging("WARNING")
    sizes = [int(n) for n in meters.split(",") if n.strip()]
    typer.echo(json.dumps(bench_ingest_path(sizes, readings, chunk, gzip_level=gzip_level)))


@bench_app.command("analytics", short_help="The analytics engine against a Python loop.")
def bench_analytics_command(
    meters: Annotated[int, typer.Option(help="meters in the synthetic park")] = 10_000,
    hours: Annotated[float, typer.Option(help="simulated hours at 1-minute resolution")] = 24.0,
) -> None:
    """The analytics engine with every detector over a synthetic park, against a per-reading
    Python loop doing the same detectors' arithmetic, in one run."""
    from parkwatch_cli.bench_analytics import main

    setup_logging("WARNING")
    typer.echo(main(meters, hours))


@bench_app.command("alerts", short_help="Reading published → demand-peak alert published.")
def bench_alerts_command(
    gateways: Annotated[int, typer.Option(help="simulated gateways")] = 20,
    meters: Annotated[int, typer.Option(help="meters per gateway")] = 10,
    minutes: Annotated[int, typer.Option(help="simulated minutes")] = 180,
    speed: Annotated[float, typer.Option(help="simulated time / wall time")] = 30.0,
) -> None:
    """Reading published → demand-peak alert published, through real processes."""
    from parkwatch_cli.bench_alerts import main

    setup_logging("WARNING")
    typer.echo(main(gateways, meters, minutes, speed))


@bench_app.command("edge", short_help="Gateway polling: Modbus TCP and DL/T 645.")
def bench_edge_command(
    modbus: Annotated[int, typer.Option(help="Modbus TCP devices, polled every second")] = 100,
    modbus_seconds: Annotated[float, typer.Option(help="how long the Modbus run lasts")] = 30.0,
    dlt645: Annotated[int, typer.Option(help="DL/T 645 meters on one serial bus")] = 20,
    dlt645_seconds: Annotated[float, typer.Option(help="how long the DL/T 645 run lasts")] = 60.0,
    baudrate: Annotated[int, typer.Option(help="the DL/T 645 bus' baud rate")] = 2400,
    turnaround: Annotated[float, typer.Option(help="a DL/T 645 meter's reply delay, s")] = 0.02,
) -> None:
    """Gateway polling: requests per cycle against the minimum, cycle times and CPU per
    device for Modbus TCP; a slow DL/T 645 bus' computed capacity against what is achieved."""
    import json

    from parkwatch_cli.bench_edge import run_edge_bench

    setup_logging("WARNING")
    result = run_edge_bench(modbus, modbus_seconds, dlt645, dlt645_seconds, baudrate, turnaround)
    typer.echo(json.dumps(result))


@bench_app.command("history", short_help="How fast a long replayable history is written.")
def bench_history_command(
    days: Annotated[float, typer.Option(help="days of history")] = 30,
    meters: Annotated[int, typer.Option(help="meters in the park")] = 200,
    step: Annotated[float, typer.Option(help="seconds between readings")] = 60,
    seed: Annotated[int, typer.Option(help="the same seed, the same history")] = 0,
    plain: Annotated[bool, typer.Option("--plain", help="readings.csv, not .csv.gz")] = False,
    no_faults: Annotated[bool, typer.Option("--no-faults", help="inject no faults")] = False,
) -> None:
    """How fast a long replayable history is written (target: 30 days × 200 meters < 60 s)."""
    import json

    from simulators.history_bench import bench_history

    typer.echo(json.dumps(bench_history(days, meters, step, seed, not plain, not no_faults)))


@bench_app.command("replay-read", short_help="How fast the replay CSV reader reads.")
def bench_replay_read_command(
    file: Annotated[
        Path | None, typer.Option(help="a readings CSV (default: a simulated history)")
    ] = None,
    work_dir: Annotated[Path | None, typer.Option(help="where the history is kept")] = None,
    days: Annotated[float, typer.Option(help="days of the simulated history")] = 30,
    meters: Annotated[int, typer.Option(help="meters of the simulated history")] = 200,
    reference: Annotated[bool, typer.Option(help="also time Python's csv module")] = True,
) -> None:
    """How fast the replay CSV reader reads a history, beside Python's csv module."""
    import json

    from parkwatch_cli.bench_readings import bench_replay_read

    typer.echo(json.dumps(bench_replay_read(file, work_dir, days, meters, reference)))


@bench_app.command("accounting", short_help="A year of 1,000 meters rolled up at every level.")
def bench_accounting_command(
    meters: Annotated[int, typer.Option(help="meters in the synthetic park")] = 1000,
    days: Annotated[int, typer.Option(help="days of 15-minute readings")] = 365,
    chunk: Annotated[int, typer.Option(help="meters rolled up at once")] = 100,
) -> None:
    """A year of 15-minute counters for 1,000 meters rolled up at every level: readings per
    second and peak memory, beside a naive diff-and-bincount in the same run."""
    from parkwatch_cli.bench_accounting import main

    typer.echo(main(meters, days, chunk))


@bench_app.command("rollup-pass", short_help="One live pass of the accounting's rollup job.")
def bench_rollup_pass_command(
    demo: Annotated[bool, typer.Option(help="the demo park (else the synthetic park)")] = False,
    meters: Annotated[int, typer.Option(help="meters in the synthetic park")] = 1000,
    hours: Annotated[float, typer.Option(help="hours of one-minute readings stored")] = 3.0,
    passes: Annotated[int, typer.Option(help="live passes timed")] = 10,
) -> None:
    """CPU time of one live pass of the rollup job (the job's and InfluxDB's) against a
    throwaway InfluxDB: the demo park, or 1,000 meters."""
    from parkwatch_cli.bench_rollup_pass import main

    typer.echo(main(demo, meters, hours, passes))


@bench_app.command("nab", short_help="The baseline detector on NAB.")
def bench_nab(
    data: Annotated[Path, typer.Option(help="a NAB checkout (data/, labels/, config/)")] = Path(
        "../shared/datasets/nab"
    ),
    direct: Annotated[
        bool, typer.Option(help="feed the detector straight, without the engine (quicker)")
    ] = False,
    param: Annotated[
        list[str] | None, typer.Option(help="a detector parameter NAME=VALUE (JSON value)")
    ] = None,
) -> None:
    """The baseline detector on the Numenta Anomaly Benchmark: a table per family and
    profile, then one JSON line."""
    import json

    from analytics.detectors.baseline import BaselineParams
    from analytics.scoring.nab_runner import format_report, report_json, run_nab

    if not (data / "labels" / "combined_windows.json").is_file():
        raise typer.BadParameter(f"{data} has no labels/combined_windows.json", param_hint="--data")
    params: dict[str, object] = {}
    for item in param or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--param")
        try:
            params[name] = json.loads(value)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"{item!r}: {exc}", param_hint="--param") from exc
    try:
        BaselineParams.from_mapping(params)
    except (TypeError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--param") from exc
    report = run_nab(data, params, direct=direct)
    typer.echo(format_report(report), err=True)
    typer.echo(json.dumps(report_json(report)))


@bench_app.command("skab", short_help="Every detector on SKAB's pump rig.")
def bench_skab(
    data: Annotated[Path, typer.Option(help="SKAB's folder (data/*/*.csv)")] = Path(
        "../shared/datasets/skab"
    ),
) -> None:
    """Every detector on SKAB's pump rig, replayed as one meter in time order: found,
    missed, false, NAB; then one JSON line."""
    import json

    from analytics.scoring.skab_runner import format_report, report_json, run_skab

    if not (data / "data").is_dir():
        raise typer.BadParameter(f"{data} has no data/ folder", param_hint="--data")
    report = run_skab(data)
    typer.echo(format_report(report), err=True)
    typer.echo(json.dumps(report_json(report)))


@bench_app.command("town", short_help="A year of a town's two inflows and tank, ~20 leaks.")
def bench_town(
    days: Annotated[int, typer.Option(help="days of the scenario")] = 365,
    seed: Annotated[list[int] | None, typer.Option(help="a scenario seed (repeatable)")] = None,
    leaks: Annotated[int | None, typer.Option(help="leaks (default: 20 a year)")] = None,
    season: Annotated[float, typer.Option(help="demand's swing over the year (share)")] = 0.15,
) -> None:
    """A town's water network (two inflow meters and a tank level) over a year with about
    twenty leaks, seasonal drift, noise and gaps, replayed through the leak detector: per
    leak reported / covered / missed and its delay, false events; then one JSON line."""
    import json

    from parkwatch_cli.bench_town import main

    setup_logging("WARNING")
    text, summary = main(days, seed or [1, 2, 3], leaks, season)
    typer.echo(text, err=True)
    typer.echo(json.dumps(summary))


if __name__ == "__main__":
    app()
