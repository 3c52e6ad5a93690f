"""Sending this sidecar's spans to a trace collector, as Envoy's Zipkin tracer does for
Istio's ``zipkin`` extension provider (Jaeger and the OpenTelemetry collector take the same
format on port 9411).

A ``Telemetry`` names the provider (``tracing: [{providers: [{name: zipkin}]}]``); every
second the spans recorded since the last batch leave in one ``POST`` of Zipkin's v2 JSON. They
leave through a small outbound path of their own (discovery, a ServiceEntry's host, mutual TLS
to a meshed collector), not through the app's: the batches are not traced, tapped or counted as
the workload's requests, as Envoy's are not. While no provider is named the exporter sleeps (no
wakeup a second in every sidecar) and spans are not kept for later. :func:`zipkin_span` is pure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from controlplane.providers import ZipkinProvider
from proxy.errors import ProxyError
from proxy.exchange import BytesBody, Handler, Peer, Request
from proxy.http1 import RequestHead
from proxy.tracing import Span, SpanLog

log = logging.getLogger("meshdojo.proxy.zipkin")
EVERY_SECONDS = 1.0
BATCH = 500
SENDER = Peer("127.0.0.1:0", False, None)  # the batches are this proxy's own requests
WARN_EVERY = 60.0


def zipkin_span(span: Span, namespace: str, max_tag_length: int) -> dict[str, Any]:
    """One span in Zipkin's v2 JSON: a CLIENT span for the outbound sidecar's hop, a SERVER span
    for the inbound one; the service is ``deployment.namespace``, as Istio names it."""
    cut = lambda text: text[:max_tag_length]  # noqa: E731
    tags = {"http.method": span.method, "http.url": cut(f"http://{span.authority}{span.path}"), "http.status_code": str(span.status),
            "component": "proxy", "meshdojo.workload": span.workload}
    if span.peer:
        tags["peer.identity" if span.peer.startswith("spiffe://") else "peer.address"] = cut(span.peer)
    if span.fate and span.fate != "no policy applied":
        tags["meshdojo.fate"] = cut(span.fate)
    if span.error or span.status >= 500:
        tags["error"] = cut(span.error or f"HTTP {span.status}")
    out: dict[str, Any] = {
        "traceId": span.trace_id, "id": span.span_id, "name": cut(f"{span.authority}{span.path.partition('?')[0]}"),
        "kind": "CLIENT" if span.direction == "outbound" else "SERVER", "timestamp": int(span.start * 1_000_000),
        "duration": max(1, int(span.duration_ms * 1000)), "localEndpoint": {"serviceName": f"{span.deployment}.{namespace}"},
        "tags": tags,
    }
    if span.parent_id:
        out["parentId"] = span.parent_id
    return out


def batch_request(provider: ZipkinProvider, spans: list[Span], namespace: str) -> Request:
    body = json.dumps([zipkin_span(s, namespace, provider.max_tag_length) for s in spans]).encode()
    headers = [(b"host", f"{provider.host}:{provider.port}".encode()), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    head = RequestHead("POST", provider.url, "1.1", headers, True, False, len(body))
    return Request(head, BytesBody(body), SENDER, authority=f"{provider.host}:{provider.port}", path=provider.path)


class SpanExporter:
    """Drains a SpanLog's outbox to the provider its Telemetry names, a batch a second."""

    def __init__(self, spans: SpanLog, provider: Callable[[], ZipkinProvider | None], named: asyncio.Event, send: Handler,
                 namespace: str, count: Callable[[str, str, int], None], clock: Callable[[], float] = time.monotonic) -> None:
        self._spans, self._provider, self._send, self._namespace = spans, provider, send, namespace
        self._named = named  # set while a Telemetry names a provider that is defined
        self._count = count  # (provider, outcome, spans)
        self._clock = clock
        self._warned = -WARN_EVERY

    async def run(self, sleep=asyncio.sleep) -> None:
        while True:
            if not self._named.is_set():
                self._spans.exporting = False
                self._spans.outbox.clear()
                await self._named.wait()  # asleep until a snapshot names a collector
                self._spans.exporting = True
            await sleep(EVERY_SECONDS)
            await self.export_once()

    async def export_once(self) -> None:
        provider = self._provider()
        outbox = self._spans.outbox
        if provider is None:
            outbox.clear()  # no collector named: the spans stay readable at /spans, nothing waits to be sent
            return
        while outbox:
            spans = [outbox.popleft() for _ in range(min(BATCH, len(outbox)))]
            outcome = await self._post(provider, spans)
            self._count(provider.name, outcome, len(spans))
            if outcome != "sent":
                return

    async def _post(self, provider: ZipkinProvider, spans: list[Span]) -> str:
        try:
            async with asyncio.timeout(5.0):
                response = await self._send(batch_request(provider, spans, self._namespace))
                async for _chunk in response.body.chunks():  # read to the end: the connection is pooled again
                    pass
        except (OSError, ProxyError, TimeoutError) as exc:
            return self._failed(provider, str(exc) or type(exc).__name__)
        if response.status // 100 != 2:
            return self._failed(provider, f"HTTP {response.status}")
        return "sent"

    def _failed(self, provider: ZipkinProvider, why: str) -> str:
        if self._clock() - self._warned >= WARN_EVERY:  # once a minute, not once a second
            self._warned = self._clock()
            log.warning("spans not sent to %s (%s): %s; they are dropped, as Envoy drops them", provider.name, provider.url, why)
        return "failed"
