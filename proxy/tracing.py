"""Distributed tracing: each sidecar a request crosses records one span of its trace.

A trace's context travels in the request's headers, in W3C Trace Context (``traceparent``)
and in Zipkin's B3 (``x-b3-*``, or the single ``b3`` header) — what Istio's Envoy and Linkerd's
proxy read and write, and what bookinfo's apps copy from each request they get to each request
they make. The app has to do that copying: a sidecar cannot tell which of the app's requests
belongs to which request it served (Istio's and Linkerd's docs say the same).

What a sidecar does with a request (:func:`trace_layer`):

- it carries a sampled context: a span, a child of the caller's, is recorded here, and the
  request goes on carrying this span as its parent, in both formats;
- it carries an unsampled one: nothing is recorded, the headers pass as they are;
- it carries none: a new trace starts here with the sampling percentage in force (a
  ``Telemetry``'s ``randomSamplingPercentage``, else the sidecar's default, Istio's 1 %). An
  inbound request from another sidecar is never sampled again: that sidecar had the chance.

Spans are kept in a ring (:class:`SpanLog`) and read through the admin port's ``/spans``; the
control plane gathers them from every sidecar for ``meshdojo trace``. The decisions here are
pure; the layer is the only part that touches a request.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from proxy.exchange import Handler, Layer, Request, Response

DEFAULT_SAMPLING_PERCENT = 1.0  # Istio's default (meshConfig.defaultConfig.tracing.sampling)
SPANS_KEPT = 1024  # about 4 minutes of a demo sidecar's traffic at 100 %; ~0.7 MB

# every header that carries a trace's context: read, then replaced with this sidecar's span
TRACE_HEADERS = frozenset((b"traceparent", b"b3", b"x-b3-traceid", b"x-b3-spanid", b"x-b3-parentspanid",
                           b"x-b3-sampled", b"x-b3-flags"))
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str  # 32 lowercase hex digits
    span_id: str  # 16: the caller's span, this hop's parent
    sampled: bool


def _hex(text: str, length: int) -> bool:
    return len(text) == length and set(text) <= _HEX and text != "0" * length


def parse_traceparent(value: str) -> TraceContext | None:
    """W3C Trace Context: ``00-<trace id>-<parent span id>-<flags>``; anything else is None. Pure."""
    parts = value.strip().lower().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff" or not _hex(parts[1], 32) or not _hex(parts[2], 16) \
            or len(parts[3]) != 2 or not set(parts[3]) <= _HEX or (parts[0] == "00" and len(parts) != 4):
        return None
    return TraceContext(parts[1], parts[2], bool(int(parts[3], 16) & 1))


def _b3_trace_id(text: str) -> str | None:
    """B3 trace ids are 64 or 128 bits; a 64-bit one is padded to W3C's 128."""
    text = text.strip().lower()
    if _hex(text, 16):
        return "0" * 16 + text
    return text if _hex(text, 32) else None


def _b3_sampled(flag: str | None, debug: str | None = None) -> bool:
    return debug == "1" or (flag or "1").strip().lower() in ("1", "d", "true")


def parse_b3(single: str | None, fields: dict[bytes, str]) -> TraceContext | None:
    """B3, single (``b3: <trace>-<span>[-<sampled>[-<parent>]]``) or multi (``x-b3-*``). Pure.
    A sampling decision alone (``b3: 0``, ``x-b3-sampled: 0``) has no trace: None."""
    if single is not None:
        parts = single.strip().split("-")
        if len(parts) < 2:
            return None
        trace_id = _b3_trace_id(parts[0])
        if trace_id is None or not _hex(parts[1].lower(), 16):
            return None
        return TraceContext(trace_id, parts[1].lower(), _b3_sampled(parts[2] if len(parts) > 2 else None))
    trace, span = fields.get(b"x-b3-traceid"), fields.get(b"x-b3-spanid")
    if trace is None or span is None:
        return None
    trace_id = _b3_trace_id(trace)
    if trace_id is None or not _hex(span.strip().lower(), 16):
        return None
    return TraceContext(trace_id, span.strip().lower(), _b3_sampled(fields.get(b"x-b3-sampled"), fields.get(b"x-b3-flags")))


def read_context(fields: dict[bytes, str]) -> TraceContext | None:
    """The context the request carries: ``traceparent`` first (as Envoy's and Linkerd's W3C
    propagators do), then B3. ``fields``: the request's trace headers, by name. Pure."""
    if b"traceparent" in fields:
        found = parse_traceparent(fields[b"traceparent"])
        if found is not None:
            return found
    return parse_b3(fields.get(b"b3"), fields)


