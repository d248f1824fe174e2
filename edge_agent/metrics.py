"""The edge agent's Prometheus metrics, in a registry of their own (never the global one).

Served on ``metrics_port`` when it is set (``/metrics``, a thread of ``prometheus_client``'s
own small HTTP server: the gateway needs no web framework for one page).
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# per-device read times: a Modbus TCP read on a LAN takes milliseconds, a DL/T 645 read on a
# 2400-baud bus a tenth of a second or more
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class EdgeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.reads = Counter(
            "pw_edge_reads", "device reads, by meter and result", ["meter", "result"], registry=r
        )
        self.read_seconds = Histogram(
            "pw_edge_read_seconds",
            "time to read one device (all its requests), by meter",
            ["meter"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.flags = Counter(
            "pw_edge_flagged_readings",
            "readings sent with a quality other than ok, by meter and quality",
            ["meter", "quality"],
            registry=r,
        )
        self.link_busy = Gauge(
            "pw_edge_link_utilisation",
            "share of the last poll interval a link (bus, endpoint, session) was busy",
            ["link"],
            registry=r,
        )
        self.link_requests = Counter(
            "pw_edge_link_requests", "requests sent on a link", ["link"], registry=r
        )
        self.skipped_slots = Counter(
            "pw_edge_skipped_slots", "poll slots a link missed because it overran", registry=r
        )
        self.batches = Counter("pw_edge_batches", "batches written to the buffer", registry=r)
        self.published = Counter(
            "pw_edge_published",
            "batches acknowledged by the broker, live or replayed",
            ["kind"],
            registry=r,
        )
        self.buffered = Gauge("pw_edge_buffered", "batches waiting in the buffer", registry=r)
        self.connected = Gauge("pw_edge_broker_up", "1 while the broker session is up", registry=r)
        self._server: WSGIServer | None = None

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` until :meth:`close`; returns the port (0 picks a free one)."""
        self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
