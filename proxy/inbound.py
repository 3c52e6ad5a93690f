"""The inbound side: what other workloads send to this one.

The listener looks at the first byte of each connection. A TLS ClientHello is terminated
with this workload's certificate and the client's chain is verified against the trust
anchor; the client's SPIFFE ID becomes the request's identity. Plaintext is refused under
STRICT and accepted, labelled ``tls="no_identity"``, under PERMISSIVE.

The stack, outermost first (built in :func:`build_inbound_stack`; ``proxy.app`` puts the first
three around it):

    trace      a span of each sampled request; the trace's context passed on to the app
    access     a line per request in the sidecar's log (a Telemetry's accessLogging, or
               Linkerd's config.linkerd.io/access-log)
    fate       record what happens (tap, x-meshdojo-fate)
    metrics    count and time every request, labelled with the client's identity
    errors     a ProxyError becomes a 5xx with x-meshdojo-error
    identity   x-meshdojo-client-id set from the verified certificate (never from the client)
    policies   only when a policy below applies to this workload (else straight to app)
    authn      RequestAuthentication: an end user's JWT verified (401 if it is not valid)
    authz      AuthorizationPolicy: CUSTOM first (its provider asked over the outbound side),
               then DENY, then ALLOW must match (403)
    ratelimit  RateLimit: the token bucket in force at this workload (429)
    linkerd-rl HTTPLocalRateLimitPolicy: Linkerd's limits on the Server of this port — in all,
               per caller identity, or an override's (429)
    fault      FaultInjection: delay and/or abort

Which policies apply is decided once per policy snapshot from what this workload *is* (its
namespace, service account, deployment, pod name and labels: controlplane.selection), never
from what a request says.
    app        plaintext to the app on 127.0.0.1:<app port>, pooled
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import socket
import ssl
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from controlplane import inboundpolicy
from controlplane.sslcontext import peer_identity
from proxy.acceptor import Acceptor, readable
from proxy.access import authenticate_requests, authorize_requests
from proxy.deadlines import Deadlines
from proxy.endpoint import exchange
from proxy.errors import AppUnavailable, ConnectFailed
from proxy.exchange import BytesBody, Handler, Layer, Peer, Request, Response, header_of
from proxy.faults import decide
from proxy.http1 import HttpConnection
from proxy.layers import errors, record_metrics
from proxy.metrics import ProxyMetrics
from proxy.policies import PolicyWatch
from proxy.pool import ConnectionPool, Dest
from proxy.ratelimit import LocalRateLimit, TokenBucket
from proxy.serve import ServerState, serve_connection
from proxy.tasks import TaskSet

log = logging.getLogger("meshdojo.proxy.inbound")
CLIENT_ID_HEADER = b"x-meshdojo-client-id"
HANDSHAKE_TIMEOUT = 10.0  # for a client's first byte, and again for its TLS handshake
TLS_HANDSHAKE_RECORD = 0x16


class TlsMode(StrEnum):
    STRICT = "strict"
    PERMISSIVE = "permissive"
    DISABLE = "disable"  # a PeerAuthentication's: plaintext taken, and mutual TLS too (meshdojo's callers always send it)


def policy_layers(policies: PolicyWatch, shaped: Handler, always: bool = False) -> Layer:
    """Through ``shaped`` (authz, rate limit, faults) when one of their kinds applies to this
    workload, or ``always``; else straight on (each would pass the request through)."""

    def layer(plain: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            return await (shaped if always or policies.inbound_active else plain)(request)

        return handle

    return layer


def client_identity() -> Layer:
    def layer(inner: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            headers = [(n, v) for n, v in request.head.headers if n != CLIENT_ID_HEADER]
            if request.peer.identity:
                headers.append((CLIENT_ID_HEADER, request.peer.identity.encode()))
            request.head.headers = headers
            request.authority = (request.head.header(b"host") or b"").decode("latin-1")
            request.path = request.head.target
            return await inner(request)

        return handle

    return layer


def inject_faults(policies: PolicyWatch, metrics: ProxyMetrics, rng: random.Random, sleep=asyncio.sleep) -> Layer:
    """FaultInjection resources that select this workload: delay and/or abort a share of requests."""

    def layer(inner: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            rules = policies.faults()
            if not rules:
                return await inner(request)
            decision = decide(rules, request.path, header_of(request), rng)
            if decision is None:
                return await inner(request)
            request.fate.fault = f"{'delay ' + format(decision.delay, 'g') + 's ' if decision.delay else ''}" \
                f"{'abort ' + str(decision.abort_status) + ' ' if decision.abort_status else ''}by {decision.policy}"
            if decision.delay is not None:
                metrics.faults.labels("delay", decision.policy).inc()
                await sleep(decision.delay)
            if decision.abort_status is not None:
                metrics.faults.labels("abort", decision.policy).inc()
                body = f"meshdojo: fault injected by FaultInjection {decision.policy}\n".encode()
                return Response(decision.abort_status, [(b"content-type", b"text/plain"),
                                                        (b"x-meshdojo-fault", f"abort {decision.policy}".encode())], BytesBody(body))
            response = await inner(request)
            response.headers.append((b"x-meshdojo-fault", f"delay {decision.delay:g}s {decision.policy}".encode()))
            return response

        return handle

    return layer


def too_many_requests(what: str, wait: float) -> Response:
    """The 429 a rate limit answers itself: which limit (``what``), and the whole seconds until its
    bucket has a token again (retry-after)."""
    return Response(429, [(b"content-type", b"text/plain"), (b"retry-after", str(max(math.ceil(wait), 1)).encode()),
                          (b"x-meshdojo-error", b"rate_limited")], BytesBody(f"meshdojo: rate limited by {what}\n".encode()),
                    error="rate_limited")


def _kept(cache: dict[tuple[str, str], tuple[object, Any]], resource: Any, build: Callable[[Any], Any]) -> Any:
    """The limiter ``build`` makes from ``resource``'s spec, kept across requests: fresh buckets
    only when the policy is new or its spec changed."""
    key = (resource.namespace, resource.name)
    current = cache.get(key)
    if current is None or current[0] != resource.spec:
        current = cache[key] = (resource.spec, build(resource.spec))
    return current[1]


def rate_limit(policies: PolicyWatch, metrics: ProxyMetrics, clock=time.monotonic) -> Layer:
    """RateLimit: the token bucket of the RateLimit in force at this workload; 429 past it."""
    buckets: dict[tuple[str, str], tuple[object, Any]] = {}

    def layer(inner: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            resource = policies.applied("RateLimit").chosen
            if resource is None:
                return await inner(request)
            bucket: TokenBucket = _kept(buckets, resource, lambda spec: TokenBucket(spec.requests_per_second, spec.burst, clock))
            name = f"{resource.namespace}/{resource.name}"
            if bucket.take():
                metrics.ratelimited.labels(name, "allowed").inc()
                return await inner(request)
            metrics.ratelimited.labels(name, "rate_limited").inc()
            request.fate.ratelimit = f"limited by {name}"
            return too_many_requests(f"RateLimit {name}", bucket.wait())

        return handle

    return layer


def linkerd_rate_limit(policies: PolicyWatch, metrics: ProxyMetrics, clock=time.monotonic) -> Layer:
    """HTTPLocalRateLimitPolicy: Linkerd's limits on the Server that covers this port, by the
    caller's verified identity (none: the unmeshed callers' shared bucket); 429 past one."""
    limiters: dict[tuple[str, str], tuple[object, Any]] = {}

    def layer(inner: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            resource = policies.applied("HTTPLocalRateLimitPolicy").chosen
            if resource is None:
                return await inner(request)
            limiter: LocalRateLimit = _kept(limiters, resource, lambda spec: LocalRateLimit(spec, clock))
            name = f"{resource.namespace}/{resource.name}"
            exceeded = limiter.check(request.peer.identity)
            if exceeded is None:
                metrics.ratelimited.labels(name, "allowed").inc()
                return await inner(request)
            words, wait = exceeded
            metrics.ratelimited.labels(name, "rate_limited").inc()
            request.fate.ratelimit = f"limited by HTTPLocalRateLimitPolicy {name}: {words}"
            return too_many_requests(f"HTTPLocalRateLimitPolicy {name} (Linkerd's): {words}", wait)

        return handle

    return layer


def app(pool: ConnectionPool, app_port: int) -> Handler:
    dest = Dest("127.0.0.1", app_port, None)

    async def handle(request: Request) -> Response:
        try:
            return await exchange(pool, dest, request, b"")
        except ConnectFailed as exc:
            raise AppUnavailable(f"the app on 127.0.0.1:{app_port} is not accepting connections ({exc.message})") from None

    return handle


def build_inbound_stack(pool: ConnectionPool, app_port: int, metrics: ProxyMetrics, policies: PolicyWatch,
                        own_namespace: str, rng: random.Random | None = None, default_policy: str = inboundpolicy.DEFAULT,
                        outbound: Handler | None = None, pod_port: int | None = None) -> Handler:
    """``outbound``: this proxy's outbound side, through which a CUSTOM policy's provider is asked;
    ``pod_port``: the port the pod declares for its app, which AuthorizationPolicy's ports read."""
    handler = plain = app(pool, app_port)  # plaintext to the local app, pooled
    handler = inject_faults(policies, metrics, rng or random.Random())(handler)  # FaultInjection
    handler = linkerd_rate_limit(policies, metrics)(handler)  # HTTPLocalRateLimitPolicy: Linkerd's, 429
    handler = rate_limit(policies, metrics)(handler)  # RateLimit: token bucket, 429
    # AuthorizationPolicy: 403
    handler = authorize_requests(policies, metrics, own_namespace, default_policy, outbound, pod_port)(handler)
    handler = authenticate_requests(policies, metrics)(handler)  # RequestAuthentication: JWTs, 401
    # the five above, when one applies to this workload (a default inbound policy other than Linkerd's default: always)
    handler = policy_layers(policies, shaped=handler, always=default_policy != inboundpolicy.DEFAULT)(plain)
    handler = client_identity()(handler)  # verified client identity -> header; authority/path for metrics
    handler = errors("inbound", metrics)(handler)  # failures -> 5xx with x-meshdojo-error
    handler = record_metrics("inbound", metrics, client_id_of_peer=True, own_namespace=own_namespace,
                             own_services=lambda: policies.services)(handler)  # golden metrics
    return handler


