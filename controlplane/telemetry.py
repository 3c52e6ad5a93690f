"""Telemetry without a Prometheus server: scraped proxy samples, a bounded history, and the
golden metrics computed from it over a window.

Pure functions over :class:`Sample` values; the scraping loop in
:mod:`controlplane.scraper` feeds the history.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

HISTORY_SECONDS = 15 * 60
FINE_SECONDS = 120  # 1 s resolution for the last two minutes ...
COARSE_EVERY = 10  # ... then one sample in ten, up to HISTORY_SECONDS


@dataclass(frozen=True)
class Sample:
    """What one scrape of one proxy said, reduced to what the golden metrics need."""

    time: float
    # (direction, peer identity, dst_service, dst_namespace, tls, dst_deployment) -> counts
    requests: dict[tuple[str, ...], float] = field(default_factory=dict)
    failures: dict[tuple[str, ...], float] = field(default_factory=dict)
    # key -> cumulative counts per bound of ``bounds`` (an array: histograms are most of a sample)
    buckets: dict[tuple[str, ...], array] = field(default_factory=dict)
    tcp_open: float = 0.0
    bounds: tuple[float, ...] = ()  # the histograms' upper bounds, shared by every key
    # per route, outbound: (dst "svc.ns", route, "effective"|"actual") -> counts; latency per (dst, route)
    route_requests: dict[tuple[str, str, str], float] = field(default_factory=dict)
    route_failures: dict[tuple[str, str, str], float] = field(default_factory=dict)
    route_buckets: dict[tuple[str, str], array] = field(default_factory=dict)
    reset: bool = False  # a counter went down since the previous sample: the proxy restarted (set by WorkloadHistory)
    overflow: dict[str, float] = field(default_factory=dict)  # service FQDN -> requests refused by connectionPool limits
    # inbound authorization: (decision "allow"|"deny"|"audit", the policy label) -> requests (meshdojo authz)
    authz: dict[tuple[str, str], float] = field(default_factory=dict)
    tls_refused: dict[str, float] = field(default_factory=dict)  # a gateway's TLS connections refused, per reason
    rate_limited: dict[str, float] = field(default_factory=dict)  # inbound requests answered 429, per rate limit (ns/name)


def _went_down(new: Sample, old: Sample) -> bool:
    """Did any request counter decrease (or vanish)? Then the proxy restarted in between."""
    return any(new.requests.get(key, 0.0) < value for key, value in old.requests.items()) or any(
        new.route_requests.get(key, 0.0) < value for key, value in old.route_requests.items())


@dataclass
class WorkloadHistory:
    """About 15 minutes of one proxy's samples: every one for the last two minutes, then one in
    ten. A value that did not change since the previous sample is shared with it, not copied."""

    namespace: str
    name: str  # instance
    deployment: str
    identity: str | None
    meshed: bool
    fine: deque[Sample] = field(default_factory=lambda: deque(maxlen=FINE_SECONDS))
    coarse: deque[Sample] = field(default_factory=lambda: deque(maxlen=HISTORY_SECONDS // COARSE_EVERY))
    last_error: str | None = None
    last_success: float = 0.0
    series_cache: dict = field(default_factory=dict)  # the previous scrape's parsed series
    _count: int = 0

    def add(self, sample: Sample) -> None:
        previous = self.fine[-1] if self.fine else None
        if previous is not None:
            sample = Sample(
                sample.time,
                _share(sample.requests, previous.requests),
                _share(sample.failures, previous.failures),
                _share_arrays(sample.buckets, previous.buckets),
                sample.tcp_open,
                previous.bounds if previous.bounds == sample.bounds else sample.bounds,
                _share(sample.route_requests, previous.route_requests),
                _share(sample.route_failures, previous.route_failures),
                _share_arrays(sample.route_buckets, previous.route_buckets),
                _went_down(sample, previous),
                _share(sample.overflow, previous.overflow),
                _share(sample.authz, previous.authz),
                _share(sample.tls_refused, previous.tls_refused),
                _share(sample.rate_limited, previous.rate_limited),
            )
        self.fine.append(sample)
        if self._count % COARSE_EVERY == 0:
            self.coarse.append(sample)
        self._count += 1

    @property
    def samples(self) -> list[Sample]:
        """Oldest first: the coarse ones older than the fine ones, then the fine ones."""
        first_fine = self.fine[0].time if self.fine else math.inf
        return [s for s in self.coarse if s.time < first_fine] + list(self.fine)


def _share(new: dict, old: dict) -> dict:
    return old if new == old else new


def _share_arrays(new: dict, old: dict) -> dict:
    return {k: (old[k] if old.get(k) == v else v) for k, v in new.items()}


AUTHZ_DECISIONS = ("allow", "deny", "audit")
NEEDED_SERIES = ("response_total{", "response_latency_ms_bucket{", "tcp_open_connections{", "route_response_total{",
                 "route_actual_response_total{", "route_response_latency_ms_bucket{", "outbound_http_pool_overflow_total{",
                 "gateway_tls_refused_total{", "inbound_http_local_ratelimit_requests_total{",
                 *(f"inbound_http_authz_{decision}_total{{" for decision in AUTHZ_DECISIONS))
Series = tuple[str, dict[str, str]]  # a series' metric name and labels


def parse_exposition(text: str, now: float, cache: dict[str, Series] | None = None) -> Sample:
    """A scrape, reduced to what the golden metrics use.

    Only the series the golden metrics need are read, and a series is parsed with
    ``prometheus_client``'s parser the first time it is seen. With ``cache`` (one per proxy), a
    series of the previous scrape is not parsed again: only the value after its label set is
    read. From one second to the next a proxy's series hardly change while their values do,
    and the parser is pure Python. The cache is replaced by this scrape's series.
    """
    lines = [line for line in text.splitlines() if line.startswith(NEEDED_SERIES)]
    previous = cache if cache is not None else {}
    # a series is its line up to the label set's closing brace (a label value may hold one;
    # the value and timestamp after the last never do)
    split = [line.rpartition("}") for line in lines]
    fresh = [(line, series) for line, (series, _, _) in zip(lines, split, strict=True) if series not in previous]
    parsed: dict[str, Series] = {}
    if fresh:  # without TYPE lines every series parses as untyped: name, labels and value are all we need
        from prometheus_client.parser import text_string_to_metric_families

        text = "\n".join(line for line, _ in fresh) + "\n"
        samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
        for (_, series), sample in zip(fresh, samples, strict=True):
            parsed[series] = (sample.name, sample.labels)
    current = {series: previous.get(series) or parsed[series] for series, _, _ in split}
    if cache is not None:
        cache.clear()
        cache.update(current)
    return _reduce(((*current[series], _value(rest)) for series, _, rest in split), now)


def _value(rest: str) -> float:
    """The value after a series' label set (a timestamp may follow), as the text format writes it."""
    fields = rest.split()
    if not 1 <= len(fields) <= 2 or "_" in fields[0]:
        raise ValueError(f"malformed sample value {rest.strip()[:40]!r}")
    return float(fields[0])


