"""Telemetry: the golden metrics computed from scraped samples, checked against known traffic."""

from __future__ import annotations

import asyncio
import math
import time

import aiohttp
import pytest
from prometheus_client import generate_latest

from controlplane.telemetry import Sample, WorkloadHistory, golden, parse_exposition, quantile, sum_golden
from proxy.metrics import ProxyMetrics
from tests.apps import start_echo_app
from tests.meshkit import Mesh, spiffe
from tests.test_faults_e2e import until

LABELS = ("inbound", "emoji:8080", "true", "spiffe://meshdojo.local/ns/emojivoto/sa/web", "", "", "", "")


def test_quantiles_interpolate_like_histogram_quantile():
    buckets = {1.0: 10, 5.0: 50, 10.0: 90, math.inf: 100}
    assert quantile(0.5, buckets) == 5.0
    assert quantile(0.7, buckets) == 7.5
    assert quantile(0.99, buckets) == 10.0  # in the +Inf bucket: the highest finite bound
    assert quantile(0.5, {}) is None


def test_golden_metrics_from_two_scrapes_of_a_real_exposition():
    metrics = ProxyMetrics()
    history = WorkloadHistory("emojivoto", "emoji-0", "emoji", "spiffe://x", True)
    history.add(parse_exposition(generate_latest(metrics.registry).decode(), 100.0))
    for i in range(100):
        metrics.record(LABELS, 500 if i % 10 == 0 else 200, 3.0 if i < 50 else 30.0, failure=i % 10 == 0)
    history.add(parse_exposition(generate_latest(metrics.registry).decode(), 110.0))
    g = golden(history, 60)
    assert g.requests == 100 and g.rps == 10.0 and g.success_rate == 0.9 and g.secured == 100
    assert g.latency_ms["p50"] == 3.0 and 20 <= g.latency_ms["p99"] <= 30  # half at 3 ms, half at 30 ms
    both = sum_golden([g, g])
    assert both.requests == 200 and both.success_rate == 0.9


def _one_workload(namespace: str, deployment: str):
    """A control plane's telemetry with one meshed pod of ``deployment``, on a clock the test moves:
    (that pod's proxy metrics, the clock, the telemetry, the pod's history)."""
    from controlplane.scraper import Telemetry

    clock = [100.0]
    telemetry = Telemetry(clock=lambda: clock[0])
    telemetry.put_workload(namespace, f"{deployment}-0", deployment, "spiffe://x", True, None)
    return ProxyMetrics(), clock, telemetry, telemetry.workloads[(namespace, f"{deployment}-0")]


def test_a_gateways_refused_tls_connections_are_counted_per_reason_in_the_window():
    from sandbox.observe import stat_table

    metrics, clock, telemetry, history = _one_workload("bookinfo", "bookinfo-ingress")
    history.add(parse_exposition(generate_latest(metrics.registry).decode(), 100.0))
    for reason, n in (("no_client_certificate", 3), ("unknown_server_name", 1)):
        for _ in range(n):
            metrics.gateway_tls_refused.labels(reason).inc()
    clock[0] = 110.0
    history.add(parse_exposition(generate_latest(metrics.registry).decode(), 110.0))
    [row] = telemetry.deployment_rows(60, "bookinfo")
    assert row["tls_refused"] == {"no_client_certificate": 3, "unknown_server_name": 1}
    assert stat_table([row], False)[0][-1] == "TLS_REFUSED"
    assert stat_table([row], False)[1][-1] == "4 (no_client_certificate 3, unknown_server_name 1)"
    history.add(parse_exposition(generate_latest(metrics.registry).decode(), 200.0))
    assert "tls_refused" not in telemetry.deployment_rows(30, "bookinfo")[0]  # none in the last 30 s
    assert stat_table(telemetry.deployment_rows(30, "bookinfo"), False)[0][-1] == "TCP_CONN"


