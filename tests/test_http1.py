"""The proxy's HTTP/1.1 serving loop in-process: deadlines, pipelining, bad input."""

from __future__ import annotations

import asyncio
import socket

import pytest

from proxy.deadlines import Deadlines
from proxy.exchange import BytesBody, ConnectionBody, Peer, Request, Response
from proxy.http1 import HttpConnection, ProtocolViolation, RequestHead
from proxy.layers import errors
from proxy.metrics import ProxyMetrics
from proxy.requeststarts import EXTRA_SPACE, RequestStarts
from proxy.serve import ServerState, serve_connection
from proxy.tasks import TaskSet


async def echo(request: Request) -> Response:
    body = b""
    if isinstance(request.body, ConnectionBody):
        body = await request.body.read_all(1 << 20) or b""
    text = f"{request.head.method} {request.head.target} {len(body)}".encode()
    return Response(200, [(b"content-type", b"text/plain")], BytesBody(text))


@pytest.fixture
async def server():
    tasks = TaskSet()
    deadlines = Deadlines(resolution=0.05)
    tasks.supervise(deadlines.run, name="deadlines")
    state = ServerState(idle_timeout=0.5, header_timeout=0.3)
    handler = errors("inbound", ProxyMetrics())(echo)

    def factory() -> HttpConnection:
        conn = HttpConnection("request", deadlines=deadlines)
        original = conn.connection_made

        def made(transport):
            original(transport)
            tasks.spawn(serve_connection(conn, handler, Peer("test", False, None), state), name="conn")

        conn.connection_made = made  # type: ignore[method-assign]
        return conn

    srv = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    yield srv.sockets[0].getsockname()[1], state
    srv.close()
    await tasks.close()


