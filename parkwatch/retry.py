"""Jittered exponential backoff and once-per-outage logging, for every reconnecting loop."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Full-jitter exponential backoff: attempt n waits uniform(0, min(cap, base * 2**n))."""

    base_s: float = 0.2
    cap_s: float = 10.0
    attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class OutageLog:
    """Logs a dependency going away once, and coming back once, however many attempts fail."""

    logger: logging.Logger
    what: str
    down_since: float | None = None
    failures: int = field(default=0)

    @property
    def is_down(self) -> bool:
        return self.down_since is not None

    def failed(self, error: BaseException | str) -> None:
        self.failures += 1
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.logger.warning("%s unreachable, retrying until it is back: %s", self.what, error)

    def recovered(self) -> None:
        if self.down_since is not None:
            self.logger.warning(
                "%s is back after %.1fs and %d failed attempts",
                self.what,
                time.monotonic() - self.down_since,
                self.failures,
            )
            self.down_since = None
            self.failures = 0
