"""Spans sent to a trace collector, as Istio's Zipkin provider has Envoy send them: a Zipkin v2
receiver on a real socket (what Zipkin and Jaeger's Zipkin port take), registered as a Service
without a sidecar; an ExtensionProvider naming it; a Telemetry choosing it. Pure parts:
tests/test_zipkin.py."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from tests.apps import serve_app
from tests.meshkit import Mesh, spiffe
from tests.test_faults_e2e import until
from tests.test_traffic_e2e import apply

POL = "policy.meshdojo.dev/v1alpha1"


@pytest.fixture
async def collector():
    """A Zipkin v2 receiver: (its port, every span it was sent, the batches' paths)."""
    spans: list[dict] = []
    paths: list[str] = []

    async def receive(request: web.Request) -> web.Response:
        paths.append(request.path)
        spans.extend(await request.json())
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    runner, port = await serve_app(app)
    try:
        yield port, spans, paths
    finally:
        await runner.cleanup()


def zipkin(service: str) -> dict:
    return {"apiVersion": POL, "kind": "ExtensionProvider", "metadata": {"name": "zipkin", "namespace": "meshdojo-system"},
            "spec": {"zipkin": {"service": f"{service}.istio-system.svc.cluster.local", "port": 9411, "maxTagLength": 64}}}


def telemetry(**tracing) -> dict:
    return {"apiVersion": POL, "kind": "Telemetry", "metadata": {"name": "mesh-default", "namespace": "meshdojo-system"},
            "spec": {"tracing": [tracing]}}


async def test_istios_zipkin_provider_gets_every_sidecars_spans(mesh: Mesh, echo_port: int, collector):
    port, spans, paths = collector
    httpbin = mesh.start_proxy("foo", "httpbin", echo_port, name="httpbin")
    sleep = mesh.start_proxy("foo", "sleep", echo_port, name="sleep")
    mesh.register("foo", "httpbin", "httpbin-0", httpbin.ports["inbound"], spiffe("foo", "httpbin"))
    mesh.register("istio-system", "zipkin", "zipkin-0", port, None)  # a collector without a sidecar, as Istio's addon
    apply(mesh, zipkin("zipkin"), telemetry(randomSamplingPercentage=100, providers=[{"name": "zipkin"}]))
    await until(lambda: _provider_of(sleep), lambda p: p is not None, "the Telemetry to reach sleep's sidecar")

    async with aiohttp.ClientSession() as session:
        async def one_call() -> str:
            async with session.get("http://httpbin/status/200?token=" + "x" * 40, proxy=sleep.outbound) as rsp:
                await rsp.read()
            return "ok"

        await one_call()
        # a trace: sleep's CLIENT span, httpbin's SERVER span under it, each from its own sidecar
        both = await until(lambda: _trace_pairs(spans), lambda found: found, "both sidecars' spans at the collector", timeout=10)
    client, server = both[0]
    assert server["parentId"] == client["id"] and "parentId" not in client
    assert (client["localEndpoint"], server["localEndpoint"]) == ({"serviceName": "sleep.foo"}, {"serviceName": "httpbin.foo"})
    assert client["tags"]["http.status_code"] == "200" and client["tags"]["peer.identity"] == spiffe("foo", "httpbin")
    assert len(client["tags"]["http.url"]) == 64 and client["name"] == "httpbin/status/200"  # maxTagLength; no query in a name
    assert client["duration"] >= server["duration"] > 0
    assert set(paths) == {"/api/v2/spans"}
    assert not any("api/v2/spans" in s["name"] for s in spans)  # the batches themselves are never traced
    assert 'proxy_trace_spans_exported_total{outcome="sent",provider="zipkin"}' in sleep.metrics()
    assert 'dst_service="zipkin"' not in sleep.metrics()  # nor counted as the workload's traffic


async def test_a_collector_that_cannot_be_reached_costs_the_spans_not_the_requests(mesh: Mesh, echo_port: int):
    sleep = mesh.start_proxy("foo", "sleep", echo_port, name="sleep")
    httpbin = mesh.start_proxy("foo", "httpbin", echo_port, name="httpbin")
    mesh.register("foo", "httpbin", "httpbin-0", httpbin.ports["inbound"], spiffe("foo", "httpbin"))
    apply(mesh, zipkin("nowhere"), telemetry(randomSamplingPercentage=100, providers=[{"name": "zipkin"}]))
    await until(lambda: _provider_of(sleep), lambda p: p is not None, "the Telemetry to reach sleep's sidecar")
    async with aiohttp.ClientSession() as session, session.get("http://httpbin/", proxy=sleep.outbound) as rsp:
        assert rsp.status == 200
    await until(lambda: _metrics(sleep), lambda text: 'outcome="failed",provider="zipkin"' in text, "the failed batch to be counted")


async def _metrics(proxy) -> str:
    return proxy.metrics()


async def _provider_of(proxy) -> dict | None:
    return proxy.config()["tracing"].get("provider")


async def _trace_pairs(spans: list[dict]) -> list[tuple[dict, dict]]:
    clients = {s["id"]: s for s in spans if s["kind"] == "CLIENT"}
    return [(clients[s["parentId"]], s) for s in spans if s["kind"] == "SERVER" and s.get("parentId") in clients]
