"""The operator API: HTTP/JSON on 127.0.0.1, every call authenticated with the admin token.

Used by the sandbox launcher, the CLI and the TUI. Unauthenticated calls get 401, never data.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import json
from typing import Any

from aiohttp import web

from controlplane import gatewayapi, istioegress, istionetworking, linkerdserver, providers, routestatus, serviceannotations
from controlplane.apibase import ADMIN_TOKEN, IDENTITY, POLICIES, REGISTRY, STATUSES, TELEMETRY, json_error
from controlplane.durations import InvalidDuration, parse_duration
from controlplane.faultapi import RELAYS, add_fault_routes
from controlplane.identity import IdentityService, utcnow
from controlplane.istioschema import with_twins
from controlplane.jwtapi import add_jwt_routes
from controlplane.jwtissuer import DemoIssuer
from controlplane.linkerdschema import LINKERD_HTTP_ROUTE, LINKERD_KINDS
from controlplane.loadapi import add_load_route
from controlplane.names import resolve
from controlplane.policy import KINDS
from controlplane.policystore import PolicyErrors, PolicyStore
from controlplane.protocol import Endpoint, ProtocolError
from controlplane.registry import Registry, UnknownService
from controlplane.relay import RelayManager
from controlplane.scraper import Telemetry
from controlplane.secretapi import SECRETS, add_secret_routes
from controlplane.selection import MESH_NAMESPACE, conflicts, enforced_kind, unverified_tokens
from controlplane.spiffe import LOCAL_CONTROLPLANE, InvalidIdentity, SpiffeId, is_dns_label
from controlplane.statusbook import STATUS_PLURALS, Statuses, local_statuses, rfc3339_now
from controlplane.tapapi import add_tap_route
from controlplane.tlssecrets import SecretError, SecretStore, expiry_problems, read_secret
from controlplane.traceapi import add_trace_route
from controlplane.viewapi import add_view_routes, known_workloads
from controlplane.watchstream import stream_watch


@web.middleware
async def require_admin_token(request: web.Request, handler: Any) -> web.StreamResponse:
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), request.app[ADMIN_TOKEN].encode()):
        return json_error(401, "missing or wrong admin token (send 'Authorization: Bearer <token>' from the sandbox's admin-token file)")
    return await handler(request)


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json":
            raise
        return json_error(exc.status, exc.reason)


def build_api(registry: Registry, identity: IdentityService, admin_token: str, policies: PolicyStore,
              telemetry: Telemetry | None = None, relays: RelayManager | None = None,
              own_identity: SpiffeId = LOCAL_CONTROLPLANE, issuer: DemoIssuer | None = None,
              statuses: Statuses | None = None, secrets: SecretStore | None = None,
              secrets_writable: bool = True) -> web.Application:
    """``statuses``: the Gateways' and HTTPRoutes' statuses ``get -o yaml`` shows (on a cluster,
    what the status writer wrote; locally, the same decisions settled at each call)."""
    app = web.Application(middlewares=[json_errors, require_admin_token])
    secrets = secrets or SecretStore()
    app[TELEMETRY] = telemetry = telemetry or Telemetry()
    add_fault_routes(app, relays or RelayManager(registry, telemetry.deployment_of), telemetry, registry,
                     lambda: identity.material.anchor_pem)
    app[POLICIES] = policies
    app[REGISTRY] = registry
    app[STATUSES] = statuses or local_statuses(policies, registry.has, rfc3339_now, lambda: local_gateways(telemetry),
                                                secrets.get)
    app[IDENTITY] = identity
    app[ADMIN_TOKEN] = admin_token
    add_tap_route(app, TELEMETRY, IDENTITY, own_identity)
    add_trace_route(app, TELEMETRY, IDENTITY, own_identity)
    add_load_route(app, telemetry, identity, own_identity)
    add_jwt_routes(app, issuer or DemoIssuer())
    add_view_routes(app)
    add_secret_routes(app, secrets, secrets_writable)  # on a cluster, Secrets are the cluster's
    app.add_routes(
        [
            web.get("/v1/health", health),
            web.get("/v1/ca", ca_info),
            web.get("/v1/certificates", certificates),
            web.post("/v1/tokens", create_token),
            web.get("/v1/services", list_services),
            web.get("/v1/resolve", resolve_name),
            web.put("/v1/services/{ns}/{name}", put_service),
            web.delete("/v1/services/{ns}/{name}", delete_service),
            web.put("/v1/services/{ns}/{name}/annotations", put_service_annotations),
            web.put("/v1/services/{ns}/{name}/endpoints/{endpoint}", put_endpoint),
            web.delete("/v1/services/{ns}/{name}/endpoints/{endpoint}", delete_endpoint),
            web.get("/v1/watch/{ns}/{name}", watch_service),
            web.post("/v1/policies", apply_policies),
            web.get("/v1/policies", list_policies),
            web.delete("/v1/policies/{kind}/{ns}/{name}", delete_policy),
            web.put("/v1/workloads/{ns}/{name}", put_workload),
            web.delete("/v1/workloads/{ns}/{name}", delete_workload),
            web.get("/v1/changes", changes),
        ]
    )
    return app


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "request body must be JSON"}', content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error": "request body must be a JSON object"}', content_type="application/json")
    return body


def _names(request: web.Request) -> tuple[str, str]:
    ns, name = request.match_info["ns"], request.match_info["name"]
    if not (is_dns_label(ns) and is_dns_label(name)):
        raise web.HTTPBadRequest(
            text='{"error": "namespace and service names must be DNS labels (lowercase letters, digits, -)"}',
            content_type="application/json",
        )
    return ns, name


def _cert_dates(cert: Any) -> dict[str, Any]:
    return {
        "serial": format(cert.serial_number, "x"),
        "subject": cert.subject.rfc4514_string(),
        "notBefore": cert.not_valid_before_utc.isoformat(),
        "notAfter": cert.not_valid_after_utc.isoformat(),
    }


async def health(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    return web.json_response({"ready": True, "services": len(registry.services()), "watchers": registry.watcher_count()})


async def ca_info(request: web.Request) -> web.Response:
    material = request.app[IDENTITY].material
    return web.json_response(
        {
            "trustAnchorPEM": material.anchor_pem,
            "trustAnchor": _cert_dates(material.anchor.certificate),
            "issuer": _cert_dates(material.issuer.certificate),
            "leafLifetimeSeconds": request.app[IDENTITY].leaf_lifetime.total_seconds(),
        }
    )


async def certificates(request: web.Request) -> web.Response:
    identity = request.app[IDENTITY]
    return web.json_response(
        {
            "issuedTotal": identity.issued_count,
            "latest": [
                {"identity": c.identity, "serial": format(c.serial, "x"), "notBefore": c.not_before.isoformat(), "notAfter": c.not_after.isoformat()}
                for c in identity.issued.values()
            ],
        }
    )


async def create_token(request: web.Request) -> web.Response:
    body = await _json_body(request)
    try:
        if "identity" in body:
            spiffe = SpiffeId.parse(str(body["identity"]))
        else:
            spiffe = SpiffeId(str(body.get("namespace", "")), str(body.get("serviceAccount", "")))
        ttl = parse_duration(str(body.get("ttl", "1h")))
    except (InvalidIdentity, InvalidDuration) as exc:
        return json_error(400, str(exc))
    token = request.app[IDENTITY].bootstrap_token(spiffe, dt.timedelta(seconds=ttl))
    return web.json_response({"identity": spiffe.uri, "token": token, "expiresInSeconds": ttl})


async def list_services(request: web.Request) -> web.Response:
    return web.json_response({"services": [s.to_json() for s in request.app[REGISTRY].services()]})


async def resolve_name(request: web.Request) -> web.Response:
    found = resolve(request.query.get("name", ""), request.query.get("namespace", "default"))
    if found is None or request.app[REGISTRY].get(*found) is None:
        return json_error(404, f"no service named {request.query.get('name', '')!r}", reason="unknown_service")
    return web.json_response({"namespace": found[0], "name": found[1]})


async def put_service(request: web.Request) -> web.Response:
    if request.app[REGISTRY].source is not None:
        return json_error(409, f"services come from {request.app[REGISTRY].source} here: change them there (kubectl)")
    ns, name = _names(request)
    body = await _json_body(request)
    ports = body.get("ports", [])
    if not isinstance(ports, list) or not all(isinstance(p, int) and 0 < p < 65536 for p in ports):
        return json_error(400, "ports must be a list of port numbers")
    selector = body.get("selector")
    if selector is not None and (not isinstance(selector, dict)
                                 or not all(isinstance(k, str) and isinstance(v, str) for k, v in selector.items())):
        return json_error(400, "selector must map label names to values, e.g. {\"app\": \"emoji\"}")
    annotations = body.get("annotations")
    if annotations is not None and (problem := _annotations_problem(ns, name, annotations)):
        return problem
    service = request.app[REGISTRY].put_service(ns, name, tuple(ports), selector, annotations)
    return web.json_response(service.to_json())


async def put_service_annotations(request: web.Request) -> web.Response:
    """A service's Linkerd annotations, all of them (``meshdojo annotate`` on the local backend)."""
    registry = request.app[REGISTRY]
    if registry.source is not None:
        return json_error(409, f"services come from {registry.source} here: annotate them there "
                               "(kubectl annotate svc/NAME, or meshdojo annotate, which does that)")
    ns, name = _names(request)
    service = registry.get(ns, name)
    if service is None:
        return json_error(404, f"no service {ns}/{name}", reason="unknown_service")
    annotations = (await _json_body(request)).get("annotations")
    if problem := _annotations_problem(ns, name, annotations):
        return problem
    return web.json_response(registry.put_service(ns, name, service.ports, None, annotations).to_json())


