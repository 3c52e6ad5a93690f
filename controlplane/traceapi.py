"""``GET /v1/traces``: the spans every sidecar recorded, gathered by the control plane.

    GET /v1/traces?[namespace=&trace=&limit=]   {"spans": [...], "instances": N, "lost": [...]}

Each meshed sidecar keeps its own recent spans (``proxy.tracing.SpanLog``); nothing is sent
anywhere while nobody asks. The control plane reads ``/spans`` from each one as it reads
``/tap`` (mutual TLS, identity checked before the token is sent: controlplane.adminreader), all
at once, and answers with what it got and which sidecars it could not read. ``trace`` is a
trace id or its first digits; ``limit`` is how many of its latest spans each sidecar sends
(200 by default) when no ``trace`` is asked for. Putting spans together into traces is
controlplane.traces' job, on the client.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from controlplane.adminreader import AdminReadError, open_admin
from controlplane.identity import IdentityService
from controlplane.scraper import Telemetry
from controlplane.spiffe import SpiffeId
from controlplane.tapapi import sidecars

DEFAULT_LIMIT = 200
READ_SECONDS = 5.0
TRACE_PREFIX = re.compile(r"^[0-9a-f]{1,32}$")


def query_of(request: web.Request) -> tuple[str | None, str | None, int]:
    """(namespace, trace prefix, limit), checked; ValueError names what is wrong."""
    trace = request.query.get("trace", "").lower() or None
    if trace is not None and not TRACE_PREFIX.match(trace):
        raise ValueError(f"trace: expected a trace id (hexadecimal, up to 32 digits), got {trace!r}")
    try:
        limit = int(request.query.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise ValueError(f"limit: expected a whole number, got {request.query['limit']!r}") from None
    if not 1 <= limit <= 10_000:
        raise ValueError(f"limit: expected 1 to 10000, got {limit}")
    return request.query.get("namespace") or None, trace, limit


def add_trace_route(app: web.Application, telemetry_key: web.AppKey[Telemetry], identity_key: web.AppKey[IdentityService],
                    own_identity: SpiffeId) -> None:
    async def traces(request: web.Request) -> web.Response:
        try:
            namespace, trace, limit = query_of(request)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        identity = request.app[identity_key]
        tls = identity.client_context(own_identity)
        path = "/spans?" + urlencode({"trace": trace} if trace else {"limit": limit})
        instances = sidecars(request.app[telemetry_key], namespace)

        async def read(address: str, uri: str) -> list[dict[str, Any]]:
            reader, writer = await open_admin(address, uri, path, identity.tap_token(uri), tls)
            try:
                return json.loads(await reader.read())
            finally:
                writer.close()

        results = await asyncio.gather(*(asyncio.wait_for(read(address, uri), READ_SECONDS)
                                         for _ns, _name, address, uri in instances), return_exceptions=True)
        spans: list[dict[str, Any]] = []
        lost = []
        for (ns, name, address, _uri), result in zip(instances, results, strict=True):
            if isinstance(result, list):
                spans.extend(result)
            elif isinstance(result, AdminReadError | OSError | TimeoutError | ValueError):
                lost.append({"workload": f"{ns}/{name}", "error": str(result) or f"{address}: {type(result).__name__}"})
            else:
                raise result
        return web.json_response({"spans": spans, "instances": len(instances), "lost": lost})

    app.add_routes([web.get("/v1/traces", traces)])
