"""The MQTT client's compiled PUBLISH reader (``_hotpath.read_publishes``) against the codec:
what it takes it reads as ``mqtt5`` does, and it leaves every other packet to the codec."""

from __future__ import annotations

import asyncio

import mqtt5
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parkwatch import _hotpath
from parkwatch.mqttio import FastClient, Message, _Protocol
from parkwatch.settings import MqttSettings

topic_text = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00+#"), min_size=1
)


def _publish(topic: str, payload: bytes, qos: int, packet_id: int, **props: object) -> bytes:
    qos_value = mqtt5.QoS.AT_LEAST_ONCE if qos else mqtt5.QoS.AT_MOST_ONCE
    packet = mqtt5.PublishPacket(
        topic, payload, qos=qos_value, packet_id=packet_id if qos else None, **props
    )
    return bytes(packet.write())


def _codec(data: bytes) -> list[Message]:
    out, at = [], 0
    while at < len(data):
        packet, used = mqtt5.read(memoryview(data)[at:])
        out.append(Message(packet.topic, packet.payload, int(packet.qos), packet.packet_id or 0))
        at += used
    return out


@settings(max_examples=300)
@given(
    packets=st.lists(
        st.tuples(
            topic_text,
            st.binary(max_size=300),
            st.sampled_from([0, 1]),
            st.integers(min_value=1, max_value=65_535),
            st.booleans(),
        ),
        max_size=8,
    ),
    cut=st.integers(min_value=0, max_value=40),
)
def test_reads_what_the_codec_reads(
    packets: list[tuple[str, bytes, int, int, bool]], cut: int
) -> None:
    parts = [
        _publish(t, p, q, i, **({"message_expiry_interval": 60} if props else {}))
        for t, p, q, i, props in packets
    ]
    data = b"".join(parts)
    messages, at, payload_bytes = _hotpath.read_publishes(data, 0, Message)
    # it stops at the first packet with properties and takes every one before it
    plain = next((k for k, (*_, props) in enumerate(packets) if props), len(packets))
    assert messages == _codec(b"".join(parts[:plain]))
    assert at == sum(len(part) for part in parts[:plain])
    assert payload_bytes == sum(len(m.payload) for m in messages)
    assert all(type(m) is Message for m in messages)
    # an incomplete packet at the end is left for the next read
    if plain == len(parts) and parts and cut:
        short = data[: len(data) - min(cut, len(parts[-1]))]
        messages, at, _ = _hotpath.read_publishes(short, 0, Message)
        assert messages == _codec(b"".join(parts[:-1]))
        assert at == len(data) - len(parts[-1])


def test_other_packets_are_the_codecs() -> None:
    # each hand-made packet is whole (its remaining length is its body's) and differs from a
    # plain PUBLISH the reader takes in the one rule it tests: it is declined for that rule
    plain = {
        b"\x32\x06\x00\x01a\x00\x01\x00": Message("a", b"", 1, 1),
        b"\x30\x05\x00\x02ab\x00": Message("ab", b"", 0, 0),
        b"\x30\x04\x00\x01a\x00": Message("a", b"", 0, 0),
    }
    for data, message in plain.items():
        assert _hotpath.read_publishes(data, 0, Message) == ([message], len(data), 0)
    others = [
        bytes(mqtt5.PubAckPacket(7).write()),
        bytes(mqtt5.PublishPacket("a/b", b"x", qos=mqtt5.QoS.EXACTLY_ONCE, packet_id=3).write()),
        b"\x32\x06\x00\x01+\x00\x01\x00",  # a wildcard in a PUBLISH topic
        b"\x32\x06\x00\x01#\x00\x01\x00",
        b"\x32\x06\x00\x01\x00\x00\x01\x00",  # a NUL in the topic
        b"\x32\x06\x00\x01a\x00\x00\x00",  # packet id 0 at QoS 1
        b"\x30\x05\x00\x02\xff\xfe\x00",  # a topic that is not UTF-8
        b"\x38\x04\x00\x01a\x00",  # the DUP flag at QoS 0
        b"\x32\x86\x00\x00\x01a\x00\x01\x00",  # remaining length 6 in two bytes, not one
    ]
    for data in others:
        assert _hotpath.read_publishes(data, 0, Message) == ([], 0, 0)
    # the codec refuses the long form of a length, as the reader leaves it to it
    with pytest.raises(ValueError, match="variable byte integer"):
        mqtt5.read(memoryview(others[-1]))