def _reduce(series, now: float) -> Sample:
    requests: dict = {}
    failures: dict = {}
    buckets: dict[tuple[str, ...], dict[float, float]] = {}
    route_requests: dict = {}
    route_failures: dict = {}
    route_buckets: dict[tuple[str, str], dict[float, float]] = {}
    tcp_open = 0.0
    overflow: dict[str, float] = {}
    authz: dict[tuple[str, str], float] = {}
    tls_refused: dict[str, float] = {}
    rate_limited: dict[str, float] = {}
    for name, labels, value in series:
        if name == "outbound_http_pool_overflow_total":
            overflow[labels.get("service", "")] = value
            continue
        if name == "gateway_tls_refused_total":
            tls_refused[labels.get("reason", "")] = value
            continue
        if name == "inbound_http_local_ratelimit_requests_total":  # RateLimit's and HTTPLocalRateLimitPolicy's
            if labels.get("outcome") == "rate_limited":
                rate_limited[labels.get("ratelimit", "")] = value
            continue
        if name.startswith("inbound_http_authz_"):
            decision = name.removeprefix("inbound_http_authz_").removesuffix("_total")
            authz[(decision, labels.get("policy", ""))] = value
            continue
        if name.startswith("route_"):
            _reduce_route(name, labels, value, route_requests, route_failures, route_buckets)
            continue
        key = (labels.get("direction", ""), labels.get("client_id") or labels.get("server_id", ""),
               labels.get("dst_service", ""), labels.get("dst_namespace", ""), labels.get("tls", ""), labels.get("dst_deployment", ""))
        if name == "response_total":
            requests[key] = requests.get(key, 0.0) + value
            if labels.get("classification") == "failure":
                failures[key] = failures.get(key, 0.0) + value
        elif name == "response_latency_ms_bucket":
            le = math.inf if labels["le"] in ("+Inf", "inf") else float(labels["le"])
            per = buckets.setdefault(key, {})
            per[le] = per.get(le, 0.0) + value
        elif name == "tcp_open_connections" and labels.get("direction") == "inbound":
            tcp_open += value
    bounds = tuple(sorted({le for per in (*buckets.values(), *route_buckets.values()) for le in per}))
    compact = {key: array("d", (per.get(le, 0.0) for le in bounds)) for key, per in buckets.items()}
    route_compact = {key: array("d", (per.get(le, 0.0) for le in bounds)) for key, per in route_buckets.items()}
    return Sample(now, requests, failures, compact, tcp_open, bounds, route_requests, route_failures, route_compact,
                  overflow=overflow, authz=authz, tls_refused=tls_refused, rate_limited=rate_limited)


