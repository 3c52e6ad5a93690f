"""The values the request stack passes around: requests, responses, bodies, and the
``Handler``/``Layer`` shapes (a handler is ``(request) -> response``; a layer wraps one)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from controlplane.authzrules import JwtAuth
from controlplane.policy import RouteRule
from controlplane.protocol import Endpoint
from controlplane.routespec import Backend
from proxy.fate import Fate
from proxy.http1 import Headers, HttpConnection, RequestHead

BODY_IDLE_TIMEOUT = 30.0


class Body(Protocol):
    length: int | None  # None: unknown, sent chunked

    def chunks(self) -> AsyncIterator[bytes]: ...

    def abandon(self) -> None: ...


class EmptyBody:
    length = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        return
        yield b""  # pragma: no cover - makes this an async generator

    def abandon(self) -> None:
        pass


EMPTY = EmptyBody()


class BytesBody:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.data:
            yield self.data

    def abandon(self) -> None:
        pass


class ConnectionBody:
    """A body still arriving on a connection. ``on_done(complete)`` runs once, when it was read
    to the end (the connection may be reused) or abandoned (it may not)."""

    def __init__(self, conn: HttpConnection, length: int | None, on_done: Callable[[bool], None] | None = None,
                 idle_timeout: float | None = BODY_IDLE_TIMEOUT) -> None:
        self.conn = conn
        self.length = length
        self._on_done = on_done
        self._idle_timeout = idle_timeout
        self.finished = False  # read to the end, abandoned, or failed: nobody reads it any more
        self.complete = False  # read to the end: the connection's framing is intact

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            while (chunk := await self.conn.read_chunk(self._idle_timeout)) is not None:
                yield chunk
        except BaseException:
            self._finish(False)
            raise
        self.complete = True
        self._finish(True)

    def take_ready(self) -> list[bytes] | None:
        """All of the body, if it has all arrived already (no wait): the body is then read to
        its end. None if some of it is still to come."""
        if self.finished:
            return None
        chunks = self.conn.take_body()
        if chunks is not None:
            self.complete = True
            self._finish(True)
        return chunks

    async def read_all(self, limit: int) -> bytes | None:
        """The whole body if it fits in ``limit`` bytes; None (and the body is abandoned) if not."""
        parts, size = [], 0
        async for chunk in self.chunks():
            size += len(chunk)
            if size > limit:
                self.abandon()
                return None
            parts.append(chunk)
        return b"".join(parts)

    def abandon(self) -> None:
        self._finish(False)

    def _finish(self, complete: bool) -> None:
        if not self.finished:
            self.finished = True
            if self._on_done is not None:
                self._on_done(complete)


@dataclass(slots=True)
class Peer:
    """Who is on the other side of the downstream connection."""

    address: str
    tls: bool
    identity: str | None  # verified SPIFFE ID of the client, inbound only
    local: str = ""  # host:port this side of the connection (inbound: where the request arrived)
    scheme: str = "http"  # https: at a gateway's TLS port (TLS from a client outside the mesh, ended here)
    client_certificate: str | None = None  # there, a mutual TLS listener's verified client, as x-forwarded-client-cert says it


@dataclass(slots=True)
class Request:
    head: RequestHead
    body: Body
    peer: Peer
    started: float = field(default_factory=time.monotonic)
    authority: str = ""  # host[:port] the client asked for
    path: str = "/"  # origin-form target forwarded upstream
    # filled in as the request goes down the outbound stack
    dst_service: str = ""
    dst_namespace: str = ""
    endpoints: Sequence[Endpoint] = ()
    endpoint: Endpoint | None = None
    rule: RouteRule | None = None  # the HTTPRoute rule that matched, if any
    backend: Backend | None = None  # and the backend it chose (its own header edits)
    max_requests_per_connection: int = 0  # connectionPool.http.maxRequestsPerConnection (0: no limit)
    origin_sni: str | None = None  # egress over TLS the sidecar originates (a BackendTLSPolicy): the server's name
    asked_for: str | None = None  # at an ingress gateway's route: the host[:port] the client sent (a redirect keeps it)
    fate: Fate = field(default_factory=Fate)
    jwt: JwtAuth | None = None  # inbound: the end user's token, verified by a RequestAuthentication


@dataclass(slots=True)
class Response:
    status: int
    headers: Headers
    body: Body = EMPTY
    # filled in by the endpoint layer, read by metrics and logs
    tls: bool = False
    server_id: str | None = None
    error: str | None = None  # x-meshdojo-error code when the proxy itself answered


def header_of(request: Request) -> Callable[[str], str | None]:
    """A header of the request by (lower-case) name, decoded, as the pure decisions read headers."""
    return lambda name: v.decode("latin-1") if (v := request.head.header(name.encode())) is not None else None


Handler = Callable[[Request], Awaitable[Response]]
Layer = Callable[[Handler], Handler]
