"""Tiny upstream apps for tests: aiohttp ones served in the test's own event loop, and a plain
one in a thread for tests without a loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiohttp import web


async def start_echo_app(name: str = "app") -> tuple[web.AppRunner, int]:
    """Answers every path with JSON saying who served it and who the mesh says called."""

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if "delay_ms" in request.query:
            await asyncio.sleep(int(request.query["delay_ms"]) / 1000)
        if "size" in request.query:  # a body this many bytes long
            return web.Response(body=b"x" * int(request.query["size"]))
        if request.path == "/status/500":
            return web.json_response({"served_by": name}, status=500)
        return web.json_response(
            {
                "served_by": name,
                "method": request.method,
                "path": request.path_qs,
                "client_id": request.headers.get("x-meshdojo-client-id"),
                "body_len": len(body),
            }
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return await serve_app(app)


async def serve_app(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on 127.0.0.1 at a port the OS picks."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@contextlib.asynccontextmanager
async def recording_app(record: Callable[[web.Request], dict[str, str]]) -> AsyncIterator[tuple[int, list[dict[str, str]]]]:
    """An app that answers every request 200 and keeps ``record(request)`` of each: (its port, what it kept)."""
    seen: list[dict[str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(record(request))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner, port = await serve_app(app)
    try:
        yield port, seen
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def plain_http_server(address: str = "127.0.0.1",
                      answer: Callable[[str, str], str] = lambda path, host: f"{path} host={host}") -> Iterator[int]:
    """An HTTP/1.1 server of the standard library in a thread, at ``address`` on a port the OS
    picks (yielded): every GET gets 200 and ``answer(path, host)``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # http.server's name for it
            body = answer(self.path, self.headers["host"] or "").encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((address, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
