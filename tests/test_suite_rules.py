"""The suite's own rules (issue 11): plain ``pytest`` collects every file, a hang fails its test
after a generous timeout, and every test that starts a server carries the ``integration``
marker — enforced by tests/conftest.py, checked here on throwaway tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LISTENS = """
import socket

import pytest


def _listen() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()


def test_unmarked_listens() -> None:
    _listen()


@pytest.mark.integration
def test_marked_listens() -> None:
    _listen()


def test_uses_the_stack(stack) -> None:
    pass


def test_plain() -> None:
    assert True
"""


def test_plain_pytest_collects_every_file() -> None:
    """``pytest`` (not ``python -m pytest``) used to fail to import three files."""
    pytest_bin = Path(sys.executable).parent / "pytest"
    result = subprocess.run(
        [str(pytest_bin), "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "error" not in result.stdout.splitlines()[-1], result.stdout[-3000:]


def test_the_per_test_timeout_is_on(request: pytest.FixtureRequest) -> None:
    assert request.config.pluginmanager.hasplugin("timeout")
    assert int(request.config.getini("timeout")) == 300


def test_a_test_that_starts_a_server_must_be_marked(pytester: pytest.Pytester) -> None:
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    integration: starts a server\n")
    pytester.makepyfile(test_servers=LISTENS)

    everything = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "listens or plain")
    everything.assert_outcomes(passed=2, failed=1)
    everything.stdout.fnmatch_lines(["*test_unmarked_listens starts a server*integration*"])

    # a test that asks for the stack is integration without saying so: deselected, not started
    units = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-m", "not integration", "-v")
    units.stdout.fnmatch_lines(["*test_plain PASSED*"])
    assert "test_uses_the_stack" not in units.stdout.str()
    assert "test_marked_listens" not in units.stdout.str()
