"""Reference point for the benchmark: the callbacks-only relay doing the proxy's per-request work.

:mod:`bench.callbackrelay` parses and re-frames each message from httptools' callbacks and does
nothing else. This relay is built the same way — no coroutine, task or future per request, a
whole message handled from the callback that completes it — and does, with the proxy's own
functions, the work our proxy does for every request it forwards:

- the heads as :class:`proxy.http1.RequestHead` / ``ResponseHead``, checked against RFC 9112's
  rules (:func:`proxy.http1rules.check_request_head`, and each request line's spaces read where
  :class:`proxy.requeststarts.RequestStarts` says it begins), the absolute-form authority made the Host,
  hop-by-hop headers dropped and the heads written by :mod:`proxy.http1wire`;
- one keep-alive pool of upstream connections shared by every downstream connection (mutual TLS
  from ``front``, the peer's identity checked once per connection, as the proxy's pool does);
- ``front`` (outbound): the target's service looked up (a fixed table standing in for
  discovery's cache), an endpoint chosen by :class:`proxy.balancer.P2cBalancer` (peak-EWMA, each
  response's latency observed), ``l5d-dst-canonical`` added;
- ``back`` (inbound): the client's identity (once per connection), the authority label resolved;
- each response counted in :class:`proxy.metrics.HttpStats` with Linkerd's labels (outbound also
  per route, effective and actual), its :class:`proxy.fate.Fate` kept in a ring buffer as
  :class:`proxy.layers.FateLog` keeps it, and tap's subscribers looked at.

What it leaves out: deadlines, error answers (it closes the connection), bodies that do not
arrive whole, replaying on a dead pooled connection, policies, draining, TCP metrics. So it
spends less than any proxy with our features written for CPython can; it tells how far a
rewrite of our request path around callbacks could go at best.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from pathlib import Path

import httptools

from bench.tlspipe import connect_done, run_relay
from controlplane.names import resolve, split_authority
from controlplane.protocol import fqdn
from controlplane.spiffe import SpiffeId
from controlplane.sslcontext import client_context, peer_identity, server_context
from proxy.balancer import P2cBalancer, PeakEwma
from proxy.fate import Fate
from proxy.http1 import Headers, RequestHead, ResponseHead
from proxy.http1rules import authority_of, check_request_head
from proxy.http1wire import encode_request_head, encode_response_head, forwardable
from proxy.metrics import HttpStats
from proxy.requeststarts import RequestStarts
from proxy.tap import TapHub

IDENTITY = str(SpiffeId("bench", "pipe"))  # whom bench.tlspipe.make_material's leaf names
NAMESPACE = "bench"


class Endpoint:
    """One endpoint of the upstream service, as discovery would give it."""

    def __init__(self, port: int) -> None:
        self.address, self.port, self.identity = "127.0.0.1", port, IDENTITY
        self.key, self.instance, self.deployment = ("127.0.0.1", port), "app-0", "app"


class Relay:
    """What every connection of one relay shares: the pool, the balancer, the records."""

    def __init__(self, role: str, upstream_port: int, ctx) -> None:
        self.role, self.upstream_port, self.ctx = role, upstream_port, ctx
        self.loop = asyncio.get_running_loop()
        self.idle: list[Upstream] = []
        self.connecting: set[asyncio.Task] = set()
        self.services = {"bench-app": ("bench-app", NAMESPACE, [Endpoint(upstream_port)])}  # discovery's cache, fixed
        self.balancer: P2cBalancer[Endpoint] = P2cBalancer(random.Random())
        self.stats = HttpStats()
        self.fates: deque[tuple] = deque(maxlen=256)  # what the proxy's FateLog keeps of each request
        self.tap = TapHub()

    def upstream(self) -> Upstream:
        """An idle pooled connection, or a new one (what is sent waits until it is made)."""
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
        conn = Upstream(self)
        task = self.loop.create_task(self.loop.create_connection(lambda: conn, "127.0.0.1", self.upstream_port, ssl=self.ctx,
                                                                 server_hostname="" if self.ctx else None))
        self.connecting.add(task)
        task.add_done_callback(connect_done(self.connecting))
        return conn


class Exchange:
    """One request in flight: what its response is recorded with."""

    __slots__ = ("downstream", "started", "method", "authority", "path", "service", "endpoint", "load", "inbound_authority")

    def __init__(self, downstream: Downstream, method: str, authority: str, path: str) -> None:
        self.downstream, self.started = downstream, time.monotonic()
        self.method, self.authority, self.path = method, authority, path
        self.service: tuple[str, str] = ("", "")
        self.endpoint: Endpoint | None = None
        self.load: PeakEwma | None = None
        self.inbound_authority = "unknown"


class _Message(asyncio.Protocol):
    """httptools' callbacks: a message's target, headers (names lower-cased) and body."""

    transport: asyncio.Transport | None = None
    closed = False

    def on_message_begin(self) -> None:
        self.url, self.headers, self.body = b"", [], []  # type: ignore[var-annotated]

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def content_length(self) -> int | None:
        for name, value in self.headers:
            if name == b"content-length":
                return int(value)
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True


class Upstream(_Message):
    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.parser = httptools.HttpResponseParser(self)
        self.waiting: list[bytes] = []  # sent before the connection was made
        self.exchange: Exchange | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.relay.ctx is not None and peer_identity(transport.get_extra_info("ssl_object")) != IDENTITY:
            transport.abort()  # not whom discovery promised
            return
        if self.waiting:
            self.transport.write(b"".join(self.waiting))  # type: ignore[union-attr]
            self.waiting.clear()

    def send(self, data: bytes, exchange: Exchange) -> None:
        self.exchange = exchange
        if self.transport is None:
            self.waiting.append(data)
        else:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        exchange, self.exchange = self.exchange, None
        parser = self.parser
        head = ResponseHead(parser.get_status_code(), b"", parser.get_http_version(), self.headers, parser.should_keep_alive(),
                            False, self.content_length())
        if head.keep_alive:
            self.relay.idle.append(self)
        elif self.transport is not None:
            self.transport.close()
        if exchange is not None:
            exchange.downstream.respond(exchange, head.status, forwardable(head.headers), b"".join(self.body))

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        if self.exchange is not None:  # no answer will come: the client is told by its connection closing
            self.exchange.downstream.close()


class Downstream(_Message):
    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.parser = httptools.HttpRequestParser(self)
        self.identity: str | None = None
        self.starts = RequestStarts()  # where each request begins: its request line's spaces
        self.in_body = False
        self.length: int | None = None  # the current request's Content-Length
        self.ends = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.relay.role == "back":
            self.identity = peer_identity(transport.get_extra_info("ssl_object"))

    def data_received(self, data: bytes) -> None:
        starts = self.starts
        try:
            start, end = 0, len(data)
            while start < end:  # fed in pieces that end where a request may end, as the proxy does
                stop = start + starts.segment(data, start, self.in_body)
                piece = data if start == 0 and stop == end else data[start:stop]
                if starts.refusal(piece) is not None:
                    self.close()
                    return
                ends = self.ends
                self.parser.feed_data(piece)
                starts.fed(piece, self.ends != ends)
                start = stop
        except httptools.HttpParserError:
            self.close()

    def on_headers_complete(self) -> None:
        self.in_body = True
        self.length = self.content_length()
        self.starts.head_complete(self.length, False)

    def on_message_complete(self) -> None:
        self.in_body = False
        self.ends += 1
        relay, parser = self.relay, self.parser
        head = RequestHead(parser.get_method().decode("latin-1"), self.url.decode("latin-1"), parser.get_http_version(),
                           self.headers, parser.should_keep_alive(), False, self.length)
        if check_request_head(head) is not None:
            self.close()
            return
        authority = authority_of(head.target)
        if authority is not None:  # RFC 9112 §3.2.2: the absolute-form authority replaces Host
            head.headers = [(n, v) for n, v in head.headers if n != b"host"] + [(b"host", authority.encode("latin-1"))]
            rest = head.target.partition("://")[2]
            cut = rest.find("/")
            path = rest[cut:] if cut >= 0 else "/"
        else:
            authority, path = (head.header(b"host") or b"").decode("latin-1"), head.target
        exchange = Exchange(self, head.method, authority, path)
        extra = b""
        if relay.role == "front":  # outbound: the service, one of its endpoints, whom we meant to reach
            host, _port = split_authority(authority)
            service, namespace, endpoints = relay.services[host]
            endpoint = relay.balancer.pick(endpoints, key=lambda ep: ep.key)
            exchange.service, exchange.endpoint = (service, namespace), endpoint
            exchange.load = relay.balancer.load(endpoint.key)
            exchange.load.pending += 1
            extra = f"l5d-dst-canonical: {service}.{namespace}.svc.cluster.local\r\n".encode()
        else:  # inbound: which of this workload's services was asked for
            host = authority.rpartition(":")[0] if authority.rpartition(":")[2].isdigit() else authority
            found = resolve(host, NAMESPACE)
            exchange.inbound_authority = fqdn(found[1], found[0]) if found is not None else "unknown"
        body = b"".join(self.body)
        relay.upstream().send(encode_request_head(head.method, path, forwardable(head.headers), len(body), extra) + body, exchange)

    def respond(self, exchange: Exchange, status: int, headers: Headers, body: bytes) -> None:
        relay = self.relay
        latency = time.monotonic() - exchange.started
        failure = status >= 500
        fate = Fate(direction="outbound" if relay.role == "front" else "inbound")
        if relay.role == "front":
            assert exchange.endpoint is not None and exchange.load is not None
            exchange.load.pending -= 1
            exchange.load.observe(latency)
            endpoint, (service, namespace) = exchange.endpoint, exchange.service
            fate.attempts.append(f"{endpoint.instance} -> {status}")
            dst = fqdn(service, namespace)
            relay.stats.record(("outbound", dst, "true", "", endpoint.identity, namespace, service, endpoint.deployment),
                               status, latency * 1000.0, failure)
            relay.stats.record_route(dst, None, status, failure, None)  # the actual attempt
            relay.stats.record_route(dst, None, status, failure, latency * 1000.0)  # what the caller saw
        else:
            relay.stats.record(("inbound", exchange.inbound_authority, "true" if self.identity else "no_identity",
                                self.identity or "", "", "", "", ""), status, latency * 1000.0, failure)
        relay.fates.append((time.time(), exchange.method, exchange.authority, exchange.path, status, fate))
        if relay.tap.subscribers:  # nobody taps in the benchmark; the proxy looks as often
            relay.tap.publish([{"type": "end", "id": relay.tap.next_id(), "status": status, "fate": fate.to_json()}])
        if not self.closed and self.transport is not None:
            self.transport.write(encode_response_head(status, headers, len(body), True) + body)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def serve(role: str, listen_port_file: Path, upstream_port: int, material: tuple[str, str, str]) -> None:
    loop = asyncio.get_running_loop()
    anchor, chain, key = material
    relay = Relay(role, upstream_port, client_context(anchor, chain, key) if role == "front" else None)
    server_ctx = server_context(anchor, chain, key) if role == "back" else None
    server = await loop.create_server(lambda: Downstream(relay), "127.0.0.1", 0, ssl=server_ctx)
    listen_port_file.write_text(str(server.sockets[0].getsockname()[1]))  # noqa: ASYNC240
    await asyncio.Event().wait()


if __name__ == "__main__":
    run_relay(serve)
