"""``POST /v1/load``: ``meshdojo load`` run from the control plane's place in the network.

On a cluster the learner's machine reaches no pod, but the control plane's pod reaches them
all (as it does for ``/v1/attack``): the load generator (controlplane.loadgen) runs here and
sends to the endpoints discovery knows for a service — a demo's ingress gateway, in the lessons.
The answer is the same summary ``meshdojo load -o json`` prints.

    {"namespace": NS, "service": NAME, "path": "/api/list", "connections": 4, "requests": 100,
     "duration": "10s", "qps": 0, "headers": {"end-user": "jason"}}
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from controlplane import loadgen
from controlplane.durations import InvalidDuration, parse_duration
from controlplane.faultapi import ENDPOINTS

MAX_CONNECTIONS = 256
MAX_REQUESTS = 100_000
MAX_SECONDS = 120.0  # one operator call; longer runs are several calls


class LoadRequestError(ValueError):
    pass


def parse(body: Any) -> dict[str, Any]:
    """The request's fields, checked (pure): the errors name the field and what was expected."""
    if not isinstance(body, dict):
        raise LoadRequestError('expected {"namespace": NS, "service": NAME, ...}')
    namespace, service = body.get("namespace"), body.get("service")
    if not isinstance(namespace, str) or not isinstance(service, str):
        raise LoadRequestError("namespace, service: expected the names of the service to send to")
    path = body.get("path", "/")
    if not isinstance(path, str) or not path.startswith("/"):
        raise LoadRequestError("path: expected a path starting with /")
    connections = body.get("connections", 4)
    if not isinstance(connections, int) or not 1 <= connections <= MAX_CONNECTIONS:
        raise LoadRequestError(f"connections: expected 1 to {MAX_CONNECTIONS}")
    requests, duration = body.get("requests"), body.get("duration")
    if requests is not None and (not isinstance(requests, int) or not 1 <= requests <= MAX_REQUESTS):
        raise LoadRequestError(f"requests: expected 1 to {MAX_REQUESTS}")
    seconds = None
    if duration is not None:
        try:
            seconds = parse_duration(str(duration))
        except InvalidDuration as exc:
            raise LoadRequestError(f"duration: {exc}") from None
    if requests is None and seconds is None:
        requests = 100
    if (seconds or 0) > MAX_SECONDS:
        raise LoadRequestError(f"duration: at most {MAX_SECONDS:g}s in one call")
    qps = body.get("qps", 0)
    if not isinstance(qps, (int, float)) or qps < 0:
        raise LoadRequestError("qps: expected a number of requests per second, 0 for as fast as answered")
    headers = body.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise LoadRequestError("headers: expected an object of header names to values")
    return {"namespace": namespace, "service": service, "path": path, "connections": connections, "requests": requests,
            "seconds": seconds, "qps": float(qps), "headers": headers}


async def load(request: web.Request) -> web.Response:
    try:
        try:
            body = await request.json()
        except ValueError:
            raise LoadRequestError("the body must be JSON") from None
        want = parse(body)
    except LoadRequestError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    service = request.app[ENDPOINTS].get(want["namespace"], want["service"])
    if service is None or not service.endpoints:
        return web.json_response({"error": f"service {want['service']}.{want['namespace']} has no endpoints to send to"},
                                 status=404)
    name, endpoint = sorted(service.endpoints.items())[0]  # the demos' gateways have one instance
    target = loadgen.Target(f"http://{endpoint.address}:{endpoint.port}{want['path']}", None,
                            f"the control plane, to {want['service']}.{want['namespace']} ({name})")
    # -n alone is still bounded by one call's time: the summary says how many were sent
    seconds = want["seconds"] if want["seconds"] is not None else MAX_SECONDS
    result = await loadgen.run(target, want["connections"], want["requests"], seconds, want["qps"], want["headers"])
    return web.json_response({"url": target.url, "via": target.via, "summary": loadgen.summary(result)})


def add_load_route(app: web.Application) -> None:
    app.add_routes([web.post("/v1/load", load)])
