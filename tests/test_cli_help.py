"""``parkwatch … --help`` for every command: every option says what it is for, flags read as
flags (no ``--no-no-faults``), nothing is cut at 80 columns, and the services share their
options (issue 11, item 9)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from parkwatch_cli.app import app

ROOT = get_command(app)


def _commands(
    command: typer.core.TyperGroup | typer.core.TyperCommand, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], typer.core.TyperCommand | typer.core.TyperGroup]]:
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(ROOT))


def test_every_option_of_every_command_has_help() -> None:
    missing = [
        f"parkwatch {' '.join(path)} {param.opts[0]}"
        for path, command in COMMANDS.items()
        for param in command.params
        if param.param_type_name == "option" and not getattr(param, "help", None)
    ]
    assert missing == []


def test_flags_are_flags() -> None:
    negated_negatives = [
        f"parkwatch {' '.join(path)} {' / '.join(param.secondary_opts)}"
        for path, command in COMMANDS.items()
        for param in command.params
        if any(opt.startswith("--no-no-") for opt in param.secondary_opts)
    ]
    assert negated_negatives == []


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=lambda p: " ".join(p) or "parkwatch")
def test_help_fits_80_columns_without_cutting(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Usage: "), result.stdout
    cut = [line for line in lines[1:] if line.endswith(("...", "…"))]  # click's cut short help
    assert cut == [], result.stdout
    assert max(len(line) for line in lines) <= 80, result.stdout


def test_help_uses_a_wide_terminal() -> None:
    """Up to 120 columns when the terminal has them (click's default stops at 80); typer's
    CliRunner forces 80, so this runs the real command."""
    result = subprocess.run(
        [sys.executable, "-m", "parkwatch_cli", "simulate", "--help"],
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert 80 < max(len(line) for line in result.stdout.splitlines()) <= 120


def test_the_services_share_their_options() -> None:
    def options(name: str) -> set[str]:
        return {opt for param in COMMANDS[(name,)].params for opt in param.opts}

    common = {"--site", "--influx-url", "--database", "--log-level", "--json-logs"}
    mqtt_services = common | {"--mqtt-url", "--client-id", "--http-host", "--http-port"}
    assert mqtt_services <= options("ingest")
    assert mqtt_services <= options("analytics")
    assert common | {"--host", "--port"} <= options("api")
    # sharing the load or the parks among replicas, not only through the environment
    assert {"--share-group", "--park"} <= options("ingest")