def _reduce_route(name: str, labels: dict[str, str], value: float, requests: dict, failures: dict, buckets: dict) -> None:
    dst, route = labels.get("dst", ""), labels.get("rt_route", "")
    if name == "route_response_latency_ms_bucket":
        le = math.inf if labels["le"] in ("+Inf", "inf") else float(labels["le"])
        per = buckets.setdefault((dst, route), {})
        per[le] = per.get(le, 0.0) + value
        return
    key = (dst, route, "actual" if name == "route_actual_response_total" else "effective")
    requests[key] = requests.get(key, 0.0) + value
    if labels.get("classification") == "failure":
        failures[key] = failures.get(key, 0.0) + value


def _segments(samples: list[Sample], window: float, until: float | None = None) -> list[tuple[Sample | None, Sample]]:
    """The window (ending at the newest sample, or at ``until``) cut where the proxy restarted, as
    (start, end) pairs whose counter differences add up to the window's increase — Prometheus'
    ``rate()`` rule for counter resets. A segment that begins with a restart has ``None`` as its
    start: its counters began at zero."""
    if until is not None:
        samples = [s for s in samples if s.time <= until]
    if len(samples) < 2:
        return []
    newest = samples[-1]
    first = next((i for i, sample in enumerate(samples) if sample.time >= newest.time - window), len(samples) - 1)
    first = min(first, len(samples) - 2)
    segments: list[tuple[Sample | None, Sample]] = []
    start: Sample | None = samples[first]
    for previous, sample in zip(samples[first:], samples[first + 1:], strict=False):
        if sample.reset:
            segments.append((start, previous))
            start = None
    segments.append((start, newest))
    return [(a, b) for a, b in segments if a is not b]


_EMPTY = Sample(0.0)


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """histogram_quantile over cumulative buckets (linear interpolation inside a bucket)."""
    points = sorted(buckets.items())
    if not points or points[-1][1] <= 0:
        return None
    rank = q * points[-1][1]
    prev_le, prev_count = 0.0, 0.0
    for le, count in points:
        if count >= rank:
            if math.isinf(le):
                return prev_le
            span = count - prev_count
            return prev_le + (le - prev_le) * ((rank - prev_count) / span if span else 1.0)
        prev_le, prev_count = le, count
    return prev_le


@dataclass(frozen=True)
class Golden:
    requests: float
    failures: float
    seconds: float
    buckets: dict[float, float]  # latency histogram of the window (cumulative, ms)
    tcp_conn: float
    secured: float  # requests over mTLS

    @property
    def latency_ms(self) -> dict[str, float | None]:
        return {name: quantile(q, self.buckets) for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))}

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def success_rate(self) -> float | None:
        return None if self.requests <= 0 else 1 - self.failures / self.requests


def golden(history: WorkloadHistory, window: float, direction: str = "inbound",
           keep: callable = lambda key: True, until: float | None = None) -> Golden | None:  # type: ignore[valid-type]
    segments = _segments(history.samples, window, until)
    if not segments:
        return None
    total = failed = secured = 0.0
    delta_b: dict[float, float] = {}
    for start, end in segments:
        old = start or _EMPTY
        for key, value in end.requests.items():
            if key[0] != direction or not keep(key):
                continue
            delta = max(value - old.requests.get(key, 0.0), 0.0)
            total += delta
            failed += max(end.failures.get(key, 0.0) - old.failures.get(key, 0.0), 0.0)
            if key[4] == "true":
                secured += delta
        old_index = {le: i for i, le in enumerate(old.bounds)}
        for key, new_b in end.buckets.items():
            if key[0] != direction or not keep(key):
                continue
            old_b = old.buckets.get(key)
            for le, count in zip(end.bounds, new_b, strict=True):
                before = old_b[old_index[le]] if old_b is not None and le in old_index else 0.0
                delta_b[le] = delta_b.get(le, 0.0) + max(count - before, 0.0)
    first, newest = segments[0][0] or segments[0][1], segments[-1][1]
    return Golden(total, failed, newest.time - first.time, delta_b, newest.tcp_open if direction == "inbound" else 0.0, secured)


def sum_golden(items: Iterable[Golden | None]) -> Golden | None:
    """Several instances of one deployment: counts and histograms add up; quantiles come after."""
    present = [g for g in items if g is not None]
    if not present:
        return None
    buckets: dict[float, float] = {}
    for g in present:
        for le, count in g.buckets.items():
            buckets[le] = buckets.get(le, 0.0) + count
    return Golden(sum(g.requests for g in present), sum(g.failures for g in present), max(g.seconds for g in present), buckets,
                  sum(g.tcp_conn for g in present), sum(g.secured for g in present))


