"""``parkwatch demo``: the local stack plus every service on a simulated park.

Each service runs as its own child process (``python -m parkwatch_cli <service>``), as it would
in production, configured through its environment variables. The launcher prints where to
look, shows progress, and stops everything — children first, then the servers — on Ctrl-C,
SIGTERM or after ``--duration``. Children are also bound to die with the launcher.

With ``--history DAYS`` (the default) the park has a past: the simulator first publishes
those days (until a few hours ago) through the broker and ingest into InfluxDB, analytics
starts on them (its refill from InfluxDB at start-up gives the leak and waste-heat detectors
the days of baseline they need), and then the live simulator catches up on the last hours
and goes on in real time. A water burst and a flue-gas temperature step are scheduled in
those last hours, so the detectors raise them live, within the first minutes; the demo prints
every alert analytics publishes, with its estimate.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx

from parkwatch import topics
from parkwatch.calendar import is_workday
from parkwatch.site import Park
from parkwatch.stack import LocalStack, free_port, spawn, stop_process, tcp_open
from simulators.faults import UNITS, Fault

PROGRESS_EVERY_S = 5.0
MODBUS_GATEWAY = "gw-steelco"
RANDOM_FAULTS_WITHIN_S = 3600.0  # an open-ended demo's random faults come in its first hour
HISTORY_DAYS = 4.0  # the least history a demo has: the leak baselines need 3 days of a kind
HISTORY_STEP_S = 60  # the history's poll interval (and the catch-up's)
CATCH_UP_H = 6  # the live run starts at least this long ago, at its day's local midnight


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


class _StopRequestedError(Exception):
    pass


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _StopRequestedError(signal.Signals(signum).name)


def _service_env(prefix: str, stack: LocalStack, site: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            f"{prefix}MQTT__URL": stack.mqtt_url,
            f"{prefix}INFLUX__URL": stack.influx_url,
            f"{prefix}INFLUX__DATABASE": "parkwatch",
            f"{prefix}SITES": json.dumps([str(site)]),
        }
    )
    env.update({f"{prefix}{k.upper()}": v for k, v in extra.items()})
    return env


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _count_points(influx_url: str) -> int:
    statement = "; ".join(
        f'SELECT count("{field}") FROM "{measurement}"'
        for measurement, field in (
            ("electricity", "p_kw"),
            ("water", "flow_m3h"),
            ("gas", "flow_nm3h"),
            ("heat", "heat_kw"),
        )
    )
    try:
        response = httpx.post(
            f"{influx_url}/query", params={"db": "parkwatch"}, data={"q": statement}, timeout=5
        )
        results = response.json().get("results", [])
    except (httpx.HTTPError, ValueError):
        return -1
    return sum(int(row[1]) for r in results for s in r.get("series", []) for row in s["values"])


def run_demo(
    duration: float | None,
    api_port: int,
    interval: float,
    state_dir: Path | None,
    site: Path | None,
    faults: Path | None = None,
    random_faults: bool = False,
    history_days: float = HISTORY_DAYS,
) -> int:
    from simulators import DEMO_PARK

    site = (site or DEMO_PARK).resolve()
    past = _History.plan(site, history_days) if history_days > 0 else None
    if api_port == 0 or tcp_open("127.0.0.1", api_port):
        if api_port:
            print(f"port {api_port} is taken; using a free one")
        api_port = free_port()
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    children: list[Child] = []
    code = 0
    try:
        with ExitStack() as exits:
            root = state_dir or Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="pw-")))
            logs = root / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            try:
                print("starting Mosquitto and InfluxDB …", flush=True)
                stack = exits.enter_context(LocalStack(root))
                ingest_http = free_port()
                analytics_http = free_port()

                def start(name: str, args: list[str], env: dict[str, str]) -> None:
                    log = logs / f"{name}.log"
                    proc = spawn([sys.executable, "-m", "parkwatch_cli", *args], log, env=env)
                    children.append(Child(name, proc, log))

                start(
                    "ingest",
                    ["ingest"],
                    _service_env(
                        "PW_INGEST_",
                        stack,
                        site,
                        client_id="demo-ingest-0",
                        http_port=str(ingest_http),
                    ),
                )
                start(
                    "api",
                    ["api", "--port", str(api_port)],
                    _service_env("PW_API_", stack, site),
                )
                api = f"http://127.0.0.1:{api_port}"
                _wait_http(f"{api}/health", children)
                _wait_http(f"http://127.0.0.1:{ingest_http}/health", children)
                if past is not None:
                    past.publish(stack, logs, children)
                analytics_env = _service_env(
                    "PW_ANALYTICS_",
                    stack,
                    site,
                    http_port=str(analytics_http),
                    state_dir=str(root / "analytics"),
                )
                if past is not None:  # the refill at start-up reads the whole history back
                    analytics_env["PW_ANALYTICS_WARMUP_S"] = str(past.warmup_s())
                    analytics_env["PW_ANALYTICS_REBUILD_S"] = str(past.warmup_s())
                start("analytics", ["analytics"], analytics_env)
                # the refill of days of history takes a while on a busy machine
                _wait_http(
                    f"http://127.0.0.1:{analytics_http}/health",
                    children,
                    timeout=30.0 if past is None else 900.0,
                )
                exits.enter_context(_AlertPrinter(stack.mqtt_url, site))
                # one factory's meters are real Modbus TCP devices read by a real edge agent;
                # the other gateways publish straight from the simulator
                gateway_yaml = root / "edge" / f"{MODBUS_GATEWAY}.yaml"
                simulate = [
                    "simulate",
                    "--site",
                    str(site),
                    "--mqtt-url",
                    stack.mqtt_url,
                    "--interval",
                    str(interval),
                ]
                start(
                    "modbus-meters",
                    [
                        *simulate,
                        "--modbus-gateway",
                        MODBUS_GATEWAY,
                        "--modbus-port",
                        str(free_port()),
                        "--gateway-config",
                        str(gateway_yaml),
                    ],
                    dict(os.environ),
                )
                _wait_file(gateway_yaml, children)
                start("edge", ["edge", "--config", str(gateway_yaml)], dict(os.environ))
                # the Modbus meters inject no faults: the simulator keeps them off that gateway
                injected = [*simulate, "--exclude-gateway", MODBUS_GATEWAY]
                truth = root / "ground_truth.jsonl"
                if past is not None:
                    injected += past.live_args(faults is None and not random_faults, root)
                if faults is None and not random_faults and past is not None:
                    injected += ["--ground-truth", str(truth)]
                elif faults is not None:
                    injected += ["--faults", str(faults.resolve()), "--ground-truth", str(truth)]
                elif random_faults:
                    within = duration or RANDOM_FAULTS_WITHIN_S
                    injected += ["--random-faults", "--faults-within", str(within)]
                    injected += ["--ground-truth", str(truth)]
                start("simulate", injected, dict(os.environ))
                first = httpx.get(f"{api}/parks", timeout=5).json()[0]
                park = first["park"]
                # the accounting's month, on the park's clock
                month = datetime.now(ZoneInfo(first["timezone"])).strftime("%Y-%m")
                print(
                    f"""
    parkwatch demo is running on the simulated park '{park}'
      API            {api}/docs   (interactive)   {api}/health
      parks          {api}/parks
      meters         {api}/parks/{park}/meters
      latest         {api}/parks/{park}/meters/park-main/latest
      series         {api}/parks/{park}/meters/park-main/series?quantity=p_kw&every=1m
      accounting     {api}/parks/{park}/accounting/summary?period={month}   (rollups each minute)
                     {api}/parks/{park}/accounting/report?month={month}&lang=zh   (&format=pdf)
      ingest         http://127.0.0.1:{ingest_http}/health   http://127.0.0.1:{ingest_http}/metrics
      analytics      http://127.0.0.1:{analytics_http}/health   http://127.0.0.1:{analytics_http}/metrics
      alerts         mosquitto_sub -p {stack.mosquitto.port} -t 'pw/v1/{park}/alerts/#' -v
                     (and InfluxDB measurement 'anomaly')
      Modbus meters  {MODBUS_GATEWAY}'s meters are Modbus TCP devices, read by `parkwatch edge`
                     (config: {gateway_yaml})
      MQTT broker    {stack.mqtt_url}   (mosquitto_sub -p {stack.mosquitto.port} -t 'pw/v1/#' -v)
      InfluxDB       {stack.influx_url} (database 'parkwatch')
      logs           {logs}{_faults_line(faults, random_faults, truth)}{_history_line(past)}
    {f"Stops after {duration:.0f} s; " if duration else ""}Ctrl-C stops everything.
    """,
                    flush=True,
                )
                started = time.monotonic()
                next_report = started + PROGRESS_EVERY_S
                while duration is None or time.monotonic() - started < duration:
                    time.sleep(0.2)
                    for child in children:
                        if child.proc.poll() is not None:
                            print(f"\n{child.name} exited with {child.proc.returncode}:")
                            print(_tail(child.log))
                            return 1
                    if time.monotonic() >= next_report:
                        next_report += PROGRESS_EVERY_S
                        _report(api, park, stack.influx_url, time.monotonic() - started)
            except _StopRequestedError as why:
                print(f"\n{why}: stopping …", flush=True)
            except Exception as exc:
                print(f"demo failed: {exc}", file=sys.stderr)
                code = 1
            finally:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                for child in reversed(children):  # producers first, then consumers
                    stop_process(child.proc)
                # leaving the ExitStack stops InfluxDB and Mosquitto and removes the temp dir
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("stopped: all services and servers are down.", flush=True)
    return code


def _history_line(past: _History | None) -> str:
    if past is None:
        return ""
    return (
        f"\n      history        {past.days:g} days, analysed at start-up; live since "
        f"{past.local(past.live_ms)} (caught up at once: a backlog, so each gateway's "
        "late_batches alert stays open until it is in)"
        + "".join(f"\n      scheduled      {f}" for f in past.faults_text)
    )


def _faults_line(faults: Path | None, random_faults: bool, truth: Path) -> str:
    if faults is None and not random_faults:
        return ""
    what = f"from {faults}" if faults is not None else "at random (schedule in logs/simulate.log)"
    return f"\n      faults         injected {what}; ground truth: {truth}"


@dataclass
class _History:
    """The demo park's past: when it starts, when the live run takes over, what happens."""

    site: Path
    park: Park
    days: float
    start_ms: int  # a local midnight
    live_ms: int  # the live simulator publishes from here (the live day's local midnight)
    faults: list[Fault]
    excluded: frozenset[str]

    @classmethod
    def plan(cls, site: Path, least_days: float) -> _History:
        from simulators.faults import FaultKind, fault_targets, gateways_touched
        from simulators.layout import build_layout

        park = Park.from_yaml(site)
        now_ms = int(time.time() * 1000)
        live = datetime.fromtimestamp(now_ms / 1000 - CATCH_UP_H * 3600, park.zone).date()
        # enough whole days before the live run's day for 3 of its kind (the leak baselines
        # never mix workdays and rest days: a Monday needs last Wednesday to Friday)
        days = max(1, math.ceil(least_days))
        while (
            sum(is_workday(live - timedelta(d)) == is_workday(live) for d in range(1, days + 1)) < 3
        ):
            days += 1
        midnight = datetime.combine(live - timedelta(days), datetime.min.time(), park.zone)
        start_ms = int(midnight.timestamp() * 1000)
        # the live run takes over at the live day's midnight (6 to 30 hours ago): its night is
        # where the burst is scheduled, so that it stands out whatever the time of day the demo
        # starts (an afternoon burst of a quarter of a district's flow can take longer than six
        # hours of data to stand out against three days' afternoons)
        live_midnight = datetime.combine(live, datetime.min.time(), park.zone)
        live_ms = int(live_midnight.timestamp() * 1000)
        excluded = frozenset({MODBUS_GATEWAY})
        lay = build_layout(park)
        faults: list[Fault] = []
        # a burst of a quarter of a zone's flow, and a flue-gas temperature step, in the live
        # run's first hours: both are found within hours of data, minutes of the demo. On
        # whole local hours: the detectors judge hourly means, and the first hour's estimate
        # is then the fault's whole size, not the part of the hour it was there
        recent = datetime.fromtimestamp(now_ms / 1000 - CATCH_UP_H * 3600, park.zone)
        next_hour = recent.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        starts = {  # the burst at 01:00 of the live night, the flue step in the last hours
            FaultKind.WATER_BURST: live_ms + 3_600_000,
            FaultKind.FLUE_TEMP_RISE: int(next_hour.timestamp() * 1000),
        }
        wanted = {FaultKind.WATER_BURST: 0.25, FaultKind.FLUE_TEMP_RISE: 40.0}
        for kind, size in wanted.items():
            for target in fault_targets(park)[::-1]:
                if target.kind is not kind:
                    continue
                fault = Fault(
                    kind,
                    starts[kind],
                    magnitude=size * target.scale if target.field == "zone" else size,
                    zone=target.name if target.field == "zone" else None,
                    meter=target.name if target.field == "meter" else None,
                )
                if not excluded & gateways_touched(lay, fault):
                    faults.append(fault)
                    break
        return cls(site, park, days, start_ms, live_ms, faults, excluded)

    def local(self, t_ms: int) -> str:
        return datetime.fromtimestamp(t_ms / 1000, self.park.zone).strftime("%Y-%m-%d %H:%M %Z")

    @property
    def faults_text(self) -> list[str]:
        return [
            f"{f.kind} at {f.zone or f.meter} from {self.local(f.start_ms)} "
            f"({f.magnitude:.3g} {UNITS[f.kind]})"
            for f in self.faults
        ]

    def warmup_s(self) -> float:
        return (time.time() * 1000 - self.start_ms) / 1000 + 3600

    def _schedule(self, root: Path) -> Path:
        path = root / "demo_faults.json"
        path.write_text(json.dumps([dataclasses.asdict(f) for f in self.faults], default=str))
        return path

    def _common(self, root: Path, scheduled: bool = True) -> list[str]:
        """What both runs share, so that the live one goes on exactly from the history."""
        args = ["--start-ms", str(self.start_ms), "--catch-up-step", str(HISTORY_STEP_S)]
        if scheduled:
            args += ["--faults", str(self._schedule(root))]
        for gateway in sorted(self.excluded):
            args += ["--exclude-gateway", gateway]
        return args

    def publish(self, stack: LocalStack, logs: Path, children: list[Child]) -> None:
        """The history through the broker and ingest into InfluxDB, until the live start."""
        print(
            f"publishing {self.days:g} days of history (since {self.local(self.start_ms)}) …",
            flush=True,
        )
        argv = [sys.executable, "-m", "parkwatch_cli", "simulate", "--site", str(self.site)]
        argv += ["--mqtt-url", stack.mqtt_url, *self._common(logs.parent)]
        argv += ["--until-ms", str(self.live_ms), "--fast"]
        # (its faults come after it: the live run's ground truth is the one that tells them)
        argv += ["--ground-truth", str(logs / "history_ground_truth.jsonl")]
        argv += ["--interval", str(HISTORY_STEP_S)]
        proc = spawn(argv, logs / "history.log", env=dict(os.environ))
        while proc.poll() is None:
            for child in children:
                if child.proc.poll() is not None:
                    stop_process(proc)
                    raise RuntimeError(f"{child.name} exited early:\n{_tail(child.log)}")
            time.sleep(0.2)
        if proc.returncode != 0:
            raise RuntimeError(f"the history failed:\n{_tail(logs / 'history.log')}")
        # ingest has it all once its count of stored points stands still
        stored, still = -2, 0
        while still < 3:
            time.sleep(1.0)
            now = _count_points(stack.influx_url)
            still = still + 1 if now == stored else 0
            stored = now
        print(f"history stored ({stored:,} readings); analytics refills from it …", flush=True)

    def live_args(self, scheduled: bool, root: Path) -> list[str]:
        """The live simulator goes on from the history (same model, counters and seq): it
        steps through the history quietly, then publishes from the live start."""
        return [*self._common(root, scheduled), "--quiet-until-ms", str(self.live_ms)]


