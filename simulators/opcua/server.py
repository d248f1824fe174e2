"""A controller's OPC UA server (``asyncua``), its variables fed by the park model.

Each served device is an object named after it, holding one variable per node of its map
(``edge_agent/opcua_maps``): the node ids are exactly those the map gives, in the map's
namespace, so the agent finds them through configuration alone. Values are written every
``refresh_s`` from the device's values provider; while the provider returns ``None`` (a
failed meter behind the controller) every variable of the device carries the status
``BadCommunicationError``, as a controller that lost its field device reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from asyncua import ua
from asyncua.common.node import Node
from asyncua.server.server import Server
from asyncua.ua.status_codes import StatusCodes

from edge_agent.opcua import OpcUaProfile
from parkwatch.stack import free_port
from simulators.served import Served

log = logging.getLogger(__name__)

ValuesFn = Callable[[], Mapping[str, float] | None]
_BAD = ua.StatusCode(ua.UInt32(StatusCodes.BadCommunicationError))


@dataclass(frozen=True)
class ServedOpcUaDevice:
    device: str  # the name put in for {device} in the map's node ids
    profile: OpcUaProfile
    values: ValuesFn
    meter: str = ""


class OpcUaControllerServer(Served):
    """``async with OpcUaControllerServer([...]) as srv: srv.url``."""

    def __init__(
        self,
        devices: Sequence[ServedOpcUaDevice],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        refresh_s: float = 0.2,
    ) -> None:
        if not devices:
            raise ValueError("a controller serves at least one device")
        self.devices = list(devices)
        self.host = host
        self.port = port or free_port(host)
        self.refresh_s = refresh_s
        self._server: Server | None = None
        self._running = False
        self._nodes: list[tuple[ServedOpcUaDevice, dict[str, Node]]] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/parkwatch/"

    async def start(self) -> None:
        """Start serving; after :meth:`stop`, start again on the same port (the address
        space is built once: asyncua takes seconds to load the standard nodes)."""
        if self._server is None:
            self._server = await self._build()
        if not self._running:
            await self._write()
            await self._server.start()
            self._running = True
            self._task = asyncio.create_task(self._feed())
            log.info("OPC UA controller on %s: %s", self.url, [d.device for d in self.devices])

    async def _build(self) -> Server:
        logging.getLogger("asyncua").setLevel(logging.ERROR)  # certificate chatter at start
        server = Server()
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name("parkwatch simulated controller")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        namespaces: dict[str, int] = {}
        for served in self.devices:
            uri = served.profile.namespace
            if uri not in namespaces:
                namespaces[uri] = int(await server.register_namespace(uri))
            index = namespaces[uri]
            folder = await server.nodes.objects.add_object(
                ua.NodeId.from_string(f"ns={index};s={served.device}"), served.device
            )
            nodes: dict[str, Node] = {}
            for spec in served.profile.nodes:
                identifier = spec.node.replace("{device}", served.device)
                node_id = ua.NodeId.from_string(f"ns={index};{identifier}")
                name = identifier.split("=", 1)[1].rsplit(".", 1)[-1]
                nodes[spec.quantity] = await folder.add_variable(node_id, name, 0.0)
            self._nodes.append((served, nodes))
        return server

    async def _write(self) -> None:
        for served, nodes in self._nodes:
            values = served.values()
            for quantity, node in nodes.items():
                spec = next(n for n in served.profile.nodes if n.quantity == quantity)
                if values is None or quantity not in values:
                    bad = ua.DataValue(ua.Variant(0.0, ua.VariantType.Double), _BAD)
                    await node.write_value(bad)
                else:
                    raw = values[quantity] / spec.scale
                    await node.write_value(ua.DataValue(ua.Variant(raw, ua.VariantType.Double)))

    async def _feed(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            await self._write()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._server is not None and self._running:
            self._running = False
            await self._server.stop()