def test_a_deployments_429s_are_counted_per_rate_limit_in_the_window():
    from sandbox.observe import stat_table

    metrics, clock, telemetry, history = _one_workload("emojivoto", "web")
    metrics.ratelimited.labels("emojivoto/web-http", "rate_limited").inc(2)  # before the window: not counted
    history.add(parse_exposition(generate_latest(metrics.registry).decode(), 100.0))
    metrics.ratelimited.labels("emojivoto/web-http", "allowed").inc(4)
    metrics.ratelimited.labels("emojivoto/web-http", "rate_limited").inc(6)
    metrics.ratelimited.labels("emojivoto/web-4-per-minute", "rate_limited").inc(1)
    clock[0] = 110.0
    history.add(parse_exposition(generate_latest(metrics.registry).decode(), 110.0))
    [row] = telemetry.deployment_rows(60, "emojivoto")
    assert row["rate_limited"] == {"emojivoto/web-4-per-minute": 1, "emojivoto/web-http": 6}
    table = stat_table([row], False)
    assert table[0][-1] == "RATE_LIMITED" and table[1][-1] == "7 (emojivoto/web-4-per-minute 1, emojivoto/web-http 6)"
    history.add(parse_exposition(generate_latest(metrics.registry).decode(), 200.0))
    assert "rate_limited" not in telemetry.deployment_rows(30, "emojivoto")[0]


def test_the_window_picks_the_right_baseline():
    history = WorkloadHistory("ns", "w-0", "w", None, True)
    key = ("inbound", "", "", "", "true")
    for t in range(0, 1000):  # 5 requests a second, every second, for longer than the history
        history.add(Sample(float(t), {key: 5.0 * t}, {}, {}, 0.0))
    assert golden(history, 10).rps == 5.0 and golden(history, 10).seconds == 10.0
    assert golden(history, 300).rps == 5.0 and 299 <= golden(history, 300).seconds <= 309  # from the coarse part
    assert golden(history, 5000).seconds >= 890  # about 15 minutes kept, not more
    assert len(history.fine) + len(history.coarse) <= 120 + 90


def test_a_window_can_end_in_the_past():
    """A report's earlier window: ``until`` ends it there, with the same counter arithmetic."""
    history = WorkloadHistory("ns", "w-0", "w", None, True)
    key = ("inbound", "", "", "", "true")
    for t in range(0, 100):  # 2 requests a second for 50 s, then 8
        history.add(Sample(float(t), {key: 2.0 * t if t <= 50 else 100 + 8.0 * (t - 50)}, {}, {}, 0.0))
    assert golden(history, 20, until=40).rps == 2.0 and golden(history, 20, until=40).seconds == 20.0
    assert golden(history, 20).rps == 8.0
    assert golden(history, 20, until=0.5) is None  # one sample is no window


def test_fifteen_minutes_of_history_stay_small():
    import tracemalloc
    from array import array

    from bench.telemetry_bench import realistic_page

    parsed = parse_exposition(realistic_page().decode(), 0.0)
    history = WorkloadHistory("ns", "w-0", "w", None, True)
    tracemalloc.start()
    for t in range(900):  # fresh objects every second, as a new scrape gives
        history.add(Sample(float(t), dict(parsed.requests), dict(parsed.failures),
                           {k: array("d", v) for k, v in parsed.buckets.items()}, parsed.tcp_open, tuple(parsed.bounds)))
    used, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert used < 2_000_000, used  # a quiet proxy's 15 minutes: shared values, compact histograms