class _AlertPrinter:
    """Prints the alerts analytics publishes as they come (opened and closed, with their
    estimates), from a broker client of its own."""

    def __init__(self, mqtt_url: str, site: Path) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        park = Park.from_yaml(site)
        url = urlsplit(mqtt_url)
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="demo-alerts")
        self.client.on_message = lambda _c, _u, message: self._show(bytes(message.payload))
        self.client.connect(url.hostname or "127.0.0.1", url.port or 1883)
        self.client.subscribe(topics.alerts_filter(park.park), qos=1)

    def __enter__(self) -> _AlertPrinter:
        self.client.loop_start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    @staticmethod
    def _show(payload: bytes) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            return
        if event.get("state") not in ("opened", "closed"):
            return
        print(f"  ALERT {describe_alert(event)}", flush=True)


def describe_alert(event: dict[str, Any]) -> str:
    """One line an operator reads: what, where, how much, since when."""
    place = event.get("zone") or event.get("meter")
    line = f"{event.get('state')}: {event.get('kind')} at {place} (since {event.get('start')})"
    estimate = event.get("estimate")
    if isinstance(estimate, dict):
        line += f": {estimate.get('value')} {estimate.get('unit')}"
        if estimate.get("per_day") is not None:
            line += f", {estimate['per_day']} {estimate.get('per_day_unit')}"
        if estimate.get("cny_per_day") is not None:
            line += f", ¥{estimate['cny_per_day']:,.0f} a day"
    return line


