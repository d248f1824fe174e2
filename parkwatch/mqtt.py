"""Building aiomqtt clients from :class:`~parkwatch.settings.MqttSettings`."""

from __future__ import annotations

import ssl
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from parkwatch.settings import MqttSettings


def tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    if not settings.tls:
        return None
    context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    return context


def connect_properties(session_expiry_s: int = 0, receive_maximum: int | None = None) -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    if session_expiry_s:
        props.SessionExpiryInterval = session_expiry_s
    if receive_maximum:
        # the broker sends at most this many unacknowledged QoS 1 messages: flow control
        props.ReceiveMaximum = receive_maximum
    return props


def client(
    settings: MqttSettings,
    identifier: str,
    *,
    will: aiomqtt.Will | None = None,
    clean_start: bool = True,
    session_expiry_s: int = 0,
    receive_maximum: int | None = None,
    **kwargs: Any,
) -> aiomqtt.Client:
    """An MQTT v5 client; use it as ``async with``."""
    return aiomqtt.Client(
        settings.host,
        settings.port,
        identifier=identifier,
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_context=tls_context(settings),
        keepalive=settings.keepalive_s,
        timeout=settings.connect_timeout_s,
        will=will,
        # a bool, never paho's FIRST_ONLY: every aiomqtt.Client is a new paho client, so
        # "first only" would start clean on every reconnect and drop the persistent session
        clean_start=clean_start,
        properties=connect_properties(session_expiry_s, receive_maximum),
        **kwargs,
    )
