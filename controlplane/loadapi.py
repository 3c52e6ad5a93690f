"""``POST /v1/load``: ``meshdojo load`` on a cluster, where the learner's machine reaches no pod.

Through a demo's gateway, the load generator (controlplane.loadgen) runs here, in the control
plane's pod, which reaches them all (as it does for ``/v1/attack``), and sends to the endpoints
discovery knows for the service:

    {"namespace": NS, "service": NAME, "path": "/api/list", "connections": 4, "requests": 100,
     "duration": "10s", "qps": 0, "headers": {"end-user": "jason"},
     "https": {"serverName": "bookinfo.example.com", "caPEM": "...",   # optional: to the gateway's TLS port,
               "certPEM": "...", "keyPEM": "..."}}                     # with a client certificate for mutual TLS

``--from deploy/X``, with the workload's identity, must leave from X's own sidecar: the control
plane asks that pod's sidecar (``POST /load`` on its admin port, over mutual TLS, the sidecar's
identity checked before its token is sent, as for tap) to send the requests through its outbound
side as the app would (proxy.loadhere):

    {"from": {"namespace": NS, "pod": NAME}, "url": "http://emoji.emojivoto:8080/api/list", ...}

The answer is the same summary ``meshdojo load -o json`` prints.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from controlplane import loadgen
from controlplane.adminreader import AdminReadError, open_admin
from controlplane.faultapi import ENDPOINTS
from controlplane.identity import IdentityService
from controlplane.injector import GATEWAY_HTTPS_PORT
from controlplane.loadspec import MAX_SECONDS, LoadRequestError, parse, parse_from
from controlplane.scraper import Telemetry
from controlplane.spiffe import SpiffeId

TELEMETRY_KEY: web.AppKey[Telemetry] = web.AppKey("load-telemetry", Telemetry)
IDENTITY_KEY: web.AppKey[IdentityService] = web.AppKey("load-identity", IdentityService)
OWN_IDENTITY_KEY: web.AppKey[SpiffeId] = web.AppKey("load-own-identity", SpiffeId)


async def load(request: web.Request) -> web.Response:
    try:
        try:
            body = await request.json()
        except ValueError:
            raise LoadRequestError("the body must be JSON") from None
        if isinstance(body, dict) and "from" in body:
            return await _from_sidecar(request, parse_from(body))
        want = parse(body)
    except LoadRequestError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    service = request.app[ENDPOINTS].get(want["namespace"], want["service"])
    if service is None or not service.endpoints:
        return web.json_response({"error": f"service {want['service']}.{want['namespace']} has no endpoints to send to"},
                                 status=404)
    name, endpoint = sorted(service.endpoints.items())[0]  # the demos' gateways have one instance
    https = want["https"]  # to the gateway pod's TLS port: its Gateways' HTTPS listeners
    target = loadgen.Target(f"https://{endpoint.address}:{GATEWAY_HTTPS_PORT}{want['path']}" if https else
                            f"http://{endpoint.address}:{endpoint.port}{want['path']}", None,
                            f"the control plane, to {want['service']}.{want['namespace']} ({name})"
                            + (f" over TLS as {https['serverName']}" if https else ""),
                            https["serverName"] if https else None, https["caPEM"] if https else None,
                            (https["certPEM"], https["keyPEM"]) if https and "certPEM" in https else None)
    # -n alone is still bounded by one call's time: the summary says how many were sent
    seconds = want["seconds"] if want["seconds"] is not None else MAX_SECONDS
    result = await loadgen.run(target, want["connections"], want["requests"], seconds, want["qps"], want["headers"],
                               method=want["method"])
    return web.json_response({"url": target.url, "via": target.via, "summary": loadgen.summary(result)})


async def _from_sidecar(request: web.Request, want: dict[str, Any]) -> web.Response:
    telemetry, identity = request.app[TELEMETRY_KEY], request.app[IDENTITY_KEY]
    namespace, pod = want["namespace"], want["pod"]
    address, history = telemetry.admin_address(namespace, pod), telemetry.workloads.get((namespace, pod))
    if address is None or history is None or not history.meshed or not history.identity:
        return web.json_response({"error": f"{namespace}/{pod} has no sidecar the control plane can reach: is it meshed and "
                                           f"ready? ('meshdojo status')"}, status=404)
    ask = {k: v for k, v in _asked(want).items() if v is not None}
    try:
        reader, writer = await open_admin(address, history.identity, "/load", identity.tap_token(history.identity),
                                          identity.client_context(request.app[OWN_IDENTITY_KEY]), json.dumps(ask).encode())
        try:
            async with asyncio.timeout(MAX_SECONDS + 15):
                answer = json.loads(await reader.read())
        finally:
            writer.close()
    except (AdminReadError, ValueError, OSError, TimeoutError) as exc:
        return web.json_response({"error": f"{namespace}/{pod}'s sidecar did not send the load: {exc or type(exc).__name__}"},
                                 status=502)
    return web.json_response({"url": want["url"], "via": f"{pod}'s sidecar (identity {history.identity})", "summary": answer})


def _asked(want: dict[str, Any]) -> dict[str, Any]:
    """What the sidecar is asked for (it checks it again): the URL, the amounts and the method. Pure."""
    return {"url": want["url"], "connections": want["connections"], "requests": want["requests"],
            "duration": None if want["seconds"] is None else f"{want['seconds']:g}s", "qps": want["qps"], "headers": want["headers"],
            "method": want["method"]}


def add_load_route(app: web.Application, telemetry: Telemetry, identity: IdentityService, own_identity: SpiffeId) -> None:
    app[TELEMETRY_KEY], app[IDENTITY_KEY], app[OWN_IDENTITY_KEY] = telemetry, identity, own_identity
    app.add_routes([web.post("/v1/load", load)])