def _wait_file(path: Path, children: list[Child], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        for child in children:
            if child.proc.poll() is not None:
                raise RuntimeError(f"{child.name} exited early:\n{_tail(child.log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} was not written within {timeout:.0f}s")
        time.sleep(0.1)


def _wait_http(url: str, children: list[Child], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children:
            if child.proc.poll() is not None:
                raise RuntimeError(f"{child.name} exited early:\n{_tail(child.log)}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become healthy within {timeout:.0f}s")


def _report(api: str, park: str, influx_url: str, elapsed: float) -> None:
    points = _count_points(influx_url)
    try:
        latest = httpx.get(f"{api}/parks/{park}/meters/park-main/latest", timeout=5)
        power = latest.json()["values"].get("p_kw") if latest.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError):
        power = None
    shown = f"{power:,.0f} kW" if power is not None else "—"
    print(
        f"[{elapsed:5.0f}s] readings stored: {points:>7,}   park intake power: {shown}"
        f"   alerts: {_count_alerts(influx_url)}",
        flush=True,
    )


def _count_alerts(influx_url: str) -> str:
    """Events analytics has raised so far, and how many are still open (one point per event)."""
    statement = (
        'SELECT count("id") FROM "anomaly"; SELECT count("id") FROM "anomaly" WHERE "open" = true'
    )
    try:
        response = httpx.post(
            f"{influx_url}/query", params={"db": "parkwatch"}, data={"q": statement}, timeout=5
        )
        results = response.json().get("results", [])
    except (httpx.HTTPError, ValueError):
        return "—"
    counts = [sum(int(row[1]) for s in r.get("series", []) for row in s["values"]) for r in results]
    if len(counts) != 2:
        return "—"
    return f"{counts[0]} ({counts[1]} open)"