class InboundListener:
    """Accepts connections itself so it can peek at the first byte before choosing TLS or not.
    Also the admin port's listener (``counted=False``: its connections are not the workload's
    traffic, so they stay out of the TCP and TLS metrics)."""

    def __init__(self, handler: Handler, server_ctx: Callable[[], ssl.SSLContext | None], mode: Callable[[], TlsMode],
                 metrics: ProxyMetrics, tasks: TaskSet, state: ServerState, deadlines: Deadlines | None = None,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT, counted: bool = True) -> None:
        self._counted = counted
        self._deadlines = deadlines
        self._handshake_timeout = handshake_timeout  # for the first byte, then for the TLS handshake
        self._handler = handler
        self._server_ctx = server_ctx
        self._mode = mode
        self._metrics = metrics
        self.state = state
        self._acceptor = Acceptor(self._serve, tasks, "inbound")

    def listen(self, host: str, port: int) -> int:
        return self._acceptor.listen(host, port)

    def close(self) -> None:
        self._acceptor.close()

    async def _serve(self, sock: socket.socket, addr: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            await readable(loop, sock, self._handshake_timeout)
            first = sock.recv(1, socket.MSG_PEEK)  # left in the socket for whoever reads next
        except (TimeoutError, OSError):
            sock.close()
            return
        if not first:
            sock.close()
            return
        peer_addr = f"{addr[0]}:{addr[1]}"
        local = sock.getsockname()
        local_addr = f"{local[0]}:{local[1]}"
        lost = (lambda conn, exc: self._metrics.tcp.closed(conn)) if self._counted else None
        if first[0] == TLS_HANDSHAKE_RECORD:
            ctx = self._server_ctx()
            if ctx is None:
                sock.close()
                return
            conn = HttpConnection("request", on_lost=lost, deadlines=self._deadlines)
            try:
                # (uvloop returns its SSL protocol here, not ours: keep our own reference)
                transport, _ = await loop.connect_accepted_socket(
                    lambda: conn, sock, ssl=ctx, ssl_handshake_timeout=self._handshake_timeout
                )
            except (ssl.SSLError, OSError, TimeoutError) as exc:
                reason = getattr(exc, "reason", None) or type(exc).__name__
                if self._counted:
                    self._metrics.tls_refused.labels("handshake").inc()
                log.info("refused TLS from %s: %s", peer_addr, reason)
                sock.close()
                return
            identity = peer_identity(transport.get_extra_info("ssl_object"))
            peer = Peer(peer_addr, True, identity, local_addr)
        elif self._mode() in (TlsMode.PERMISSIVE, TlsMode.DISABLE):
            conn = HttpConnection("request", on_lost=lost, deadlines=self._deadlines)
            await loop.connect_accepted_socket(lambda: conn, sock)
            peer = Peer(peer_addr, False, None, local_addr)
        else:
            self._metrics.tls_refused.labels("plaintext").inc()
            log.info("refused plaintext connection from %s: this workload is STRICT (mutual TLS only)", peer_addr)
            sock.close()
            return
        if self._counted:
            self._metrics.tcp.opened(conn, ("inbound", "src", "true" if peer.tls else "no_identity", peer.identity or "", ""))
        await serve_connection(conn, self._handler, peer, self.state)
