"""Simulated MQTT-native meters: devices that publish their own vendor JSON to a broker.

Unlike :mod:`simulators.publisher` (whole gateways speaking parkwatch's batch format), these
are single meters speaking their makers' formats, for the edge agent to subscribe to and map
(``edge_agent/mqtt_maps``). The encoders here are written from the vendors' documented
payloads, independently of those maps, so a test checks a map against the device's side:

* ``tasmota-energy`` — Tasmota on a single-phase energy monitor: ``tele/<device>/SENSOR``
  ``{"Time": local time without offset, "ENERGY": {"Total": kWh, "Power": W, "Voltage": V,
  "Current": A, "Factor": pf, ...}}``, rounded as Tasmota rounds (whole W, V and VA, two
  decimals of the power factor, three of current and energy);
* ``shelly-pro-3em`` — a Shelly Pro 3EM's status notifications: ``<device>/status/em:0``
  (per-phase and total W, V, A, Hz) and ``<device>/status/emdata:0`` (energies in Wh), no
  timestamps;
* ``water-meter-json`` — a smart water meter behind an IoT bridge: ``water/<device>/up`` with
  an epoch-second ``ts`` and values nested with their units (flow in m³/h, total in litres).

Values come from a callable ``meter id → {quantity: value}`` (``None``: the device is off and
publishes nothing), normally :class:`simulators.modbus.ModelFeed` over a
:class:`~simulators.model.ParkModel`. A payload is a pure function of the values and the time,
so runs are deterministic. Devices named in :attr:`MqttMeterSimulator.corrupt` publish
truncated JSON instead (fault injection).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
import orjson

from parkwatch import mqtt
from parkwatch.quantities import Utility
from parkwatch.settings import MqttSettings
from parkwatch.site import Meter, Park
from parkwatch.tasks import cancel_and_wait

log = logging.getLogger(__name__)

ValuesFn = Callable[[str], Mapping[str, float] | None]
Message = tuple[str, bytes]  # topic, payload

NOMINAL_V = 230.0
# how a three-phase load splits over the phases (sums to 1), and each phase's voltage offset
# from the average (sums to 0): unbalanced enough to look real, exact in total
_PHASE_SHARE = (0.34, 0.33, 0.33)
_PHASE_DV = (0.4, -0.3, -0.1)
_CURRENT_SHARE = (1.02, 0.99, 0.99)  # × the phase-average current


class Style(StrEnum):
    """A device's payload style; each value is the name of the edge agent's JSON map."""

    TASMOTA = "tasmota-energy"
    SHELLY_PRO_3EM = "shelly-pro-3em"
    WATER_JSON = "water-meter-json"


@dataclass(frozen=True)
class MqttMeter:
    """One simulated device: the park meter whose values it publishes, in one style."""

    meter: str
    style: Style
    device: str  # its own MQTT name: Tasmota's Topic, a Shelly's topic prefix, a bridge id
    timezone: str = "Asia/Shanghai"  # the device clock's zone (Tasmota's Time is local)

    def messages(self, values: Mapping[str, float], t_ms: int) -> list[Message]:
        if self.style is Style.TASMOTA:
            return [tasmota_sensor(self.device, values, t_ms, ZoneInfo(self.timezone))]
        if self.style is Style.SHELLY_PRO_3EM:
            return shelly_pro_3em(self.device, values)
        return [water_meter(self.device, values, t_ms)]

    def config(self) -> dict[str, Any]:
        """This device's entry under ``mqtt_meters:`` in a gateway.yaml."""
        config: dict[str, Any] = {"meter": self.meter, "map": self.style.value}
        config["device"] = self.device
        if self.style is Style.TASMOTA:
            config["timezone"] = self.timezone  # its Time has no offset
        return config


# --- the vendors' payloads ---------------------------------------------------------------


def _r(value: float, digits: int) -> float:
    return round(value, digits) + 0.0  # + 0.0: never a "-0.0" in the JSON


def _w(kw: float) -> int:
    return round(kw * 1000)