def _annotations_problem(ns: str, name: str, annotations: Any) -> web.Response | None:
    if not isinstance(annotations, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()):
        return json_error(400, "annotations must map names to strings, e.g. {\"retry.linkerd.io/http\": \"5xx\"}")
    if others := sorted(set(annotations) - set(serviceannotations.linkerd_only(annotations))):
        return json_error(400, f"only Linkerd's annotations ({', '.join(serviceannotations.PREFIXES)}) mean something to "
                               f"the mesh; not {', '.join(others)}")
    try:
        serviceannotations.read(ns, name, annotations)
    except serviceannotations.AnnotationError as exc:
        return json_error(400, str(exc), field=exc.field)
    return None


async def delete_service(request: web.Request) -> web.Response:
    if request.app[REGISTRY].source is not None:
        return json_error(409, f"services come from {request.app[REGISTRY].source} here: change them there (kubectl)")
    ns, name = _names(request)
    if not request.app[REGISTRY].delete_service(ns, name):
        return json_error(404, f"service {name}.{ns} is not registered")
    return web.json_response({"deleted": f"{name}.{ns}"})


async def put_endpoint(request: web.Request) -> web.Response:
    if request.app[REGISTRY].source is not None:
        return json_error(409, f"services come from {request.app[REGISTRY].source} here: change them there (kubectl)")
    ns, name = _names(request)
    try:
        endpoint = Endpoint.from_json(await _json_body(request))
        if endpoint.identity is not None:
            SpiffeId.parse(endpoint.identity)
        request.app[REGISTRY].put_endpoint(ns, name, request.match_info["endpoint"], endpoint)
    except (ProtocolError, InvalidIdentity) as exc:
        return json_error(400, str(exc))
    except UnknownService as exc:
        return json_error(404, exc.args[0], hint="register the service first with PUT /v1/services/{ns}/{name}")
    return web.json_response(endpoint.to_json())


