"""The proxy's ``/metrics`` page: written by our label-caching writer for the request metrics and
by ``prometheus_client`` for the rest, it must be what ``generate_latest`` writes, byte for byte."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from proxy.exposition import TextExposition
from proxy.http1 import HttpConnection
from proxy.metrics import BreakerStates, FamilySpec, ProxyMetrics

TRICKY = 'we"ird\\host\nname:8080'  # a quote, a backslash, a newline: each escaped in the text format


def labels(direction: str, authority: str, service: str = "") -> tuple[str, ...]:
    outbound = direction == "outbound"
    return (direction, authority, "true", "" if outbound else "spiffe://meshdojo.local/ns/emojivoto/sa/web",
            f"spiffe://meshdojo.local/ns/emojivoto/sa/{service}" if outbound else "", "emojivoto" if outbound else "",
            service, f"{service}-v1" if outbound else "")


def busy_metrics() -> ProxyMetrics:
    metrics = ProxyMetrics()
    metrics.register(BreakerStates(lambda: {"emoji.emojivoto": {"10.0.0.1:8080": "open", "10.0.0.2:8080": "closed"}}))
    for status, latency, failure in ((200, 0.4, False), (200, 3.0, False), (503, 70.0, True), (200, 60_000.0, False)):
        metrics.record(labels("inbound", "web.emojivoto.svc.cluster.local:8080"), status, latency, failure)
        metrics.record(labels("outbound", "emoji.emojivoto.svc.cluster.local:8080", "emoji"), status, latency, failure)
        metrics.record(labels("inbound", TRICKY), status, latency, failure)
        metrics.record_route("emoji.emojivoto.svc.cluster.local", "emojivoto/flaky.0", status, failure, latency)
        metrics.record_route("emoji.emojivoto.svc.cluster.local", "emojivoto/flaky.0", status, failure, None)
        metrics.record_route("voting.emojivoto.svc.cluster.local", None, status, failure, latency)
    metrics.proxy_errors.labels("outbound", "no_endpoints").inc()
    metrics.retries.labels("emojivoto/flaky.0", "retried").inc(3)
    conn = HttpConnection("request")
    metrics.tcp.opened(conn, ("inbound", "src", "true", "spiffe://meshdojo.local/ns/emojivoto/sa/web", ""))
    metrics.identity.expiration = 1_800_000_000.5
    return metrics


def test_the_metrics_page_is_what_generate_latest_writes():
    metrics = busy_metrics()
    assert metrics.exposition() == generate_latest(metrics.registry)
    # the second scrape reuses the label text: new values, and a label set seen for the first time
    metrics.record(labels("inbound", TRICKY), 200, 12.5, False)
    metrics.record(labels("outbound", "ratings.bookinfo.svc.cluster.local:9080", "ratings"), 500, 2.0, True)
    metrics.record_route("ratings.bookinfo.svc.cluster.local", None, 500, True, 2.0)
    page = metrics.exposition()
    assert page == generate_latest(metrics.registry)
    text = page.decode()
    assert 'authority="we\\"ird\\\\host\\nname:8080"' in text  # escaped as the format asks
    assert "response_latency_ms_bucket{" in text and 'rt_route="emojivoto/flaky.0"' in text
    assert 'outbound_http_breaker_state{endpoint="10.0.0.1:8080",service="emoji.emojivoto",state="open"} 1.0' in text


def test_the_label_caching_writer_refuses_a_family_it_does_not_write():
    info = FamilySpec("build", "Build facts", "info", ("version",))
    with pytest.raises(ValueError, match="info families are written by generate_latest"):
        TextExposition().render([(info, [])])
