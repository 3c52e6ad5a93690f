"""Operator API routes for network faults and the wire view (relays on edges).

    GET    /v1/netfaults            the faults in force, with time left
    POST   /v1/netfaults            create or replace one (see controlplane.netfaults.parse)
    DELETE /v1/netfaults/{name}     remove one; DELETE /v1/netfaults removes them all
    POST   /v1/wire                 watch an edge: {"from": {namespace, deployment}, "to": {...}}
    GET    /v1/wire/{name}          what crossed it: first bytes each way, records, handshake
    POST   /v1/attack               the intruder against each endpoint of {"namespace", "service"}
                                    (controlplane.intruder), from the control plane's own network place
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from controlplane import intruder, netfaults, wire
from controlplane.registry import Registry
from controlplane.relay import Capture, RelayManager
from controlplane.scraper import Telemetry

RELAYS: web.AppKey[RelayManager] = web.AppKey("relays", RelayManager)
WORKLOADS: web.AppKey[Telemetry] = web.AppKey("workloads", Telemetry)
ENDPOINTS: web.AppKey[Registry] = web.AppKey("endpoints", Registry)
TRUST_ANCHOR: web.AppKey[Callable[[], str]] = web.AppKey("trust_anchor", Callable[[], str])
WIRE_SECONDS = 60.0


def add_fault_routes(app: web.Application, relays: RelayManager, telemetry: Telemetry, registry: Registry,
                     trust_anchor: Callable[[], str]) -> None:
    app[TRUST_ANCHOR] = trust_anchor
    app[RELAYS] = relays
    app[WORKLOADS] = telemetry
    app[ENDPOINTS] = registry
    app.add_routes([
        web.get("/v1/netfaults", list_faults),
        web.post("/v1/netfaults", put_fault),
        web.delete("/v1/netfaults", clear_faults),
        web.delete("/v1/netfaults/{name}", delete_fault),
        web.post("/v1/wire", start_wire),
        web.get("/v1/wire/{name}", read_wire),
        web.post("/v1/attack", attack),
    ])


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def _body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "the body must be JSON"}', content_type="application/json") from None


async def list_faults(request: web.Request) -> web.Response:
    now = time.time()
    relays = request.app[RELAYS]
    return web.json_response({"faults": [f.to_json(now) for f in sorted(relays.faults.values(), key=lambda f: f.created)],
                              "relays": relays.relay_count()})


async def put_fault(request: web.Request) -> web.Response:
    try:
        fault = netfaults.parse(await _body(request))
    except netfaults.NetFaultError as exc:
        return _error(400, "the network fault was not created: fix this and try again",
                      errors=[{"field": exc.field, "message": exc.message}])
    await request.app[RELAYS].put(fault)
    return web.json_response({"applied": fault.to_json(time.time())})


async def delete_fault(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if not await request.app[RELAYS].remove(name):
        return _error(404, f"no network fault named {name!r} (list them: meshdojo status)")
    return web.json_response({"deleted": name})


async def clear_faults(request: web.Request) -> web.Response:
    relays = request.app[RELAYS]
    names = [n for n, f in list(relays.faults.items()) if f.kind != "wire"]
    for name in names:
        await relays.remove(name)
    return web.json_response({"deleted": names})


async def start_wire(request: web.Request) -> web.Response:
    """A pass-through relay on one edge for a minute (unless a fault's relay is already there)."""
    body = await _body(request)
    raw = {"kind": "wire", "from": body.get("from") if isinstance(body, dict) else None,
           "to": body.get("to") if isinstance(body, dict) else None, "duration": f"{WIRE_SECONDS:g}s"}
    try:
        if raw["from"] is None:
            raise netfaults.NetFaultError("from", "required field is missing")
        fault = netfaults.parse(raw)
    except netfaults.NetFaultError as exc:
        return _error(400, str(exc), errors=[{"field": exc.field, "message": exc.message}])
    await request.app[RELAYS].put(fault)
    return web.json_response({"name": fault.name, "expires_at": fault.expires_at})


async def read_wire(request: web.Request) -> web.Response:
    relays = request.app[RELAYS]
    session = relays.faults.get(request.match_info["name"])
    if session is None or session.kind != "wire" or session.source is None:
        return _error(404, "no such wire session (it lasts a minute; start another with meshdojo wire)")
    telemetry, registry = request.app[WORKLOADS], request.app[ENDPOINTS]
    source, target = session.source, session.target
    # the session's own relay, and any fault's relay that this client's connections may cross instead
    shown = [f for f in relays.faults.values() if f.name == session.name or (f.kind != "wire" and _from_client(f, source))]
    captures = [c for f in shown for c in relays.captures.get(f.name, ())
                if telemetry.deployment_of(c.namespace, _instance(registry, c)) == target.deployment]
    captures.sort(key=lambda c: c.started, reverse=True)
    client_id = telemetry.identity_of(source.namespace, source.deployment or "")
    return web.json_response({"edge": {"from": source.describe(), "to": target.describe()},
                              "relayed_by": [f.describe() for f in shown],
                              "connections": [describe_capture(c, client_id, _server_identity(registry, c)) for c in captures]})


async def attack(request: web.Request) -> web.Response:
    body = await _body(request)
    namespace, name = (body.get("namespace"), body.get("service")) if isinstance(body, dict) else (None, None)
    if not isinstance(namespace, str) or not isinstance(name, str):
        return _error(400, 'expected {"namespace": NS, "service": NAME}')
    service = request.app[ENDPOINTS].get(namespace, name)
    if service is None or not service.endpoints:
        return _error(404, f"service {name}.{namespace} has no endpoints to attack")
    anchor = request.app[TRUST_ANCHOR]()
    results = []
    for eid, ep in sorted(service.endpoints.items()):  # blocking sockets and a key pair each: in a thread
        outcomes = await asyncio.to_thread(intruder.attack_endpoint, ep.address, ep.port, anchor, ep.meshed)
        results.append({"endpoint": eid, "address": ep.address, "port": ep.port, "meshed": ep.meshed,
                        "attempts": [intruder.outcome_json(o) for o in outcomes]})
    return web.json_response({"results": results})


def _from_client(fault: netfaults.NetFault, client: netfaults.Workloads) -> bool:
    return fault.source is None or fault.source == client or (fault.kind == "partition" and fault.target == client)


def _instance(registry: Registry, capture: Capture) -> str:
    svc = registry.get(capture.namespace, capture.service)
    ep = svc.endpoints.get(capture.endpoint) if svc else None
    return (ep.instance if ep else "") or capture.endpoint


def _server_identity(registry: Any, capture: Capture) -> str | None:
    svc = registry.get(capture.namespace, capture.service)
    ep = svc.endpoints.get(capture.endpoint) if svc else None
    return ep.identity if ep else None


def describe_capture(c: Capture, client_id: str | None, server_id: str | None) -> dict[str, Any]:
    sent, received = bytes(c.client_bytes), bytes(c.server_bytes)
    handshake = wire.handshake_summary(sent, received)
    if handshake is not None:
        handshake["client_identity"] = client_id
        handshake["server_identity"] = server_id
        handshake["identities_note"] = ("in TLS 1.3 the certificates travel encrypted: an eavesdropper cannot read these "
                                        "identities; they are what discovery promised and the proxies verified")
    return {
        "relay": c.fault, "kind": c.kind, "service": f"{c.service}.{c.namespace}", "endpoint": c.endpoint, "started": c.started,
        "tls": handshake is not None, "handshake": handshake,
        "client_to_server": _direction(sent, c.client_total),
        "server_to_client": _direction(received, c.server_total),
    }


def _direction(data: bytes, total: int) -> dict[str, Any]:
    records = wire.records(data)
    payload = wire.first_application_data(data)
    return {"bytes_total": total,
            "records": [f"{r.type} {r.length}B" for r in records] if records else None,
            "readable_http": wire.readable_http(data),
            "first_bytes_hex": wire.hexdump(payload)}
