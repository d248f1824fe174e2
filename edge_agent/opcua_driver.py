"""Reading OPC UA servers (chiller, compressor and building controllers) with ``asyncua``.

One :class:`OpcUaLink` per server URL holds one session, shared by the devices mapped on that
server; it connects lazily, looks up each map's namespace index by URI, and is dropped and
reopened on the next read after a failure, like the other links.

Two ways to get values, chosen per server (``transport.mode``):

* ``poll`` — each cycle, one Read request for all of a device's nodes;
* ``subscribe`` — one subscription (publishing interval = the poll interval) for every node on
  the server; the server sends changes, the link keeps the newest value of each node, and a
  device's read takes them without a request. A node the server has not reported yet is
  absent; a value that did not change is read again as it is (and then goes out ``stale``
  through the repeated-value rule, like a frozen meter).

Each value's status code becomes the reading's quality (:func:`edge_agent.opcua.quality_of`);
a Bad value is left out, and a device whose every value is Bad (the controller lost it) is a
failed read, so the poller logs it gone once. asyncua's errors are translated here into
:class:`OpcUaReadError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.common.subscription import Subscription
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from edge_agent.drivers import DriverError
from edge_agent.links import Link
from edge_agent.opcua import OpcUaProfile, quality_of
from edge_agent.settings import OpcUaTransport

log = logging.getLogger(__name__)

# a reading takes the worst quality of its values
_RANK = {"ok": 0, "estimated": 1, "stale": 2}


class OpcUaReadError(DriverError):
    """An OPC UA device could not be read."""

    def __init__(self, meter: str, detail: str) -> None:
        super().__init__(f"meter {meter}: {detail}")
        self.meter = meter


class _Latest:
    """The subscription's handler: the newest DataValue per node id."""

    def __init__(self) -> None:
        self.values: dict[str, ua.DataValue] = {}

    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
        self.values[node.nodeid.to_string()] = data.monitored_item.Value


class OpcUaLink(Link):
    """One session with one OPC UA server."""

    def __init__(
        self, transport: OpcUaTransport, timeout_s: float = 2.0, publish_interval_s: float = 1.0
    ) -> None:
        super().__init__(transport.url)
        self.transport = transport
        self.timeout_s = timeout_s
        self.publish_interval_s = publish_interval_s
        self._client: Client | None = None
        self._namespaces: dict[str, int] = {}
        self._subscription: Subscription | None = None
        self._latest = _Latest()
        self._watched: dict[str, Node] = {}  # node id → node, in subscribe mode
        self.drivers: list[OpcUaDriver] = []

    @property
    def subscribe(self) -> bool:
        return self.transport.mode == "subscribe"

    async def session(self) -> Client:
        """The connected client (call with the link held)."""
        if self._client is not None:
            try:
                await self._client.check_connection()  # raises once the watchdog saw it die
                return self._client
            except Exception:
                await self._drop()
        client = Client(self.transport.url, timeout=self.timeout_s)
        if self.transport.username:
            client.set_user(self.transport.username)
        if self.transport.password is not None:
            client.set_password(self.transport.password.get_secret_value())
        self._namespaces = {}
        try:
            await client.connect()
            if self.subscribe:
                await self._subscribe(client)
        except BaseException:
            # a session without its subscription would read nothing, silently: none at all
            with contextlib.suppress(Exception):
                client.disconnect_socket()
            raise
        self._client = client
        return client

    async def namespace(self, client: Client, uri: str) -> int:
        """The index this server gives the namespace ``uri``; ``LookupError`` when it has none."""
        if uri not in self._namespaces:
            try:
                self._namespaces[uri] = int(await client.get_namespace_index(uri))
            except ValueError:  # asyncua: list.index of the server's namespace array
                raise LookupError(f"{self.name} serves no namespace {uri!r}") from None
        return self._namespaces[uri]

    async def _subscribe(self, client: Client) -> None:
        self._latest = _Latest()
        nodes: dict[str, Node] = {}
        for driver in self.drivers:
            try:
                ids = await driver.node_ids(client)
            except LookupError:
                continue  # that device's own reads fail and say why; the others go on
            for node_id in ids.values():
                nodes[node_id] = client.get_node(node_id)
        self._watched = nodes
        if not nodes:
            return
        self._subscription = await client.create_subscription(
            self.publish_interval_s * 1000, self._latest
        )
        handles = await self._subscription.subscribe_data_change(list(nodes.values()))
        # a node the server refuses to monitor (BadNodeIdUnknown: a wrong `device`) will never
        # be reported: hold its status as its value, so its device's reads say why, as a poll
        for node_id, handle in zip(nodes, handles, strict=True):
            if isinstance(handle, ua.StatusCode):
                self._latest.values[node_id] = ua.DataValue(StatusCode=handle)

    def latest(self, node_id: str) -> ua.DataValue | None:
        return self._latest.values.get(node_id)

    async def _drop(self) -> None:
        client, self._client = self._client, None
        self._subscription = None
        if client is None:
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                await client.disconnect()
        except Exception:
            with contextlib.suppress(Exception):
                client.disconnect_socket()

    async def failed(self) -> None:
        await self._drop()

    async def aclose(self) -> None:
        async with self._lock:
            await self._drop()


