"""``parkwatch demo``: the local stack plus every service on a simulated park.

Each service runs as its own child process (``python -m parkwatch_cli <service>``), as it would
in production, configured through its environment variables. The launcher prints where to
look, shows progress, and stops everything — children first, then the servers — on Ctrl-C,
SIGTERM or after ``--duration``. Children are also bound to die with the launcher.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from zoneinfo import ZoneInfo

import httpx

from parkwatch.stack import LocalStack, free_port, spawn, stop_process, tcp_open

PROGRESS_EVERY_S = 5.0
MODBUS_GATEWAY = "gw-steelco"
RANDOM_FAULTS_WITHIN_S = 3600.0  # an open-ended demo's random faults come in its first hour


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
) -> int:
    from simulators import DEMO_PARK

    site = (site or DEMO_PARK).resolve()
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
                    "analytics",
                    ["analytics"],
                    _service_env(
                        "PW_ANALYTICS_",
                        stack,
                        site,
                        http_port=str(analytics_http),
                        state_dir=str(root / "analytics"),
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
                _wait_http(f"http://127.0.0.1:{analytics_http}/health", children)
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
                if faults is not None:
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
      logs           {logs}{_faults_line(faults, random_faults, truth)}
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


def _faults_line(faults: Path | None, random_faults: bool, truth: Path) -> str:
    if faults is None and not random_faults:
        return ""
    what = f"from {faults}" if faults is not None else "at random (schedule in logs/simulate.log)"
    return f"\n      faults         injected {what}; ground truth: {truth}"


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
