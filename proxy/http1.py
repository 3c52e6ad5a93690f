"""HTTP/1.1 on one connection: an asyncio protocol that parses with ``httptools`` (llhttp) and
queues what it parsed — a head, body chunks, the end — for one consumer coroutine.

Only framing lives here (what is written back is serialized by :mod:`proxy.http1wire`); what to
do with a message is decided by the request stack.
Reading has explicit deadlines (idle, header, body) run as loop timers rather than
``wait_for`` tasks, because this is the hot path.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import httptools

from proxy.deadlines import Deadlines
from proxy.http1wire import Headers
from proxy.requeststarts import RequestStarts

READ_HIGH_WATER = 256 * 1024
# limits on what a peer may send before its message head is complete, enforced as bytes arrive
MAX_HEAD_BYTES = 64 * 1024  # the whole head (431)
# a staged close (RFC 9112 §9.6) reads and drops at most this much, for at most this long
LINGER_BYTES, LINGER_SECONDS = 4 * 1024 * 1024, 2.0
MAX_TARGET_BYTES = 8 * 1024  # the request target (414)
MAX_FIELD_BYTES = 8 * 1024  # one header field, name and value (431)
MAX_FIELDS = 100  # header fields in one head (431)


class ConnectionClosed(Exception):
    """The peer went away (or we closed) before a message was complete."""


class ProtocolViolation(Exception):
    """Bytes that are not acceptable HTTP/1.1; ``status`` is the answer RFC 9112 asks for."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ReadTimeout(Exception):
    def __init__(self, started: bool) -> None:
        super().__init__("timed out reading from peer")
        self.started = started  # part of a message had arrived


@dataclass(slots=True)
class RequestHead:
    method: str
    target: str
    version: str
    headers: Headers
    keep_alive: bool
    chunked: bool
    content_length: int | None

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


@dataclass(slots=True)
class ResponseHead:
    status: int
    reason: bytes
    version: str
    headers: Headers
    keep_alive: bool
    chunked: bool
    content_length: int | None

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


_END = object()  # end of the current message's body
_EOF = object()  # connection closed


