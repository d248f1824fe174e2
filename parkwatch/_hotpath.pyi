"""Types of the compiled loops (``_hotpath.pyx``); see :mod:`parkwatch.hotpath`."""

from typing import Any

def check_plain(
    readings: list[Any], meters: Any, newest_ok: int, accepted: type[Any]
) -> list[Any] | None: ...
def flag_counters(
    last: dict[str, dict[str, list[float]]],
    readings: list[Any],
    counters: frozenset[str],
    not_counted: list[float],
    bad: str,
    ok: str,
    decreased: str,
    decrease: type[Any],
) -> list[Any]: ...
def encode_lines(readings: list[Any], quality_field: dict[str, str]) -> list[str] | None: ...
def read_publishes(
    data: bytes | bytearray | memoryview, offset: int, message: type[Any]
) -> tuple[list[Any], int, int]: ...

class Scanned:
    seq: int
    def commit(
        self,
        quality_field: dict[str, str],
        last: dict[str, dict[str, list[float]]],
        counters: frozenset[str],
        not_counted: list[float],
        decrease: type[Any],
    ) -> tuple[list[str], int, int, list[Any]]: ...

def scan_message(
    payload: bytes,
    gateway: str,
    meters: Any,
    newest_ok: int,
    max_readings: int,
    qualities: tuple[str, ...],
) -> Scanned | None: ...

SCAN_FRESH: int
SCAN_GAVE_UP: int
SCAN_SEQ: int
SCAN_SEQ_FAILED: int
SCAN_COMMIT_FAILED: int
SCAN_RUN_VERSION: int

def scan_run(
    chunk: list[Any],
    index: int,
    sources: dict[str, Any],
    max_bytes: int,
    newest_ok: int,
    max_readings: int,
    qualities: tuple[str, ...],
    commit_args: tuple[object, ...],
    next_in_line: Any,
    at: float,
    handled: list[Any],
    lines: list[str],
    show_decreases: Any,
    tracker: Any = None,
) -> tuple[int, int, Scanned | None, Exception | None, int, int]: ...
def pubacks(messages: list[Any]) -> tuple[bytes, int] | None: ...
def join_lines(lines: list[str]) -> bytes | None: ...
