"""Tiny upstream apps for tests, served in the test's own event loop."""

from __future__ import annotations

import asyncio

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