class HttpConnection(asyncio.Protocol):
    """One HTTP/1.1 connection. ``parse="request"`` on the server side, ``"response"`` on a client."""

    def __init__(self, parse: str, on_lost: Callable[[HttpConnection, BaseException | None], None] | None = None,
                 deadlines: Deadlines | None = None) -> None:
        self._deadlines = deadlines
        self._wbuf: list[bytes] = []
        self._wbuf_size = 0
        self._parser = httptools.HttpRequestParser(self) if parse == "request" else httptools.HttpResponseParser(self)
        self._is_request = parse == "request"
        self._events: deque[object] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._armed = False
        self._timed_out = False
        self._buffered = 0
        self._reading_paused = False
        self._write_paused = False
        self._on_lost = on_lost
        self._url = b""
        self._headers: Headers = []
        self._head_bytes = 0  # bytes received since the current head began (limit: MAX_HEAD_BYTES)
        self._in_body = False  # between a head's end and its message's end
        self._heads = 0  # heads completed on this connection
        self._ends = 0  # messages completed on this connection
        self._starts = RequestStarts() if self._is_request else None
        self._refused = False
        self._in_message = False
        self._unframed_body = False
        self._expect_body = False
        self._linger: asyncio.TimerHandle | None = None  # a staged close in progress
        self._linger_left = 0
        self.transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # kept: asking asyncio costs a getpid() system call each time
        self.closed = False
        self.bytes_read = 0
        self.bytes_written = 0
        self.requests = 0  # requests sent on this connection (a client connection's own count)
        self.skip_body = False  # set by a client before reading the response to a HEAD request
        self.error: BaseException | None = None

    # -- asyncio.Protocol --------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        self.bytes_read += len(data)
        if self._linger is not None:  # closing in stages: what the peer still sends is dropped
            self._linger_left -= len(data)
            if self._linger_left < 0 and self.transport is not None:
                self.transport.abort()
            return
        starts = self._starts
        start, end = 0, len(data)
        while start < end and not self._refused:
            in_body = self._in_body
            if in_body and starts is None:
                self._feed(data if start == 0 else data[start:])
                return
            # a head is being read: never hand the parser more than the head limit allows, so a
            # field without an end (or a flood of fields) is refused at the limit, not buffered;
            # a server connection also cuts where a request may end (requeststarts)
            room = end - start if in_body else MAX_HEAD_BYTES - self._head_bytes
            size = room if starts is None else min(room, starts.segment(data, start, in_body))
            stop = min(end, start + size)
            piece = data if start == 0 and stop == end else data[start:stop]
            if starts is not None and (refusal := starts.refusal(piece)) is not None:
                self._refuse(ProtocolViolation(refusal))
                return
            if not in_body:
                self._head_bytes += len(piece)  # on_headers_complete starts the count again
            heads, ends = self._heads, self._ends
            self._feed(piece)
            if starts is not None:
                starts.fed(piece, self._ends != ends)
            start = stop
            if start < end and size == room and not in_body and self._heads == heads and not self._in_body:
                self._refuse(ProtocolViolation("the request head is larger than 64 KiB", 431))

    def _feed(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(ProtocolViolation("protocol upgrades (WebSocket, CONNECT) are not supported by meshdojo", 501))
        except httptools.HttpParserError as exc:
            cause = exc.__cause__ or exc.__context__
            self._refuse(cause if isinstance(cause, ProtocolViolation) else ProtocolViolation(f"malformed HTTP: {exc}"))
        except ProtocolViolation as exc:  # a limit, raised from a parser callback
            self._refuse(exc)

    def _refuse(self, violation: ProtocolViolation) -> None:
        if not self._refused:
            self._refused = True
            self._push(violation)
            self._stop_reading()

    def pending_violation(self) -> ProtocolViolation | None:
        """A refusal already parsed and waiting (the head before it must not be forwarded)."""
        for event in self._events:
            if isinstance(event, ProtocolViolation):
                return event
        return None

    def eof_received(self) -> bool:
        if self._unframed_body and self._in_message:
            self._in_message = False
            self._push(_END)
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self._cancel_timer()
        if self._linger is not None:
            self._linger.cancel()
        self._wbuf.clear()
        if self._unframed_body and self._in_message:
            self._in_message = False
            self._push(_END)
        self._push(_EOF)
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)
        if self._on_lost is not None:
            self._on_lost(self, exc)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- httptools callbacks -----------------------------------------------------
    def on_message_begin(self) -> None:
        self._in_message = True
        self._url = b""
        self._headers = []
        self._fields_bytes = 0
        if self._armed and self._header_timeout is not None:
            self._arm(self._header_timeout)

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_TARGET_BYTES:
            raise ProtocolViolation("the request target is longer than 8 KiB", 414)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))  # their limits are checked once the head is whole (<= 64 KiB)

    def on_headers_complete(self) -> None:
        self._head_bytes = 0
        self._heads += 1
        self._in_body = True
        parser = self._parser
        chunked, length = False, None
        if len(self._headers) > MAX_FIELDS:
            raise ProtocolViolation(f"more than {MAX_FIELDS} header fields", 431)
        for name, value in self._headers:
            if len(name) + len(value) > MAX_FIELD_BYTES:
                raise ProtocolViolation(f"header {name[:40].decode('latin-1')} is longer than 8 KiB", 431)
            if name == b"transfer-encoding":
                codings = [c.strip().lower() for c in value.split(b",") if c.strip()]
                chunked = bool(codings) and codings[-1] == b"chunked"  # anything else is refused (http1rules)
            elif name == b"content-length":
                length = int(value)
        if self._is_request:
            head: RequestHead | ResponseHead = RequestHead(
                parser.get_method().decode("latin-1"), self._url.decode("latin-1"), parser.get_http_version(),
                self._headers, parser.should_keep_alive(), chunked, length,
            )
            self._unframed_body = False
            self._expect_body = chunked or bool(length)
            self._starts.head_complete(length, chunked)  # type: ignore[union-attr]
        else:
            status = parser.get_status_code()
            head = ResponseHead(status, b"", parser.get_http_version(), self._headers, parser.should_keep_alive(), chunked, length)
            no_body = self.skip_body or status < 200 or status in (204, 304)
            self._unframed_body = not no_body and not chunked and length is None
            self._expect_body = not no_body and length != 0
            if self._unframed_body:
                head.keep_alive = False
        self._push(head)

    def on_body(self, body: bytes) -> None:
        self._buffered += len(body)
        self._push(body)
        if self._buffered > READ_HIGH_WATER and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        self._ends += 1
        self._in_message = False
        self._in_body = False
        if self._expect_body:  # a bodiless message has no reader waiting for its end
            self._push(_END)

    # -- consumer API ------------------------------------------------------------
    _header_timeout: float | None = None

    async def read_head(self, idle_timeout: float | None = None, header_timeout: float | None = None) -> RequestHead | ResponseHead | None:
        """The next message's head; None when the peer closed cleanly between messages.

        ``idle_timeout`` runs until the first byte of the message, ``header_timeout`` from then on.
        """
        self._header_timeout = header_timeout
        if self._in_message and header_timeout is not None:
            self._arm(header_timeout)
        elif idle_timeout is not None:
            self._arm(idle_timeout)
        try:
            event = await self._next()
        finally:
            self._cancel_timer()
            self._header_timeout = None
        if event is _EOF:
            if self.error is not None:
                raise self.error
            if self._head_bytes:
                raise ConnectionClosed("peer closed in the middle of a message head")
            return None
        if isinstance(event, BaseException):
            raise event
        if event is _END or isinstance(event, bytes):
            raise ProtocolViolation("body data where a message head was expected")
        if self.skip_body and not self._is_request:
            self.skip_body = False
            self._in_message = False
        return event  # type: ignore[return-value]

    async def read_chunk(self, timeout: float | None = None) -> bytes | None:
        """The next piece of the current body; None at its end. Raises ConnectionClosed if cut short."""
        if timeout is not None:
            self._arm(timeout)
        try:
            event = await self._next()
        finally:
            if timeout is not None:
                self._cancel_timer()
        if event is _END:
            return None
        if isinstance(event, bytes):
            self._buffered -= len(event)
            if self._reading_paused and self._buffered < READ_HIGH_WATER // 2 and self.transport is not None:
                self._reading_paused = False
                self.transport.resume_reading()
            return event
        if event is _EOF:
            self._events.appendleft(_EOF)
            raise self.error or ConnectionClosed("peer closed before the body was complete")
        if isinstance(event, BaseException):
            raise event
        raise ProtocolViolation("unexpected message head inside a body")

    def take_body(self) -> list[bytes] | None:
        """The rest of the current body, if all of it has arrived (its end included): taken
        from the queue at once, without waiting. None when some of it is still to come (or
        something else is queued): read it with :meth:`read_chunk`."""
        events = self._events
        count = 0
        for event in events:
            if event is _END:
                break
            if type(event) is not bytes:
                return None
            count += 1
        else:
            return None
        chunks = [events.popleft() for _ in range(count)]  # type: ignore[misc]
        events.popleft()  # the end
        self._buffered -= sum(map(len, chunks))
        if self._reading_paused and self._buffered < READ_HIGH_WATER // 2 and self.transport is not None and not self._refused:
            self._reading_paused = False
            self.transport.resume_reading()
        return chunks

    def write(self, data: bytes) -> None:
        """Queue ``data``; it goes out in one system call at :meth:`flush` (or before any wait)."""
        if self.transport is None or self.closed:
            raise ConnectionClosed("connection is closed")
        self._wbuf.append(data)
        self._wbuf_size += len(data)

    def flush(self) -> None:
        if self._wbuf and self.transport is not None and not self.closed:
            data = self._wbuf[0] if len(self._wbuf) == 1 else b"".join(self._wbuf)
            self._wbuf.clear()
            self._wbuf_size = 0
            self.bytes_written += len(data)
            self.transport.write(data)

    @property
    def write_buffered(self) -> int:
        return self._wbuf_size

    @property
    def has_events(self) -> bool:
        """Parsed data is waiting: reading now would not block."""
        return bool(self._events)

    async def drain(self) -> None:
        self.flush()
        if self.closed:
            raise ConnectionClosed("connection is closed")
        if not self._write_paused:
            return
        self._drain_waiter = (self._loop or asyncio.get_running_loop()).create_future()
        await self._drain_waiter
        if self.closed:
            raise ConnectionClosed("connection is closed")

    def close(self) -> None:
        if self.transport is not None and not self.closed and self._linger is None:  # a staged close ends by itself
            self.flush()
            self.transport.close()

    def close_staged(self) -> None:
        """Close after answering a request whose body was not read to its end (RFC 9112 §9.6):
        our side ends after the response (FIN), and what the client still sends is read and
        dropped — at most LINGER_BYTES for LINGER_SECONDS — so that it reads the response
        instead of meeting a reset while it writes. (TLS cannot half-close: closed at once.)"""
        if self.transport is None or self.closed or self._linger is not None:
            return
        self.flush()
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self._events.clear()  # nobody reads this connection any more
        self._buffered = 0
        self._cancel_timer()
        self._linger_left = LINGER_BYTES
        self._linger = asyncio.get_running_loop().call_later(LINGER_SECONDS, self.transport.close)
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    @property
    def idle(self) -> bool:
        """Nothing buffered and no message in progress: safe to reuse or hand back to a pool."""
        return not self._events and not self._in_message and not self.closed

    # -- internals ---------------------------------------------------------------
    def _push(self, event: object) -> None:
        self._events.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _next(self) -> object:
        if self._wbuf:  # never wait for the peer while our own bytes sit unsent
            self.flush()
        while not self._events:
            if self.closed:
                return _EOF
            self._waiter = (self._loop or asyncio.get_running_loop()).create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
            if self._timed_out:
                self._timed_out = False
                raise ReadTimeout(self._in_message)
        return self._events.popleft()

    def _arm(self, seconds: float) -> None:
        self._armed = True
        if self._deadlines is not None:
            self._deadlines.set(self, seconds)
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = (self._loop or asyncio.get_running_loop()).call_later(seconds, self.on_deadline)

    def _cancel_timer(self) -> None:
        if not self._armed:
            return
        self._armed = False
        if self._deadlines is not None:
            self._deadlines.clear(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def on_deadline(self) -> None:
        self._timer = None
        self._armed = False
        self._timed_out = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _stop_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()
        self._reading_paused = True
