"""The demo apps' HTTP server: chunked request bodies, one write per response, and input it
cannot frame answered and the connection closed (nothing is read as the next request)."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

from sandbox.ports import accepting, free_port
from sandbox.processes import spawn, stop_group, wait_until

DEMO = Path(__file__).resolve().parent.parent / "demo-apps"


@pytest.fixture
def voting(tmp_path):
    port = free_port()
    proc = spawn([sys.executable, "emojivoto/app.py", "voting"], tmp_path / "voting.log",
                 {"PORT": str(port), "BIND_HOST": "127.0.0.1", "PATH": "/usr/bin:/bin"}, cwd=DEMO)
    try:
        wait_until(lambda: accepting(port), 10, "the voting app")
        yield port
    finally:
        stop_group(proc)


def talk(port: int, data: bytes, responses: int) -> list[tuple[int, bytes, bytes]]:
    """Send ``data``; read ``responses`` responses (or until the server closes)."""
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        buffer = b""
        while len(out) < responses:
            chunk = sock.recv(65536)
            if not chunk:
                out.append((0, b"", b"closed"))
                break
            buffer += chunk
            while b"\r\n\r\n" in buffer:
                head, _, rest = buffer.partition(b"\r\n\r\n")
                length = int(next((line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), b"0"))
                if len(rest) < length:
                    break
                out.append((int(head[9:12]), head, rest[:length]))
                buffer = rest[length:]
        if len(out) == responses and not buffer:
            sock.settimeout(0.5)
            try:
                out.append((0, b"", b"closed" if sock.recv(1) == b"" else b"open"))
            except TimeoutError:
                out.append((0, b"", b"open"))
    return out


def test_a_chunked_body_is_read_and_the_connection_goes_on(voting):
    got = talk(voting, b"POST /api/vote?choice=:joy: HTTP/1.1\r\nHost: voting\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
                       b"GET /api/results HTTP/1.1\r\nHost: voting\r\n\r\n", 2)
    assert [g[0] for g in got[:2]] == [200, 200]
    assert json.loads(got[1][2]) == [{"shortcode": ":joy:", "votes": 1}]
    assert got[2][2] == b"open"  # keep-alive


@pytest.mark.parametrize("bad, status", [
    (b"POST /api/vote HTTP/1.1\r\nHost: v\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
    (b"POST /api/vote HTTP/1.1\r\nHost: v\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX", 400),
    (b"POST /api/vote HTTP/1.1\r\nHost: v\r\nTransfer-Encoding: gzip\r\n\r\nhello", 501),
    (b"POST /api/vote HTTP/1.1\r\nHost: v\r\nContent-Length: 2000000\r\n\r\n", 413),
])
def test_what_it_cannot_frame_is_answered_and_the_connection_closed(voting, bad, status):
    got = talk(voting, bad + b"GET /api/results HTTP/1.1\r\nHost: v\r\n\r\n", 2)
    assert got[0][0] == status and b"connection: close" in got[0][1].lower()
    assert got[1][2] == b"closed"  # the rest was never read as a request


def test_each_response_leaves_in_one_write_with_nodelay():
    """Head and body in two writes meet Nagle's algorithm and the client's delayed ACK: 40 ms per
    keep-alive response. One write, with TCP_NODELAY, on every connection."""
    import threading

    sys.path.insert(0, str(DEMO))
    from common import Reply, make_server

    server = make_server({"/x": lambda _r: Reply.json({"ok": True})}, "127.0.0.1", 0)
    base = server.RequestHandlerClass
    writes, nodelay = [], []

    class Counting(base):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            super().setup()
            nodelay.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            real = self.wfile.write
            self.wfile.write = lambda data: (writes.append(len(data)), real(data))[1]  # type: ignore[method-assign]

    server.RequestHandlerClass = Counting
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        got = talk(server.server_address[1], b"GET /x HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n", 2)
        assert [g[0] for g in got[:2]] == [200, 200]
        assert len(writes) == 2 and nodelay == [1]  # one write per response, one connection with TCP_NODELAY
    finally:
        server.shutdown()
        server.server_close()


def _app(tmp_path, role: str, script: str, env: dict[str, str] | None = None):
    port = free_port()
    proc = spawn([sys.executable, script, role], tmp_path / f"{role}.log",
                 {"PORT": str(port), "BIND_HOST": "127.0.0.1", "PATH": "/usr/bin:/bin", **(env or {})}, cwd=DEMO)
    wait_until(lambda: accepting(port), 10, f"the {role} app")
    return proc, port


def test_voting_has_a_method_per_emoji_and_the_doughnut_one_fails(tmp_path):
    proc, port = _app(tmp_path, "voting", "emojivoto/app.py")
    try:
        got = talk(port, b"POST /emojivoto.v1.VotingService/VoteJoy HTTP/1.1\r\nHost: v\r\nContent-Length: 0\r\n\r\n"
                         b"POST /emojivoto.v1.VotingService/VoteDoughnut HTTP/1.1\r\nHost: v\r\nContent-Length: 0\r\n\r\n"
                         b"POST /emojivoto.v1.VotingService/Results HTTP/1.1\r\nHost: v\r\nContent-Length: 0\r\n\r\n", 3)
        assert [g[0] for g in got[:3]] == [200, 500, 200]
        assert json.loads(got[2][2]) == [{"shortcode": ":joy:", "votes": 1}]
    finally:
        stop_group(proc)


def test_bookinfo_sign_in_sets_a_cookie_and_productpage_sends_end_user(tmp_path):
    """Istio's bookinfo has a sign-in: the page's user becomes end-user on calls to reviews."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str | None] = []

    class Reviews(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            seen.append(self.headers.get("end-user"))
            body = json.dumps({"podname": "reviews-fake", "reviews": []}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    fake = ThreadingHTTPServer(("127.0.0.1", 0), Reviews)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    addr = f"127.0.0.1:{fake.server_address[1]}"
    proc, port = _app(tmp_path, "productpage", "bookinfo/app.py", {"REVIEWS_ADDR": addr, "DETAILS_ADDR": addr})
    try:
        got = talk(port, b"POST /login HTTP/1.1\r\nHost: p\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                         b"Content-Length: 14\r\n\r\nusername=jason", 1)
        assert got[0][0] == 303 and b"Set-Cookie: user=jason" in got[0][1]
        page = talk(port, b"GET /productpage HTTP/1.1\r\nHost: p\r\nCookie: user=jason\r\n\r\n", 1)[0]
        assert page[0] == 200 and b"signed in as <b>jason</b>" in page[2]
        assert "jason" in seen
        anonymous = talk(port, b"GET /productpage HTTP/1.1\r\nHost: p\r\n\r\n", 1)[0]
        assert b"Sign in" in anonymous[2] and seen[-1] is None
        bad = talk(port, b"POST /login HTTP/1.1\r\nHost: p\r\nContent-Length: 18\r\n\r\nusername=<script>x", 1)[0]
        assert bad[0] == 400
    finally:
        stop_group(proc)
        fake.shutdown()
        fake.server_close()


def test_the_error_injector_answers_500_to_anything_and_keeps_the_connection(tmp_path):
    """Linkerd's fault injection task's injector: every request fails, on one keep-alive connection."""
    proc, port = _app(tmp_path, "", "errorinjector/app.py")
    try:
        got = talk(port, b"GET /api/vote?choice=:joy: HTTP/1.1\r\nHost: voting\r\n\r\n"
                         b"POST /anything HTTP/1.1\r\nHost: voting\r\nContent-Length: 0\r\n\r\n", 2)
        assert [g[0] for g in got[:2]] == [500, 500] and got[2][2] == b"open"
        assert got[0][2] == b"error-injector: GET /api/vote fails here, on purpose\n"
    finally:
        stop_group(proc)
