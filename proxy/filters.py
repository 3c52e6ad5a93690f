"""An HTTPRoute rule's filters, in the client's outbound proxy, right after the rule matched
(Gateway API's ``filters``; what they may say is checked in :mod:`controlplane.routefilters`):

    CORS preflight     CORS (Istio's corsPolicy): an allowed origin's preflight answered at once
    direct response    Istio's directResponse: the status and body at once; nothing is forwarded
    redirect           RequestRedirect: answer 3xx with a Location at once; nothing is forwarded
    request headers    RequestHeaderModifier: remove, set, add
    rewrite            URLRewrite: the Host header, the path (all of it, or the matched prefix)
    mirror             RequestMirror: a copy to another Service, its answer thrown away
    ... the rest of the stack (backend, timeouts, retries, balancer) ...
    response headers   ResponseHeaderModifier, on the backend's response; an allowed origin's CORS headers

Every filter that acted is written in the request's fate (``filters=``). The URL arithmetic is
pure functions below; the layer only applies them, and :class:`Mirrors` does the one piece of
I/O, sending copies in the background.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine
from typing import Any

from controlplane.cors import IGNORE
from controlplane.protocol import fqdn
from controlplane.routefilters import Mirror, PathEdit, Redirect, RouteFilters
from controlplane.routespec import Backend
from proxy.discovery import Discovery
from proxy.errors import ProxyError
from proxy.exchange import EMPTY, BytesBody, ConnectionBody, EmptyBody, Handler, Layer, Request, Response, header_of
from proxy.fate import Fate
from proxy.http1 import RequestHead
from proxy.metrics import ProxyMetrics
from proxy.policies import PolicyWatch
from proxy.subsets import subset_endpoints
from proxy.traffic import MAX_REPLAY_BYTES, buffer_body

log = logging.getLogger("meshdojo.proxy.filters")

MIRRORS_IN_FLIGHT = 64  # per proxy; a copy beyond this is skipped (counted), never queued
MIRROR_TIMEOUT = 10.0  # seconds a copy may take, unless the rule's request timeout is shorter


# -- pure: what the filters make of a request -------------------------------------------------

def matched_prefix(request_path: str, rule_matches: tuple[Any, ...], header: Callable[[str], str | None],
                   method: str) -> str | None:
    """The PathPrefix (or Istio's Prefix) value of the first of the rule's matches this request matches."""
    for match in rule_matches:
        if match.path is not None and match.path.type in ("PathPrefix", "Prefix") and match.matches(request_path, header, method):
            return match.path.value
    return None


def rewrite_path(path: str, edit: PathEdit, prefix: str | None) -> str:
    """``path`` (with its query, which is kept) after ReplaceFullPath, or ReplacePrefixMatch of
    ``prefix`` as Gateway API defines it: ``/foo`` → ``/bar`` makes ``/foo/x`` ``/bar/x``, and
    ``/foo`` → ``/`` makes it ``/x``."""
    bare, mark, query = path.partition("?")
    if edit.type == "ReplaceFullPath":
        bare = edit.value
    elif prefix is not None:
        rest = bare[len(prefix.rstrip("/")):]  # "" or "/..." (a PathPrefix matches whole segments)
        bare = edit.value.rstrip("/") + rest or "/"
    return bare + mark + query


def split_host(authority: str) -> tuple[str, int | None]:
    host, _, port = authority.rpartition(":")
    if host and port.isdigit() and not authority.endswith("]"):
        return host, int(port)
    return authority, None


def redirect_location(redirect: Redirect, authority: str, path: str, prefix: str | None, asked_scheme: str = "http") -> str:
    """Gateway API's Location: scheme, hostname and path from the filter where it gives them,
    else from the request (``asked_scheme``: https at a gateway's TLS port); the port given,
    else the well-known one of a scheme the filter changed, else the request's; a scheme's
    default port is left out."""
    host, port = split_host(authority)
    scheme = redirect.scheme or asked_scheme
    if redirect.port is not None:
        port = redirect.port
    elif redirect.scheme is not None:
        port = None
    if port == {"http": 80, "https": 443}[scheme]:
        port = None
    new_path = rewrite_path(path, redirect.path, prefix) if redirect.path is not None else path
    return f"{scheme}://{redirect.hostname or host}{f':{port}' if port is not None else ''}{new_path}"


def shadow_authority(host: bytes) -> bytes:
    """A mirrored request's Host, as Envoy (Istio) writes it: ``reviews:9080`` → ``reviews-shadow:9080``."""
    name, port = split_host(host.decode("latin-1"))
    return f"{name}-shadow{f':{port}' if port is not None else ''}".encode("latin-1")


# -- I/O: sending copies ------------------------------------------------------------------------

class Mirrors:
    """Sends RequestMirror copies in the background: through the balancer and mutual TLS like
    any request, each with a deadline, at most :data:`MIRRORS_IN_FLIGHT` at once. A copy never
    delays or changes the request it copies; its fate is counted in
    ``outbound_http_route_mirror_total{route, backend, outcome}``, and ``send`` counts it in the
    golden metrics as a request to the mirror's service."""

    def __init__(self, discovery: Discovery, send: Handler, metrics: ProxyMetrics,
                 spawn: Callable[[Coroutine[Any, Any, None], str], object], rng: random.Random,
                 policies: PolicyWatch | None = None) -> None:
        self._discovery, self._send, self._metrics, self._spawn, self._rng = discovery, send, metrics, spawn, rng
        self._policies = policies  # the DestinationRules that define an Istio mirror's subset
        self.in_flight = 0

    def chosen(self, mirror: Mirror) -> bool:
        return mirror.share >= 1 or self._rng.random() < mirror.share

    def start(self, request: Request, mirror: Mirror, data: bytes, timeout: float) -> str:
        """Send a copy of ``request`` (whose body is ``data``) to ``mirror``; what happened, for the fate."""
        route = request.fate.route or ""
        if self.in_flight >= MIRRORS_IN_FLIGHT:
            self._count(route, mirror.service, request.dst_namespace, "skipped")
            return f"not mirrored to {mirror.service}: {self.in_flight} copies already in flight"
        host = request.head.header(b"host") or request.authority.encode("latin-1")  # HTTP/1.0 may have sent none
        headers = [(n, v) for n, v in request.head.headers if n != b"host"] + [(b"host", shadow_authority(host))]
        head = RequestHead(request.head.method, request.path, "1.1", headers, True, False, len(data))
        copy = Request(head, BytesBody(data) if data else EMPTY, request.peer, authority=request.authority, path=request.path,
                       dst_service=mirror.service, dst_namespace=request.dst_namespace,
                       fate=Fate(backend=mirror.service, subset=mirror.subset))
        self.in_flight += 1
        self._spawn(self._copy(copy, route, timeout), f"mirror:{mirror.service}")
        return f"mirrored to {mirror.service}" + (f" (subset {mirror.subset})" if mirror.subset else "")

    async def _copy(self, copy: Request, route: str, timeout: float) -> None:
        outcome = "failed"
        try:
            async with asyncio.timeout(timeout):
                endpoint_set = await self._discovery.resolve(f"{copy.dst_service}.{copy.dst_namespace}")
                copy.endpoints = endpoint_set.ordered
                if copy.fate.subset is not None and self._policies is not None:  # Istio's mirror.subset
                    copy.endpoints = subset_endpoints(self._policies, copy.dst_namespace, copy.dst_service, copy.fate.subset,
                                                      copy.endpoints)
                response = await self._send(copy)
                async for _chunk in response.body.chunks():  # read to the end, so the connection is pooled again
                    pass
            outcome = "sent" if response.error is None else "failed"  # error: the proxy answered for the copy
        except Exception as exc:  # a copy's failure is nobody's but the counter's
            log.debug("mirror to %s.%s failed: %s", copy.dst_service, copy.dst_namespace, exc)
        finally:
            self.in_flight -= 1
            self._count(route, copy.dst_service, copy.dst_namespace, outcome)

    def _count(self, route: str, service: str, namespace: str, outcome: str) -> None:
        self._metrics.mirrors.labels(route, fqdn(service, namespace), outcome).inc()


# -- the layer ---------------------------------------------------------------------------------

def route_filters(mirrors: Mirrors) -> Layer:
    def layer(inner: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            rule, backend = request.rule, request.backend
            send = inner
            if backend is not None and (backend.request_headers or backend.response_headers):  # the chosen backend's own edits
                send = backend_headers(backend, inner)
            filters: RouteFilters | None = rule.filters if rule is not None else None
            if filters is None:
                return await send(request)
            assert rule is not None
            done: list[str] = []
            origin = request.head.header(b"origin") if filters.cors is not None else None
            if origin is not None and (answered := _preflight(filters, request, origin.decode("latin-1"))) is not None:
                return answered  # a CORS preflight, answered here
            prefix = _prefix(filters, request)  # before any header is edited: the match saw the request as sent
            if filters.direct is not None:  # Istio's directResponse: answered here, nothing is forwarded
                request.fate.filters = f"direct response {filters.direct.status}"
                typed = [(b"content-type", b"text/plain")] if filters.direct.body else []  # as Envoy's direct_response
                return _edit_response(filters, Response(filters.direct.status, typed, BytesBody(filters.direct.body)), origin)
            if filters.redirect is not None:  # answered here: nothing is forwarded
                location = redirect_location(filters.redirect, request.asked_for or request.authority, request.path, prefix,
                                             request.peer.scheme)
                request.fate.filters = f"redirect {filters.redirect.status} to {location}"
                response = Response(filters.redirect.status, [(b"location", location.encode("latin-1"))], EMPTY)
                return _edit_response(filters, response, origin)
            if filters.request_headers is not None:
                request.head.headers = filters.request_headers.apply(request.head.headers)
                done.append(f"request headers: {filters.request_headers.describe()}")
            if filters.rewrite is not None:
                done.append(_rewrite(filters, request, prefix))
            if filters.mirrors:
                done += await _mirror(mirrors, filters, request, rule.request_timeout)
            if origin is not None:
                done.append(_cors_said(filters, origin.decode("latin-1")))
            request.fate.filters = "; ".join(done) or None
            try:
                response = await send(request)
            except ProxyError as exc:  # answered further out (the errors layer): an allowed origin's page may read it too
                if origin is not None and filters.cors is not None and filters.cors.allows(origin.decode("latin-1")):
                    exc.extra_headers = (*exc.extra_headers, *filters.cors.response_headers(origin.decode("latin-1")))
                raise
            return _edit_response(filters, response, origin)

        return handle

    return layer


def backend_headers(backend: Backend, inner: Handler) -> Handler:
    """A backendRef's header filters (Istio: a destination's ``headers``), after the rule's: on the
    request sent to that backend, and on its answer."""

    async def handle(request: Request) -> Response:
        done = []
        if backend.request_headers is not None:
            request.head.headers = backend.request_headers.apply(request.head.headers)
            done.append(f"request headers for {backend.describe()}: {backend.request_headers.describe()}")
        if backend.response_headers is not None:
            done.append(f"response headers from {backend.describe()}: {backend.response_headers.describe()}")
        request.fate.filters = "; ".join([*([request.fate.filters] if request.fate.filters else []), *done])
        response = await inner(request)
        if backend.response_headers is not None and response.error is None:
            response.headers = backend.response_headers.apply(response.headers)
        return response

    return handle


def _prefix(filters: RouteFilters, request: Request) -> str | None:
    """The matched PathPrefix, when a ReplacePrefixMatch needs it."""
    edits = [f.path for f in (filters.redirect, filters.rewrite) if f is not None and f.path is not None]
    if not any(edit.type == "ReplacePrefixMatch" for edit in edits) or request.rule is None:
        return None
    return matched_prefix(request.path, request.rule.matches, header_of(request), request.head.method)


def _edit_response(filters: RouteFilters, response: Response, origin: bytes | None = None) -> Response:
    """ResponseHeaderModifier, on what the backend answered (or a redirect); not on the answers
    the proxy makes itself when something failed (those carry ``x-meshdojo-error``). An allowed
    origin's CORS headers on every answer (a failure raised past here: ``ProxyError.extra_headers``)."""
    if filters.response_headers is not None and response.error is None:
        response.headers = filters.response_headers.apply(response.headers)
    if origin is not None and filters.cors is not None and filters.cors.allows(origin.decode("latin-1")):
        added = filters.cors.response_headers(origin.decode("latin-1"))
        names = {name for name, _ in added}
        response.headers = [(n, v) for n, v in response.headers if n not in names] + added
    return response


def _preflight(filters: RouteFilters, request: Request, origin: str) -> Response | None:
    """A CORS preflight's answer (controlplane/cors.py), or None: it is not one, or it goes on."""
    cors = filters.cors
    method = request.head.header(b"access-control-request-method")
    if cors is None or request.head.method != "OPTIONS" or method is None:
        return None
    if cors.allows(origin):
        asked = (request.head.header(b"access-control-request-headers") or b"").decode("latin-1")
        request.fate.filters = f"CORS preflight from {origin} answered ({cors.describe()})"
        return Response(200, cors.preflight(origin, method.decode("latin-1"), asked), EMPTY)
    if cors.unmatched_preflights == IGNORE:
        request.fate.filters = f"CORS preflight from {origin}, not an allowed origin: answered without CORS headers"
        return Response(200, [], EMPTY)
    return None  # Istio's FORWARD: the backend answers it


def _cors_said(filters: RouteFilters, origin: str) -> str:
    assert filters.cors is not None
    return f"CORS: {origin} {'allowed' if filters.cors.allows(origin) else 'not allowed (no CORS headers)'}"


def _rewrite(filters: RouteFilters, request: Request, prefix: str | None) -> str:
    rewrite = filters.rewrite
    assert rewrite is not None
    said = []
    if rewrite.hostname is not None:
        request.head.headers = [(n, v) for n, v in request.head.headers if n != b"host"] + [(b"host", rewrite.hostname.encode())]
        said.append(f"host {rewrite.hostname}")
    if rewrite.path is not None:
        before, request.path = request.path, rewrite_path(request.path, rewrite.path, prefix)
        said.append(f"path {before} -> {request.path}")
    return "rewrote " + ", ".join(said)


async def _mirror(mirrors: Mirrors, filters: RouteFilters, request: Request, request_timeout: float | None) -> list[str]:
    chosen = [m for m in filters.mirrors if mirrors.chosen(m)]
    if not chosen:
        return []
    body = request.body
    if isinstance(body, ConnectionBody):  # buffered (as for retries) so it can go twice
        if body.length is not None and body.length > MAX_REPLAY_BYTES:
            return [f"not mirrored: body of {body.length} bytes is over 64 KiB"]
        request.body = body = await buffer_body(body, MAX_REPLAY_BYTES)
    if isinstance(body, EmptyBody):
        data = b""
    elif isinstance(body, BytesBody):
        data = body.data
    else:
        return ["not mirrored: body over 64 KiB"]
    timeout = min(MIRROR_TIMEOUT, request_timeout) if request_timeout else MIRROR_TIMEOUT
    return [mirrors.start(request, m, data, timeout) for m in chosen]
