"""Serving one discovery watch as a streamed response of JSON lines."""

from __future__ import annotations

import asyncio

from aiohttp import web

from controlplane.protocol import HEARTBEAT_SECONDS, encode_event
from controlplane.registry import Registry, UnknownService


async def stream_watch(request: web.Request, registry: Registry, namespace: str, name: str,
                       client: tuple[str, str] | None = None) -> web.StreamResponse:
    try:
        watch = registry.watch(namespace, name, client)
    except UnknownService:
        raise web.HTTPNotFound(
            text=f'{{"error": "unknown service {name}.{namespace}", "reason": "unknown_service"}}',
            content_type="application/json",
        ) from None
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"})
    await response.prepare(request)
    try:
        while True:
            try:
                event = await asyncio.wait_for(watch.queue.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                event = {"type": "heartbeat"}
            if event is None:  # cut off (too slow, or the service was deleted): the client re-watches
                break
            await response.write(encode_event(event))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        registry.unwatch(watch)
    return response
