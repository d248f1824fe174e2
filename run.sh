#!/usr/bin/env bash
# parkwatch's one entry point for a new machine: installs what is missing (Debian's mosquitto
# and influxdb, a Python >= 3.11 virtual environment with the project), then runs
#   ./run.sh demo [--duration S]   the whole platform on a simulated park
#   ./run.sh test [pytest args]    lint, type checks and the test suite
#   ./run.sh bench ingest          the ingest benchmark
#   ./run.sh parkwatch ARGS        any parkwatch command
# Works as root or with sudo on Debian 12 and Ubuntu 22.04 (both ship mosquitto and influxdb).
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
APT_UPDATED=""

apt_install() {
  if [ -z "$APT_UPDATED" ]; then
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  echo "installing Debian packages: $*" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >&2
}

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

python_ok() {
  "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

# Python.h of the interpreter "$1" (Debian ships it in pythonX.Y-dev)
python_headers() {
  "$1" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null
}

find_python() {
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

ensure_system() {
  local missing=()
  have mosquitto || missing+=(mosquitto mosquitto-clients)
  have influxd || missing+=(influxdb)
  have socat || missing+=(socat)           # serial-line pairs for the Modbus RTU tests
  have openssl || missing+=(openssl)       # TLS certificates for the broker tests
  [ -e /usr/share/zoneinfo/Asia/Shanghai ] || missing+=(tzdata)
  # Chinese glyphs for the accounting's PDF reports (a plain TrueType file fpdf2 can embed)
  [ -e /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf ] || missing+=(fonts-droid-fallback)
  [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
  # ingest's compiled loops (parkwatch/_hotpath.pyx) are built at install time: a C compiler,
  # the C library's headers (only recommended by gcc) and those of the Python the venv is made
  # from. Without them the install still works and ingest runs its slower Python loops.
  have gcc || have cc || missing+=(gcc)
  [ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
  local py
  if py="$(find_python)"; then
    python_headers "$py" || missing+=("$py-dev")    # python3-dev, python3.12-dev, …
  elif python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    missing+=(python3-venv)                          # Debian splits venv/ensurepip out of python3
    python_headers python3 || missing+=(python3-dev)
  else
    missing+=(python3.11 python3.11-venv python3.11-dev)  # e.g. Ubuntu 22.04 ships 3.10
  fi
  if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

ensure_venv() {
  local stamp=.venv/.parkwatch-installed
  if [ ! -x .venv/bin/python ]; then
    "$(find_python)" -m venv .venv
  fi
  # the compiled loops are built at install time: a changed .pyx needs it too
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ parkwatch/_hotpath.pyx -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip >&2
    .venv/bin/python -m pip install -q -e '.[dev]' >&2
    touch "$stamp"
  fi
}

cmd="${1:-help}"
[ $# -gt 0 ] && shift

case "$cmd" in
  demo)
    ensure_system; ensure_venv
    exec .venv/bin/parkwatch demo "$@"
    ;;
  test)
    ensure_system; ensure_venv
    .venv/bin/ruff check .
    .venv/bin/ruff format --check .
    .venv/bin/mypy
    # pytest exits 5 when it collected no test: that is a failure here, like any non-zero
    .venv/bin/python -m pytest "$@"
    ;;
  bench)
    ensure_system; ensure_venv
    exec .venv/bin/parkwatch bench "$@"
    ;;
  parkwatch)
    ensure_system; ensure_venv
    exec .venv/bin/parkwatch "$@"
    ;;
  setup)
    ensure_system; ensure_venv
    ;;
  *)
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    ;;
esac
