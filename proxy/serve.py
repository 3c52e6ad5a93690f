"""Serving one downstream connection: read a request, run it through the stack, write the
response, repeat while the connection is kept alive.

Deadlines: an idle keep-alive connection is closed after ``idle_timeout``; once a request
has begun its head must arrive within ``header_timeout`` (408 otherwise) and its body may not
stall for longer than the body timeout. Malformed requests get a 400 and the connection is
closed; nothing a client sends can take the proxy down.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from proxy.endpoint import copy_body
from proxy.errors import BadRequest, ProxyError
from proxy.exchange import EMPTY, ConnectionBody, Handler, Peer, Request, Response
from proxy.http1 import ConnectionClosed, HttpConnection, ProtocolViolation, ReadTimeout, RequestHead
from proxy.http1rules import authority_of, check_request_head
from proxy.http1wire import encode_response_head

log = logging.getLogger("meshdojo.proxy.serve")
HEADER_TIMEOUT = 10.0
CLOSE_AFTER = frozenset({"bad_request_body", "request_body_timeout", "client_closed"})  # the request's framing is lost


@dataclass
class ServerState:
    """Shared by every connection of a listener: what is in flight, and whether we are draining."""

    idle_timeout: float = 60.0
    header_timeout: float = HEADER_TIMEOUT
    draining: bool = False
    in_flight: int = 0
    idle_conns: set[HttpConnection] = field(default_factory=set)
    drained: asyncio.Event = field(default_factory=asyncio.Event)

    def start_drain(self) -> None:
        self.draining = True
        for conn in list(self.idle_conns):
            conn.close()
        if self.in_flight == 0:
            self.drained.set()


async def serve_connection(conn: HttpConnection, handler: Handler, peer: Peer, state: ServerState) -> None:
    try:
        while not state.draining:
            state.idle_conns.add(conn)
            try:
                head = await conn.read_head(idle_timeout=state.idle_timeout, header_timeout=state.header_timeout)
            except ReadTimeout as exc:
                if exc.started:
                    _write_error(conn, ProxyError("timed out waiting for the request head"), status=408)
                return
            except ProtocolViolation as exc:
                _write_error(conn, BadRequest(str(exc)), status=exc.status)
                return
            except ConnectionClosed:
                return
            finally:
                state.idle_conns.discard(conn)
            if head is None:
                return
            assert isinstance(head, RequestHead)
            # refused before anything is forwarded: a head against the rules, or a body already
            # known to be malformed (it arrived with the head); then the connection is closed
            refusal = check_request_head(head) or conn.pending_violation()
            if refusal is not None:
                _write_error(conn, BadRequest(str(refusal)), status=refusal.status)
                return
            authority = authority_of(head.target)
            if authority is not None:  # RFC 9112 §3.2.2: the absolute-form authority replaces Host
                head.headers = [(n, v) for n, v in head.headers if n != b"host"] + [(b"host", authority.encode("latin-1"))]
            state.in_flight += 1
            try:
                keep_alive = await _serve_one(conn, head, handler, peer, state)
            finally:
                state.in_flight -= 1
                if state.draining and state.in_flight == 0:
                    state.drained.set()
            if not keep_alive:
                return
    finally:
        conn.close()


async def _serve_one(conn: HttpConnection, head: RequestHead, handler: Handler, peer: Peer, state: ServerState) -> bool:
    expect = head.header(b"expect")
    if expect is not None:  # answer 100-continue ourselves; the body is streamed on regardless
        if expect.lower() == b"100-continue" and head.has_body:
            conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            conn.flush()
        head.headers = [(n, v) for n, v in head.headers if n != b"expect"]
    body = ConnectionBody(conn, head.content_length if not head.chunked else None) if head.has_body else EMPTY
    request = Request(head, body, peer)
    response = await handler(request)
    request_done = not isinstance(body, ConnectionBody) or body.complete  # its framing intact: the next request can follow
    keep_alive = head.keep_alive and not state.draining and request_done and response.error not in CLOSE_AFTER
    if isinstance(body, ConnectionBody) and not body.finished:
        body.abandon()
    try:
        await write_response(conn, response, keep_alive, head.method == "HEAD", head.version == "1.0")
    except (ConnectionClosed, ProtocolViolation, ProxyError, ReadTimeout) as exc:
        log.info("response to %s %s cut short: %s", head.method, request.authority or head.target, exc)
        response.body.abandon()
        conn.abort()
        return False
    if not request_done and response.error not in CLOSE_AFTER:
        conn.close_staged()  # answered before the client finished sending: let it read the answer
    return keep_alive and not conn.closed


async def write_response(conn: HttpConnection, response: Response, keep_alive: bool, head_request: bool, http10: bool) -> None:
    length = response.body.length
    if http10 and length is None:
        keep_alive = False  # no chunked encoding in HTTP/1.0: the end of the body is the end of the connection
    conn.write(encode_response_head(response.status, response.headers, length, keep_alive))
    if head_request or response.status in (204, 304):
        response.body.abandon()
        return
    await copy_body(conn, response.body, length is None and not http10)
    conn.flush()


def _write_error(conn: HttpConnection, error: ProxyError, status: int | None = None) -> None:
    response = error.response()
    body = response.body.data  # type: ignore[attr-defined]
    try:
        conn.write(encode_response_head(status or response.status, response.headers, len(body), False) + body)
        conn.flush()
    except ConnectionClosed:
        pass
