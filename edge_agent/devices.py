"""A gateway's devices: one driver per configured meter, one link per connection.

Links are keyed by their transport (``tcp://host:port``, ``serial:///dev/ttyUSB0``, an OPC UA
URL), so the meters behind one converter or on one bus share one connection and take turns on
it. ``async with GatewayDevices(settings)`` closes every link on the way out.
"""

from __future__ import annotations

from edge_agent.catalog import get_any_profile
from edge_agent.dlt645 import Dlt645Profile
from edge_agent.dlt645_driver import Dlt645Driver, Dlt645Link
from edge_agent.drivers import MeterDriver, ModbusLink, require_pyserial
from edge_agent.links import LinkSet
from edge_agent.opcua import OpcUaProfile
from edge_agent.opcua_driver import OpcUaDriver, OpcUaLink
from edge_agent.poller import Driver
from edge_agent.profiles import MeterProfile
from edge_agent.settings import EdgeSettings, OpcUaTransport, RtuTransport


class GatewayDevices(LinkSet):
    """The drivers of a gateway's polled devices and the links they share."""

    def __init__(self, settings: EdgeSettings) -> None:
        super().__init__()
        self.drivers: list[Driver] = []
        catalog = settings.profiles()
        if any(isinstance(d.transport, RtuTransport) for d in settings.devices):
            require_pyserial()
        # a connection (pymodbus client, OPC UA session) has one request timeout: the longest
        # of its devices'
        longest: dict[str, float] = {}
        for device in settings.devices:
            key = device.transport.key
            longest[key] = max(longest.get(key, 0.0), settings.timeout_for(device))
        for device in settings.devices:
            profile = get_any_profile(device.profile, catalog)
            t = device.transport
            timeout = settings.timeout_for(device)
            link = self.links.get(t.key)
            if isinstance(profile, MeterProfile):
                assert not isinstance(t, OpcUaTransport)  # settings checked it
                if link is None:
                    link = self.links[t.key] = ModbusLink(t, longest[t.key])
                assert isinstance(link, ModbusLink)
                self.drivers.append(
                    MeterDriver(device.meter, device.unit, profile, link, device.ratios, timeout)
                )
            elif isinstance(profile, Dlt645Profile):
                assert not isinstance(t, OpcUaTransport)
                assert device.address is not None
                if link is None:
                    link = self.links[t.key] = Dlt645Link(t)
                assert isinstance(link, Dlt645Link)
                self.drivers.append(
                    Dlt645Driver(
                        device.meter, device.address, profile, link, device.ratios, timeout
                    )
                )
            else:
                assert isinstance(profile, OpcUaProfile)
                assert isinstance(t, OpcUaTransport)
                if link is None:
                    link = self.links[t.key] = OpcUaLink(
                        t, longest[t.key], settings.poll_interval_s
                    )
                assert isinstance(link, OpcUaLink)
                self.drivers.append(OpcUaDriver(device.meter, device.device, profile, link))