def context_headers(trace_id: str, span_id: str, parent_id: str | None) -> list[tuple[bytes, bytes]]:
    """This span as the next hop's parent, in both formats (an app may copy either). Pure."""
    headers = [(b"traceparent", f"00-{trace_id}-{span_id}-01".encode()),
               (b"x-b3-traceid", trace_id.encode()), (b"x-b3-spanid", span_id.encode()), (b"x-b3-sampled", b"1")]
    if parent_id:
        headers.append((b"x-b3-parentspanid", parent_id.encode()))
    return headers


@dataclass(frozen=True, slots=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    workload: str  # namespace/instance
    deployment: str
    direction: str  # outbound (a client span) or inbound (a server span)
    method: str
    authority: str
    path: str
    status: int
    start: float  # wall clock, seconds
    duration_ms: float
    peer: str  # outbound: the server's identity or endpoint; inbound: the client's identity or address
    fate: str  # what the sidecar decided, as x-meshdojo-fate says it
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {"traceId": self.trace_id, "spanId": self.span_id, "parentId": self.parent_id, "workload": self.workload,
                "deployment": self.deployment, "direction": self.direction, "method": self.method, "authority": self.authority, "path": self.path,
                "status": self.status, "start": self.start, "durationMs": self.duration_ms, "peer": self.peer,
                "fate": self.fate, "error": self.error}


class SpanLog:
    """The most recent spans this sidecar recorded; /spans on the admin port reads them.
    ``workload`` (namespace/instance) and ``deployment`` say whose sidecar recorded them."""

    def __init__(self, workload: str, deployment: str = "", size: int = SPANS_KEPT) -> None:
        self.workload, self.deployment = workload, deployment
        self._spans: deque[Span] = deque(maxlen=size)
        self.outbox: deque[Span] = deque(maxlen=size)  # not yet sent to a collector (proxy/zipkin.py drains it)
        self.exporting = False  # is a collector named? only then does a span wait in the outbox
        self.recorded = 0

    def add(self, span: Span) -> None:
        self._spans.append(span)
        if self.exporting:
            self.outbox.append(span)
        self.recorded += 1

    def entries(self, trace: str | None = None, limit: int = SPANS_KEPT) -> list[dict[str, Any]]:
        """The spans of the traces whose id starts with ``trace``, or the latest ``limit`` spans."""
        if trace is not None:
            return [s.to_json() for s in self._spans if s.trace_id.startswith(trace)]
        return [s.to_json() for s in list(self._spans)[-limit:]] if limit > 0 else []


def carried(headers: list[tuple[bytes, bytes]]) -> TraceContext | None:
    """The context a request's headers carry (None for none, or none readable). Pure; a
    request with no trace header costs one pass over its header names."""
    for name, _value in headers:
        if name in TRACE_HEADERS:
            return read_context({n: v.decode("latin-1") for n, v in headers if n in TRACE_HEADERS})
    return None


def start_or_continue(found: TraceContext | None, percent: float, may_start: bool, rng: random.Random) -> tuple[str, str | None] | None:
    """(trace id, parent span id) when this hop records a span, else None. Pure but for ``rng``."""
    if found is not None:
        return (found.trace_id, found.span_id) if found.sampled else None
    if not may_start or percent <= 0 or (percent < 100 and rng.random() * 100 >= percent):
        return None
    return f"{rng.getrandbits(128):032x}", None


def _peer(request: Request, response: Response, direction: str) -> str:
    if direction == "outbound":
        if response.server_id:
            return response.server_id
        return request.endpoint.address if request.endpoint is not None else ""
    return request.peer.identity or f"{request.peer.address} (no identity)"


def trace_layer(direction: str, spans: SpanLog, percent: Callable[[], float], rng: random.Random | None = None,
                clock=time.time) -> Layer:
    """Record a span of each sampled request (outermost: the span covers everything this sidecar
    did, retries included). ``percent()``: the sampling percentage in force now."""
    rng = rng or random.Random()
    outbound = direction == "outbound"

    def layer(inner: Handler) -> Handler:
        def handle(request: Request) -> Awaitable[Response]:
            # a request from another sidecar (mutual TLS) was that sidecar's to sample
            decided = start_or_continue(carried(request.head.headers), percent(), outbound or not request.peer.tls, rng)
            if decided is None:  # the common case: no span, nothing touched (and no coroutine of our own)
                return inner(request)
            return traced(request, *decided)

        async def traced(request: Request, trace_id: str, parent_id: str | None) -> Response:
            span_id = f"{rng.getrandbits(64):016x}"
            request.head.headers = [(n, v) for n, v in request.head.headers if n not in TRACE_HEADERS] \
                + context_headers(trace_id, span_id, parent_id)
            request.fate.trace = trace_id
            start = clock()
            response = await inner(request)
            spans.add(Span(trace_id, span_id, parent_id, spans.workload, spans.deployment, direction, request.head.method, request.authority,
                           request.path, response.status, start, round((clock() - start) * 1000, 3),
                           _peer(request, response, direction), request.fate.summary(), response.error))
            return response

        return handle

    return layer