async def delete_endpoint(request: web.Request) -> web.Response:
    if request.app[REGISTRY].source is not None:
        return json_error(409, f"services come from {request.app[REGISTRY].source} here: change them there (kubectl)")
    ns, name = _names(request)
    if not request.app[REGISTRY].delete_endpoint(ns, name, request.match_info["endpoint"]):
        return json_error(404, f"no endpoint {request.match_info['endpoint']} in {name}.{ns}")
    return web.json_response({"deleted": request.match_info["endpoint"]})


async def watch_service(request: web.Request) -> web.StreamResponse:
    ns, name = _names(request)
    return await stream_watch(request, request.app[REGISTRY], ns, name)


async def apply_policies(request: web.Request) -> web.Response:
    """Body: {"documents": [{"source": "file.yaml", "index": 0, "document": {...}}], "namespace": "default",
    "secrets": [Secret documents the same apply stores next]} — ``secrets`` are not stored here, only
    counted as there when a Gateway's listeners are checked, so their warnings are not given."""
    body = await _json_body(request)
    items = body.get("documents")
    if not isinstance(items, list) or not all(isinstance(i, dict) and "document" in i for i in items):
        return json_error(400, 'expected {"documents": [{"source": ..., "index": ..., "document": {...}}]}')
    try:
        arriving = {(s.namespace, s.name): s for s in (read_secret(doc, "secrets", str(body.get("namespace") or "default"))
                                                       for doc in body.get("secrets") or [])}
    except (SecretError, TypeError) as exc:
        return json_error(400, f"nothing was applied: {exc}")
    documents = [(str(i.get("source", "request")), int(i.get("index", n)), i["document"]) for n, i in enumerate(items)]
    store, namespace = request.app[POLICIES], str(body.get("namespace") or "default")
    try:
        if store.cluster is not None:  # Kubernetes mode: the cluster holds policies; `kubectl apply` would do the same
            resources = store.validate(documents, namespace)
            await asyncio.to_thread(store.cluster.write, [_with_namespace(r) for r in resources])
        applied = store.apply(documents, namespace)
    except PolicyErrors as exc:
        return json_error(400, "nothing was applied: fix these and apply again", errors=[e.to_json() for e in exc.errors])
    except Exception as exc:  # the API server refused (RBAC, a webhook, its own schema): nothing is half-applied here
        if store.cluster is None:
            raise
        return json_error(502, f"the Kubernetes API server refused the apply: {cluster_reason(exc)}")
    registry = request.app[REGISTRY]
    warnings = []
    for item in applied:
        if item["namespace"] == "istio-system":  # Istio's root namespace: its docs put mesh-wide policies there
            warnings.append(f"{item['kind']} istio-system/{item['name']}: istio-system is Istio's root namespace; meshdojo's is "
                            f"{MESH_NAMESPACE} — apply it with -n {MESH_NAMESPACE} to have it apply to the whole mesh")
        resource, _ = request.app[POLICIES].list(item["kind"], item["namespace"], item["name"])[0]
        services = [resource.target] if resource.target else []
        services += [b.service for rule in getattr(resource.spec, "rules", ()) for b in getattr(rule, "backends", ())]
        services += [b.service for route in getattr(resource.spec, "routes", ()) for rule in route.spec.rules for b in rule.backends]
        for service in dict.fromkeys(services):
            if not registry.has(resource.namespace, service):
                warnings.append(f"{item['kind']} {item['namespace']}/{item['name']}: service {service}.{resource.namespace} "
                                "does not exist (yet); the resource is stored and takes effect when it does")
        if getattr(resource.spec, "gateway", None) is not None or resource.kind in gatewayapi.GATEWAY_ROUTE_KINDS:
            warnings += gatewayapi.warnings([r for r, _ in store.list()], resource, registry.has)
        if resource.kind in gatewayapi.SECRET_KINDS:
            warnings += gatewayapi.certificate_problems(
                [resource], lambda ns, name: arriving.get((ns, name)) or request.app[SECRETS].get(ns, name))
        entry = getattr(resource.spec, "entry", None)
        if entry and not any(request.app[POLICIES].list(kind, resource.namespace, entry) for kind in with_twins("ServiceEntry")):
            warnings.append(f"{item['kind']} {item['namespace']}/{item['name']}: ServiceEntry {resource.namespace}/{entry} "
                            "does not exist (yet); the route takes effect when it does")
    linkerd = [store.list(i["kind"], i["namespace"], i["name"])[0][0] for i in applied if i["kind"] in LINKERD_KINDS]
    if linkerd:  # a Server that covers no pod's port, an authorization of no Server, a ref to no authentication
        workloads, everything = known_workloads(registry, request.app[TELEMETRY]), [r for r, _ in store.list()]
        warnings += [w for r in linkerd for w in linkerdserver.warnings(r, everything, workloads)]
    if any(i["kind"] in ("VirtualService", "DestinationRule") for i in applied):  # a subset named, not defined
        names = {(i["namespace"], i["name"]) for i in applied if i["kind"] == "VirtualService"} or None
        warnings += [p["message"] for p in istionetworking.subset_problems([r for r, _ in store.list()])
                     if names is None or (p["namespace"], p["name"]) in names]
    if any(i["kind"] in ("HTTPRoute", "VirtualService", LINKERD_HTTP_ROUTE) for i in applied):  # one Service, two route kinds
        routed = {(i["namespace"], i["name"]) for i in applied}
        warnings += [p["message"] for p in routestatus.mixed_kinds([r for r, _ in store.list()])
                     if any((p["namespace"], name) in routed for name in p["names"])]
    if any(i["kind"] in ("DestinationRule", "VirtualService") for i in applied):  # for a host outside the mesh no entry names
        rules = {(i["namespace"], i["name"]) for i in applied if i["kind"] in ("DestinationRule", "VirtualService")}
        warnings += [p["message"] for p in istioegress.unused_rules(r for r, _ in store.list()) if (p["namespace"], p["name"]) in rules]
    if any(enforced_kind(i["kind"]) in ("AuthorizationPolicy", "ExtensionProvider", "Telemetry") for i in applied):  # a provider named, not defined
        warnings += providers.missing_providers([r for r, _ in store.list()])
    names = {f"{i['namespace']}/{i['name']}" for i in applied if enforced_kind(i["kind"]) in ("AuthorizationPolicy", "RequestAuthentication")}
    if names:  # a token rule with nothing to verify tokens where it applies
        warnings += [p.describe() for p in unverified_tokens([r for r, _ in store.list()], known_workloads(registry, request.app[TELEMETRY]),
                                                             registry.selectors()) if p.policy in names]
    return web.json_response({"applied": applied, "warnings": warnings})


