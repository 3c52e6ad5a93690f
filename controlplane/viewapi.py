"""The operator API's views of the telemetry: ``meshdojo stat`` (``GET /v1/stats``), ``edges``
(``/v1/edges``), ``routes`` (``/v1/routes``) and ``authz`` (``/v1/authz``) — the same on both
backends, from the control plane's own scrapes."""

from __future__ import annotations

from aiohttp import web

from controlplane import authzview
from controlplane.apibase import POLICIES, REGISTRY, TELEMETRY, json_error
from controlplane.durations import InvalidDuration, parse_duration
from controlplane.linkerdschema import LINKERD_KINDS
from controlplane.policy import traffic_route
from controlplane.registry import Registry
from controlplane.scraper import Telemetry
from controlplane.selection import Workload, applicable, enforced_kind
from controlplane.telemetry import authz_counts


def add_view_routes(app: web.Application) -> None:
    app.add_routes([web.get("/v1/stats", stats), web.get("/v1/edges", edges), web.get("/v1/routes", routes),
                    web.get("/v1/authz", authz)])


def _window(request: web.Request) -> float:
    try:
        window = parse_duration(request.query.get("window", "1m"))
    except InvalidDuration as exc:
        raise web.HTTPBadRequest(text=f'{{"error": "window: {exc}"}}', content_type="application/json") from None
    return max(window, 2.0)


def _until(request: web.Request) -> float | None:
    """``until``: the window ends at this unix time instead of now (a report's earlier window)."""
    raw = request.query.get("until")
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "until: expected unix seconds, e.g. 1800000000.5"}',
                                 content_type="application/json") from None


async def stats(request: web.Request) -> web.Response:
    q = request.query
    telemetry = request.app[TELEMETRY]
    kind = q.get("resource", "deploy")
    if kind not in ("deploy", "svc"):
        return json_error(400, "resource must be deploy or svc")
    view = telemetry.deployment_rows if kind == "deploy" else telemetry.service_rows
    window = _window(request)
    name, namespace = q.get("name"), q.get("namespace")
    rows = view(window, namespace, name, _until(request))
    if name and not rows:  # no traffic is a row of zeros; a name nobody knows is an error
        if kind == "deploy":
            known = sorted({h.deployment for h in telemetry.workloads.values() if namespace in (None, h.namespace)})
        else:
            known = sorted({s.name for s in request.app[REGISTRY].services() if namespace in (None, s.namespace)})
        if name not in known:
            what = "deployment" if kind == "deploy" else "service"
            return json_error(404, f"no {what} {name!r}{f' in namespace {namespace}' if namespace else ''}; known: {', '.join(known) or 'none'}",
                              reason=f"unknown_{what}")
    return web.json_response({"window": window, "rows": rows})


async def edges(request: web.Request) -> web.Response:
    window = _window(request)
    rows = request.app[TELEMETRY].edges(window, request.query.get("namespace"), _until(request))
    return web.json_response({"window": window, "rows": rows})


async def routes(request: web.Request) -> web.Response:
    q = request.query
    service, namespace = q.get("service"), q.get("namespace")
    if not service or not namespace:
        return json_error(400, "routes need ?service=NAME&namespace=NS")
    configured = []
    for resource in (r for r in request.app[POLICIES].effective(namespace=namespace)[0] if traffic_route(r)):  # Linkerd's too
        gateway = getattr(resource.spec, "gateway", None)
        if resource.target == service:
            configured += [(f"{resource.namespace}/{resource.name}#{i}", rule.describe())
                           for i, rule in enumerate(resource.spec.rules)]  # type: ignore[attr-defined]
        elif gateway is not None:  # an ingress gateway's route: its rules that send to this service
            configured += [(f"{resource.namespace}/{resource.name}#{i}", f"at Gateway {gateway.namespace}/{gateway.name}: {rule.describe()}")
                           for i, rule in enumerate(resource.spec.rules)  # type: ignore[attr-defined]
                           if any(b.service == service for b in rule.backends)]
    window = _window(request)
    rows = request.app[TELEMETRY].route_rows(window, namespace, service, q.get("from") or None, configured)
    return web.json_response({"window": window, "rows": rows})

def known_workloads(registry: Registry, telemetry: Telemetry) -> list[Workload]:
    """Every instance behind a registered service, as the selection rules see it."""
    seen: dict[tuple[str, str], Workload] = {}
    for service in registry.services():
        for endpoint_id, ep in service.endpoints.items():
            instance = ep.instance or endpoint_id
            sa = ep.identity.rsplit("/sa/", 1)[-1] if ep.identity else ""
            seen[(service.namespace, instance)] = Workload(service.namespace, sa, telemetry.deployment_of(service.namespace, instance) or "",
                                                           instance, dict(ep.labels), port=ep.pod_port, port_name=ep.pod_port_name)
    return list(seen.values())


async def authz(request: web.Request) -> web.Response:
    """A deployment's inbound authorization over the window: per policy in force (and per
    decision label its sidecars counted), requests allowed, denied and audited per second."""
    q = request.query
    namespace, deployment = q.get("namespace"), q.get("deployment")
    if not namespace or not deployment:
        return json_error(400, "authz needs ?namespace=NS&deployment=NAME")
    telemetry, registry = request.app[TELEMETRY], request.app[REGISTRY]
    histories = [h for h in telemetry.workloads.values() if (h.namespace, h.deployment) == (namespace, deployment) and h.meshed]
    if not histories:
        known = sorted({h.deployment for h in telemetry.workloads.values() if h.namespace == namespace and h.meshed})
        return json_error(404, f"no meshed deployment {deployment!r} in namespace {namespace}; known: {', '.join(known) or 'none'}",
                          reason="unknown_deployment")
    window = _window(request)
    workload = next((w for w in known_workloads(registry, telemetry) if (w.namespace, w.deployment) == (namespace, deployment)), None)
    policies = [r for r in request.app[POLICIES].effective()[0]  # with the Linkerd Servers, which mean some
                if enforced_kind(r.kind) == "AuthorizationPolicy" or r.kind in LINKERD_KINDS]
    applied = applicable(policies, workload, registry.selectors())["AuthorizationPolicy"] if workload else None
    rows = authzview.rows([authz_counts(h, window) for h in histories], applied.resources if applied else (),
                          applied.levels if applied else ())
    inbound = telemetry.deployment_rows(window, namespace, deployment)
    return web.json_response({"window": window, "namespace": namespace, "deployment": deployment, "rows": rows,
                              "listed": workload is not None,  # False: the policies in force are known only once they decide
                              "inbound_rps": inbound[0]["rps"] if inbound else 0.0})