@dataclass(frozen=True)
class RouteGolden:
    effective: float
    effective_failures: float
    actual: float
    actual_failures: float
    seconds: float
    buckets: dict[float, float]

    def rates(self) -> dict[str, float | None]:
        per_second = (lambda n: n / self.seconds) if self.seconds > 0 else (lambda n: 0.0)
        return {
            "effective_success": None if self.effective <= 0 else 1 - self.effective_failures / self.effective,
            "effective_rps": per_second(self.effective),
            "actual_success": None if self.actual <= 0 else 1 - self.actual_failures / self.actual,
            "actual_rps": per_second(self.actual),
        }


def overflow_in(history: WorkloadHistory, window: float, dst: str) -> float:
    """Requests to ``dst`` (a service FQDN) this client refused at once: connectionPool overflow."""
    return sum(max(end.overflow.get(dst, 0.0) - (start or _EMPTY).overflow.get(dst, 0.0), 0.0)
               for start, end in _segments(history.samples, window))


def tls_refused_in(history: WorkloadHistory, window: float) -> dict[str, float]:
    """A gateway's TLS connections refused in the window, per reason (restarts as in golden())."""
    return _counted_in(history, window, "tls_refused")


def rate_limited_in(history: WorkloadHistory, window: float) -> dict[str, float]:
    """Requests a workload's sidecar answered 429 in the window, per rate limit (its ns/name)."""
    return _counted_in(history, window, "rate_limited")


def _counted_in(history: WorkloadHistory, window: float, attribute: str) -> dict[str, float]:
    """How much each key of a sample's counter mapping (``attribute``) grew in the window, where it did."""
    counts: dict[str, float] = {}
    for start, end in _segments(history.samples, window):
        before = getattr(start or _EMPTY, attribute)
        for key, value in getattr(end, attribute).items():
            counts[key] = counts.get(key, 0.0) + max(value - before.get(key, 0.0), 0.0)
    return {key: n for key, n in counts.items() if n > 0}


def authz_counts(history: WorkloadHistory, window: float) -> tuple[dict[tuple[str, str], float], float]:
    """The inbound authorization decisions of the window, per (decision, policy label), and the
    seconds the window covers (restarts as in golden())."""
    segments = _segments(history.samples, window)
    counts: dict[tuple[str, str], float] = {}
    for start, end in segments:
        old = start or _EMPTY
        for key, value in end.authz.items():
            counts[key] = counts.get(key, 0.0) + max(value - old.authz.get(key, 0.0), 0.0)
    seconds = segments[-1][1].time - (segments[0][0] or segments[0][1]).time if segments else 0.0
    return counts, seconds


def route_golden(history: WorkloadHistory, window: float, dst: str) -> dict[str, RouteGolden]:
    """Per route of one destination service, from one client's history (restarts as in golden())."""
    segments = _segments(history.samples, window)
    if not segments:
        return {}
    counts: dict[str, list[float]] = {}
    latency: dict[str, dict[float, float]] = {}
    for start, end in segments:
        old = start or _EMPTY
        for (d, route, kind), value in end.route_requests.items():
            if d != dst:
                continue
            key = (d, route, kind)
            slot = counts.setdefault(route, [0.0, 0.0, 0.0, 0.0])
            base = 0 if kind == "effective" else 2
            slot[base] += max(value - old.route_requests.get(key, 0.0), 0.0)
            slot[base + 1] += max(end.route_failures.get(key, 0.0) - old.route_failures.get(key, 0.0), 0.0)
        old_index = {le: i for i, le in enumerate(old.bounds)}
        for (d, route), new_b in end.route_buckets.items():
            if d != dst:
                continue
            old_b = old.route_buckets.get((dst, route))
            per = latency.setdefault(route, {})
            for le, count in zip(end.bounds, new_b, strict=True):
                before = old_b[old_index[le]] if old_b is not None and le in old_index else 0.0
                per[le] = per.get(le, 0.0) + max(count - before, 0.0)
    seconds = segments[-1][1].time - (segments[0][0] or segments[0][1]).time
    return {route: RouteGolden(*slot, seconds, latency.get(route, {})) for route, slot in counts.items()}


def sum_route_golden(items: Iterable[RouteGolden]) -> RouteGolden:
    items = list(items)
    buckets: dict[float, float] = {}
    for g in items:
        for le, count in g.buckets.items():
            buckets[le] = buckets.get(le, 0.0) + count
    return RouteGolden(sum(g.effective for g in items), sum(g.effective_failures for g in items), sum(g.actual for g in items),
                       sum(g.actual_failures for g in items), max((g.seconds for g in items), default=0.0), buckets)
