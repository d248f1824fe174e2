"""Building aiomqtt clients from :class:`~parkwatch.settings.MqttSettings`."""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt.types import PahoSocket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from parkwatch.settings import MqttSettings


class Client(aiomqtt.Client):
    """``aiomqtt.Client`` with a guard against a race in aiomqtt 2.5.

    paho asks, possibly from another thread, to watch its socket for writing; aiomqtt passes
    that on with ``call_soon_threadsafe(loop.add_writer, fileno, …)``. When the connection
    drops in between, ``add_writer`` runs on a closed descriptor and raises EBADF inside an
    event-loop callback — an unhandled error at every unlucky broker restart. Here the
    registration checks that the socket is still open when it runs.
    """

    def _on_socket_register_write(
        self, client: paho.Client, userdata: Any, sock: PahoSocket
    ) -> None:
        def write() -> None:
            # as aiomqtt does: a failed write means the connection broke
            try:
                client.loop_write()
            except Exception as exc:  # handed to the connection's waiter
                if not self._disconnected.done():
                    self._disconnected.set_exception(exc)

        def register() -> None:
            fileno = sock.fileno()
            if fileno < 0:
                return  # closed before we got here: nothing to watch
            with contextlib.suppress(OSError, ValueError):
                self._loop.add_writer(fileno, write)

        self._loop.call_soon_threadsafe(register)


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
) -> Client:
    """An MQTT v5 client; use it as ``async with``."""
    return Client(
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
