"""The benchmark's tiny upstream app: aiohttp answering a small JSON body on every path."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import uvloop
from aiohttp import web


async def handle(_request: web.Request) -> web.Response:
    return web.json_response({"emoji": "doughnut", "ok": True})


async def serve(port_file: Path) -> None:
    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port_file.write_text(str(site._server.sockets[0].getsockname()[1]))  # type: ignore[union-attr]  # noqa: ASYNC240
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(serve(Path(sys.argv[1])))
