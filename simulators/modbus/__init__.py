"""Simulated meters as real Modbus servers (TCP and RTU), fed by the park model.

Entry points: :class:`ModbusMeterServer` / :class:`ModbusTcpMeterServer` /
:class:`ModbusRtuMeterServer` (one or several meters, any values provider),
:class:`SimulatedGateway` (a park gateway's meters plus its ``gateway.yaml``) and
:func:`serve_gateway` (run one until cancelled).
"""

from simulators.modbus.park import ModelFeed, SimulatedGateway, serve_gateway
from simulators.modbus.pty import PtyPair
from simulators.modbus.servers import (
    ModbusMeterServer,
    ModbusRtuMeterServer,
    ModbusTcpMeterServer,
    ServedMeter,
)

__all__ = [
    "ModbusMeterServer",
    "ModbusRtuMeterServer",
    "ModbusTcpMeterServer",
    "ModelFeed",
    "PtyPair",
    "ServedMeter",
    "SimulatedGateway",
    "serve_gateway",
]
