"""Simulated DL/T 645-2007 meters: a serial bus (over a socat pseudo-terminal pair) or a TCP
transparent converter, answering read requests from the park model."""

from simulators.dlt645.server import (
    Dlt645Bus,
    Dlt645SerialServer,
    Dlt645TcpServer,
    ServedDlt645Meter,
)

__all__ = ["Dlt645Bus", "Dlt645SerialServer", "Dlt645TcpServer", "ServedDlt645Meter"]
