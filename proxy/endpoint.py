"""The innermost layer: one request over one connection to one endpoint, and its response
streamed back. A connection reused from the pool that turns out to be dead before it said
anything is replaced once, transparently (only when the request body can be sent again)."""

from __future__ import annotations

import time
from collections.abc import Callable

from proxy.balancer import PeakEwma
from proxy.errors import ClientError, ConnectFailed, UpstreamProtocolError
from proxy.exchange import Body, BytesBody, ConnectionBody, EmptyBody, Request, Response
from proxy.http1 import ConnectionClosed, HttpConnection, ProtocolViolation, ReadTimeout, ResponseHead
from proxy.http1wire import LAST_CHUNK, encode_chunk, encode_request_head, forwardable
from proxy.pool import ConnectionPool, Dest

FLUSH_AT = 64 * 1024
UNREACHABLE_RTT = 1.0  # seconds the balancer counts for an endpoint it could not connect to


async def copy_body(conn: HttpConnection, body: Body, chunked: bool, from_client: bool = False) -> None:
    """Write ``body`` to ``conn``. Small bodies leave with their head in one system call;
    a streamed body is flushed whenever its source has nothing more ready, so it never stalls.
    With ``from_client``, what goes wrong while *reading* the body is the client's fault."""
    # what is already here goes out at once, with no coroutine per chunk: an empty body, bytes
    # in memory, or a body that arrived whole with its head (most small messages)
    ready = [] if isinstance(body, EmptyBody) else [body.data] if isinstance(body, BytesBody) else \
        body.take_ready() if isinstance(body, ConnectionBody) else None
    if ready is not None:
        for chunk in ready:
            if chunk:
                conn.write(encode_chunk(chunk) if chunked else chunk)
        if chunked:
            conn.write(LAST_CHUNK)
        return
    source = getattr(body, "conn", None)  # a body still arriving on a connection
    streamed = True
    chunks = body.chunks()
    while True:
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            break
        except (ProtocolViolation, ReadTimeout, ConnectionClosed) as exc:
            if not from_client:
                raise
            raise client_error(exc) from None
        conn.write(encode_chunk(chunk) if chunked else chunk)
        if conn.write_buffered >= FLUSH_AT or (streamed and (source is None or not source.has_events)):
            await conn.drain()
    if chunked:
        conn.write(LAST_CHUNK)


def client_error(exc: Exception) -> ClientError:
    if isinstance(exc, ProtocolViolation):
        return ClientError(f"the request body is malformed ({exc})", exc.status)
    if isinstance(exc, ReadTimeout):
        return ClientError("the request body stalled; gave up waiting for the rest of it", 408, "request_body_timeout")
    return ClientError(f"the client closed the connection before sending the whole body ({exc})", 400, "client_closed")


async def exchange(pool: ConnectionPool, dest: Dest, request: Request, extra_headers: bytes,
                   load: PeakEwma | None = None, response_timeout: float | None = None, max_requests: int = 0) -> Response:
    """One request on one pooled connection to ``dest``; a connection that has carried
    ``max_requests`` (when set) is closed rather than pooled again."""
    head = request.head
    headers = forwardable(head.headers)
    if head.version == "1.0" and head.header(b"host") is None:
        # HTTP/1.0 may leave Host out, HTTP/1.1 may not (RFC 9112 §3.2), and we forward as HTTP/1.1
        # (an HTTP/1.1 request without exactly one Host was refused on arrival)
        headers.append((b"host", f"{dest.host}:{dest.port}".encode("latin-1")))
    wire_head = encode_request_head(head.method, request.path, headers, request.body.length, extra_headers)
    replayable = isinstance(request.body, (EmptyBody, BytesBody))
    started = time.monotonic()
    observe = True  # a latency sample for the balancer, unless the client was at fault
    if load is not None:
        load.pending += 1
    try:
        for attempt in (0, 1):
            try:
                conn, reused = await pool.acquire(dest)
            except ConnectFailed:
                if load is not None:  # unreachable: look slow, so the balancer tries others until it decays
                    load.observe(UNREACHABLE_RTT)
                observe = False
                raise
            conn.requests += 1
            started = time.monotonic()  # the latency estimate leaves out connection set-up
            try:
                conn.write(wire_head)
                try:
                    await copy_body(conn, request.body, request.body.length is None, from_client=True)
                except ConnectionClosed:
                    # the upstream may answer before reading the whole body (a 403, a fault's 503)
                    # and close: what it said counts, if it said something
                    if not conn.has_events:
                        raise
                    request.body.abandon()
                conn.skip_body = head.method == "HEAD"
                rsp = await conn.read_head(idle_timeout=response_timeout)
                while rsp is not None and 100 <= rsp.status < 200:  # interim responses (100, 103) are not forwarded
                    rsp = await conn.read_head(idle_timeout=response_timeout)
            except ClientError:
                pool.release(dest, conn, False)  # half a request went out: that connection is done
                observe = False
                raise
            except (ConnectionClosed, ProtocolViolation) as exc:
                pool.release(dest, conn, False)
                if reused and attempt == 0 and replayable and conn.bytes_read == 0:
                    continue  # the pooled connection died while idle: use a fresh one
                raise UpstreamProtocolError(f"{dest.host}:{dest.port} closed the connection or sent malformed HTTP ({exc})") from None
            except BaseException:
                pool.release(dest, conn, False)
                raise
            if rsp is None:
                pool.release(dest, conn, False)
                if reused and attempt == 0 and replayable:
                    continue
                raise UpstreamProtocolError(f"{dest.host}:{dest.port} closed the connection without a response")
            break
    finally:
        if load is not None:
            load.pending -= 1
            if observe:
                load.observe(time.monotonic() - started)
    assert isinstance(rsp, ResponseHead)
    body = response_body(pool, dest, conn, rsp, head.method == "HEAD", reusable=not max_requests or conn.requests < max_requests)
    return Response(rsp.status, forwardable(rsp.headers), body, tls=dest.tls, server_id=dest.identity)


def response_body(pool: ConnectionPool, dest: Dest, conn: HttpConnection, rsp: ResponseHead, head_request: bool,
                  reusable: bool = True) -> Body:
    no_body = head_request or rsp.status < 200 or rsp.status in (204, 304) or rsp.content_length == 0
    keep = rsp.keep_alive and reusable
    if no_body:
        pool.release(dest, conn, keep and not head_request)
        return EmptyBody() if not head_request else _HeadBody(rsp.content_length)
    release: Callable[[bool], None] = lambda complete: pool.release(dest, conn, complete and keep)  # noqa: E731
    return ConnectionBody(conn, None if rsp.chunked else rsp.content_length, release)


class _HeadBody(EmptyBody):
    """No bytes, but the length the resource would have (for HEAD responses' content-length)."""

    def __init__(self, length: int | None) -> None:
        self.length = length  # type: ignore[misc]