class OpcUaDriver:
    """Reads one device's nodes from its server."""

    protocol = "opcua"

    def __init__(
        self, meter: str, device: str | None, profile: OpcUaProfile, link: OpcUaLink
    ) -> None:
        self.meter = meter
        self.device = device or ""
        self.profile = profile
        self.link = link
        self.quality = "ok"  # of the last read: the worst of its values
        self._ids: dict[str, str] | None = None
        self._scale = {n.quantity: n.scale for n in profile.nodes}
        link.drivers.append(self)

    @property
    def name(self) -> str:
        device = self.device or "-"
        return f"meter {self.meter} (OPC UA {device} on {self.link.name}, {self.profile.name})"

    @property
    def identity(self) -> str | None:
        return None

    def counter_moduli(self) -> dict[str, float]:
        return {}  # OPC UA values are typed numbers, not fixed-width registers that wrap

    async def node_ids(self, client: Client) -> dict[str, str]:
        """Quantity → node id string, with the namespace index this server uses."""
        if self._ids is None:
            index = await self.link.namespace(client, self.profile.namespace)
            self._ids = self.profile.node_ids(self.device, index)
        return self._ids

    async def read(self) -> dict[str, float]:
        link = self.link
        try:
            async with link.turn(), asyncio.timeout(link.timeout_s * 2):
                client = await link.session()
                ids = await self.node_ids(client)
                if link.subscribe:
                    values = {q: link.latest(node_id) for q, node_id in ids.items()}
                else:
                    nodes = [client.get_node(node_id) for node_id in ids.values()]
                    answers = await client.read_attributes(nodes)
                    values = dict(zip(ids, answers, strict=True))
        except LookupError as exc:
            # the map does not fit this server (its namespace URI): the session is fine
            self._ids = None
            raise OpcUaReadError(self.meter, f"{exc} (map {self.profile.name})") from exc
        except UaStatusCodeError as exc:
            self._ids = None  # a node id may be wrong for this server: look it up again
            await link.failed()
            raise OpcUaReadError(self.meter, f"{link.name} answered {exc}") from exc
        except (OSError, TimeoutError, UaError, ConnectionError) as exc:
            self._ids = None
            await link.failed()
            raise OpcUaReadError(
                self.meter, f"{link.name}: {type(exc).__name__}: {exc or 'no answer'}"
            ) from exc
        return self._decode(values)

    def _decode(self, values: dict[str, ua.DataValue | None]) -> dict[str, float]:
        out: dict[str, float] = {}
        worst = "ok"
        bad: list[str] = []  # the status of each Bad value
        reported = 0
        for quantity, data in values.items():
            if data is None:
                continue
            reported += 1
            status = data.StatusCode.value if data.StatusCode is not None else 0
            quality = quality_of(status)
            raw = data.Value.Value if data.Value is not None else None
            if quality is None:
                bad.append(getattr(data.StatusCode, "name", None) or f"0x{status:08X}")
                continue  # Bad: never passed on
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                continue  # not a number: never passed on
            if not math.isfinite(raw):
                continue  # NaN / ∞ ("no value"), as a float register's: never passed on
            out[quantity] = float(raw) * self._scale[quantity]
            if _RANK[quality] > _RANK[worst]:
                worst = quality
        if reported and len(bad) == reported:
            # the controller lost the device (every value Bad): the device is gone, which the
            # poller logs once and backs off from, not a run of empty reads that say nothing
            raise OpcUaReadError(
                self.meter,
                f"{self.link.name} reports every value Bad ({', '.join(sorted(set(bad)))})",
            )
        self.quality = worst
        return out
