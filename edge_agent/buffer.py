"""The gateway's disk write-ahead buffer: no batch is lost to a broker outage or a restart.

Every batch is committed to a SQLite database (WAL journal, ``synchronous=FULL`` so each commit
is fsynced) *before* it is published, and deleted only after the broker's PUBACK. After a
restart or a reconnect the publisher replays what is left, in ``seq`` order, behind the live
batches (``pending(since=…, before=…)`` reads either part). The sequence
counter lives in the same database, so ``seq`` keeps growing across restarts and the
receiving side can see gaps and replays.

Delivery is at least once: a batch whose PUBACK was lost with the connection is sent again
(ingest's writes are idempotent: same series, same timestamp).

Overflow policy: at most ``max_batches`` are kept; appending beyond that drops the *oldest*
batches (the newest data is the most useful to operators) and counts them in
``dropped_total``, with a warning at the first drop and then at most once a minute.

SQLite calls block, so the async methods run them in a worker thread; one lock serialises
them (the poller appends while the publisher reads and deletes).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from parkwatch.wire import encode_batch

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    payload BLOB NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_WARN_EVERY_S = 60.0


class WalBufferError(RuntimeError):
    """The buffer cannot be opened or does not belong to this gateway."""


@dataclass(frozen=True, slots=True)
class StoredBatch:
    seq: int
    payload: bytes


class WalBuffer:
    """Batches waiting for the broker, on disk; use as a (sync or async) context manager."""

    def __init__(self, directory: Path, gateway: str, max_batches: int = 100_000) -> None:
        self.path = Path(directory) / f"{gateway}.sqlite3"
        self.gateway = gateway
        self.max_batches = max_batches
        self.dropped_total = 0
        self._last_warning = -_WARN_EVERY_S
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    # --- lifecycle --------------------------------------------------------------------

    def open(self) -> WalBuffer:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # autocommit mode (isolation_level=None): transactions are explicit BEGIN/COMMIT
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key = 'gateway'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('gateway', ?)", (self.gateway,))
            elif row[0] != self.gateway:
                db.close()
                raise WalBufferError(
                    f"{self.path} holds batches of gateway {row[0]!r}, not {self.gateway!r}"
                )
        except sqlite3.Error as exc:
            raise WalBufferError(f"cannot open the buffer {self.path}: {exc}") from exc
        self._db = db
        return self

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> WalBuffer:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise WalBufferError("the buffer is not open")
        return self._db

    # --- synchronous operations -------------------------------------------------------

    def append_sync(self, readings: Sequence[dict[str, Any]]) -> StoredBatch:
        """Give the readings the next ``seq``, encode and commit them; returns the batch."""
        with self._lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
                seq = int(row[0]) if row else 1
                payload = encode_batch(self.gateway, seq, readings)
                db.execute(
                    "INSERT INTO batches (seq, payload, created_ms) VALUES (?, ?, ?)",
                    (seq, payload, time.time_ns() // 1_000_000),
                )
                db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('next_seq', ?)",
                    (str(seq + 1),),
                )
                dropped = self._trim(db)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        if dropped:
            self._dropped(dropped)
        return StoredBatch(seq, payload)

    def _trim(self, db: sqlite3.Connection) -> int:
        (count,) = db.execute("SELECT count(*) FROM batches").fetchone()
        excess = int(count) - self.max_batches
        if excess <= 0:
            return 0
        db.execute(
            "DELETE FROM batches WHERE seq IN (SELECT seq FROM batches ORDER BY seq LIMIT ?)",
            (excess,),
        )
        return excess

    def _dropped(self, count: int) -> None:
        first = self.dropped_total == 0
        self.dropped_total += count
        now = time.monotonic()
        if first or now - self._last_warning >= _WARN_EVERY_S:
            self._last_warning = now
            log.warning(
                "write-ahead buffer full (%d batches): dropped the oldest; %d dropped so far",
                self.max_batches,
                self.dropped_total,
            )

    def pending_sync(
        self, limit: int = 100, since: int = 0, before: int | None = None
    ) -> list[StoredBatch]:
        """The oldest ``limit`` batches not yet acknowledged, in ``seq`` order; only those
        with ``since <= seq < before`` when given (the live part, or the backlog)."""
        upper = before if before is not None else 2**63 - 1
        with self._lock:
            rows = self.db.execute(
                "SELECT seq, payload FROM batches WHERE seq >= ? AND seq < ? ORDER BY seq LIMIT ?",
                (since, upper, limit),
            ).fetchall()
        return [StoredBatch(int(seq), bytes(payload)) for seq, payload in rows]

    def next_seq_sync(self) -> int:
        """The ``seq`` the next appended batch will get."""
        with self._lock:
            row = self.db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        return int(row[0]) if row else 1

    def ack_sync(self, seq: int) -> None:
        """The broker has the batch: forget it."""
        with self._lock:
            self.db.execute("DELETE FROM batches WHERE seq = ?", (seq,))

    def count_sync(self, before: int | None = None) -> int:
        """Batches waiting; with ``before``, only those with a smaller ``seq``."""
        upper = before if before is not None else 2**63 - 1
        with self._lock:
            (count,) = self.db.execute(
                "SELECT count(*) FROM batches WHERE seq < ?", (upper,)
            ).fetchone()
        return int(count)

    # --- async facade (the event loop never waits on an fsync) --------------------------

    async def append(self, readings: Sequence[dict[str, Any]]) -> StoredBatch:
        return await asyncio.to_thread(self.append_sync, readings)

    async def pending(
        self, limit: int = 100, since: int = 0, before: int | None = None
    ) -> list[StoredBatch]:
        return await asyncio.to_thread(self.pending_sync, limit, since, before)

    async def next_seq(self) -> int:
        return await asyncio.to_thread(self.next_seq_sync)

    async def ack(self, seq: int) -> None:
        await asyncio.to_thread(self.ack_sync, seq)

    async def count(self, before: int | None = None) -> int:
        return await asyncio.to_thread(self.count_sync, before)
