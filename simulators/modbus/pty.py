"""A serial line without hardware: a pseudo-terminal pair joined by ``socat``.

A simulated RTU meter (or a whole RS-485 bus of them) opens one end, the edge agent the
other, and Modbus RTU frames travel between them as over a null-modem cable. Needs Debian's
``socat`` package (``apt-get install -y socat``).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from parkwatch.stack import StackError, spawn, stop_process, wait_until


class SocatMissingError(StackError):
    pass


@dataclass
class PtyPair:
    """Two linked pseudo-terminals, as symlinks ``device_end`` and ``gateway_end``."""

    directory: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def device_end(self) -> str:
        return str(self.directory / "tty-meters")

    @property
    def gateway_end(self) -> str:
        return str(self.directory / "tty-gateway")

    def start(self, timeout: float = 5.0) -> PtyPair:
        socat = shutil.which("socat")
        if socat is None:
            raise SocatMissingError("socat not found: apt-get install -y socat")
        self.directory.mkdir(parents=True, exist_ok=True)
        for end in (self.device_end, self.gateway_end):
            Path(end).unlink(missing_ok=True)
        log_path = self.directory / "socat.log"
        # raw, no echo: bytes pass untouched, as on a serial cable
        self.proc = spawn(
            [
                socat,
                f"pty,raw,echo=0,link={self.device_end}",
                f"pty,raw,echo=0,link={self.gateway_end}",
            ],
            log_path,
        )
        wait_until(
            lambda: Path(self.device_end).exists() and Path(self.gateway_end).exists(),
            self.proc,
            "socat",
            log_path,
            timeout,
        )
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=5.0)
            self.proc = None

    def __enter__(self) -> PtyPair:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