def test_a_socket_read_mixing_publishes_and_acks() -> None:
    """Through the client's protocol: messages in order, PUBACKs to their futures."""
    client = FastClient(MqttSettings(), "t")
    protocol = _Protocol(client)
    loop = asyncio.new_event_loop()
    try:
        acked = loop.create_future()
        client._puback[9] = acked  # our QoS 1 publish in flight, acknowledged mid-read
        loop_free = [
            _publish("pw/v1/p/g/data", b"1", 1, 1),
            bytes(mqtt5.PubAckPacket(9).write()),
            _publish("pw/v1/p/g/data", b"22", 1, 2),
            _publish("pw/v1/p/g/data", b"333", 0, 0, message_expiry_interval=5),
        ]
        data = b"".join(loop_free)
        protocol.data_received(data[:5])
        protocol.data_received(data[5:])
        received = [m for chunk in client._inbox for m in chunk]
        assert received == [
            Message("pw/v1/p/g/data", b"1", 1, 1),
            Message("pw/v1/p/g/data", b"22", 1, 2),
            Message("pw/v1/p/g/data", b"333", 0, 0),
        ]
        assert client._held == 6 + 3 * 256
        assert acked.done()
        assert acked.result() is None
        assert 9 not in client._puback
    finally:
        loop.close()


def test_topics_it_keeps_from_read_to_read_read_as_the_codec_does() -> None:
    """The reader keeps recent topics' strs (a table of 1,024 slots by a hash of their
    bytes): many topics in turn, more than the table holds (so that topics meet in a slot),
    topics that are prefixes of others or differ in one byte, and ones not ASCII, read as
    the codec reads them, read after read; a topic seen again is the same str."""
    names = [f"pw/v1/p/gw-{i:02d}/data" for i in range(40)]
    names += ["a", "ab", "abc", "b", "ba", "pw/v1/p/gw-0/data", "pw/v1/p/gw-00/datb", "é/ü", "é/ü2"]
    for rounds in (1, 3):
        parts = [
            _publish(name, name.encode() * (i % 3), i % 2, i + 1)
            for i, name in enumerate(names * rounds)
        ]
        for start in range(0, len(parts), 7):  # several reads
            data = b"".join(parts[start : start + 7])
            messages, at, _ = _hotpath.read_publishes(data, 0, Message)
            assert messages == _codec(data)
            assert at == len(data)
    crowd = [_publish(f"t/{i}", b"x", 1, i % 60000 + 1) for i in range(3000)] * 2
    for start in range(0, len(crowd), 500):
        data = b"".join(crowd[start : start + 500])
        messages, at, _ = _hotpath.read_publishes(data, 0, Message)
        assert messages == _codec(data)
        assert at == len(data)
    one = _publish("pw/v1/p/gw-keep/data", b"x", 1, 1)
    first, _, _ = _hotpath.read_publishes(one + one, 0, Message)
    assert first[0].topic is first[1].topic


def test_a_tuple_type_with_fields_of_its_own_is_made_as_tuple_new_makes_it() -> None:
    class Odd(tuple):  # type: ignore[type-arg]  # instances have a __dict__: not the quick way
        pass

    data = _publish("a/b", b"xy", 1, 5) + _publish("a/c", b"", 0, 0)
    messages, _, _ = _hotpath.read_publishes(data, 0, Odd)
    assert [type(m) for m in messages] == [Odd, Odd]
    assert [tuple(m) for m in messages] == [("a/b", b"xy", 1, 5), ("a/c", b"", 0, 0)]