async def exchange(port: int, data: bytes, read_until_close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    out = await asyncio.wait_for(reader.read(-1) if read_until_close else reader.read(65536), 5)
    writer.close()
    return out


async def test_pipelined_requests_and_chunked_bodies(server):
    port, _ = server
    data = (b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nwxyz")
    out = await exchange(port, data)
    assert out.count(b"HTTP/1.1 200") == 3
    assert b"GET /a 0" in out and b"POST /b 5" in out and b"POST /c 4" in out
    assert out.index(b"/a") < out.index(b"/b") < out.index(b"/c")


async def test_half_sent_head_gets_408_and_idle_connection_is_closed(server):
    port, _ = server
    out = await exchange(port, b"GET /slow HTTP/1.1\r\nHost: x\r\n")  # never finished
    assert out.startswith(b"HTTP/1.1 408")
    assert await exchange(port, b"") == b""  # idle: closed after the idle timeout, silently


async def test_malformed_input_gets_400_and_the_server_keeps_serving(server):
    port, _ = server
    assert (await exchange(port, b"\x00\x01garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")
    assert (await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).startswith(b"HTTP/1.1 200")


async def test_half_sent_body_times_out(server, monkeypatch):
    port, _ = server
    monkeypatch.setattr(ConnectionBody, "__init__", _short_body_timeout(ConnectionBody.__init__))
    out = await exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    assert out.startswith(b"HTTP/1.1 408") and b"x-meshdojo-error: request_timeout" in out


def _short_body_timeout(init):
    def patched(self, conn, length, on_done=None, idle_timeout=None):
        init(self, conn, length, on_done, 0.2)

    return patched


async def test_draining_closes_idle_connections(server):
    port, state = server
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await asyncio.wait_for(loop.sock_recv(sock, 1000), 5)).startswith(b"HTTP/1.1 200")
    state.start_drain()
    assert await asyncio.wait_for(loop.sock_recv(sock, 1000), 5) == b""
    sock.close()


@pytest.mark.parametrize(("after_scheme", "authority", "path"), [
    ("web", "web", "/"),
    ("web:8080", "web:8080", "/"),
    ("web/", "web", "/"),
    ("web/api/list?x=1", "web", "/api/list?x=1"),
    ("web?x=1", "web", "/?x=1"),
    ("web:80?x=1/y", "web:80", "/?x=1/y"),
    ("web/a#frag", "web", "/a"),
    ("web#frag/x", "web", "/"),
    ("", "", "/"),
    ("[::1]:80/p", "[::1]:80", "/p"),
])
def test_absolute_form_targets_split_as_urlsplit_does(after_scheme, authority, path):
    """The outbound listener's own split of ``http://…`` agrees with the standard library's."""
    from urllib.parse import urlsplit

    from proxy.outbound import _split_absolute

    assert _split_absolute(after_scheme) == (authority, path)
    parts = urlsplit("http://" + after_scheme)
    assert parts.netloc == authority
    assert (parts.path or "/") + (f"?{parts.query}" if parts.query else "") == path


# -- where requests begin: the request line's spaces (proxy/requeststarts.py) ----------------

PIPELINED = [  # four requests in a row, each kind of ending: a head, a chunked body, a Content-Length body
    b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n\r\n\r\n\r\n2\r\nde\r\n0\r\n\r\n",
    b"\r\nPOST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\nGET  /z ",
    b"GET /d HTTP/1.1\r\nHost: x\r\n\r\n",
]


def parsed(pieces: list[bytes]) -> list[object]:
    """What a server connection makes of ``pieces`` arriving one read at a time: each request's
    target with its body, and a refusal's message."""
    conn = HttpConnection("request")
    for piece in pieces:
        conn.data_received(piece)
    out: list[object] = []
    body = b""
    for event in conn._events:
        if isinstance(event, RequestHead):
            out.append(event.target)
        elif isinstance(event, bytes):
            body += event
        elif isinstance(event, ProtocolViolation):
            out.append(f"{event.status} {event}")
        elif body:
            out.append(body)
            body = b""
    return out


def test_requests_parse_the_same_however_the_reads_split_them():
    stream = b"".join(PIPELINED)
    whole = parsed([stream])
    assert whole == ["/a", "/b", b"\r\n\r\nde", "/c", b"GET  /z ", "/d"]  # a body may hold anything
    for i in range(len(stream) + 1):
        assert parsed([stream[:i], stream[i:]]) == whole, i
    for i in range(0, len(stream), 7):
        for j in range(i, len(stream), 5):
            assert parsed([stream[:i], stream[i:j], stream[j:]]) == whole, (i, j)


@pytest.mark.parametrize("spaced", [
    b"GET  /d HTTP/1.1", b"GET /d  HTTP/1.1", b"GET   /d   HTTP/1.1", b"GET  http://x/d HTTP/1.1",
])
@pytest.mark.parametrize("after", range(4))
def test_a_request_line_with_extra_spaces_is_refused_wherever_it_starts_and_however_it_is_split(spaced, after):
    """llhttp would read these (RFC 9112 §3 allows it; h11 and httparse do not): the proxy
    refuses them with 400 after answering what came before, in any read, split anywhere."""
    requests = [*PIPELINED[:after], spaced + b"\r\nHost: x\r\n\r\n"]
    stream = b"".join(requests)
    expected = parsed([b"".join(PIPELINED[:after])]) + ["400 " + EXTRA_SPACE]
    assert parsed([stream]) == expected
    for i in range(len(stream) + 1):
        assert parsed([stream[:i], stream[i:]]) == expected, i


async def test_extra_spaces_get_400_and_nothing_reaches_the_handler(server):
    port, _ = server
    for spaced in (b"GET  /bad HTTP/1.1", b"GET /bad  HTTP/1.1"):
        out = await exchange(port, spaced + b"\r\nHost: x\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400") and EXTRA_SPACE.encode() in out and b"GET /bad" not in out
    # behind another request in the same read: refused before either is forwarded, as any
    # malformed input already parsed is (serve.py)
    out = await exchange(port, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\nGET  /bad HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400") and out.count(b"HTTP/1.1") == 1
    assert (await exchange(port, b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).startswith(b"HTTP/1.1 200")


def test_a_body_full_of_blank_lines_is_cut_at_each_and_still_read_whole():
    """Each blank line in a chunked body may end it, so each cuts a piece (12,288 in one read):
    the body arrives whole and the requests around it are parsed as ever — the one behind it
    still held to single spaces."""
    blank = b"\r\n\r\n" * 12288
    body = b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(blank) + blank + b"\r\n0\r\n\r\n"
    assert parsed([PIPELINED[0] + body + PIPELINED[3]]) == ["/a", "/b", blank, "/d"]
    assert parsed([PIPELINED[0] + body + b"GET  /d HTTP/1.1\r\nHost: x\r\n\r\n"]) == ["/a", "/b", blank, "400 " + EXTRA_SPACE]


def test_a_segment_is_never_empty():
    """Whatever the bookkeeping holds, the next segment takes at least one byte (so reading goes on)."""
    starts = RequestStarts()
    starts.head_complete(0, False)  # a count already run out
    assert starts.segment(b"GET", 0, True) == 3
    starts.fed(b"\r\n\r", False)  # carries bytes that could begin a blank line
    assert starts.segment(b"\nX", 0, False) == 1 and starts.segment(b"abc", 1, True) == 2
