"""Reference point for the benchmark: the least an HTTP/1 relay written in Python can do.

Each side is one asyncio protocol driven by httptools' callbacks: a whole message is parsed,
written to the other side from within the same callback, and nothing else happens — no
coroutine or future per request, no head checks, no deadlines, no pool (each downstream
connection has its own upstream connection), no layers. ``front`` takes what a client sends
through ``HTTP_PROXY`` (absolute form) and forwards it over TLS 1.3 to ``back`` (the same mutual
TLS contexts as :mod:`bench.tlspipe`), which forwards it to the app.

It is not a proxy anyone should run (it trusts every byte it is sent); it answers one question
for the meshed path's targets: how close to the bare TLS byte pipe can any HTTP proxy in CPython
get on this machine, once it parses and re-frames each message.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httptools

from bench.tlspipe import connect_done, run_relay
from controlplane.sslcontext import client_context, server_context


class _Message:
    """httptools' callbacks for one side: collect a message, hand it on when it is complete."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[bytes] = []
        self.body: list[bytes] = []

    def on_message_begin(self) -> None:
        self.url, self.headers, self.body = b"", [], []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered not in (b"content-length", b"transfer-encoding", b"connection"):  # re-framed below
            self.headers.append(b"%s: %s\r\n" % (name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def framed(self, first_line: bytes) -> bytes:
        body = b"".join(self.body)
        return b"".join((first_line, *self.headers, b"content-length: %d\r\n\r\n" % len(body), body))


class _Upstream(asyncio.Protocol, _Message):
    def __init__(self, downstream: _Downstream) -> None:
        _Message.__init__(self)
        self.downstream = downstream
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiting: list[bytes] = []  # what the client sent before this connection was made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(b"".join(self.waiting))  # type: ignore[union-attr]
        self.waiting.clear()

    def send(self, data: bytes) -> None:
        if self.transport is None:
            self.waiting.append(data)
        else:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        self.downstream.send(self.framed(b"HTTP/1.1 %d OK\r\n" % self.parser.get_status_code()))

    def connection_lost(self, exc: BaseException | None) -> None:
        self.downstream.close()


class _Downstream(asyncio.Protocol, _Message):
    def __init__(self, connect) -> None:
        _Message.__init__(self)
        self.parser = httptools.HttpRequestParser(self)
        self.upstream = _Upstream(self)
        self.transport: asyncio.Transport | None = None
        self._connect = connect

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._connect(self)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        target = self.url
        if not target.startswith(b"/"):  # absolute form, as HTTP_PROXY sends it: forward the path and query
            url = httptools.parse_url(target)
            target = (url.path or b"/") + (b"?" + url.query if url.query else b"")
        self.upstream.send(self.framed(b"%s %s HTTP/1.1\r\n" % (self.parser.get_method(), target)))

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.upstream.transport is not None:
            self.upstream.transport.close()


async def serve(role: str, listen_port_file: Path, upstream_port: int, material: tuple[str, str, str]) -> None:
    loop = asyncio.get_running_loop()
    anchor, chain, key = material
    upstream_ctx = client_context(anchor, chain, key) if role == "front" else None
    server_ctx = server_context(anchor, chain, key) if role == "back" else None
    connecting: set[asyncio.Task] = set()

    def connect(downstream: _Downstream) -> None:
        task = loop.create_task(loop.create_connection(lambda: downstream.upstream, "127.0.0.1", upstream_port,
                                                       ssl=upstream_ctx, server_hostname="" if upstream_ctx else None))
        connecting.add(task)
        task.add_done_callback(connect_done(connecting))

    server = await loop.create_server(lambda: _Downstream(connect), "127.0.0.1", 0, ssl=server_ctx)
    listen_port_file.write_text(str(server.sockets[0].getsockname()[1]))  # noqa: ASYNC240
    await asyncio.Event().wait()


if __name__ == "__main__":
    run_relay(serve)
