"""The hot-path client's acknowledgements, packed without the codec: byte for byte what the
codec writes, one per QoS 1 message, in arrival order, none for QoS 0."""

from __future__ import annotations

import asyncio

import mqtt5
import pytest

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


async def test_release_writes_the_codecs_pubacks_in_order() -> None:
    client = FastClient(MqttSettings(), "acks")
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
