"""Shared by the demo apps: settings from the environment, a tiny HTTP server, plain HTTP calls.

The demo apps are mesh-unaware and use only the standard library: ``urllib`` honours
``HTTP_PROXY``/``NO_PROXY`` by itself, which is all the mesh needs from them.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
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

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Reply:
        return cls(status, json.dumps(value).encode())

    @classmethod
    def html(cls, text: str, status: int = 200) -> Reply:
        return cls(status, text.encode(), "text/html; charset=utf-8")


Route = Callable[[Request], Reply]


def serve(routes: dict[str, Route]) -> None:
    """Serve ``routes`` (path, or path prefix ending in '/') on $BIND_HOST:$PORT, HTTP/1.1 keep-alive."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(self.command, parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()},
                              {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length) if length else b"")
            route = routes.get(parts.path) or next((r for p, r in routes.items() if p.endswith("/") and parts.path.startswith(p)), None)
            reply = route(request) if route else Reply.json({"error": f"no route {parts.path}"}, 404)
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = do_POST = _handle

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet: the sidecar logs and counts requests
            pass

    server = ThreadingHTTPServer((setting("BIND_HOST", "127.0.0.1"), int(setting("PORT"))), Handler)
    server.daemon_threads = True
    print(f"listening on {server.server_address[0]}:{server.server_address[1]}", flush=True)
    server.serve_forever()


def fetch(url: str, timeout: float, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """(status, body) of a GET — decoded JSON, or text when it is not JSON. Raises OSError
    (connection refused, timeouts) when there is no answer at all."""
    request = urllib.request.Request(url, headers=headers or {})
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