async def test_known_traffic_gives_the_right_numbers_and_edges(mesh: Mesh):
    runner, port = await start_echo_app("emoji")
    try:
        server = mesh.start_proxy("emojivoto", "emoji", port, name="emoji")
        client = mesh.start_proxy("emojivoto", "web", port, name="web")
        mesh.register("emojivoto", "emoji", "emoji-0", server.ports["inbound"], spiffe("emojivoto", "emoji"))
        mesh.register("emojivoto", "legacy", "legacy-0", port, None)
        for name, proxy, deployment, ident in (("emoji-0", server, "emoji", "emoji"), ("web-0", client, "web", "web")):
            status, _ = mesh.call("PUT", f"/v1/workloads/emojivoto/{name}", {
                "deployment": deployment, "identity": spiffe("emojivoto", ident), "meshed": True, "admin": proxy.ports["admin"]})
            assert status == 200
        rate, error_every = 40, 5  # 40 requests a second, one in five fails (status 500)
        stop = time.monotonic() + 6
        sent = 0
        answered_at: list[float] = []  # the rate achieved, which a busy machine holds below the one aimed at

        async with aiohttp.ClientSession() as session:
            async def generate() -> None:
                nonlocal sent
                started = time.monotonic()
                while time.monotonic() < stop:
                    path = "/status/500" if sent % error_every == 0 else "/?delay_ms=20"
                    async with session.get(f"http://emoji{path}", proxy=client.outbound) as rsp:
                        await rsp.read()
                    answered_at.append(time.monotonic())
                    sent += 1
                    await asyncio.sleep(max(started + sent / rate - time.monotonic(), 0))
                async with session.get("http://legacy/", proxy=client.outbound) as rsp:
                    await rsp.read()

            generator = asyncio.ensure_future(generate())  # noqa: TID251 - the test's own load
            await asyncio.sleep(4.5)  # let 4.5 s of steady traffic accumulate (load, not synchronization)
            asked = time.monotonic()
            status, body = await asyncio.to_thread(mesh.call, "GET", "/v1/stats?resource=deploy&window=3s")
            await generator
        assert status == 200
        emoji = next(r for r in body["rows"] if r["name"] == "emoji")
        assert emoji["meshed"] == "1/1" and emoji["namespace"] == "emojivoto"
        assert abs(emoji["success_rate"] - 0.8) < 0.05, emoji
        # the control plane's 3 s end at its last scrape (under a second before it was asked):
        # compared with the rate the proxy really carried over the 4 s before, steady by then
        achieved = sum(asked - 4 <= t <= asked for t in answered_at) / 4
        assert achieved > rate / 4, f"the load generator managed only {achieved:.1f} requests a second"
        assert 0.75 * achieved < emoji["rps"] < 1.25 * achieved, (achieved, emoji)
        assert 20 <= emoji["latency_ms"]["p50"] <= 40, emoji  # most requests wait 20 ms in the app
        assert emoji["tcp_conn"] >= 1 and emoji["mtls_share"] == 1.0

        edges = (await until(lambda: asyncio.to_thread(mesh.call, "GET", "/v1/edges?window=1m"),
                             lambda r: any(e["dst"] == "legacy" for e in r[1]["rows"]), "the plaintext edge"))[1]["rows"]
        secured = next(e for e in edges if e["dst"] == "emoji")
        assert secured["src"] == "web" and secured["secured"] is True
        assert secured["client_id"] == spiffe("emojivoto", "web") and secured["server_id"] == spiffe("emojivoto", "emoji")
        plaintext = next(e for e in edges if e["dst"] == "legacy")
        assert plaintext["secured"] is False and plaintext["server_id"] is None

        # a proxy that stops answering is shown as such, not dropped
        server.proc.kill()
        rows = (await until(lambda: asyncio.to_thread(mesh.call, "GET", "/v1/stats?resource=deploy"),
                            lambda r: any(row["not_answering"] for row in r[1]["rows"]), "the dead proxy to show", 8))[1]["rows"]
        assert next(r for r in rows if r["name"] == "emoji")["not_answering"] == ["emoji-0"]
    finally:
        await runner.cleanup()


def test_the_series_cache_gives_what_a_cold_parse_gives():
    metrics = ProxyMetrics()
    cache: dict = {}
    metrics.record(LABELS, 200, 3.0, False)
    parse_exposition(generate_latest(metrics.registry).decode(), 1.0, cache)
    for status, latency in ((200, 7.0), (500, 70.0), (200, 0.5)):
        metrics.record(LABELS, status, latency, status >= 500)
    text = generate_latest(metrics.registry).decode()
    cached, cold = parse_exposition(text, 2.0, cache), parse_exposition(text, 2.0)
    assert cached.requests == cold.requests and cached.failures == cold.failures
    assert cached.buckets == cold.buckets and cached.bounds == cold.bounds
    assert sum(cached.requests.values()) == 4


