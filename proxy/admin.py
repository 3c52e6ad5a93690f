"""The admin listener: ``/metrics`` (Prometheus), ``/ready``, ``/live`` and ``/config`` (JSON),
and for holders of a tap token ``/tap``, ``/fates``, ``/spans`` and ``POST /load`` (requests sent
as the app would, proxy.loadhere) — from another host only over mutual TLS
(the listener takes plaintext and TLS on one port, as a PERMISSIVE inbound listener does).

Served by the proxy's own HTTP/1.1 stack rather than a web framework, which keeps the
sidecar's memory small.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST

from proxy.exchange import BytesBody, Handler, Peer, Request, Response
from proxy.metrics import ProxyMetrics
from proxy.tap import TapBody, TapFilter, TapHub
from proxy.tracing import SPANS_KEPT

LOAD_BODY_LIMIT = 64 * 1024


def _respond(status: int, content_type: str, body: bytes) -> Response:
    return Response(status, [(b"content-type", content_type.encode())], BytesBody(body))


def build_admin(metrics: ProxyMetrics, ready: Callable[[], bool], config: Callable[[], dict[str, Any]],
                fates: Callable[[], list[dict[str, Any]]] = list, tap: TapHub | None = None,
                tap_tokens: Callable[[], tuple[str | None, ...]] = tuple,
                spans: Callable[[str | None, int], list[dict[str, Any]]] = lambda _trace, _limit: [],
                load: Callable[[Any], Awaitable[tuple[int, dict[str, Any]]]] | None = None) -> Handler:
    """``tap_tokens``: the tokens that open /tap, /fates and /spans now — the sandbox's
    (``--tap-token-file``) and the control plane's for this identity (it came with the certificate)."""
    async def handle(request: Request) -> Response:
        path, _, query = request.head.target.partition("?")
        if path == "/tap":
            return _tap(request, query, tap, tap_tokens())
        if path == "/fates":  # recent requests' paths and query strings: as private as tap
            return _authorized(request, tap_tokens()) or _respond(200, "application/json", json.dumps(fates(), indent=1).encode() + b"\n")
        if path == "/spans":  # the spans this sidecar recorded (?trace=ID or its first digits; ?limit=N latest): as private as tap
            return _authorized(request, tap_tokens()) or _spans(query, spans)
        if path == "/load":  # send requests as this workload's app would: as private as tap, and more
            return _authorized(request, tap_tokens()) or await _load(request, load)
        if request.head.method not in ("GET", "HEAD"):
            return _respond(405, "text/plain", b"only GET\n")
        if path == "/metrics":
            return _respond(200, CONTENT_TYPE_LATEST, metrics.exposition())
        if path == "/ready":
            return _respond(200, "text/plain", b"ready\n") if ready() else _respond(503, "text/plain", b"not ready\n")
        if path == "/live":
            return _respond(200, "text/plain", b"live\n")
        if path == "/config":
            return _respond(200, "application/json", json.dumps(config(), indent=2).encode() + b"\n")
        return _respond(404, "text/plain", b"not found: try /metrics, /ready, /live, /config, /fates, /spans or POST /load\n")

    return handle


async def _load(request: Request, load: Callable[[Any], Awaitable[tuple[int, dict[str, Any]]]] | None) -> Response:
    if load is None:
        return _respond(404, "text/plain", b"not found: this proxy sends no load\n")
    if request.head.method != "POST":
        return _respond(405, "text/plain", b"only POST, with the load as JSON\n")
    body = b""
    async for chunk in request.body.chunks():
        body += chunk
        if len(body) > LOAD_BODY_LIMIT:
            return _respond(413, "text/plain", b"the load's description is too large\n")
    try:
        asked = json.loads(body)
    except ValueError:
        return _respond(400, "application/json", b'{"error": "the body must be JSON"}\n')
    status, answer = await load(asked)
    return _respond(status, "application/json", json.dumps(answer).encode() + b"\n")


def _spans(query: str, spans: Callable[[str | None, int], list[dict[str, Any]]]) -> Response:
    q = {k: v[0] for k, v in parse_qs(query).items()}
    limit = q.get("limit", str(SPANS_KEPT))
    if not limit.isdigit():
        return _respond(400, "text/plain", b"limit: expected a whole number\n")
    found = spans(q["trace"].lower() if q.get("trace") else None, int(limit))
    return _respond(200, "application/json", json.dumps(found, separators=(",", ":")).encode() + b"\n")


def over_the_network_in_clear(peer: Peer) -> bool:
    """A plaintext connection from another machine (or pod): no token may travel on it. Pure."""
    if peer.tls:
        return False
    host = peer.address.rpartition(":")[0].strip("[]")
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def _authorized(request: Request, tokens: tuple[str | None, ...]) -> Response | None:
    """None when the request carries one of the tap tokens; else the refusal."""
    if over_the_network_in_clear(request.peer):  # before the token is even read: it was exposed on the way
        return _respond(403, "text/plain", b"from another host, /tap, /fates and /spans answer only over mutual TLS, so that their "
                        b"token is never sent in clear: use 'meshdojo tap' (the control plane reads this proxy over mutual TLS)\n")
    valid = [t for t in tokens if t]
    if not valid:
        return _respond(403, "text/plain", b"disabled on this proxy (start it with --tap-token-file)\n")
    presented = (request.head.header(b"authorization") or b"").decode("latin-1").removeprefix("Bearer ").strip().encode()
    if not any([hmac.compare_digest(presented, t.encode()) for t in valid]):  # a list: compare with each, always
        return _respond(401, "text/plain", b"needs 'Authorization: Bearer <tap token>' (the sandbox's tap-token file)\n")
    return None


def _tap(request: Request, query: str, tap: TapHub | None, tokens: tuple[str | None, ...]) -> Response:
    """Live request stream; needs the sandbox's tap token (requests carry paths and identities)."""
    if tap is None:
        return _respond(403, "text/plain", b"tap is disabled on this proxy (start it with --tap-token-file)\n")
    refused = _authorized(request, tokens)
    if refused is not None:
        return refused
    q = {k: v[0] for k, v in parse_qs(query).items()}
    sub = tap.subscribe(TapFilter(q.get("path"), q.get("method"), q.get("to")))
    return Response(200, [(b"content-type", b"application/x-ndjson"), (b"cache-control", b"no-store")], TapBody(tap, sub))
