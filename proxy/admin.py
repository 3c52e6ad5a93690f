"""The admin listener: ``/metrics`` (Prometheus), ``/ready``, ``/live`` and ``/config`` (JSON)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxy.metrics import ProxyMetrics


def build_admin(metrics: ProxyMetrics, ready: Callable[[], bool], config: Callable[[], dict[str, Any]]) -> web.Application:
    async def metrics_handler(_request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def ready_handler(_request: web.Request) -> web.Response:
        return web.Response(text="ready\n") if ready() else web.Response(status=503, text="not ready\n")

    async def live_handler(_request: web.Request) -> web.Response:
        return web.Response(text="live\n")

    async def config_handler(_request: web.Request) -> web.Response:
        return web.json_response(config())

    app = web.Application()
    app.add_routes([
        web.get("/metrics", metrics_handler),
        web.get("/ready", ready_handler),
        web.get("/live", live_handler),
        web.get("/config", config_handler),
    ])
    return app
