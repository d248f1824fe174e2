"""The local stack: Mosquitto and InfluxDB as child processes with generated configs.

Used by ``parkwatch demo`` and by the test fixtures alike. Each server gets a state directory,
free loopback ports, a log file, and is stopped with SIGTERM (then SIGKILL) on exit. Children
are also asked to die with their parent (``PR_SET_PDEATHSIG``), so an interrupted or killed
launcher leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import getpass
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class StackError(RuntimeError):
    """A server of the local stack could not be found, started or reached."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_executable(name: str) -> str:
    # Debian installs mosquitto in /usr/sbin, which is not on a normal user's PATH
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if found is None:
        raise StackError(
            f"{name!r} not found: install Debian's package (apt-get install mosquitto influxdb), "
            "or run ./run.sh which does it for you"
        )
    return found


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: Sequence[str],
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child that logs to ``log_path`` and dies with this process."""
    log_file = open(log_path, "ab")  # noqa: SIM115 - the child owns it; closed below
    try:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            preexec_fn=_die_with_parent,
        )
    finally:
        log_file.close()


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int | None:
    """SIGTERM, wait, then SIGKILL; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("pid %d ignored SIGTERM for %.0fs; killing it", proc.pid, timeout)
            proc.kill()
            proc.wait(timeout=timeout)
    return proc.returncode


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_until(
    ready: Callable[[], bool],
    proc: subprocess.Popen[bytes],
    what: str,
    log_path: Path,
    timeout: float = 20.0,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{what} exited with {proc.returncode}:\n{_tail(log_path)}")
        if ready():
            return
        time.sleep(0.02)
    raise StackError(f"{what} did not answer within {timeout:.0f}s:\n{_tail(log_path)}")


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Mosquitto:
    state_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise StackError("mosquitto is not running")
        return self.proc.pid

    def config(self) -> str:
        data = self.state_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        return "\n".join(
            [
                # as root Mosquitto drops to user 'mosquitto', which cannot write our state dir
                f"user {getpass.getuser()}",
                f"listener {self.port} {self.host}",
                "allow_anonymous true",
                "persistence true",
                f"persistence_location {data}/",
                "autosave_interval 30",
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_timestamp_format %Y-%m-%dT%H:%M:%S",
                # the default of 1000 silently drops messages for a subscriber that is busy
                # writing to the database; a bounded but generous queue keeps them
                "max_queued_messages 1000000",
                "max_queued_bytes 0",
                "message_size_limit 16777216",
                "",
            ]
        )

    def start(self, timeout: float = 20.0) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)
        conf = self.state_dir / "mosquitto.conf"
        conf.write_text(self.config())
        log_path = self.state_dir / "mosquitto.log"
        self.proc = spawn([find_executable("mosquitto"), "-c", str(conf)], log_path)
        wait_until(
            lambda: tcp_open(self.host, self.port), self.proc, "mosquitto", log_path, timeout
        )
        log.info("mosquitto listening on %s (pid %d)", self.url, self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


@dataclass
class InfluxDB:
    state_dir: Path
    port: int = 0
    rpc_port: int = 0
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise StackError("influxd is not running")
        return self.proc.pid

    def config(self) -> str:
        d = self.state_dir
        return f"""\
reporting-disabled = true
bind-address = "{self.host}:{self.rpc_port}"

[meta]
  dir = "{d / "meta"}"

[data]
  dir = "{d / "data"}"
  wal-dir = "{d / "wal"}"
  query-log-enabled = false
  cache-max-memory-size = "1g"
  max-series-per-database = 0
  max-values-per-tag = 0

[coordinator]
  query-timeout = "60s"

[retention]
  enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "{self.host}:{self.port}"
  log-enabled = false
  max-body-size = 0

[continuous_queries]
  enabled = false
"""

    def start(self, timeout: float = 30.0) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)
        if not self.rpc_port:
            self.rpc_port = free_port(self.host)
        conf = self.state_dir / "influxdb.conf"
        conf.write_text(self.config())
        log_path = self.state_dir / "influxd.log"
        env = {**os.environ, "INFLUXDB_DATA_QUERY_LOG_ENABLED": "false"}
        self.proc = spawn([find_executable("influxd"), "run", "-config", str(conf)], log_path, env)
        wait_until(self._ping, self.proc, "influxd", log_path, timeout)
        log.info("influxd listening on %s (pid %d)", self.url, self.proc.pid)

    def _ping(self) -> bool:
        try:
            return httpx.get(f"{self.url}/ping", timeout=0.5).status_code == 204
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=20.0)
            self.proc = None


@dataclass
class LocalStack:
    """Mosquitto + InfluxDB in ``state_dir``; a context manager that always stops both."""

    state_dir: Path
    mqtt_port: int = 0
    influx_port: int = 0
    mosquitto: Mosquitto = field(init=False)
    influxdb: InfluxDB = field(init=False)

    def __post_init__(self) -> None:
        self.mosquitto = Mosquitto(self.state_dir / "mosquitto", port=self.mqtt_port)
        self.influxdb = InfluxDB(self.state_dir / "influxdb", port=self.influx_port)

    @property
    def mqtt_url(self) -> str:
        return self.mosquitto.url

    @property
    def influx_url(self) -> str:
        return self.influxdb.url

    def start(self) -> LocalStack:
        try:
            self.mosquitto.start()
            self.influxdb.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            self.influxdb.stop()
        finally:
            self.mosquitto.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def local_stack(state_dir: Path) -> Iterator[LocalStack]:
    with LocalStack(state_dir) as stack:
        yield stack
