"""The hot-path client's acknowledgements, packed without the codec: byte for byte what the
codec writes, one per QoS 1 message, in arrival order, none for QoS 0."""

from __future__ import annotations

import asyncio

import mqtt5
import pytest

from parkwatch import mqttio
from parkwatch.mqttio import FastClient, Message
from parkwatch.settings import MqttSettings

pytestmark = pytest.mark.anyio


class _Transport:
    def __init__(self) -> None:
        self.sent = bytearray()

    def write(self, data: bytes) -> None:
        self.sent += data

    def is_closing(self) -> bool:
        return False

    def resume_reading(self) -> None:
        pass


@pytest.mark.parametrize("compiled", [True, False])
async def test_release_writes_the_codecs_pubacks_in_order(
    compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compiled packing (``hotpath.pubacks``) and the Python one write the same bytes
    and free the same held bytes."""
    if compiled:
        assert mqttio._pubacks is not None, "the extension is not built"
    else:
        monkeypatch.setattr(mqttio, "_pubacks", None)
    client = FastClient(MqttSettings(), "acks")
    client._held = 1000
    transport = _Transport()
    client._transport = transport  # type: ignore[assignment]
    ids = [1, 255, 256, 4096, 65_535, 7]
    messages = [Message("t", b"x", 1, i) for i in ids]
    messages.insert(2, Message("t", b"y", 0, 0))  # QoS 0: nothing to acknowledge
    client.release(messages)
    await asyncio.sleep(0)  # what is queued in one turn goes out in one write
    expected = b"".join(mqtt5.PubAckPacket(i).write() for i in ids)
    assert bytes(transport.sent) == expected
    # and the codec reads them back as plain successes
    view, packets = bytes(transport.sent), []
    while view:
        packet, used = mqtt5.read(view)
        packets.append(packet)
        view = view[used:]
    assert [(p.packet_id, int(p.reason_code)) for p in packets] == [(i, 0) for i in ids]
    assert client._held == 1000 - 7 - 7 * mqttio.MESSAGE_OVERHEAD


def test_the_compiled_packing_leaves_anything_unusual_to_python() -> None:
    """``hotpath.pubacks`` takes plain Message tuples only; anything else is None (release
    then packs in Python), and QoS 0 alone acknowledges nothing."""
    pack = mqttio._pubacks
    assert pack is not None, "the extension is not built"
    assert pack([Message("t", b"abc", 0, 0), Message("t", b"", 0, 0)]) == (b"", 3)
    assert pack([Message("t", b"x", 1, 70_000)]) is None  # no packet id of MQTT's
    assert pack([("t", bytearray(b"x"), 1, 1)]) is None  # a payload that is not bytes
    assert pack([["t", b"x", 1, 1]]) is None
    assert pack([]) == (b"", 0)
