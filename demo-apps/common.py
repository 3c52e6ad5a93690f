"""Shared by the demo apps: settings from the environment, a tiny HTTP server, plain HTTP calls.

The demo apps are mesh-unaware and use only the standard library: ``urllib`` honours
``HTTP_PROXY``/``NO_PROXY`` by itself, which is all the mesh needs from them.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def setting(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        sys.exit(f"error: environment variable {name} is required")
    return value


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def redirect(cls, location: str, headers: dict[str, str] | None = None) -> Reply:
        return cls(303, b"", "text/plain", {"Location": location, **(headers or {})})

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Reply:
        return cls(status, json.dumps(value).encode())

    @classmethod
    def html(cls, text: str, status: int = 200) -> Reply:
        return cls(status, text.encode(), "text/html; charset=utf-8")


Route = Callable[[Request], Reply]


MAX_BODY = 1024 * 1024


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def serve(routes: dict[str, Route]) -> None:
    """Serve ``routes`` on $BIND_HOST:$PORT until killed."""
    server = make_server(routes, setting("BIND_HOST", "127.0.0.1"), int(setting("PORT")))
    print(f"listening on {server.server_address[0]}:{server.server_address[1]}", flush=True)
    server.serve_forever()


def make_server(routes: dict[str, Route], host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP/1.1 keep-alive server for ``routes`` (a path, or a path prefix ending in '/').

    Each response leaves in one write with TCP_NODELAY (a head and a body in two writes meet
    Nagle's algorithm and the peer's delayed ACK: 40 ms per keep-alive response). Request bodies
    may be chunked; anything the server cannot frame is answered and the connection closed, so
    nothing is read as the start of the next request.
    """

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _handle(self) -> None:
            try:
                body = self._body()
            except BadRequest as exc:
                self.close_connection = True
                self._reply(Reply.json({"error": str(exc)}, exc.status))
                return
            parts = urlsplit(self.path)
            request = Request(self.command, parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()},
                              {k.lower(): v for k, v in self.headers.items()}, body)
            route = routes.get(parts.path) or next((r for p, r in routes.items() if p.endswith("/") and parts.path.startswith(p)), None)
            self._reply(route(request) if route else Reply.json({"error": f"no route {parts.path}"}, 404))

        def _body(self) -> bytes:
            codings = [c.strip().lower() for c in ",".join(self.headers.get_all("Transfer-Encoding") or []).split(",") if c.strip()]
            if codings:
                if codings != ["chunked"]:
                    raise BadRequest(501, f"transfer coding {','.join(codings)} is not supported")
                return self._chunked()
            length = self.headers.get("Content-Length") or "0"
            if not length.isdigit():
                raise BadRequest(400, "bad Content-Length")
            if int(length) > MAX_BODY:
                raise BadRequest(413, "request body too large")
            return self.rfile.read(int(length)) if int(length) else b""

        def _chunked(self) -> bytes:
            parts, size = [], 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    chunk = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise BadRequest(400, "bad chunk size") from None
                if chunk == 0:
                    while self.rfile.readline(1024).strip():  # trailers, up to the blank line
                        pass
                    return b"".join(parts)
                size += chunk
                if size > MAX_BODY:
                    raise BadRequest(413, "request body too large")
                parts.append(self.rfile.read(chunk))
                if self.rfile.read(2) != b"\r\n":
                    raise BadRequest(400, "chunk not followed by CRLF")

        def _reply(self, reply: Reply) -> None:
            head = [f"HTTP/1.1 {reply.status} {self.responses.get(reply.status, ('',))[0]}",
                    f"Content-Type: {reply.content_type}", f"Content-Length: {len(reply.body)}",
                    *(f"{name}: {value}" for name, value in reply.headers.items())]
            if self.close_connection:
                head.append("Connection: close")
            data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (b"" if self.command == "HEAD" else reply.body)
            self.wfile.write(data)  # one write: head and body in one segment

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet: the sidecar logs and counts requests
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


# the headers that carry a distributed trace's context (W3C Trace Context, and B3 as Istio's
# bookinfo propagates it): an app copies them from the request it serves to the requests it
# makes for it, so its sidecar can tell one trace from another
TRACE_HEADERS = ("traceparent", "tracestate", "x-request-id", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid",
                 "x-b3-sampled", "x-b3-flags", "b3")


def trace_context(request: Request) -> dict[str, str]:
    """The trace headers of ``request``, to send on with each request made for it."""
    return {name: request.headers[name] for name in TRACE_HEADERS if name in request.headers}


def fetch(url: str, timeout: float, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, Any]:
    """(status, body) of a request — decoded JSON, or text when it is not JSON. Raises OSError
    (connection refused, timeouts) when there is no answer at all."""
    request = urllib.request.Request(url, headers=headers or {}, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _decode(response.read())
    except urllib.error.HTTPError as err:
        return err.code, _decode(err.read())


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return raw.decode("utf-8", "replace")