def test_a_known_series_is_not_parsed_again_only_its_new_value_is_read(monkeypatch):
    """Live traffic changes every counter each second, not the set of series: the pure-Python
    parser sees a series once, and after that only the value after its label set is read."""
    import prometheus_client.parser as parser

    real, parsed_lines = parser.text_string_to_metric_families, []

    def counting(text):
        parsed_lines.extend(text.splitlines())
        return real(text)

    monkeypatch.setattr(parser, "text_string_to_metric_families", counting)
    tricky = 'response_total{direction="outbound",dst_service="we} ird",classification="success",tls="true"}'
    cache: dict = {}
    first = parse_exposition(f"{tricky} 3.0\n# HELP not a series\n", 1.0, cache)
    assert len(parsed_lines) == 1 and sum(first.requests.values()) == 3.0
    second = parse_exposition(f"{tricky} 17.0\n", 2.0, cache)
    assert len(parsed_lines) == 1  # the same series with a new value: not parsed again
    assert list(second.requests) == list(first.requests) and sum(second.requests.values()) == 17.0
    assert next(iter(second.requests))[2] == "we} ird"  # a brace inside a label value stays in the label
    other = tricky.replace("we} ird", "emoji")
    third = parse_exposition(f"{tricky} 18.0\n{other} 1e3\n", 3.0, cache)
    assert parsed_lines[1:] == [f"{other} 1e3"] and sorted(third.requests.values()) == [18.0, 1000.0]
    for bad in ("17.0 12 13", "", "1_000", "many"):  # not a value: the scrape fails with the line, never a traceback
        with pytest.raises(ValueError):
            parse_exposition(f"{tricky} {bad}\n", 4.0, cache)


def test_a_restart_inside_the_window_is_counted_like_prometheus_rate():
    """Counters restart at zero with the proxy: the increase before and after is added up, so
    `stat` right after a restart or a scale does not under-report."""
    from controlplane.telemetry import Sample, WorkloadHistory, golden

    key = ("inbound", "", "", "", "true")
    history = WorkloadHistory("emojivoto", "emoji-0", "emoji", "spiffe://x", True)
    for t, total in enumerate([100, 110, 120, 5, 15]):  # restarted between the third and fourth scrape
        history.add(Sample(float(t), {key: float(total)}, {key: 1.0 if t < 3 else 0.0}))
    g = golden(history, 60)
    assert g.requests == 20 + 15 and g.seconds == 4.0  # not max(15 - 100, 0) = 0
    assert g.failures == 0 and g.secured == 35
    assert history.samples[3].reset and not history.samples[4].reset


def test_an_edge_the_callers_sidecar_answered_itself_is_not_called_plaintext():
    """A VirtualService's abort (or an open breaker) answers in the caller's sidecar: no
    connection, so the edge says so instead of "plaintext", and its failures still count."""
    from sandbox.observe import edges_table

    metrics, clock, telemetry, history = _one_workload("bookinfo", "reviews-v2")
    history.add(parse_exposition(generate_latest(metrics.registry).decode(), 100.0))
    answered = ("outbound", "ratings.bookinfo.svc.cluster.local:9080", "no_identity", "", "", "bookinfo", "ratings", "")
    for _ in range(5):
        metrics.record(answered, 500, 0.4, failure=True)
    clock[0] = 110.0
    history.add(parse_exposition(generate_latest(metrics.registry).decode(), 110.0))
    [row] = telemetry.edges(60, "bookinfo")
    assert (row["src"], row["dst"], row["reached"], row["secured"], row["success_rate"]) == ("reviews-v2", "ratings", False, False, 0.0)
    assert edges_table([row], False)[1][4] == "- (caller's sidecar answered)"
