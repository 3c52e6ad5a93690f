"""Reading the sidecars' admin ports through the control plane, for a client that cannot reach
them (on a cluster only pods can):

    GET /v1/tap?namespace=&deployment=[&to=&path=&method=]   live requests, merged (below)
    GET /v1/workloads/{ns}/{name}/config                      one sidecar's /config (its identity, certificate, mode)
    GET /v1/workloads/{ns}/{name}/metrics                     one sidecar's Prometheus page, as {"metrics": text}

``GET /v1/tap``: a deployment's live requests, read from each of its sidecars' tap stream by
the control plane and merged into one NDJSON stream — what ``meshdojo tap``, ``top`` and the UI's
tap pane read on a cluster, where only the control plane's pod can reach the sidecars' admin
ports (as Linkerd's tap server reads the proxies for ``linkerd viz tap``).

Each sidecar is read over mutual TLS, its identity checked before the token is sent
(controlplane.adminreader), and asked with its own identity's tap token (controlplane.taptokens). The stream
starts with ``{"type": "hello", "instances": [...]}``; a sidecar that cannot be read becomes a
``lost`` event; a quiet second becomes a ``tick``, so a client that left is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from controlplane.adminreader import AdminReadError, open_admin
from controlplane.identity import IdentityService
from controlplane.scraper import Telemetry
from controlplane.spiffe import SpiffeId

EVENTS_QUEUED = 10_000
TICK_SECONDS = 1.0
FILTERS = ("to", "path", "method")


def sidecars(telemetry: Telemetry, namespace: str | None = None, deployment: str | None = None) -> list[tuple[str, str, str, str]]:
    """(namespace, instance, admin address, identity) of the meshed instances whose admin port the
    control plane can read, in a namespace and of a deployment when given. Pure."""
    found = []
    for (ns, name), history in sorted(telemetry.workloads.items()):
        admin = telemetry.admin_address(ns, name)
        if namespace not in (None, ns) or deployment not in (None, history.deployment):
            continue
        if history.meshed and admin and history.identity:
            found.append((ns, name, admin, history.identity))
    return found


def tapped_instances(telemetry: Telemetry, namespace: str, deployment: str) -> list[tuple[str, str, str]]:
    """(instance, admin address, identity) of the deployment's meshed instances. Pure."""
    return [(name, admin, identity) for _ns, name, admin, identity in sidecars(telemetry, namespace, deployment)]


def add_tap_route(app: web.Application, telemetry_key: web.AppKey[Telemetry], identity_key: web.AppKey[IdentityService],
                  own_identity: SpiffeId) -> None:
    async def tap(request: web.Request) -> web.StreamResponse:
        namespace, deployment = request.query.get("namespace", ""), request.query.get("deployment", "")
        if not namespace or not deployment:
            return web.json_response({"error": "expected ?namespace=NS&deployment=NAME"}, status=400)
        instances = tapped_instances(request.app[telemetry_key], namespace, deployment)
        if not instances:
            return web.json_response({"error": f"deployment {namespace}/{deployment} has no sidecar to tap: "
                                               f"'meshdojo inject {deployment}' first"}, status=404)
        identity = request.app[identity_key]
        filters = {k: request.query[k] for k in FILTERS if request.query.get(k)}
        return await _merged(request, instances, {name: identity.tap_token(uri) for name, _, uri in instances}, filters,
                             identity.client_context(own_identity))

    async def admin_page(request: web.Request, page: str) -> web.Response:
        telemetry = request.app[telemetry_key]
        key = (request.match_info["ns"], request.match_info["name"])
        address = telemetry.admin_address(*key)
        if address is None:
            return web.json_response({"error": f"no sidecar known as {key[0]}/{key[1]}"}, status=404)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session, \
                    session.get(f"http://{address}/{page}") as upstream:
                if page == "config":
                    return web.json_response(await upstream.json(content_type=None), status=upstream.status)
                return web.json_response({"metrics": await upstream.text()}, status=upstream.status)
        except (aiohttp.ClientError, ValueError, OSError, TimeoutError) as exc:
            return web.json_response({"error": f"its sidecar at {address} does not answer: {exc or type(exc).__name__}"}, status=502)

    async def config(request: web.Request) -> web.Response:
        return await admin_page(request, "config")

    async def metrics(request: web.Request) -> web.Response:  # linkerd diagnostics proxy-metrics reads the same page
        return await admin_page(request, "metrics")

    app.add_routes([web.get("/v1/tap", tap), web.get("/v1/workloads/{ns}/{name}/config", config),
                    web.get("/v1/workloads/{ns}/{name}/metrics", metrics)])


async def _merged(request: web.Request, instances: list[tuple[str, str, str]], tokens: dict[str, str],
                  filters: dict[str, str], tls: ssl.SSLContext) -> web.StreamResponse:
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=EVENTS_QUEUED)
    dropped = 0

    def offer(event: dict[str, Any]) -> None:
        nonlocal dropped
        try:
            events.put_nowait(event)
        except asyncio.QueueFull:  # the reader is slow: drop, as the proxies do, and say so
            dropped += 1

    async def follow(name: str, address: str, expected: str) -> None:
        writer = None
        try:
            query = f"?{urlencode(filters)}" if filters else ""
            reader, writer = await open_admin(address, expected, f"/tap{query}", tokens[name], tls)
            async for line in reader:
                if line.strip():
                    offer(json.loads(line))
            offer({"type": "lost", "workload": name, "error": "its sidecar ended the stream (the pod went away?)"})
        except AdminReadError as exc:
            offer({"type": "lost", "workload": name, "error": str(exc)})
        except (ssl.SSLError, ValueError, OSError, TimeoutError) as exc:
            offer({"type": "lost", "workload": name, "error": f"{address}: {exc or type(exc).__name__}"})
        finally:
            if writer is not None:
                writer.close()

    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"})
    await response.prepare(request)
    loop = asyncio.get_running_loop()  # named, kept and cancelled below
    followers = [loop.create_task(follow(name, address, uri), name=f"tap:{name}") for name, address, uri in instances]
    try:
        await response.write(_line({"type": "hello", "instances": [name for name, _, _ in instances]}))
        while True:
            try:
                event = await asyncio.wait_for(events.get(), TICK_SECONDS)
            except TimeoutError:
                event = {"type": "tick"}
            if dropped and event["type"] == "tick":
                event, dropped = {"type": "dropped", "count": dropped}, 0
            await response.write(_line(event))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        for task in followers:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*followers, return_exceptions=True)
    return response


def _line(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"
