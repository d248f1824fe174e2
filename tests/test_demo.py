"""``parkwatch demo`` as a user runs it: it starts everything, readings flow (also through the
Modbus meters and the edge agent), the API answers with them, and when it stops no process is
left behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


@pytest.mark.integration
def test_demo_runs_and_cleans_up(tmp_path: Path) -> None:
    state = tmp_path / "demo-state"
    argv = [sys.executable, "-m", "parkwatch_cli", "demo", "--duration", "25", "--interval", "1"]
    argv += ["--port", "0", "--state-dir", str(state)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    stdout = proc.stdout
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")))
    reader.start()
    try:
        api = None
        deadline = time.monotonic() + 60
        while api is None and time.monotonic() < deadline:
            match = re.search(r"API\s+(http://\S+)/docs", "".join(lines))
            api = match.group(1) if match else None
            time.sleep(0.2)
        assert api is not None, "".join(lines)
        # every service that has a /health prints it, and it answers (issue 11, item 10)
        health = re.findall(r"(http://\S+/health)\b", "".join(lines))
        assert len(health) >= 3, "".join(lines)  # the API, ingest and analytics
        for url in health:
            assert httpx.get(url, timeout=5).status_code == 200, url
        time.sleep(8)  # a few poll cycles
        modbus = httpx.get(f"{api}/parks/lj-demo/meters/steelco-main/latest", timeout=5)
        assert modbus.status_code == 200, modbus.text  # Modbus meter → edge agent → ingest
        assert modbus.json()["values"]["p_kw"] > 0
        direct = httpx.get(f"{api}/parks/lj-demo/meters/chemco-water/latest", timeout=5)
        assert direct.status_code == 200, direct.text
        assert proc.wait(timeout=90) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=10)
    output = "".join(lines)
    counts = [int(n.replace(",", "")) for n in re.findall(r"readings stored:\s+([\d,]+)", output)]
    assert len(counts) >= 3, output
    assert counts == sorted(counts), output
    assert counts[-1] > counts[0], output
    assert "stopped: all services and servers are down." in output
    assert _processes_mentioning(str(state)) == []
