"""A simulated OPC UA controller (a compressor house controller) serving the park model."""

from simulators.opcua.server import OpcUaControllerServer, ServedOpcUaDevice

__all__ = ["OpcUaControllerServer", "ServedOpcUaDevice"]
