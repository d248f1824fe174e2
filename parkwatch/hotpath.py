"""Ingest's per-reading loops (and the scan of a plain message straight to its lines), its
MQTT client's PUBLISH reading and acknowledgements, and joining a batch into the body the
InfluxDB writer sends, compiled
(``parkwatch/_hotpath.pyx``, built when the project is installed), or None for each where the
extension is not built: a source tree without the build step then runs the Python
references, which give the same results (``tests/test_hotpath*.py`` hold the two to it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_NAMES = (
    "check_plain",
    "flag_counters",
    "encode_lines",
    "read_publishes",
    "scan_message",
    "scan_run",
    "pubacks",
    "join_lines",
)


def _compiled() -> dict[str, Callable[..., Any]]:
    try:
        from parkwatch import _hotpath
    except ImportError:  # pragma: no cover - only where the extension is not built
        return {}
    # a stale build (from an older _hotpath.pyx) may lack a function: that one then runs in
    # Python, the others compiled
    found = {name: getattr(_hotpath, name, None) for name in _NAMES}
    if getattr(_hotpath, "SCAN_RUN_VERSION", 1) < SCAN_RUN_VERSION:
        found["scan_run"] = None  # its arguments are not ingest's now
    return {name: function for name, function in found.items() if function is not None}


# where scan_run stopped with the message it hands back (``_hotpath.pyx`` has the same
# numbers; tests/test_hotpath_run.py holds them to it)
SCAN_FRESH = 0  # nothing done for it (or the chunk's end)
SCAN_GAVE_UP = 1  # the scan gave up on it: the reference decoding next
SCAN_SEQ = 2  # scanned; observe_next said no, so the seq tracker's full observe next
SCAN_SEQ_FAILED = 3  # scanned; observe_next raised
SCAN_COMMIT_FAILED = 4  # scanned and its seq tracked; the commit raised

# scan_run's arguments as ingest gives them (the seq tracker last)
SCAN_RUN_VERSION = 2

_FUNCTIONS = _compiled()
# all of them: ingest warns at start otherwise (a stale build too)
COMPILED = len(_FUNCTIONS) == len(_NAMES)
check_plain: Callable[..., Any] | None = _FUNCTIONS.get("check_plain")
flag_counters: Callable[..., Any] | None = _FUNCTIONS.get("flag_counters")
encode_lines: Callable[..., Any] | None = _FUNCTIONS.get("encode_lines")
read_publishes: Callable[..., Any] | None = _FUNCTIONS.get("read_publishes")
scan_message: Callable[..., Any] | None = _FUNCTIONS.get("scan_message")
scan_run: Callable[..., Any] | None = _FUNCTIONS.get("scan_run")
pubacks: Callable[..., Any] | None = _FUNCTIONS.get("pubacks")
join_lines: Callable[..., Any] | None = _FUNCTIONS.get("join_lines")