def local_gateways(telemetry: Telemetry) -> dict[str, tuple[str, bool]]:
    """namespace -> (127.0.0.1, True) where a local ingress gateway is registered (its identity
    is the gateways' service account): what a local Gateway's status says serves it."""
    return {namespace: ("127.0.0.1", True) for (namespace, _), history in sorted(telemetry.workloads.items())
            if (history.identity or "").endswith(f"/sa/{gatewayapi.GATEWAY_SERVICE_ACCOUNT}")}


def _status(shown: dict, resource: Any) -> dict[str, Any]:
    status = shown.get((STATUS_PLURALS.get(resource.kind, ""), resource.namespace, resource.name))
    return {"status": status} if status else {}


async def list_policies(request: web.Request) -> web.Response:
    """The resources asked for, and every conflict among the inbound policies in force."""
    q = request.query
    store, registry = request.app[POLICIES], request.app[REGISTRY]
    entries = store.list(q.get("kind"), q.get("namespace"), q.get("name"))
    workloads = known_workloads(registry, request.app[TELEMETRY])
    everything = [r for r, _ in store.list()]
    found = conflicts(everything, workloads, request.app[REGISTRY].selectors())
    shown = request.app[STATUSES]() if any(r.kind in STATUS_PLURALS for r, _ in entries) else {}
    return web.json_response({"version": store.version,  # of the snapshot the proxies were last sent (meshdojo proxy-status)
                              "items": [{"kind": r.kind, "document": r.document, "expiresAt": exp, **_status(shown, r)} for r, exp in entries],
                              "conflicts": [{"kind": c.kind, "workload": c.workload, "policies": list(c.policies),
                                             "message": c.describe()} for c in found],
                              "annotationProblems": store.effective()[1],
                              "tokenProblems": [p.describe() for p in unverified_tokens(everything, workloads,
                                                                                         request.app[REGISTRY].selectors())],
                              "providerProblems": providers.missing_providers(everything),
                              "gatewayProblems": gatewayapi.route_problems(everything, registry.has)
                              + gatewayapi.certificate_problems(everything, request.app[SECRETS].get)
                              + expiry_problems(request.app[SECRETS].secrets, gatewayapi.secret_keys(everything), utcnow()),
                              "routeProblems": routestatus.problems(everything, registry.has)
                              + istionetworking.subset_problems(everything) + istioegress.unused_rules(everything)
                              + routestatus.mixed_kinds(everything),
                              # a Linkerd Server that covers no pod's port, an authorization of no Server
                              "serverProblems": [w for r in everything if r.kind in LINKERD_KINDS
                                                 for w in linkerdserver.warnings(r, everything, workloads)],
                              # on a cluster: what the API server took and the validator refused, so nothing acts on it
                              "ignored": [{"kind": kind, "namespace": ns, "name": name, "message": why}
                                          for kind, ns, name, _, why in (store.cluster.ignored() if store.cluster is not None else [])],
                              # on a cluster: Gateways of a class a GatewayClass gives another controller (an Istio there)
                              "elsewhere": [{"namespace": ns, "name": name, "class": class_name, "controller": controller}
                                            for ns, name, class_name, controller in
                                            (store.cluster.elsewhere() if store.cluster is not None else [])]})


