"""Spans for a trace collector, pure: Zipkin's v2 JSON of a span, the exporter's batches (with a
handler that records what it is given), the Telemetry and ExtensionProvider fields that choose
the collector. Through real proxies and a real receiver: tests/test_zipkin_e2e.py."""

from __future__ import annotations

import asyncio
import json

import pytest

from controlplane import providers
from controlplane.policy import PolicyError, parse
from controlplane.telemetrypolicy import effective
from proxy.exchange import BytesBody, Response
from proxy.tasks import TaskSet
from proxy.tracing import Span, SpanLog
from proxy.zipkin import BATCH, EVERY_SECONDS, SpanExporter, zipkin_span
from sandbox.resourcetable import table

POL = "policy.meshdojo.dev/v1alpha1"
ZIPKIN = {"apiVersion": POL, "kind": "ExtensionProvider", "metadata": {"name": "zipkin", "namespace": "meshdojo-system"},
          "spec": {"zipkin": {"service": "zipkin.istio-system.svc.cluster.local", "port": "9411"}}}


def span(status: int = 200, direction: str = "outbound", parent: str | None = None, peer: str = "", error: str | None = None,
         fate: str = "no policy applied") -> Span:
    return Span("a" * 32, "b" * 16, parent, "bookinfo/productpage-v1-0", "productpage-v1", direction, "GET", "reviews:9080",
                "/reviews/0?x=1", status, 1_800_000_000.25, 12.5, peer, fate, error)


def telemetry(name: str, ns: str, tracing: dict) -> object:
    return parse({"apiVersion": POL, "kind": "Telemetry", "metadata": {"name": name, "namespace": ns}, "spec": {"tracing": [tracing]}},
                 "t.yaml", 0)


def test_a_span_in_zipkins_v2_json():
    out = zipkin_span(span(peer="spiffe://meshdojo.local/ns/bookinfo/sa/reviews", fate="route=bookinfo/reviews#0"), "bookinfo", 256)
    assert out == {"traceId": "a" * 32, "id": "b" * 16, "name": "reviews:9080/reviews/0", "kind": "CLIENT",
                   "timestamp": 1_800_000_000_250_000, "duration": 12_500, "localEndpoint": {"serviceName": "productpage-v1.bookinfo"},
                   "tags": {"http.method": "GET", "http.url": "http://reviews:9080/reviews/0?x=1", "http.status_code": "200",
                            "component": "proxy", "meshdojo.workload": "bookinfo/productpage-v1-0",
                            "peer.identity": "spiffe://meshdojo.local/ns/bookinfo/sa/reviews", "meshdojo.fate": "route=bookinfo/reviews#0"}}
    failed = zipkin_span(span(503, "inbound", parent="c" * 16, peer="10.0.0.1:5 (no identity)", error="no_endpoints"), "bookinfo", 8)
    assert failed["kind"] == "SERVER" and failed["parentId"] == "c" * 16
    assert failed["tags"]["error"] == "no_endpo" and failed["tags"]["peer.address"] == "10.0.0.1" and "meshdojo.fate" not in failed["tags"]


def test_telemetry_chooses_the_collector_field_by_field():
    mesh = telemetry("mesh-default", "meshdojo-system", {"providers": [{"name": "zipkin"}]})
    sampled = telemetry("all", "bookinfo", {"randomSamplingPercentage": 100})
    chosen = effective([sampled, mesh])  # the most specific first: its sampling, the mesh's provider
    assert (chosen.sampling_percent, chosen.trace_provider, chosen.trace_provider_from) == (100.0, "zipkin", "meshdojo-system/mesh-default")
    with pytest.raises(PolicyError, match="say randomSamplingPercentage, providers, or both"):
        telemetry("empty", "bookinfo", {})
    provider = parse(ZIPKIN, "p.yaml", 0).spec
    assert provider.url == "http://zipkin.istio-system.svc.cluster.local:9411/api/v2/spans" and provider.max_tag_length == 256
    with pytest.raises(PolicyError, match="expected one provider"):
        parse({**ZIPKIN, "spec": {**ZIPKIN["spec"], "envoyExtAuthzHttp": {"service": "a.b", "port": 1}}}, "p.yaml", 0)
    [problem] = providers.missing_providers([mesh])
    assert "Telemetry meshdojo-system/mesh-default sends spans to provider 'zipkin'" in problem
    assert providers.missing_providers([mesh, parse(ZIPKIN, "p.yaml", 0)]) == []
    rows = table([{"document": ZIPKIN, "expiresAt": None}, {"document": mesh.document, "expiresAt": None}])
    assert rows[1][3:5] == ("(mesh)", "zipkin http://zipkin.istio-system.svc.cluster.local:9411/api/v2/spans")
    assert rows[2][4] == "spans to zipkin"


