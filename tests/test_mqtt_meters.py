"""MQTT-native meters: the JSON maps on their own, the agent's store of their latest readings,
and the whole path against a real Mosquitto — simulated Tasmota, Shelly and water meters
publishing their own JSON, the edge agent mapping it into its batches next to Modbus meters."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
import orjson
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.json_maps import (
    MAX_PAYLOAD_BYTES,
    JsonMap,
    PayloadError,
    TimestampSpec,
    ValueSpec,
    builtin_json_maps,
    get_json_map,
    lookup,
    parse_path,
)
from edge_agent.mqtt_devices import MqttDevices
from edge_agent.service import EdgeAgent
from edge_agent.settings import EdgeSettings, MqttMeterConfig
from parkwatch import mqtt, topics
from parkwatch.settings import MqttSettings
from parkwatch.site import Park, SiteRegistry
from parkwatch.stack import Mosquitto, free_port
from parkwatch.tasks import cancel_and_wait
from parkwatch.topics import DataTopic
from parkwatch.wire import parse_batch
from simulators.modbus import ModelFeed, SimulatedGateway
from simulators.model import ParkModel
from simulators.mqtt_meters import (
    MqttMeter,
    MqttMeterSimulator,
    Style,
    park_meters,
    run_mqtt_meters,
    shelly_pro_3em,
    tasmota_sensor,
    water_meter,
)
from tests.support import background
from tests.test_edge_agent import eventually, running, subscriber

GATEWAY = "gw-steelco"
T0 = 1_732_411_200_000  # 2024-11-24 09:20 in Shanghai: factories at work
SHANGHAI = ZoneInfo("Asia/Shanghai")
_ids = itertools.count()

# how far a device's own rounding may move a value from the model's (Tasmota: pf to 0.01,
# volts to 1 V; Shelly: phase currents to 1 mA, averaged); everything else must be exact
ROUNDING = {"pf": 0.005, "v_v": 0.5, "i_a": 0.001, "f_hz": 0.05}


@pytest.fixture
def park(demo_park_path: Path) -> Park:
    return Park.from_yaml(demo_park_path)


@pytest.fixture
def feed(park: Park) -> ModelFeed:
    feed = ModelFeed(ParkModel(park, seed=5), refresh_s=None)
    feed.refresh(T0)
    return feed


def expected(meter: MqttMeter, values: Mapping[str, float]) -> dict[str, float]:
    """What the device's map can give of the model's values."""
    json_map = get_json_map(meter.style.value)
    mapped = {spec.quantity for message in json_map.messages for spec in message.values}
    return {q: v for q, v in values.items() if q in mapped}


def assert_values(got: Mapping[str, float], want: Mapping[str, float], what: str) -> None:
    assert set(got) == set(want), what
    for quantity, value in got.items():
        tolerance = ROUNDING.get(quantity, 0.0) + 1e-9
        assert math.isclose(value, want[quantity], abs_tol=tolerance), (what, quantity, value)


# --- maps on their own -----------------------------------------------------------------


def test_paths() -> None:
    assert parse_path("ENERGY.Total") == ("ENERGY", "Total")
    assert parse_path("emeters[1].power") == ("emeters", 1, "power")
    assert parse_path("a.b[0][2]") == ("a", "b", 0, 2)
    # keys with dots or brackets: the list form
    assert parse_path(["em:0", "a.b", 3]) == ("em:0", "a.b", 3)
    for bad in ["", "a..b", "a.", "a[x]", "[0]", "a[0]b", [], ["", "x"], [True], 5]:
        with pytest.raises(ValueError, match="path"):
            parse_path(bad)
    doc = {"a": {"b": [1, {"c": 2}]}, "n": None}
    assert lookup(doc, ("a", "b", 1, "c")) == 2
    assert lookup(doc, ("a", "b", 5)) is None
    assert lookup(doc, ("a", "x")) is None
    assert lookup(doc, ("n", "x")) is None
    assert lookup(doc, ("a", 0)) is None  # an index into an object
    assert lookup(doc, ("a", "b", "c")) is None  # a key into an array


def spec(**fields: Any) -> ValueSpec:
    return ValueSpec.model_validate({"quantity": "p_kw", **fields})


def test_scale_units_and_combining() -> None:
    # decimal scaling: no float fuzz added by the map
    assert spec(path="P", scale=0.001).decode({"P": 412500}) == 412.5
    assert spec(path="P", scale=0.001).decode({"P": 935723969}) == 935723.969
    assert spec(path="P", scale=0.001).decode({"P": 1234.5}) == 1.2345
    assert spec(path="P", scale=-1).decode({"P": 3}) == -3.0  # a vendor's other sign
    flow = ValueSpec.model_validate(
        {
            "quantity": "flow_m3h",
            "path": "f.value",
            "unit_path": "f.unit",
            "units": {"m3/h": 1, "L/h": 0.001, "L/s": 3.6},
        }
    )
    assert flow.decode({"f": {"value": 12.5, "unit": "L/s"}}) == 45.0
    assert flow.decode({"f": {"value": 2500, "unit": "L/h"}}) == 2.5
    assert flow.decode({"f": {"value": 7.25, "unit": "m3/h"}}) == 7.25
    with pytest.raises(PayloadError, match="unit 'gpm' not in the map"):
        flow.decode({"f": {"value": 1, "unit": "gpm"}})
    with pytest.raises(PayloadError, match="unit as a string"):
        flow.decode({"f": {"value": 1}})  # a value without its unit is not guessed at
    assert flow.decode({"f": {"unit": "L/h"}}) is None

    volts = spec(quantity="v_v", paths=["a_voltage", "b_voltage", "c_voltage"], combine="mean")
    assert volts.decode({"a_voltage": 230.4, "b_voltage": 229.7, "c_voltage": 229.9}) == 230.0
    # one phase missing: no value, rather than the mean of the other two
    assert volts.decode({"a_voltage": 230.4, "b_voltage": None, "c_voltage": 229.9}) is None
    assert volts.decode({"a_voltage": 230.4, "c_voltage": 229.9}) is None
    three_phase = spec(path="ENERGY.Power", combine="sum", scale=0.001)
    assert three_phase.decode({"ENERGY": {"Power": [1000, 2000, 500]}}) == 3.5
    assert three_phase.decode({"ENERGY": {"Power": [1000, None, 500]}}) is None
    assert three_phase.decode({"ENERGY": {"Power": []}}) is None
    with pytest.raises(PayloadError, match="3 numbers, map has no combine"):
        spec(path="ENERGY.Power").decode({"ENERGY": {"Power": [1, 2, 3]}})


def test_missing_fields_and_wrong_types() -> None:
    sensor = get_json_map("tasmota-energy").message("sensor")
    at = b'{"Time":"2024-11-24T09:20:00",'
    decoded = sensor.decode(at + b'"ENERGY":{"Total":12.5,"Power":null,"Yesterday":1}}', SHANGHAI)
    # absent and null fields are left out: never zero, never the last value
    assert decoded.values == {"e_kwh": 12.5}
    assert decoded.t_ms == T0
    unusable = {
        at + b'"ENERGY":{"Total":"12.5"}}': "ENERGY.Total: expected a number",
        at + b'"ENERGY":{"Total":true}}': "ENERGY.Total: expected a number",
        at + b'"ENERGY":{"Total":{"kWh":1}}}': "expected a number",
        at + b'"ENERGY":{}}': "none of the mapped values",
        at + b'"ENERGY":{"Total":NaN}}': "not JSON",
        at + b'"ENERGY":{"Total":1e400}}': "not JSON",
        at + b'"ENERGY":{"Tot': "not JSON",
        b"": "not JSON",
        b"[1, 2]": "expected a JSON object",
        b'"online"': "expected a JSON object",
        b'{"ENERGY":{"Total":1}}': "Time: the timestamp is missing",
        b'{"Time":"yesterday","ENERGY":{"Total":1}}': "not an ISO 8601 time",
        b'{"Time":1732411200,"ENERGY":{"Total":1}}': "expected an ISO 8601 time",
        b" " * (MAX_PAYLOAD_BYTES + 1): "more than",
    }
    for payload, match in unusable.items():
        with pytest.raises(PayloadError, match=match):
            sensor.decode(payload, SHANGHAI)


def test_timestamps() -> None:
    sensor = get_json_map("tasmota-energy").message("sensor")
    energy = b',"ENERGY":{"Total":1}}'
    assert sensor.decode(b'{"Time":"2024-11-24T09:20:00"' + energy, SHANGHAI).t_ms == T0
    # SetOption52: the device writes its offset, which wins over the configured zone
    utc = b'{"Time":"2024-11-24T01:20:00+00:00"' + energy
    assert sensor.decode(utc, SHANGHAI).t_ms == T0
    assert sensor.decode(utc).t_ms == T0
    with pytest.raises(PayloadError, match="no offset and no zone"):
        sensor.decode(b'{"Time":"2024-11-24T09:20:00"' + energy)

    uplink = get_json_map("water-meter-json").message("uplink")
    flow = {"flow": {"value": 1, "unit": "m3/h"}}
    assert uplink.decode(orjson.dumps({"ts": 1732411200.25, "data": flow})).t_ms == T0 + 250
    for ts, match in [(-5, "plausible"), ("1732411200", "expected a number"), (None, "missing")]:
        with pytest.raises(PayloadError, match=match):
            uplink.decode(orjson.dumps({"ts": ts, "data": flow}))
    millis = TimestampSpec.model_validate({"path": "meta.t", "format": "epoch_ms"})
    assert millis.decode({"meta": {"t": T0}}) == T0
    naive_map = TimestampSpec.model_validate(
        {"path": "t", "format": "iso8601", "timezone": "Europe/Berlin"}
    )
    assert naive_map.decode({"t": "2024-11-24T02:20:00"}) == T0  # the map's zone (CET)
    assert naive_map.decode({"t": "2024-11-24T09:20:00"}, SHANGHAI) == T0  # the device's wins


def _map(**message: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "a",
        "topic": "t/{device}",
        "values": [{"quantity": "p_kw", "path": "P"}],
    }
    return {
        "name": "test-map",
        "vendor": "v",
        "model": "m",
        "utility": "electricity",
        "messages": [{**base, **message}],
    }


@pytest.mark.parametrize(
    ("message", "match"),
    [
        ({"values": [{"quantity": "watts", "path": "P"}]}, "unknown quantity"),
        ({"values": [{"quantity": "flow_m3h", "path": "P"}]}, "not a quantity of a electricity"),
        ({"values": [{"quantity": "p_kw", "path": "P"}] * 2}, "mapped twice"),
        ({"values": []}, "maps no value"),
        ({"values": [{"quantity": "p_kw", "paths": ["a", "b"]}]}, "need combine"),
        ({"values": [{"quantity": "p_kw", "path": "P", "paths": ["a", "b"]}]}, "either path"),
        ({"values": [{"quantity": "p_kw", "path": "P", "unit_path": "u"}]}, "go together"),
        ({"values": [{"quantity": "p_kw", "path": "P", "scale": 0}]}, "scale"),
        ({"values": [{"quantity": "p_kw", "path": "P", "cale": 2}]}, "Extra inputs"),
        ({"topic": "t/+/x"}, "no wildcards"),
        ({"topic": "$SYS/x"}, "belong to the broker"),
        ({"timestamp": {"path": "t", "format": "iso8601", "timezone": "Mars/Base"}}, "time zone"),
        ({"timestamp": {"path": "t", "format": "rfc822"}}, "format"),
    ],
)
def test_bad_maps_are_refused(message: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        JsonMap.model_validate(_map(**message))


def test_builtin_maps_and_own_maps(tmp_path: Path) -> None:
    assert set(builtin_json_maps()) >= {"tasmota-energy", "shelly-pro-3em", "water-meter-json"}
    # a map of one's own, next to the gateway.yaml, used by an MQTT meter
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "plug.yaml").write_text(
        "name: my-plug\nvendor: acme\nmodel: plug\nutility: electricity\n"
        "messages:\n  - name: state\n    topic: acme/{device}/state\n"
        "    values: [{quantity: p_kw, path: watts, scale: 0.001}]\n"
    )
    (tmp_path / "gateway.yaml").write_text(
        "park: lj-demo\ngateway: gw-x\nmqtt_map_dirs: [maps]\n"
        "mqtt_meters: [{meter: m1, map: my-plug, device: p1}]\n"
    )
    settings = EdgeSettings.from_yaml(tmp_path / "gateway.yaml")
    own = settings.mqtt_maps()["my-plug"]
    assert settings.mqtt_meters[0].topics_for(own) == {"state": "acme/p1/state"}
    assert own.message("state").decode(b'{"watts": 1500}').values == {"p_kw": 1.5}


# --- gateway.yaml ----------------------------------------------------------------------


def test_gateway_yaml_with_mqtt_meters() -> None:
    example = Path(__file__).resolve().parent.parent / "edge_agent" / "examples" / "gateway.yaml"
    settings = EdgeSettings.from_yaml(example)
    assert settings.device_broker == settings.mqtt  # no device_mqtt: the same broker
    got = {m.meter: m.topics_for(get_json_map(m.map)) for m in settings.mqtt_meters}
    assert got == {
        "steelco-c1": {
            "em": "shellypro3em-c1/status/em:0",
            "emdata": "shellypro3em-c1/status/emdata:0",
        },
        "steelco-office": {"sensor": "tele/office-plug/SENSOR"},
        "steelco-cooling": {"uplink": "bridge/wm-1701/up"},
    }


@pytest.mark.parametrize(
    ("meters", "match"),
    [
        ([{"meter": "m1", "map": "no-such-map", "device": "d"}], "no JSON map 'no-such-map'"),
        ([{"meter": "m1", "map": "tasmota-energy", "device": "d"}], "without an offset"),
        (
            [{"meter": "m1", "map": "tasmota-energy", "device": "d", "timezone": "Moon/Base"}],
            "unknown time zone",
        ),
        ([{"meter": "m1", "map": "shelly-pro-3em", "topic": "x/y"}], "not one `topic`"),
        ([{"meter": "m1", "map": "shelly-pro-3em"}], "give `device`"),
        ([{"meter": "m1", "map": "shelly-pro-3em", "topics": {"em": "a"}}], "give `device`"),
        (
            [{"meter": "m1", "map": "water-meter-json", "topics": {"up": "a"}}],
            r"topics for \['up'\]",
        ),
        ([{"meter": "m1", "map": "water-meter-json", "topic": "a/#"}], "no wildcards"),
        ([{"meter": "m1", "map": "water-meter-json", "device": "d", "unit": 1}], "Extra inputs"),
        (
            [
                {"meter": "m1", "map": "water-meter-json", "device": "d"},
                {"meter": "m2", "map": "water-meter-json", "topic": "water/d/up"},
            ],
            "share water/d/up",
        ),
        (
            [
                {"meter": "m1", "map": "water-meter-json", "device": "d"},
                {"meter": "m1", "map": "water-meter-json", "device": "e"},
            ],
            "configured twice",
        ),
    ],
)
def test_bad_mqtt_meters_are_refused(meters: list[dict[str, Any]], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EdgeSettings(park="lj-demo", gateway="gw-x", mqtt_meters=meters)


def test_a_meter_is_modbus_or_mqtt_not_both() -> None:
    modbus = {"meter": "m1", "profile": "heat-meter", "transport": {"kind": "tcp", "host": "h"}}
    mqtt = {"meter": "m1", "map": "water-meter-json", "device": "d"}
    with pytest.raises(ValueError, match="configured twice"):
        EdgeSettings(park="lj-demo", gateway="gw-x", devices=[modbus], mqtt_meters=[mqtt])


# --- the simulated devices' payloads, decoded by the maps ------------------------------


def test_simulated_payloads_decode_to_the_model_values(feed: ModelFeed) -> None:
    devices = [
        (MqttMeter("steelco-c1", Style.SHELLY_PRO_3EM, "shelly-c1"), "steelco-c1"),
        (MqttMeter("steelco-c2", Style.TASMOTA, "plug-c2"), "steelco-c2"),
        (MqttMeter("steelco-cooling", Style.WATER_JSON, "wm-1"), "steelco-cooling"),
    ]
    for device, meter in devices:
        values = feed.values(meter)
        json_map = get_json_map(device.style.value)
        got: dict[str, float] = {}
        times = set()
        messages = device.messages(values, T0 + 789)
        assert len(messages) == len(json_map.messages)
        for (topic, payload), message in zip(messages, json_map.messages, strict=True):
            assert topic == message.topic_for(device.device)
            decoded = message.decode(payload, SHANGHAI)
            got.update(decoded.values)
            times.add(decoded.t_ms)
        assert_values(got, expected(device, values), meter)
        # whole seconds on the devices' clocks; no clock at all in a Shelly's status
        assert times == ({None} if device.style is Style.SHELLY_PRO_3EM else {T0})
    # deterministic: the same values and time, the same bytes
    values = feed.values("steelco-c2")
    assert tasmota_sensor("p", values, T0, SHANGHAI) == tasmota_sensor("p", values, T0, SHANGHAI)
    assert shelly_pro_3em("s", values) == shelly_pro_3em("s", values)
    assert water_meter("w", feed.values("steelco-water"), T0)[1].startswith(b'{"ts":1732411200,')


def test_park_meters_picks_styles(park: Park) -> None:
    chosen = park_meters(
        park, GATEWAY, {"steelco-c1": "tasmota-energy", "steelco-water": "water-meter-json"}
    )
    assert [(m.meter, m.style, m.device) for m in chosen] == [
        ("steelco-c1", Style.TASMOTA, "steelco-c1"),
        ("steelco-water", Style.WATER_JSON, "steelco-water"),
    ]
    everything = park_meters(park, GATEWAY)
    assert {m.style for m in everything} == {Style.SHELLY_PRO_3EM, Style.WATER_JSON}
    with pytest.raises(ValueError, match="chemco-main"):
        park_meters(park, GATEWAY, {"chemco-main": "shelly-pro-3em"})


# --- the agent's store of the latest readings -----------------------------------------


class Clocks:
    def __init__(self) -> None:
        self.ms = T0
        self.mono = 1000.0


def devices_for(clocks: Clocks, *configs: dict[str, Any]) -> MqttDevices:
    return MqttDevices(
        [MqttMeterConfig.model_validate(c) for c in configs],
        stale_after_s=15.0,
        clock_tolerance_s=60.0,
        clock_ms=lambda: clocks.ms,
        monotonic=lambda: clocks.mono,
    )


PLUG = {"meter": "plug", "map": "tasmota-energy", "device": "plug", "timezone": "Asia/Shanghai"}
SHELLY = {"meter": "shelly", "map": "shelly-pro-3em", "device": "shelly"}


def tasmota(t_ms: int, total: float = 12.5, zone: ZoneInfo = SHANGHAI) -> bytes:
    return tasmota_sensor("plug", {"e_kwh": total, "p_kw": 1.2}, t_ms, zone)[1]


def test_each_reading_goes_out_once_with_its_source_time() -> None:
    clocks = Clocks()
    hub = devices_for(clocks, PLUG, SHELLY)
    assert hub.topics == ["tele/plug/SENSOR", "shelly/status/em:0", "shelly/status/emdata:0"]
    assert hub.take(T0) == []
    clocks.ms = T0 + 300  # arrives 0.3 s after the device's time
    hub.handle("tele/plug/SENSOR", tasmota(T0))
    first = hub.take(T0 + 500)
    assert first == [{"m": "plug", "t": T0, "q": {"e_kwh": 12.5, "p_kw": 1.2}, "s": "ok"}]
    assert hub.take(T0 + 600) == []  # never repeated
    # two messages before a cycle: the newest wins
    hub.handle("tele/plug/SENSOR", tasmota(T0 + 1000, 12.6))
    hub.handle("tele/plug/SENSOR", tasmota(T0 + 2000, 12.7))
    assert [r["q"]["e_kwh"] for r in hub.take(T0 + 2500)] == [12.7]
    assert hub.stats.superseded == 1
    # a Shelly: no clock, so the arrival time; one reading per message
    for topic, payload in shelly_pro_3em("shelly", {"p_kw": 2.0, "e_kwh": 100.0, "pf": 0.9}):
        hub.handle(topic, payload, received_ms=T0 + 3000)
    readings = hub.take(T0 + 3100)
    assert [(r["m"], r["t"], sorted(r["q"])) for r in readings] == [
        ("shelly", T0 + 3000, ["f_hz", "i_a", "p_kw", "v_v"]),
        ("shelly", T0 + 3000, ["e_export_kwh", "e_kwh"]),
    ]
    assert hub.stats.readings == 4
    # ingest takes them: t in epoch ms, floats
    assert all(isinstance(v, float) for r in readings for v in r["q"].values())
    # unknown topic: ignored
    hub.handle("tele/other/SENSOR", b"{}")
    assert hub.take(T0 + 4000) == []


def test_retained_messages_are_stale_or_dropped(caplog: pytest.LogCaptureFixture) -> None:
    clocks = Clocks()
    hub = devices_for(clocks, PLUG, SHELLY)
    # the broker hands over a retained last value on subscribing: an hour old, stored, flagged
    hub.handle("tele/plug/SENSOR", tasmota(T0 - 3_600_000), retained=True)
    # a retained Shelly status has no time: its age is unknown, so it is not used
    for topic, payload in shelly_pro_3em("shelly", {"p_kw": 2.0, "e_kwh": 100.0}):
        hub.handle(topic, payload, retained=True)
    assert hub.take(T0) == [
        {"m": "plug", "t": T0 - 3_600_000, "q": {"e_kwh": 12.5, "p_kw": 1.2}, "s": "stale"}
    ]
    assert hub.stats.unknown_age == 2
    assert hub.stats.stale == 1
    # a live message 20 s old when the cycle takes it (the cycle was late): stale too
    hub.handle("tele/plug/SENSOR", tasmota(T0))
    assert [r["s"] for r in hub.take(T0 + 20_000)] == ["stale"]
    assert not caplog.records


def test_a_wrong_device_clock_is_logged_once_and_not_trusted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="edge_agent")
    clocks = Clocks()
    hub = devices_for(clocks, PLUG)
    # the device's zone is set to UTC, but gateway.yaml says Shanghai: 8 h behind
    for k in range(3):
        clocks.ms = T0 + k * 1000
        hub.handle("tele/plug/SENSOR", tasmota(T0 + k * 1000, zone=ZoneInfo("UTC")))
        [reading] = hub.take(clocks.ms + 100)
        assert (reading["t"], reading["s"]) == (T0 + k * 1000, "ok")  # the arrival time
    clocks.ms = T0 + 5000
    hub.handle("tele/plug/SENSOR", tasmota(T0 + 4000))  # set right: its own time again
    assert [r["t"] for r in hub.take(T0 + 5100)] == [T0 + 4000]
    # an unset clock (1970) on a retained message: neither time nor age known, so dropped
    hub.handle("tele/plug/SENSOR", tasmota(0), retained=True)
    assert hub.take(T0 + 6000) == []
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages
    assert "clock of MQTT meter plug" in messages[0]
    assert "-28800s" in messages[0]
    assert "is back after" in messages[1]
    assert hub.stats.clock_off == 4


def test_unusable_messages_are_logged_once_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edge_agent")
    clocks = Clocks()
    hub = devices_for(clocks, PLUG, SHELLY)
    good = tasmota(T0)
    for _ in range(5):
        hub.handle("tele/plug/SENSOR", good[:20])
        hub.handle("shelly/status/em:0", b'{"total_act_power": 1500}')  # the other device: fine
    readings = hub.take(T0 + 100)
    assert [r["m"] for r in readings] == ["shelly"]  # nothing fabricated for the broken one
    assert hub.stats.unusable == 5
    hub.handle("tele/plug/SENSOR", good)
    assert [r["m"] for r in hub.take(T0 + 200)] == ["plug"]
    hub.handle("tele/plug/SENSOR", b'{"Time":"2024-11-24T09:20:00","ENERGY":{"Total":"x"}}')
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages
    assert messages[0].startswith("MQTT meter plug (plug, tasmota-energy): no usable readings")
    assert "unusable message on tele/plug/SENSOR: not JSON" in messages[0]
    assert "is back after" in messages[1]
    assert "5 failures" in messages[1]
    assert "ENERGY.Total: expected a number" in messages[2]  # a new outage: logged again


def test_a_silent_device_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edge_agent")
    clocks = Clocks()
    hub = devices_for(clocks, {**PLUG, "max_silence_s": 30})
    clocks.mono += 100
    assert hub.take(T0) == []  # not subscribed: the broker's outage, not the device's
    assert not caplog.records
    hub.subscribed.set()
    hub._heard_from_all()
    for _ in range(10):
        clocks.mono += 5
        hub.take(T0)
    hub.handle("tele/plug/SENSOR", tasmota(T0))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "no usable readings" in messages[0]
    assert "no message for 35s" in messages[0]
    assert "is back after" in messages[1]


def test_a_refused_subscription_is_the_device_s_problem(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edge_agent")
    hub = devices_for(Clocks(), PLUG, SHELLY)
    granted = ReasonCode(PacketTypes.SUBACK, identifier=0)
    refused = ReasonCode(PacketTypes.SUBACK, identifier=0x87)  # not authorised (ACL)
    hub._check_granted([refused, granted, granted])
    hub._check_granted([refused, granted, granted])  # a reconnect: still refused, not re-logged
    hub._check_granted([granted, granted, granted])
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "refused the subscription to tele/plug/SENSOR (Not authorized)" in messages[0]
    assert messages[1].startswith("MQTT meter plug (plug, tasmota-energy) is back")


# --- against a real broker --------------------------------------------------------------

MQTT_METERS = [
    MqttMeter("steelco-c1", Style.SHELLY_PRO_3EM, "shellypro3em-c1"),
    MqttMeter("steelco-c2", Style.TASMOTA, "compressor-2"),
    MqttMeter("steelco-cooling", Style.WATER_JSON, "wm-cooling"),
    MqttMeter("steelco-c3", Style.TASMOTA, "compressor-3"),  # publishes broken JSON at first
]
MODBUS_METERS = ["steelco-main", "steelco-furnace"]


def agent_settings(
    park: Park,
    sim: SimulatedGateway,
    devices: MqttMeterSimulator,
    url: str,
    tmp_path: Path,
    **extra: Any,
) -> EdgeSettings:
    return EdgeSettings(
        park=park.park,
        gateway=GATEWAY,
        mqtt=MqttSettings(url=url, connect_timeout_s=2.0),
        devices=sim.device_configs(),
        mqtt_meters=devices.mqtt_meter_configs(),
        poll_interval_s=0.1,
        request_timeout_s=0.5,
        buffer_dir=tmp_path / "buffer",
        client_id=f"edge-mqtt-test-{next(_ids)}",
        reconnect_base_s=0.05,
        reconnect_cap_s=0.3,
        # "stale" is tested on its own above; here a slow machine must not make readings stale
        stale_after_cycles=20,
        **extra,
    )


def seen(batches: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_meter: dict[str, list[dict[str, Any]]] = {}
    for batch in batches:
        for reading in batch["readings"]:
            by_meter.setdefault(reading["m"], []).append(reading)
    return by_meter


@pytest.fixture
async def shared_broker(park: Park, mqtt_settings: MqttSettings) -> AsyncIterator[MqttSettings]:
    """The session's broker; afterwards the agent's retained status is cleared, so that other
    tests of this gateway do not start with our "offline"."""
    yield mqtt_settings
    async with subscriber(mqtt_settings.url, f"test-clear-{next(_ids)}") as client:
        await client.publish(topics.status_topic(park.park, GATEWAY), b"", qos=1, retain=True)


@pytest.mark.anyio
async def test_agent_maps_mqtt_native_meters_next_to_modbus(
    park: Park, shared_broker: MqttSettings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mqtt_settings = shared_broker
    caplog.set_level(logging.WARNING, logger="edge_agent")
    data_topic = topics.data_topic(park.park, GATEWAY)
    registry = SiteRegistry([park])
    async with SimulatedGateway(
        park, GATEWAY, refresh_s=None, seed=11, meters=MODBUS_METERS
    ) as sim:
        devices = MqttMeterSimulator(
            MQTT_METERS, sim.feed.values, mqtt_settings, interval_s=0.05, client_id="sim-devices-1"
        )
        devices.corrupt.add("compressor-3")
        agent = EdgeAgent(agent_settings(park, sim, devices, mqtt_settings.url, tmp_path))
        async with subscriber(mqtt_settings.url, f"test-sub-{next(_ids)}") as sub:
            await sub.subscribe(data_topic, qos=1)
            async with running(agent):
                assert agent.mqtt_devices is not None
                async with asyncio.timeout(10):
                    await agent.mqtt_devices.subscribed.wait()
                started_ms = time.time_ns() // 1_000_000
                batches: list[dict[str, Any]] = []

                async def until(check: Any) -> None:
                    async with asyncio.timeout(15):
                        async for message in sub.messages:
                            assert isinstance(message.payload, bytes)
                            batches.append(orjson.loads(message.payload))
                            if check(seen(batches)):
                                return

                async with devices:
                    # the broken device never stops the others
                    await until(
                        lambda s: all(len(s.get(m.meter, [])) >= 2 for m in MQTT_METERS[:3])
                    )
                    assert "steelco-c3" not in seen(batches)
                    broken_until = len(batches)
                    devices.corrupt.discard("compressor-3")  # fixed: it comes back
                    await until(lambda s: len(s.get("steelco-c3", [])) >= 1)
                stats = agent.mqtt_devices.stats

    by_meter = seen(batches)
    # Modbus meters and MQTT-native ones share the batches
    assert set(by_meter) == set(MODBUS_METERS) | {m.meter for m in MQTT_METERS}
    assert any({"steelco-main", "steelco-c2"} <= {r["m"] for r in b["readings"]} for b in batches)
    now_ms = time.time_ns() // 1_000_000
    for batch in batches:
        parsed = parse_batch(orjson.dumps(batch), DataTopic(park.park, GATEWAY), registry, now_ms)
        assert parsed.rejections == []  # ingest takes every value
    for device in MQTT_METERS:
        want = expected(device, sim.feed.values(device.meter))
        readings = by_meter[device.meter]
        got: dict[str, float] = {}
        for reading in readings:
            assert reading["s"] == "ok"
            assert started_ms - 1000 <= reading["t"] <= now_ms
            if device.style is not Style.SHELLY_PRO_3EM:
                assert reading["t"] % 1000 == 0  # the device's own clock, whole seconds
            got.update(reading["q"])
        assert_values(got, want, device.meter)
    # a reading goes out once: no (meter, t, values) twice
    keys = [(r["m"], r["t"], tuple(sorted(r["q"]))) for b in batches for r in b["readings"]]
    assert len(keys) == len(set(keys))
    # Tasmota reports power in W: the batch has kW
    assert by_meter["steelco-c2"][0]["q"]["p_kw"] == sim.feed.values("steelco-c2")["p_kw"]
    assert broken_until < len(batches)

    ours = [r.getMessage() for r in caplog.records if r.name.startswith("edge_agent")]
    broken = [m for m in ours if "steelco-c3" in m]
    assert len(broken) == 2, broken  # once when it broke, once when it was back
    assert "no usable readings" in broken[0]
    assert "not JSON" in broken[0]
    assert "is back after" in broken[1]
    assert not [m for m in ours if "steelco-c3" not in m], ours
    assert stats.unusable >= 3


@pytest.mark.anyio
async def test_run_mqtt_meters_publishes_a_gateway_s_meters(
    demo_park_path: Path, mqtt_settings: MqttSettings
) -> None:
    topics_seen: set[str] = set()
    async with subscriber(mqtt_settings.url, f"test-sub-{next(_ids)}") as sub:
        await sub.subscribe("+/status/#", qos=0)
        await sub.subscribe("water/+/up", qos=0)
        run = run_mqtt_meters(demo_park_path, GATEWAY, mqtt_url=mqtt_settings.url, interval_s=0.05)
        async with background(run), asyncio.timeout(10):
            async for message in sub.messages:
                topics_seen.add(message.topic.value)
                if {"shellypro3em-steelco-c1/status/emdata:0", "water/steelco-cooling/up"} <= (
                    topics_seen
                ):
                    break
    assert "shellypro3em-steelco-main/status/em:0" in topics_seen


@pytest.mark.anyio
async def test_device_broker_outage_does_not_stop_the_modbus_meters(
    park: Park, shared_broker: MqttSettings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The meters' own broker (device_mqtt) goes away and comes back: the batches keep coming
    through the park's broker with the Modbus readings, and the MQTT meters return."""
    mqtt_settings = shared_broker
    caplog.set_level(logging.WARNING, logger="edge_agent")
    device_broker = Mosquitto(tmp_path / "device-broker", port=free_port())
    device_broker.start()
    data_topic = topics.data_topic(park.park, GATEWAY)
    device_settings = MqttSettings(url=device_broker.url, connect_timeout_s=2.0)
    meters = MQTT_METERS[:1]
    try:
        async with SimulatedGateway(
            park, GATEWAY, refresh_s=None, seed=3, meters=MODBUS_METERS
        ) as sim:
            devices = MqttMeterSimulator(
                meters, sim.feed.values, device_settings, interval_s=0.05, client_id="sim-dev-2"
            )
            settings = agent_settings(
                park, sim, devices, mqtt_settings.url, tmp_path, device_mqtt=device_settings
            )
            agent = EdgeAgent(settings)
            async with subscriber(mqtt_settings.url, f"test-sub-{next(_ids)}") as sub:
                await sub.subscribe(data_topic, qos=1)
                async with running(agent):
                    hub = agent.mqtt_devices
                    assert hub is not None
                    await eventually(hub.subscribed.is_set)
                    async with devices:
                        await eventually(lambda: hub.stats.readings >= 3)
                    device_broker.stop()
                    await eventually(lambda: not hub.subscribed.is_set())
                    published = agent.published
                    await eventually(lambda: agent.published >= published + 5)  # Modbus on
                    device_broker.start()
                    await eventually(hub.subscribed.is_set)
                    before = hub.stats.readings
                    async with devices:
                        await eventually(lambda: hub.stats.readings >= before + 3)
                    batches: list[dict[str, Any]] = []
                    async with asyncio.timeout(10):
                        async for message in sub.messages:
                            assert isinstance(message.payload, bytes)
                            batches.append(orjson.loads(message.payload))
                            if len(batches) >= 3:
                                break
    finally:
        device_broker.stop()

    assert {r["m"] for b in batches for r in b["readings"]} >= set(MODBUS_METERS)
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("edge_agent")]
    assert sum("device broker" in m and "unreachable" in m for m in ours) == 1, ours
    assert sum("device broker" in m and "is back after" in m for m in ours) == 1, ours
    # the broker's outage is not blamed on the device (silence counts only while subscribed)
    assert not [m for m in ours if "steelco-c1" in m], ours