def tasmota_sensor(device: str, values: Mapping[str, float], t_ms: int, tz: ZoneInfo) -> Message:
    """``tele/<device>/SENSOR`` of Tasmota's energy driver (fields the values allow)."""
    local = datetime.fromtimestamp(t_ms // 1000, tz).replace(tzinfo=None)
    energy: dict[str, Any] = {"TotalStartTime": "2024-01-01T00:00:00"}
    if "e_kwh" in values:
        energy["Total"] = _r(values["e_kwh"], 3)
    p, q = values.get("p_kw"), values.get("q_kvar")
    if p is not None:
        energy["Power"] = _w(p)
        if q is not None:
            energy["ApparentPower"] = _w(math.hypot(p, q))
            energy["ReactivePower"] = _w(q)
    if "pf" in values:
        energy["Factor"] = _r(values["pf"], 2)
    if "v_v" in values:
        energy["Voltage"] = round(values["v_v"])
    if "i_a" in values:
        energy["Current"] = _r(values["i_a"], 3)
    payload = {"Time": local.isoformat(timespec="seconds"), "ENERGY": energy}
    return f"tele/{device}/SENSOR", orjson.dumps(payload)


def shelly_pro_3em(device: str, values: Mapping[str, float]) -> list[Message]:
    """``status/em:0`` and ``status/emdata:0`` of a Shelly Pro 3EM (triphase profile)."""
    out: list[Message] = []
    p = values.get("p_kw")
    if p is not None:
        pf = values.get("pf", 1.0) or 1.0
        v = values.get("v_v", NOMINAL_V)
        i = values.get("i_a", abs(p) * 1000 / (3 * v * pf))
        em: dict[str, Any] = {"id": 0}
        currents = []
        for phase, share, dv, ci in zip(
            "abc", _PHASE_SHARE, _PHASE_DV, _CURRENT_SHARE, strict=True
        ):
            current = _r(i * ci, 3)
            currents.append(current)
            em[f"{phase}_current"] = current
            em[f"{phase}_voltage"] = _r(v + dv, 1)
            em[f"{phase}_act_power"] = _r(p * 1000 * share, 1)
            em[f"{phase}_aprt_power"] = _r(abs(p) * 1000 * share / pf, 1)
            em[f"{phase}_pf"] = _r(pf, 2)
            em[f"{phase}_freq"] = _r(values.get("f_hz", 50.0), 1)
        em["n_current"] = None  # no neutral current sensor: Shelly reports null
        em["total_current"] = _r(sum(currents), 3)
        em["total_act_power"] = _r(p * 1000, 3)
        em["total_aprt_power"] = _r(abs(p) * 1000 / pf, 3)
        em["user_calibrated_phase"] = []
        out.append((f"{device}/status/em:0", orjson.dumps(em)))
    if "e_kwh" in values:
        imported = values["e_kwh"] * 1000
        exported = values.get("e_export_kwh", 0.0) * 1000
        data: dict[str, Any] = {"id": 0}
        for phase, share in zip("abc", _PHASE_SHARE, strict=True):
            data[f"{phase}_total_act_energy"] = _r(imported * share, 2)
            data[f"{phase}_total_act_ret_energy"] = _r(exported * share, 2)
        data["total_act"] = _r(imported, 2)
        data["total_act_ret"] = _r(exported, 2)
        out.append((f"{device}/status/emdata:0", orjson.dumps(data)))
    return out


def water_meter(device: str, values: Mapping[str, float], t_ms: int) -> Message:
    """``water/<device>/up`` of a smart water meter's bridge: values with their units."""
    data: dict[str, Any] = {}
    if "flow_m3h" in values:
        data["flow"] = {"value": _r(values["flow_m3h"], 3), "unit": "m3/h"}
    if "vol_m3" in values:
        data["total"] = {"value": round(values["vol_m3"] * 1000), "unit": "L"}  # whole litres
    payload = {
        "ts": t_ms // 1000,
        "meter": {"serial": device.upper(), "model": "UWM-50"},
        "data": data,
        "status": {"battery_pct": 87, "alarms": []},
    }
    return f"water/{device}/up", orjson.dumps(payload)


def corrupt(payload: bytes) -> bytes:
    """What a device with a broken serialiser or a cut-off transmission sends."""
    return payload[: max(1, len(payload) // 2)]


# --- the simulator -----------------------------------------------------------------------


class MqttMeterSimulator:
    """Publish some MQTT-native meters; ``async with`` connects (and, with ``interval_s``,
    publishes every interval in the background until the block ends)."""

    def __init__(
        self,
        meters: Sequence[MqttMeter],
        values: ValuesFn,
        mqtt_settings: MqttSettings,
        *,
        interval_s: float | None = 5.0,
        client_id: str = "sim-mqtt-meters",
        clock: Callable[[], float] = time.time,
        qos: int = 0,
    ) -> None:
        devices = [m.device for m in meters]
        if len(set(devices)) != len(devices):
            raise ValueError("two simulated meters share a device name")
        self.meters = list(meters)
        self.values = values
        self.mqtt_settings = mqtt_settings
        self.interval_s = interval_s
        self.client_id = client_id
        self.clock = clock
        self.qos = qos
        self.corrupt: set[str] = set()  # device names that publish truncated JSON
        self.published = 0  # messages handed to the broker
        self.last: dict[str, bytes] = {}  # topic → the last payload published there
        self._stack: AsyncExitStack | None = None
        self._client: aiomqtt.Client | None = None

    async def __aenter__(self) -> MqttMeterSimulator:
        async with AsyncExitStack() as stack:
            self._client = await stack.enter_async_context(
                mqtt.client(self.mqtt_settings, self.client_id)
            )
            if self.interval_s is not None:
                task = asyncio.create_task(self._loop(self.interval_s))
                stack.push_async_callback(cancel_and_wait, task)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def publish_once(self, t_ms: int | None = None) -> int:
        """Every device's messages for time ``t_ms`` (default: now); returns how many."""
        if self._client is None or self._stack is None:
            raise RuntimeError("use the simulator as `async with` first")
        t = int(self.clock() * 1000) if t_ms is None else t_ms
        count = 0
        for meter in self.meters:
            values = self.values(meter.meter)
            if values is None:
                continue  # switched off: a real device publishes nothing either
            for topic, payload in meter.messages(values, t):
                if meter.device in self.corrupt:
                    payload = corrupt(payload)
                await self._client.publish(topic, payload, qos=self.qos, timeout=10.0)
                self.last[topic] = payload
                count += 1
        self.published += count
        return count

    async def _loop(self, interval_s: float) -> None:
        # a fixed grid, as devices publishing on a timer do; no catch-up bursts
        next_at = time.monotonic()
        while self._stack is not None:  # None: the block is closing
            await self.publish_once()
            next_at += interval_s
            now = time.monotonic()
            if next_at < now:
                next_at = now
            await asyncio.sleep(next_at - now)

    def mqtt_meter_configs(self) -> list[dict[str, Any]]:
        """The ``mqtt_meters:`` of a gateway.yaml that subscribes to these meters."""
        return [m.config() for m in self.meters]


def default_style(meter: Meter) -> Style | None:
    """A plausible MQTT-native product for a meter: a Shelly Pro 3EM on an electricity
    sub-meter, a Tasmota energy monitor on a small one, a smart meter on water."""
    if meter.utility is Utility.ELECTRICITY:
        rated = meter.spec.rated
        return Style.TASMOTA if rated is not None and rated <= 20 else Style.SHELLY_PRO_3EM
    if meter.utility is Utility.WATER:
        return Style.WATER_JSON
    return None


def device_name(meter: str, style: Style) -> str:
    """The MQTT name such a device would carry: Shelly's default prefix is the model and id."""
    return f"shellypro3em-{meter}" if style is Style.SHELLY_PRO_3EM else meter


def park_meters(
    park: Park, gateway: str, styles: Mapping[str, Style | str] | None = None
) -> list[MqttMeter]:
    """The meters of one gateway as MQTT-native devices: ``styles`` (meter id → style) picks
    them and their styles; by default every meter of the gateway with a :func:`default_style`."""
    out: list[MqttMeter] = []
    for meter in park.iter_meters():
        if meter.gateway != gateway:
            continue
        if styles is not None:
            if meter.id not in styles:
                continue
            style: Style | None = Style(styles[meter.id])
        else:
            style = default_style(meter)
        if style is not None:
            out.append(MqttMeter(meter.id, style, device_name(meter.id, style), park.timezone))
    if styles is not None and (unknown := set(styles) - {m.meter for m in out}):
        raise ValueError(f"not meters of gateway {gateway!r}: {sorted(unknown)}")
    return out


async def run_mqtt_meters(
    park: Park | Path | str,
    gateway: str,
    *,
    mqtt_url: str = "mqtt://127.0.0.1:1883",
    interval_s: float = 5.0,
    seed: int = 0,
    styles: Mapping[str, Style | str] | None = None,
) -> None:
    """Publish a gateway's meters as MQTT-native devices, values from the park model, every
    ``interval_s`` until cancelled."""
    # imported here: the Modbus side of the simulator (pymodbus) is not needed otherwise
    from simulators.modbus.park import ModelFeed
    from simulators.model import ParkModel

    if not isinstance(park, Park):
        park = Park.from_yaml(park)
    meters = park_meters(park, gateway, styles)
    if not meters:
        raise ValueError(f"gateway {gateway!r} has no meter to publish as an MQTT-native device")
    feed = ModelFeed(ParkModel(park, seed), refresh_s=min(interval_s, 1.0))
    settings = MqttSettings(url=mqtt_url)
    async with MqttMeterSimulator(
        meters, feed.values, settings, interval_s=interval_s, client_id=f"sim-mqtt-{gateway}"
    ):
        for m in meters:
            log.info("%-24s %-18s as %s", m.meter, m.style.value, m.device)
        await asyncio.Event().wait()  # until cancelled
