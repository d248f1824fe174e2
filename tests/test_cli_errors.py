"""The ``parkwatch`` command answers a user's mistake with one or two lines and a non-zero exit;
the traceback only with ``--debug`` (issue 11, item 7)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from parkwatch.stack import free_port
from parkwatch_cli.app import app


def _invoke(args: list[str], env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, args, env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result.exit_code, result.stderr.splitlines()


def _bad_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "broken.yaml"
    path.write_text("park: x\n  enterprises: [\n")
    return path


def _bad_park(tmp_path: Path) -> Path:
    path = tmp_path / "park.yaml"
    path.write_text("park: x\nname: 1\n")
    return path


@pytest.mark.parametrize(
    ("args", "env", "code", "says"),
    [
        (["simulate", "--site", "/nonexistent.yaml"], {}, 2, "/nonexistent.yaml: No such file"),
        (["simulate", "--mqtt-url", "http://x"], {}, 2, "mqtt.url (got 'http://x'): expected"),
        (["ingest", "--mqtt-url", "http://x", "--site", "DEMO"], {}, 2, "mqtt.url"),
        # an InfluxDB URL it cannot use ran the service, then answered 503 "database unavailable"
        (["api", "--influx-url", "ftp://x", "--site", "DEMO"], {}, 2, "influx.url (got 'ftp://x')"),
        (["ingest", "--influx-url", "localhost:8086", "--site", "DEMO"], {}, 2, "influx.url"),
        (
            ["analytics", "--influx-url", "http://x", "--site", "DEMO"],
            {"PW_ANALYTICS_TICK_S": "-1"},
            2,
            "tick_s (got '-1')",
        ),
        (["ingest", "--site", "DEMO"], {"PW_INGEST_BATCH_LINES": "0"}, 2, "batch_lines"),
        (["api", "--site", "DEMO"], {"PW_API_PORT": "70000"}, 2, "port (got '70000')"),
        (["ingest", "--site", "BAD_YAML"], {}, 2, "broken.yaml: not valid YAML (line 2)"),
        (["api", "--site", "BAD_PARK"], {}, 2, "park.yaml: not a usable park.yaml: name"),
        (["simulate", "--site", "BAD_PARK", "--history", "1", "--out", "OUT"], {}, 2, "name"),
        (["edge", "--config", "BAD_YAML"], {}, 2, "broken.yaml: not valid YAML (line 2)"),
        (
            ["replay", "--park", "BAD_PARK", "--readings", "OUT", "--out", "OUT"],
            {},
            2,
            "park.yaml: not a usable park.yaml: name (got 1)",
        ),
        # item 8: a history must be at least one step long (-1 wrote its start after its end,
        # 0 wrote one poll cycle, both exiting 0)
        (["simulate", "--history", "-1", "--out", "OUT"], {}, 2, "-1.0 days is not at least"),
        (["simulate", "--history", "0", "--out", "OUT"], {}, 2, "0.0 days"),
        (["simulate", "--history", "nan", "--out", "OUT"], {}, 2, "nan days"),
        (["simulate", "--history", "0.0005", "--out", "OUT"], {}, 2, "one step (60.0 s)"),
        (["simulate", "--history", "1", "--step", "0", "--out", "OUT"], {}, 2, "at least 0.001"),
        # a live poll interval of 0 divided by zero (one line, but a ZeroDivisionError)
        (["simulate", "--interval", "0", "--duration", "1"], {}, 2, "--interval must be"),
        (["simulate", "--interval", "-1", "--load"], {}, 2, "--interval must be"),
        # a load of no gateways or no meters published nothing and exited 0
        (["simulate", "--load", "--gateways", "0"], {}, 2, "--gateways and --meters of at least"),
        (["simulate", "--load", "--meters", "0"], {}, 2, "not 10 and 0"),
        (["simulate", "--load", "--rate", "-5"], {}, 2, "--rate must be"),
    ],
)
def test_a_mistake_is_a_line_or_two(
    args: list[str],
    env: dict[str, str],
    code: int,
    says: str,
    tmp_path: Path,
    demo_park_path: Path,
) -> None:
    files = {
        "DEMO": str(demo_park_path),
        "BAD_YAML": str(_bad_yaml(tmp_path)),
        "BAD_PARK": str(_bad_park(tmp_path)),
        "OUT": str(tmp_path / "out"),
    }
    exit_code, lines = _invoke([files.get(a, a) for a in args], env)
    assert exit_code == code, lines
    assert 1 <= len(lines) <= 2, lines
    assert lines[0].startswith("error: "), lines
    assert says in "\n".join(lines), lines


def test_debug_lets_the_traceback_through() -> None:
    for args, env in (
        (["--debug", "simulate", "--site", "/nonexistent.yaml"], {}),
        (["simulate", "--site", "/nonexistent.yaml"], {"PW_DEBUG": "1"}),
    ):
        result = CliRunner().invoke(app, args, env=env)
        assert result.exception is not None
        assert not isinstance(result.exception, SystemExit)
        assert isinstance(result.exception.__cause__, FileNotFoundError)


def test_simulate_without_a_broker_through_the_real_command() -> None:
    """Was 54 lines of MqttError traceback and exit 1 from an uncaught exception."""
    nobody = f"mqtt://127.0.0.1:{free_port()}"
    result = subprocess.run(
        [sys.executable, "-m", "parkwatch_cli", "simulate", "--mqtt-url", nobody],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = result.stderr.splitlines()
    assert result.returncode == 1, result.stderr
    assert lines == [
        "error: MQTT broker: [Errno 111] Connection refused "
        "(check --mqtt-url and that the broker runs)"
    ]


def test_a_history_of_one_step_is_written(tmp_path: Path) -> None:
    """The smallest history the check lets through: one step, its start before its end."""
    args = ["simulate", "--history", str(60 / 86_400), "--out", str(tmp_path), "--no-faults"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["end_ms"] - summary["start_ms"] == 60_000
    assert summary["rows"] > 0
