"""The proxy's Prometheus metrics, with Linkerd's names and labels.

HTTP metrics use ``prometheus_client`` counters and histograms (children cached per label
set, so the hot path does one dict lookup). TCP byte and connection counts are plain
integers on each connection, summed at scrape time by a custom collector, so reading and
writing bytes never takes a lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from proxy.http1 import HttpConnection

# Linkerd's latency buckets, in milliseconds.
LATENCY_BUCKETS_MS = (1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500,
                      1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000)
HTTP_LABELS = ("direction", "authority", "tls", "client_id", "server_id", "dst_namespace", "dst_service", "dst_deployment")
TCP_LABELS = ("direction", "peer", "tls", "client_id", "server_id")
# per route, as Linkerd's service-profile metrics: the effective response the caller saw, and
# every actual attempt behind it (retries make the two differ)
ROUTE_LABELS = ("direction", "dst", "rt_route")
DEFAULT_ROUTE = "[default]"


@dataclass
class _TcpTotals:
    opened: int = 0
    closed: int = 0
    read: int = 0
    written: int = 0
    live: set[HttpConnection] = field(default_factory=set)


class TcpStats(Collector):
    def __init__(self) -> None:
        self._by_labels: dict[tuple[str, ...], _TcpTotals] = {}
        self._of_conn: dict[HttpConnection, _TcpTotals] = {}

    def opened(self, conn: HttpConnection, labels: tuple[str, ...]) -> None:
        totals = self._by_labels.get(labels)
        if totals is None:
            totals = self._by_labels[labels] = _TcpTotals()
        totals.opened += 1
        totals.live.add(conn)
        self._of_conn[conn] = totals

    def closed(self, conn: HttpConnection) -> None:
        totals = self._of_conn.pop(conn, None)
        if totals is not None:
            totals.closed += 1
            totals.live.discard(conn)
            totals.read += conn.bytes_read
            totals.written += conn.bytes_written

    def open_connections(self) -> int:
        return len(self._of_conn)

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        opened = CounterMetricFamily("tcp_open", "Total count of opened connections", labels=TCP_LABELS)
        closed = CounterMetricFamily("tcp_close", "Total count of closed connections", labels=TCP_LABELS)
        live = GaugeMetricFamily("tcp_open_connections", "Number of currently-open connections", labels=TCP_LABELS)
        read = CounterMetricFamily("tcp_read_bytes", "Total count of bytes read from peers", labels=TCP_LABELS)
        written = CounterMetricFamily("tcp_write_bytes", "Total count of bytes written to peers", labels=TCP_LABELS)
        for labels, t in self._by_labels.items():
            values = list(labels)
            opened.add_metric(values, t.opened)
            closed.add_metric(values, t.closed)
            live.add_metric(values, len(t.live))
            read.add_metric(values, t.read + sum(c.bytes_read for c in t.live))
            written.add_metric(values, t.written + sum(c.bytes_written for c in t.live))
        yield from (opened, closed, live, read, written)


class IdentityGauges(Collector):
    """``identity_cert_expiration_timestamp_seconds`` and the counter family
    ``identity_cert_refresh_count`` (Linkerd's name; its sample is ``..._count_total`` so that
    ``promtool check metrics`` is satisfied: a ``_count`` suffix belongs to histograms)."""

    def __init__(self) -> None:
        self.expiration = 0.0
        self.refreshes = 0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "identity_cert_expiration_timestamp_seconds", "Time when this proxy's current certificate expires",
            value=self.expiration,
        )
        yield CounterMetricFamily(
            "identity_cert_refresh_count", "Number of times this proxy's certificate has been refreshed",
            value=self.refreshes,
        )


class BreakerStates(Collector):
    """``outbound_http_breaker_state{service, endpoint, state}``: 1 for each endpoint's current
    circuit-breaker state (closed, open, half-open)."""

    def __init__(self, states) -> None:
        self._states = states

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("outbound_http_breaker_state", "Circuit breaker state per endpoint",
                                   labels=("service", "endpoint", "state"))
        for service, endpoints in self._states().items():
            for endpoint, state in endpoints.items():
                family.add_metric([service, endpoint, state], 1)
        yield family


class ProxyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("request", "Total count of HTTP requests", HTTP_LABELS, registry=self.registry)
        self.responses = Counter(
            "response", "Total count of HTTP responses", (*HTTP_LABELS, "status_code", "classification"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "response_latency_ms", "Elapsed times between a request's headers being received and its response's headers being sent, in milliseconds",
            (*HTTP_LABELS, "status_code"), buckets=LATENCY_BUCKETS_MS, registry=self.registry,
        )
        self.tls_refused = Counter(
            "inbound_tls_refused", "Inbound connections refused before HTTP (plaintext under STRICT, failed handshakes)",
            ("reason",), registry=self.registry,
        )
        self.proxy_errors = Counter(
            "proxy_errors", "Requests answered by the proxy itself, by x-meshdojo-error code", ("direction", "error"),
            registry=self.registry,
        )
        self.faults = Counter(
            "inbound_fault_injected", "Requests delayed or aborted by a FaultInjection resource", ("kind", "policy"),
            registry=self.registry,
        )
        self.retries = Counter(
            "outbound_http_route_retry", "Retry decisions: retried, overflow (budget exhausted), limit_exceeded (attempts used)",
            ("route", "outcome"), registry=self.registry,
        )
        self.timeouts = Counter(
            "outbound_http_route_timeouts", "Requests that hit a route timeout (request or backendRequest)", ("kind", "route"),
            registry=self.registry,
        )
        self.pool_overflow = Counter(
            "outbound_http_pool_overflow", "Requests answered 503 at once: connectionPool limits full (Envoy's pending overflow)",
            ("service",), registry=self.registry,
        )
        self.breaker_transitions = Counter(
            "outbound_http_breaker_transitions", "Circuit breaker state changes per service (tripped, closed)",
            ("service", "transition"), registry=self.registry,
        )
        self.authz_allow = Counter("inbound_http_authz_allow", "Requests allowed by authorization", ("policy",), registry=self.registry)
        self.authz_deny = Counter("inbound_http_authz_deny", "Requests denied by authorization", ("policy",), registry=self.registry)
        self.authz_audit = Counter("inbound_http_authz_audit", "Requests matched by an AUDIT policy", ("policy",), registry=self.registry)
        self.ratelimited = Counter(
            "inbound_http_local_ratelimit_requests", "Requests checked by a RateLimit", ("ratelimit", "outcome"), registry=self.registry,
        )
        self.route_responses = Counter(
            "route_response", "HTTP responses per route, as the caller saw them (after retries)",
            (*ROUTE_LABELS, "status_code", "classification"), registry=self.registry,
        )
        self.route_actual_responses = Counter(
            "route_actual_response", "HTTP responses per route, every attempt (retries included)",
            (*ROUTE_LABELS, "status_code", "classification"), registry=self.registry,
        )
        self.route_latency = Histogram(
            "route_response_latency_ms", "Per-route latency as the caller saw it, in milliseconds",
            ROUTE_LABELS, buckets=LATENCY_BUCKETS_MS, registry=self.registry,
        )
        self.tcp = TcpStats()
        self.identity = IdentityGauges()
        self.registry.register(self.tcp)
        self.registry.register(self.identity)
        self._children: dict[tuple[str, ...], tuple[object, dict[tuple[str, str], tuple[object, object]]]] = {}
        self._route_children: dict[tuple[str, ...], object] = {}

    def record(self, labels: tuple[str, ...], status: int, latency_ms: float, failure: bool) -> None:
        """One finished request: its count, response count and latency."""
        cached = self._children.get(labels)
        if cached is None:
            cached = self._children[labels] = (self.requests.labels(*labels), {})
        request_child, by_status = cached
        request_child.inc()  # type: ignore[attr-defined]
        key = (str(status), "failure" if failure else "success")
        pair = by_status.get(key)
        if pair is None:
            pair = by_status[key] = (self.responses.labels(*labels, *key), self.latency.labels(*labels, key[0]))
        pair[0].inc()  # type: ignore[attr-defined]
        pair[1].observe(latency_ms)  # type: ignore[attr-defined]

    def record_route(self, dst: str, route: str | None, status: int, failure: bool, latency_ms: float | None) -> None:
        """One response on a route: the effective one (with its latency) or, without a latency,
        one actual attempt."""
        key = (dst, route or DEFAULT_ROUTE, str(status), "failure" if failure else "success", latency_ms is None)
        child = self._route_children.get(key)
        if child is None:
            family = self.route_actual_responses if latency_ms is None else self.route_responses
            child = self._route_children[key] = family.labels("outbound", *key[:4])
        child.inc()  # type: ignore[attr-defined]
        if latency_ms is not None:
            self.route_latency.labels("outbound", dst, key[1]).observe(latency_ms)
