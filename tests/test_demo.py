"""``parkwatch demo`` as a user runs it: it starts everything, readings flow (also through the
Modbus meters and the edge agent), the API answers with them, and when it stops no process is
left behind."""

from __future__ import annotations

import os
import re
import signal
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
    argv += ["--port", "0", "--state-dir", str(state), "--history", "0"]  # a cold start
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


@pytest.mark.integration
def test_demo_warms_up_and_raises_leak_and_waste_heat_alerts_live(tmp_path: Path) -> None:
    """Issue 8's "done when": the demo publishes days of history first, analytics refills
    from it, and the burst and flue-gas step scheduled in the live run come as alerts on the
    broker, printed with their estimates. Stopped as soon as both are in."""
    state = tmp_path / "demo-state"
    argv = [sys.executable, "-m", "parkwatch_cli", "demo", "--duration", "900", "--interval", "5"]
    argv += ["--port", "0", "--state-dir", str(state)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    stdout = proc.stdout
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")))
    reader.start()
    burst = re.compile(r"ALERT opened: water_burst at (\S+) \(since [^)]*\): ([\d.]+) m³/h")
    flue = re.compile(r"ALERT opened: flue_temp_rise at (\S+) \(since [^)]*\): ([\d.]+) K")
    try:
        deadline = time.monotonic() + 1200
        while time.monotonic() < deadline and proc.poll() is None:
            output = "".join(lines)
            if burst.search(output) and flue.search(output):
                break
            time.sleep(1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=10)
    output = "".join(lines)
    scheduled = dict(re.findall(r"scheduled\s+(\w+) at (\S+) from", output))
    assert set(scheduled) == {"water_burst", "flue_temp_rise"}, output
    found_burst, found_flue = burst.search(output), flue.search(output)
    assert found_burst is not None, output
    assert found_flue is not None, output
    # the right place, and estimates of the size scheduled (a quarter of the zone's flow; 40 K)
    assert found_burst.group(1) == scheduled["water_burst"], output
    assert found_flue.group(1) == scheduled["flue_temp_rise"], output
    scheduled_size = re.search(r"water_burst at \S+ from .*\(([\d.]+) m3/h\)", output)
    assert scheduled_size is not None, output
    size = float(scheduled_size.group(1))
    assert 0.5 * size < float(found_burst.group(2)) < 1.5 * size, output
    assert 30 < float(found_flue.group(2)) < 50, output
    assert "history stored" in output
    assert _processes_mentioning(str(state)) == []
