"""The admin listener: ``/metrics`` (Prometheus), ``/ready``, ``/live`` and ``/config`` (JSON).

Served by the proxy's own HTTP/1.1 stack rather than a web framework, which keeps the
sidecar's memory small.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxy.exchange import BytesBody, Handler, Request, Response
from proxy.metrics import ProxyMetrics


def _respond(status: int, content_type: str, body: bytes) -> Response:
    return Response(status, [(b"content-type", content_type.encode())], BytesBody(body))


def build_admin(metrics: ProxyMetrics, ready: Callable[[], bool], config: Callable[[], dict[str, Any]],
                fates: Callable[[], list[dict[str, Any]]] = list) -> Handler:
    async def handle(request: Request) -> Response:
        path = request.head.target.partition("?")[0]
        if request.head.method not in ("GET", "HEAD"):
            return _respond(405, "text/plain", b"only GET\n")
        if path == "/metrics":
            return _respond(200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry))
        if path == "/ready":
            return _respond(200, "text/plain", b"ready\n") if ready() else _respond(503, "text/plain", b"not ready\n")
        if path == "/live":
            return _respond(200, "text/plain", b"live\n")
        if path == "/config":
            return _respond(200, "application/json", json.dumps(config(), indent=2).encode() + b"\n")
        if path == "/fates":
            return _respond(200, "application/json", json.dumps(fates(), indent=1).encode() + b"\n")
        return _respond(404, "text/plain", b"not found: try /metrics, /ready, /live, /config or /fates\n")

    return handle
