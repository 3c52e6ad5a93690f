"""Telemetry without a Prometheus server: scraped proxy samples, a bounded history, and the
golden metrics computed from it over a window.

Pure functions over :class:`Sample` values; the scraping loop in
:mod:`controlplane.scraper` feeds the history.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

HISTORY_SECONDS = 15 * 60


@dataclass(frozen=True)
class Sample:
    """What one scrape of one proxy said, reduced to what the golden metrics need."""

    time: float
    # (direction, peer identity, dst_service, dst_namespace, tls) -> counts
    requests: dict[tuple[str, str, str, str, str], float] = field(default_factory=dict)
    failures: dict[tuple[str, str, str, str, str], float] = field(default_factory=dict)
    buckets: dict[tuple[str, str, str, str, str], dict[float, float]] = field(default_factory=dict)  # key -> le -> cumulative
    tcp_open: float = 0.0


@dataclass
class WorkloadHistory:
    namespace: str
    name: str  # instance
    deployment: str
    identity: str | None
    meshed: bool
    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=HISTORY_SECONDS + 60))
    last_error: str | None = None
    last_success: float = 0.0


def parse_exposition(text: str, now: float) -> Sample:
    from prometheus_client.parser import text_string_to_metric_families

    requests: dict = {}
    failures: dict = {}
    buckets: dict[tuple[str, str, str, str, str], dict[float, float]] = {}
    tcp_open = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = s.labels
            key = (labels.get("direction", ""), labels.get("client_id") or labels.get("server_id", ""),
                   labels.get("dst_service", ""), labels.get("dst_namespace", ""), labels.get("tls", ""))
            if s.name == "response_total":
                requests[key] = requests.get(key, 0.0) + s.value
                if labels.get("classification") == "failure":
                    failures[key] = failures.get(key, 0.0) + s.value
            elif s.name == "response_latency_ms_bucket":
                le = math.inf if labels["le"] in ("+Inf", "inf") else float(labels["le"])
                per = buckets.setdefault(key, {})
                per[le] = per.get(le, 0.0) + s.value
            elif s.name == "tcp_open_connections" and labels.get("direction") == "inbound":
                tcp_open += s.value
    return Sample(now, requests, failures, buckets, tcp_open)


def _baseline(samples: deque[Sample], window: float) -> tuple[Sample, Sample] | None:
    if len(samples) < 2:
        return None
    newest = samples[-1]
    oldest = samples[0]
    for sample in samples:
        if sample.time >= newest.time - window:
            oldest = sample
            break
    if oldest is newest:
        oldest = samples[-2]
    return oldest, newest


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
           keep: callable = lambda key: True) -> Golden | None:  # type: ignore[valid-type]
    pair = _baseline(history.samples, window)
    if pair is None:
        return None
    old, new = pair
    total = failed = secured = 0.0
    for key, value in new.requests.items():
        if key[0] != direction or not keep(key):
            continue
        delta = max(value - old.requests.get(key, 0.0), 0.0)
        total += delta
        failed += max(new.failures.get(key, 0.0) - old.failures.get(key, 0.0), 0.0)
        if key[4] == "true":
            secured += delta
    delta_b: dict[float, float] = {}
    for key, new_b in new.buckets.items():
        if key[0] != direction or not keep(key):
            continue
        old_b = old.buckets.get(key, {})
        for le, count in new_b.items():
            delta_b[le] = delta_b.get(le, 0.0) + max(count - old_b.get(le, 0.0), 0.0)
    return Golden(total, failed, new.time - old.time, delta_b, new.tcp_open if direction == "inbound" else 0.0, secured)


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