class SwallowedCancelDevices(MqttDevices):
    """Device subscriptions whose connect is a bare ``asyncio.wait_for`` (as in aiomqtt),
    completed with a refusal in the loop step that cancels them."""

    def __init__(self) -> None:
        super().__init__([])
        self.attempt: asyncio.Future[None] | None = None
        self.first_attempt = asyncio.Event()

    async def _session(self, settings: MqttSettings, client_id: str, *args: Any) -> None:
        self.attempt = asyncio.get_running_loop().create_future()
        self.first_attempt.set()
        try:
            await asyncio.wait_for(self.attempt, timeout=0.2)
        except TimeoutError:
            raise aiomqtt.MqttError("no answer from the broker") from None


@pytest.mark.anyio
async def test_device_subscriber_stops_when_a_connect_swallows_its_cancellation() -> None:
    """Python 3.11's ``wait_for`` loses a cancellation that lands as its operation completes;
    the task group that stops the agent cancels once, so the reconnect loop must notice."""
    native = SwallowedCancelDevices()
    settings = MqttSettings(url=f"mqtt://127.0.0.1:{free_port()}")

    async def agent() -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(
                native.run(settings, "devices", reconnect_base_s=0.01, reconnect_cap_s=0.02)
            )

    task = asyncio.create_task(agent())
    await asyncio.wait_for(native.first_attempt.wait(), 10)
    assert native.attempt is not None
    native.attempt.set_exception(aiomqtt.MqttError("connection refused"))
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=3.0)
    if not done:  # end it for the next test: cancel the reconnect loop itself
        loop = next(t for t in asyncio.all_tasks() if "MqttDevices.run" in repr(t.get_coro()))
        await cancel_and_wait(loop)
    await cancel_and_wait(task)
    assert done, "the device subscriber did not stop"


class SubscribeSwallowsCancel(mqtt.Client):
    """The real client, but its subscribe loses a cancellation that lands as the SUBACK
    does — what Python 3.11's ``wait_for`` inside aiomqtt does in that race."""

    async def subscribe(self, *args: Any, **kwargs: Any) -> Any:
        granted = await super().subscribe(*args, **kwargs)
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)  # the cancellation, taken and dropped
        return granted


@pytest.mark.anyio
async def test_device_session_stops_when_its_subscribe_swallows_a_cancellation(
    mqtt_settings: MqttSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a subscribe that lost the cancellation, the session must not go on to wait for
    device messages for ever: nothing would cancel it again."""
    monkeypatch.setattr(mqtt, "Client", SubscribeSwallowsCancel)
    native = MqttDevices(
        [MqttMeterConfig(meter="foodco-fridge", map="tasmota-energy", device="fridge")]
    )
    task = asyncio.create_task(native.run(mqtt_settings, f"swallow-{next(_ids)}"))
    done, _ = await asyncio.wait([task], timeout=5.0)
    await cancel_and_wait(task)
    assert done, "the device session kept waiting for messages"
