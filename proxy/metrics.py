"""The proxy's Prometheus metrics, with Linkerd's names and labels.

What every request touches — request, response and latency per label set, the same per
route, TCP bytes and connections — is kept in plain integers and lists by custom collectors
and read at scrape time: the hot path does a dict lookup, a bisect and a few additions, and
takes no lock (the proxy is one thread). The rarer counters (errors, retries, faults,
authorization, …) are ``prometheus_client`` counters. ``/metrics`` is
:meth:`ProxyMetrics.exposition`: the request metrics written straight from their counts
(:mod:`proxy.exposition`), then everything else by ``generate_latest``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from proxy.exposition import TextExposition
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

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
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


class _Latencies:
    """One histogram's bucket counts (not cumulative: cumulated at scrape) and sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS_MS, value)] += 1  # le: a value on a bound counts in that bucket
        self.total += value

    def buckets(self) -> list[tuple[str, int]]:
        out, running = [], 0
        for bound, n in zip(BOUNDS, self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


BOUNDS = (*(str(float(bound)) for bound in LATENCY_BUCKETS_MS), "+Inf")  # prometheus_client's spelling: le="1.0"


@dataclass(frozen=True)
class FamilySpec:
    """What a family of the request metrics is called and labelled by."""

    name: str
    documentation: str
    type: str  # counter or histogram
    labels: tuple[str, ...]


REQUESTS = FamilySpec("request", "Total count of HTTP requests", "counter", HTTP_LABELS)
RESPONSES = FamilySpec("response", "Total count of HTTP responses", "counter", (*HTTP_LABELS, "status_code", "classification"))
LATENCY = FamilySpec(
    "response_latency_ms",
    "Elapsed times between a request's headers being received and its response's headers being sent, in milliseconds",
    "histogram", (*HTTP_LABELS, "status_code"))
ROUTE_RESPONSES = FamilySpec("route_response", "HTTP responses per route, as the caller saw them (after retries)", "counter",
                             (*ROUTE_LABELS, "status_code", "classification"))
ROUTE_ACTUAL = FamilySpec("route_actual_response", "HTTP responses per route, every attempt (retries included)", "counter",
                          (*ROUTE_LABELS, "status_code", "classification"))
ROUTE_LATENCY = FamilySpec("route_response_latency_ms", "Per-route latency as the caller saw it, in milliseconds", "histogram",
                           ROUTE_LABELS)
# a family's rows: (label values, count) for a counter; (label values, cumulative buckets, sum) for a histogram
Rows = list[tuple[tuple[str, ...], int]] | list[tuple[tuple[str, ...], list[tuple[str, int]], float]]


class HttpStats(Collector):
    """``request_total``, ``response_total`` and ``response_latency_ms`` per label set, and the
    per-route ``route_response_total``, ``route_actual_response_total`` and
    ``route_response_latency_ms``, as counts the request path adds to."""

    def __init__(self) -> None:
        # (HTTP labels, status_code, classification) -> [responses, latencies]
        self.responses: dict[tuple[tuple[str, ...], str, str], tuple[list[int], _Latencies]] = {}
        # (dst, rt_route, status_code, classification, actual?) -> count; (dst, rt_route) -> latencies
        self.route_responses: dict[tuple[str, str, str, str, bool], list[int]] = {}
        self.route_latency: dict[tuple[str, str], _Latencies] = {}

    def record(self, labels: tuple[str, ...], status: int, latency_ms: float, failure: bool) -> None:
        key = (labels, str(status), "failure" if failure else "success")
        entry = self.responses.get(key)
        if entry is None:
            entry = self.responses[key] = ([0], _Latencies())
        entry[0][0] += 1
        entry[1].observe(latency_ms)

    def record_route(self, dst: str, route: str | None, status: int, failure: bool, latency_ms: float | None) -> None:
        key = (dst, route or DEFAULT_ROUTE, str(status), "failure" if failure else "success", latency_ms is None)
        count = self.route_responses.get(key)
        if count is None:
            count = self.route_responses[key] = [0]
        count[0] += 1
        if latency_ms is not None:
            latencies = self.route_latency.get(key[:2])  # type: ignore[arg-type]
            if latencies is None:
                latencies = self.route_latency[key[:2]] = _Latencies()  # type: ignore[index]
            latencies.observe(latency_ms)

    def rows(self) -> list[tuple[FamilySpec, Rows]]:
        """Every family with its rows, as a scrape shows them: the one reading of the counts that
        both :meth:`collect` (``prometheus_client``'s families) and ``/metrics``' writer use."""
        per_labels: dict[tuple[str, ...], int] = {}
        responses: list[tuple[tuple[str, ...], int]] = []
        by_status: dict[tuple[tuple[str, ...], str], _Latencies] = {}
        for (labels, status, classification), (count, latencies) in self.responses.items():
            per_labels[labels] = per_labels.get(labels, 0) + count[0]
            responses.append(((*labels, status, classification), count[0]))
            merged = by_status.setdefault((labels, status), _Latencies())  # a status' successes and failures together
            merged.counts = [a + b for a, b in zip(merged.counts, latencies.counts, strict=True)]
            merged.total += latencies.total
        route: list[tuple[tuple[str, ...], int]] = []
        actual: list[tuple[tuple[str, ...], int]] = []
        for (dst, rt, status, classification, is_actual), count in self.route_responses.items():
            (actual if is_actual else route).append((("outbound", dst, rt, status, classification), count[0]))
        latency: list[tuple[tuple[str, ...], list[tuple[str, int]], float]] = [
            ((*labels, status), latencies.buckets(), latencies.total) for (labels, status), latencies in by_status.items()]
        route_latency: list[tuple[tuple[str, ...], list[tuple[str, int]], float]] = [
            (("outbound", dst, rt), latencies.buckets(), latencies.total) for (dst, rt), latencies in self.route_latency.items()]
        return [(REQUESTS, list(per_labels.items())), (RESPONSES, responses), (LATENCY, latency),
                (ROUTE_RESPONSES, route), (ROUTE_ACTUAL, actual), (ROUTE_LATENCY, route_latency)]

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        for spec, rows in self.rows():
            if spec.type == "counter":
                counter = CounterMetricFamily(spec.name, spec.documentation, labels=spec.labels)
                for values, count in rows:  # type: ignore[misc]
                    counter.add_metric(list(values), count)
                yield counter
            else:
                histogram = HistogramMetricFamily(spec.name, spec.documentation, labels=spec.labels)
                for values, buckets, total in rows:  # type: ignore[misc]
                    histogram.add_metric(list(values), buckets, total)
                yield histogram


class ProxyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)  # every family: what generate_latest would write
        self._others = CollectorRegistry(auto_describe=True)  # every family but the request metrics
        self._http_text = TextExposition()
        self.http = HttpStats()
        self.registry.register(self.http)
        self.record = self.http.record  # one finished request: its count, response count and latency
        # one response on a route: the effective one (with its latency) or, without a latency, one actual attempt
        self.record_route = self.http.record_route
        def counter(name: str, documentation: str, labels: tuple[str, ...]) -> Counter:
            made = Counter(name, documentation, labels, registry=None)
            self.register(made)
            return made

        self.tls_refused = counter(
            "inbound_tls_refused", "Inbound connections refused before HTTP (plaintext under STRICT, failed handshakes)", ("reason",))
        self.gateway_tls_refused = counter(
            "gateway_tls_refused", "A gateway's TLS connections refused (no listener for the name, no Secret, no or an untrusted "
            "client certificate, ...)", ("reason",))
        self.proxy_errors = counter(
            "proxy_errors", "Requests answered by the proxy itself, by x-meshdojo-error code", ("direction", "error"))
        self.faults = counter(
            "inbound_fault_injected", "Requests delayed or aborted by a FaultInjection resource", ("kind", "policy"))
        self.route_faults = counter(
            "outbound_fault_injected", "Requests delayed or aborted by a VirtualService rule's fault, in the caller's sidecar",
            ("kind", "route"))
        self.retries = counter(
            "outbound_http_route_retry", "Retry decisions: retried, overflow (budget exhausted), limit_exceeded (attempts used)",
            ("route", "outcome"))
        self.mirrors = counter(
            "outbound_http_route_mirror", "Copies sent by a RequestMirror filter: sent (answered), failed, skipped (too many in flight)",
            ("route", "backend", "outcome"))
        self.timeouts = counter(
            "outbound_http_route_timeouts", "Requests that hit a route timeout (request or backendRequest)", ("kind", "route"))
        self.pool_overflow = counter(
            "outbound_http_pool_overflow", "Requests answered 503 at once: connectionPool limits full (Envoy's pending overflow)",
            ("service",))
        self.breaker_transitions = counter(
            "outbound_http_breaker_transitions", "Circuit breaker state changes per service (tripped, closed)", ("service", "transition"))
        self.jwt = counter("inbound_http_jwt", "End users' tokens checked by a RequestAuthentication: verified or refused (401)",
                           ("policy", "outcome"))
        self.authz_allow = counter("inbound_http_authz_allow", "Requests allowed by authorization", ("policy",))
        self.authz_deny = counter("inbound_http_authz_deny", "Requests denied by authorization", ("policy",))
        self.ext_authz = counter("inbound_http_ext_authz", "Requests a CUSTOM AuthorizationPolicy's external authorizer "
                                 "decided: allowed or denied (Envoy's ext_authz ok and denied)", ("provider", "result"))
        self.spans_exported = counter("proxy_trace_spans_exported", "Spans sent to a Telemetry's zipkin provider: sent or failed "
                                      "(dropped, as Envoy drops them)", ("provider", "outcome"))
        self.authz_audit = counter("inbound_http_authz_audit", "Requests matched by an AUDIT policy", ("policy",))
        self.authz_dry_run = counter("inbound_http_authz_dry_run", "What the dry-run (istio.io/dry-run) ALLOW and DENY policies "
                                     "would have done", ("action", "result", "policy"))
        self.ratelimited = counter(
            "inbound_http_local_ratelimit_requests", "Requests checked by a RateLimit", ("ratelimit", "outcome"))
        self.memory_returned = Counter("proxy_memory_returned_bytes", "Freed memory the proxy gave back to the system (malloc_trim)",
                                       registry=None)
        self.register(self.memory_returned)
        self.tcp = TcpStats()
        self.identity = IdentityGauges()
        self.register(self.tcp)
        self.register(self.identity)

    def register(self, collector: Collector) -> None:
        """A collector beside the request metrics (in the exposition's order: after them)."""
        self.registry.register(collector)
        self._others.register(collector)

    def exposition(self) -> bytes:
        """``/metrics``: what ``generate_latest(self.registry)`` writes, the request metrics'
        lines written with their label text kept between scrapes (:mod:`proxy.exposition`)."""
        return self._http_text.render(self.http.rows()).encode() + generate_latest(self._others)
