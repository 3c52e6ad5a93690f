"""Layers both directions share: turning failures into responses, and metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from controlplane.names import resolve
from controlplane.protocol import fqdn
from proxy.classify import classify
from proxy.errors import ProxyError, RequestTimeout
from proxy.exchange import Handler, Layer, Request, Response
from proxy.http1 import ConnectionClosed, ReadTimeout
from proxy.metrics import ProxyMetrics
from proxy.tap import TapHub

log = logging.getLogger("meshdojo.proxy")


def errors(direction: str, metrics: ProxyMetrics) -> Layer:
    """ProxyError (and anything unexpected) -> a 4xx/5xx with ``x-meshdojo-error``; logged and counted."""

    def layer(inner: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            try:
                return await inner(request)
            except ProxyError as exc:
                error = exc
            except asyncio.CancelledError:
                raise
            except ReadTimeout:
                error = RequestTimeout("the request body stalled; gave up waiting for the rest of it")
            except ConnectionClosed as exc:
                error = ProxyError(f"client connection closed: {exc}")
            except Exception as exc:  # a bug: answer 502 rather than drop the connection
                log.exception("unexpected error handling %s %s", request.head.method, request.authority)
                error = ProxyError(f"internal proxy error ({type(exc).__name__})")
            log.info("%s %s %s%s -> %d %s: %s", direction, request.head.method, request.authority, request.path,
                     error.status, error.code, error.message)
            metrics.proxy_errors.labels(direction, error.code).inc()
            return error.response()

        return handle

    return layer


UNKNOWN_AUTHORITY = "unknown"


def authority_label(request: Request, own_namespace: str = "", own_services: frozenset[tuple[str, str]] | None = None) -> str:
    """The ``authority`` label, bounded whatever a client writes: the service discovery resolved
    (outbound), or one of the services this workload belongs to (inbound); else ``unknown``."""
    if own_services is None:  # outbound
        if request.fate.egress is not None:  # outside the mesh: bounded names (proxy/egress.py)
            return request.dst_service or UNKNOWN_AUTHORITY
        service, namespace = request.dst_service, request.dst_namespace
    else:
        host = request.authority.rpartition(":")[0] if request.authority.rpartition(":")[2].isdigit() else request.authority
        found = resolve(host, own_namespace)
        if found is None or found not in own_services:
            return UNKNOWN_AUTHORITY
        namespace, service = found
    return fqdn(service, namespace) if service and namespace else UNKNOWN_AUTHORITY


def route_destination(request: Request) -> str:
    """The ``dst`` of route metrics: a Service's name in full, or, for a host outside the mesh,
    its ServiceEntry's host (or PassthroughCluster, BlackHoleCluster)."""
    if request.fate.egress is not None:
        return request.dst_service
    return fqdn(request.dst_service, request.dst_namespace)


def record_metrics(direction: str, metrics: ProxyMetrics, client_id_of_peer: bool,
                   own_namespace: str = "", own_services: Callable[[], frozenset[tuple[str, str]]] | None = None) -> Layer:
    """Linkerd's request_total / response_total / response_latency_ms, labelled after the fact.
    No label takes an unbounded value from the client (see :func:`authority_label`)."""

    def layer(inner: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            response = await inner(request)
            latency_ms = (time.monotonic() - request.started) * 1000.0
            if client_id_of_peer:  # inbound: who called us
                tls = "true" if request.peer.tls else "no_identity"
                authority = authority_label(request, own_namespace, own_services() if own_services else frozenset())
                labels = (direction, authority, tls, request.peer.identity or "", "", "", "", "")
            else:  # outbound: whom we called
                # a refused endpoint is still labelled with whom we meant to reach
                server_id = response.server_id or (request.endpoint.identity if request.endpoint else None) or ""
                tls = "true" if response.tls or server_id else "no_identity"
                dst_deployment = request.endpoint.deployment if request.endpoint else ""  # as Linkerd's dst_deployment
                labels = (direction, authority_label(request), tls, "", server_id, request.dst_namespace, request.dst_service,
                          dst_deployment)
            failure = classify(response).failure
            metrics.record(labels, response.status, latency_ms, failure)
            if not client_id_of_peer and request.dst_service:  # per route: what the caller saw
                metrics.record_route(route_destination(request), request.fate.route, response.status,
                                     failure, latency_ms)
            return response

        return handle

    return layer


def count_attempts(metrics: ProxyMetrics) -> Layer:
    """Every actual attempt on a route (below retries): route_actual_response_total."""

    def layer(inner: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            dst = route_destination(request)
            try:
                response = await inner(request)
            except ProxyError as exc:
                metrics.record_route(dst, request.fate.route, exc.status, classify(exc.response()).failure, None)
                raise
            metrics.record_route(dst, request.fate.route, response.status, classify(response).failure, None)
            return response

        return handle

    return layer


class FateLog:
    """The most recent requests' fates, for /fates on the admin port (and tap, later). Kept as
    they are; turned into JSON only when somebody reads them."""

    def __init__(self, size: int = 256) -> None:
        self._entries: deque[tuple] = deque(maxlen=size)

    def add(self, when: float, request: Request, status: int) -> None:
        self._entries.append((when, request.head.method, request.authority, request.path, status, request.fate))

    def entries(self) -> list[dict]:
        return [{"time": t, "method": m, "authority": a, "path": p, "status": s, **fate.to_json()}
                for t, m, a, p, s, fate in self._entries]


def record_fate(fates: FateLog, tap: TapHub | None = None, workload: str = "", direction: str = "outbound") -> Layer:
    def layer(inner: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            request.fate.direction = direction
            response = await inner(request)
            fate = request.fate
            fates.add(time.time(), request, response.status)
            if tap is not None and tap.subscribers:  # nobody tapping: nothing more to do
                tap.publish(tap_events(tap.next_id(), workload, request, response))
            if request.head.header(b"x-meshdojo-debug") == b"1":
                mine = f"{fate.direction}: {fate.summary()}".encode("latin-1", "replace")
                # one header for the whole path: this proxy's fate first, then the far side's
                theirs = [v for n, v in response.headers if n == b"x-meshdojo-fate"]
                response.headers = [(n, v) for n, v in response.headers if n != b"x-meshdojo-fate"]
                response.headers.append((b"x-meshdojo-fate", b" | ".join([mine, *theirs])))
            return response

        return handle

    return layer


def tap_events(event_id: int, workload: str, request: Request, response: Response) -> list[dict]:
    """The req / rsp / end lines of one request, as ``meshdojo tap`` prints them."""
    outbound = request.fate.direction == "outbound"
    server_id = response.server_id or (request.endpoint.identity if request.endpoint else None)
    common = {
        "id": event_id, "direction": request.fate.direction, "workload": workload,
        "src": workload if outbound else (request.peer.identity.rsplit("/sa/", 1)[-1] if request.peer.identity
                                           else f"{request.peer.address} (no identity)"), "dst": (request.fate.backend or request.dst_service or request.authority)
        if outbound else workload, "tls": bool(response.tls or server_id) if outbound else request.peer.tls,
        "client_id": request.peer.identity if not outbound else None, "server_id": server_id if outbound else None,
        "method": request.head.method, "authority": request.authority, "path": request.path,
    }
    latency_ms = round((time.monotonic() - request.started) * 1000, 3)
    return [{"type": "req", **common}, {"type": "rsp", **common, "status": response.status, "latency_ms": latency_ms},
            {"type": "end", **common, "status": response.status, "latency_ms": latency_ms, "fate": request.fate.to_json(),
             "error": response.error}]