class Recorder:
    def __init__(self, status: int = 202) -> None:
        self.batches: list[list[dict]] = []
        self.status = status

    async def __call__(self, request):
        self.batches.append(json.loads(b"".join([c async for c in request.body.chunks()])))
        assert request.head.target == "http://zipkin.istio-system.svc.cluster.local:9411/api/v2/spans"
        return Response(self.status, [], BytesBody(b""))


async def test_the_exporter_sends_what_was_recorded_once_in_batches_and_drops_what_fails():
    log, counted = SpanLog("bookinfo/productpage-v1-0", "productpage-v1"), []
    provider = parse(ZIPKIN, "p.yaml", 0).spec
    chosen: list = [None]
    send = Recorder()
    exporter = SpanExporter(log, lambda: chosen[0], asyncio.Event(), send, "bookinfo", lambda *c: counted.append(c))
    log.add(span())
    await exporter.export_once()  # no collector named: nothing waits to be sent later
    assert send.batches == [] and not log.outbox and len(log.entries()) == 1
    chosen[0] = provider
    log.exporting = True
    for _ in range(BATCH + 3):
        log.add(span())
    await exporter.export_once()
    assert [len(b) for b in send.batches] == [BATCH, 3] and counted == [("zipkin", "sent", BATCH), ("zipkin", "sent", 3)]
    await exporter.export_once()
    assert len(send.batches) == 2  # each span once
    send.status = 500
    log.add(span())
    await exporter.export_once()
    assert counted[-1] == ("zipkin", "failed", 1) and not log.outbox  # dropped, as Envoy drops them


async def test_the_exporter_sleeps_until_a_collector_is_named_and_keeps_nothing_meanwhile():
    log, named, recorder = SpanLog("bookinfo/productpage-v1-0", "productpage-v1"), asyncio.Event(), Recorder()
    provider = parse(ZIPKIN, "p.yaml", 0).spec
    ticks: asyncio.Queue[float] = asyncio.Queue()  # the exporter's sleeps, each held until the test lets it go
    gate: asyncio.Queue[None] = asyncio.Queue()
    sent = asyncio.Event()

    async def sleep(seconds: float) -> None:
        ticks.put_nowait(seconds)
        await gate.get()

    async def send(request):
        response = await recorder(request)
        sent.set()
        return response

    async def settle() -> None:  # let the exporter's task run to its next wait
        for _ in range(10):
            await asyncio.sleep(0)

    exporter = SpanExporter(log, lambda: provider if named.is_set() else None, named, send, "bookinfo", lambda *c: None)
    tasks = TaskSet()
    tasks.spawn(exporter.run(sleep), "tracing:export")
    await settle()
    log.add(span())
    assert ticks.empty() and not log.outbox  # no collector: no wakeup at all, nothing kept for later
    named.set()
    assert await asyncio.wait_for(ticks.get(), 5) == EVERY_SECONDS
    log.add(span())
    gate.put_nowait(None)
    await asyncio.wait_for(sent.wait(), 5)
    assert [len(b) for b in recorder.batches] == [1]  # only what was recorded once a collector was named
    await asyncio.wait_for(ticks.get(), 5)
    named.clear()
    gate.put_nowait(None)
    await settle()
    log.add(span())
    assert not log.exporting and not log.outbox and ticks.empty()  # asleep again
    await tasks.close()
