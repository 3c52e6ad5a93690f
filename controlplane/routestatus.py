"""Each HTTPRoute's ``status.parents``, as Gateway API implementations write it
(Linkerd's policy controller for a Service parent, Istio's for a Gateway): per parentRef,
whether the route is ``Accepted`` there and whether its backendRefs resolve (``ResolvedRefs``),
with Gateway API's reasons — so ``kubectl get httproute NAME -o yaml`` says why a route does
nothing, as it does in Linkerd's and Istio's troubleshooting guides.

Pure, and the same on both backends: on a cluster the status writer
(controlplane/kube/statuswriter.py) patches it in, keeping the entries other controllers wrote
for the same route; locally ``meshdojo get httproute NAME -o yaml`` shows it
(controlplane/statusbook.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from controlplane.gatewayapi import refusal
from controlplane.istioschema import read_as
from controlplane.policy import traffic_route

CONTROLLER = "meshdojo.dev/controller"  # our entries in status.parents; another implementation's are left alone
Key = tuple[str, str]


def condition(kind: str, ok: bool, reason: str, message: str, generation: int, now: str) -> dict[str, Any]:
    """A metav1.Condition, as Gateway API's statuses hold them."""
    return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message,
            "observedGeneration": generation, "lastTransitionTime": now}


def _accepted(resources: list[Any], route: Any, is_service: Callable[[str, str], bool]) -> tuple[bool, str, str]:
    spec = route.spec
    if spec.gateway is not None:
        refused = refusal(resources, route)
        if refused is not None:
            return False, *refused
        return True, "Accepted", f"served by the ingress gateway of namespace {spec.gateway.namespace}"
    if spec.entry is not None:
        if any(read_as(r.kind) == "ServiceEntry" and (r.namespace, r.name) == (route.namespace, spec.entry)
               for r in resources):  # ours or Istio's
            return True, "Accepted", f"shapes the mesh's requests to ServiceEntry {route.namespace}/{spec.entry}'s hosts"
        return False, "NoMatchingParent", f"ServiceEntry {route.namespace}/{spec.entry} does not exist (yet)"
    if is_service(route.namespace, spec.service):
        return True, "Accepted", f"shapes the mesh's requests to Service {route.namespace}/{spec.service}"
    return False, "NoMatchingParent", f"Service {route.namespace}/{spec.service} does not exist (yet)"


def _resolved(route: Any, is_service: Callable[[str, str], bool]) -> tuple[bool, str, str]:
    missing = list(dict.fromkeys(b.service for rule in route.spec.rules for b in rule.backends
                                 if not is_service(route.namespace, b.service)))
    if missing:
        return False, "BackendNotFound", (f"no Service {', '.join(missing)} in namespace {route.namespace}: "
                                          "the requests its rules send there are answered 502 unknown_service")
    return True, "ResolvedRefs", "every backendRef names a Service"


def desired(resources: list[Any], generations: dict[Key, int], is_service: Callable[[str, str], bool], now: str,
            foreign: Callable[[str, str], bool] = lambda namespace, name: False) -> dict[Key, dict]:
    """(namespace, name) of each HTTPRoute -> our entry of its ``status.parents`` (one parentRef
    per route here). ``is_service(namespace, name)``: the Service exists; ``foreign(namespace,
    name)``: that Gateway is another implementation's (another class): its routes are left to
    it. ``now``: RFC 3339."""
    out: dict[Key, dict] = {}
    for route in (r for r in resources if r.kind == "HTTPRoute"):
        if route.spec.gateway is not None and foreign(route.spec.gateway.namespace, route.spec.gateway.name):
            continue
        generation = generations.get((route.namespace, route.name), 1)
        accepted, resolved = _accepted(resources, route, is_service), _resolved(route, is_service)
        out[(route.namespace, route.name)] = {
            "parentRef": route.document["spec"]["parentRefs"][0], "controllerName": CONTROLLER,
            "conditions": [condition("Accepted", *accepted, generation, now), condition("ResolvedRefs", *resolved, generation, now)]}
    return out


def refused_entry(parent: dict[str, Any], why: str, generation: int, now: str) -> dict[str, Any]:
    """Our ``status.parents`` entry for a route the validator refused (on a cluster the API
    server took it: its schema checks the shape, ours the meaning): ``Accepted`` False with
    Gateway API's ``UnsupportedValue`` and the validator's words — so ``kubectl get httproute
    -o yaml`` says why the route does nothing instead of saying nothing."""
    return {"parentRef": parent, "controllerName": CONTROLLER,
            "conditions": [condition("Accepted", False, "UnsupportedValue",
                                     f"{why} — meshdojo ignores this route until it is fixed", generation, now)]}


def problems(resources: list[Any], is_service: Callable[[str, str], bool]) -> list[dict[str, str]]:
    """``meshdojo check``'s findings for the routes whose status says they do not work as
    written: a mesh route whose parent is missing, a backendRef to no Service. (A route on a
    Gateway that attaches nowhere is gatewayapi.route_problems'.)"""
    found = []
    for route in sorted((r for r in resources if r.kind == "HTTPRoute"), key=lambda r: r.key):
        failing = [] if route.spec.gateway is not None else [("Accepted", _accepted(resources, route, is_service))]
        failing.append(("ResolvedRefs", _resolved(route, is_service)))
        found += [{"namespace": route.namespace, "name": route.name,
                   "message": f"HTTPRoute {route.namespace}/{route.name}: {kind} False ({reason}): {message}"}
                  for kind, (ok, reason, message) in failing if not ok]
    return found


def mixed_kinds(resources: list[Any]) -> list[dict[str, str]]:
    """``apply``'s and ``check``'s findings: a Service routed by routes of more than one kind
    (Gateway API's HTTPRoute, Linkerd's, Istio's VirtualService). Its callers' sidecars try the
    rules of every one, a kind's routes after another's (HTTPRoute, then Linkerd's, then the
    VirtualService; by name within a kind) — which Istio and Linkerd leave undefined: keep one."""
    by_service: dict[tuple[str, str], list[Any]] = {}
    for route in sorted((r for r in resources if traffic_route(r) and r.spec.service is not None and r.spec.gateway is None),
                        key=lambda r: r.key):
        by_service.setdefault((route.namespace, route.spec.service), []).append(route)
    found = []
    for (namespace, service), routes in sorted(by_service.items()):
        kinds = list(dict.fromkeys(r.kind for r in routes))
        if len(kinds) < 2:
            continue
        names = ", ".join(f"{r.kind} {r.namespace}/{r.name}" for r in routes)
        found.append({"namespace": namespace, "name": routes[0].name, "kind": routes[0].kind.lower(), "names": [r.name for r in routes],
                      "message": f"svc/{service} ({namespace}) is routed by routes of {len(kinds)} kinds ({names}): its callers' "
                                 f"sidecars try the {kinds[0]}'s rules first, then the {kinds[1]}'s — Istio and Linkerd leave "
                                 f"mixing them undefined; keep one kind for a Service"})
    return found


def merged(current: dict[str, Any] | None, ours: dict[str, Any]) -> dict[str, Any]:
    """A route's ``status`` with our parent entry in place of the one we wrote before, the
    entries of other controllers (an Istio on the same cluster) kept as they are."""
    others = [p for p in (current or {}).get("parents") or [] if p.get("controllerName") != CONTROLLER]
    return {**(current or {}), "parents": [*others, ours]}