def _with_namespace(resource: Any) -> dict[str, Any]:
    doc = dict(resource.document)
    doc["metadata"] = {**doc["metadata"], "namespace": resource.namespace}
    return doc


def cluster_reason(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    try:
        return json.loads(body)["message"] if body else str(exc)
    except (ValueError, KeyError, TypeError):
        return str(exc)


async def delete_policy(request: web.Request) -> web.Response:
    kind, ns, name = request.match_info["kind"], request.match_info["ns"], request.match_info["name"]
    store = request.app[POLICIES]
    removed = False
    if store.cluster is not None and kind in KINDS:
        try:  # the watch may take it out of the store before we do: the cluster's answer is what counts
            removed = await asyncio.to_thread(store.cluster.remove, kind, ns, name)
        except Exception as exc:
            return json_error(502, f"the Kubernetes API server refused the delete: {cluster_reason(exc)}")
    if not store.delete(kind, ns, name) and not removed:
        return json_error(404, f"no {kind} {ns}/{name}")
    return web.json_response({"deleted": {"kind": kind, "namespace": ns, "name": name}})


async def put_workload(request: web.Request) -> web.Response:
    """A workload instance to scrape: {deployment, identity, meshed, admin (its proxy's admin port)}."""
    ns, name = _names(request)
    body = await _json_body(request)
    admin = body.get("admin")
    if admin is not None and (not isinstance(admin, int) or not 0 < admin < 65536):
        return json_error(400, "admin must be the proxy's admin port, or null for an unmeshed workload")
    request.app[TELEMETRY].put_workload(ns, name, str(body.get("deployment") or name), body.get("identity"),
                                         bool(body.get("meshed", admin is not None)), admin)
    request.app[RELAYS].poke()  # a fault scoped to its deployment may now cover it
    return web.json_response({"workload": f"{ns}/{name}"})


async def delete_workload(request: web.Request) -> web.Response:
    ns, name = _names(request)
    if not request.app[TELEMETRY].delete_workload(ns, name):
        return json_error(404, f"no workload {ns}/{name}")
    return web.json_response({"deleted": f"{ns}/{name}"})


async def changes(request: web.Request) -> web.Response:
    """What was applied, changed, deleted or expired since the control plane started (policies
    and network faults), oldest first: what a report shows between its two windows."""
    merged = sorted([*request.app[POLICIES].changes, *request.app[RELAYS].changes], key=lambda c: c["time"])
    return web.json_response({"changes": merged})
