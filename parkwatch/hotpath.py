"""Ingest's per-reading loops (and the scan of a plain message straight to its lines) and
its MQTT client's PUBLISH reading, compiled
(``parkwatch/_hotpath.pyx``, built when the project is installed), or None for each where the
extension is not built: a source tree without the build step then runs the Python
references, which give the same results (``tests/test_hotpath*.py`` hold the two to it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _compiled() -> dict[str, Callable[..., Any]]:
    try:
        from parkwatch import _hotpath
    except ImportError:  # pragma: no cover - only where the extension is not built
        return {}
    return {
        "check_plain": _hotpath.check_plain,
        "flag_counters": _hotpath.flag_counters,
        "encode_lines": _hotpath.encode_lines,
        "read_publishes": _hotpath.read_publishes,
        "scan_lines": _hotpath.scan_lines,
    }


_FUNCTIONS = _compiled()
COMPILED = bool(_FUNCTIONS)
check_plain: Callable[..., Any] | None = _FUNCTIONS.get("check_plain")
flag_counters: Callable[..., Any] | None = _FUNCTIONS.get("flag_counters")
encode_lines: Callable[..., Any] | None = _FUNCTIONS.get("encode_lines")
read_publishes: Callable[..., Any] | None = _FUNCTIONS.get("read_publishes")
scan_lines: Callable[..., Any] | None = _FUNCTIONS.get("scan_lines")
