"""Linkerd's ``HTTPRoute`` on a ``Server`` (``policy.linkerd.io``): per-route authorization, as
Linkerd's *Configuring Per-Route Policy* task uses it.

    HTTPRoute            a part of a Server's traffic: rules of matches (a path, Exact or
                         PathPrefix; a method; exact headers)
    AuthorizationPolicy  with ``targetRef`` an HTTPRoute: who may send the requests it matches

Two things change at a port once a route names its Server, as in Linkerd:

- each request goes by one route, the one whose match ranks first (:func:`chosen`, Gateway API's
  precedence); a request that no route of the Server matches gets ``404``, whoever sends it;
- it gets in when a policy targeting that route, or the Server, lets its caller in — not another
  route's (controlplane/linkerdserver.py derives those policies: a route's become ALLOWs whose
  rules carry the route's matches as Istio's ``to`` operations and ``when`` header conditions,
  and the proxy's access layer leaves out the other routes' before it decides).

Linkerd's HTTPRoute is the kind ``HTTPRoute.policy.linkerd.io`` inside meshdojo, beside Gateway
API's (``gateway.networking.k8s.io``). Its other form, a route whose parent is a Service (as
Linkerd's *Dynamic Request Routing* task writes it), is Gateway API's route in Linkerd's group:
read and enforced as one (``policy._route``; :func:`controlplane.policy.traffic_route`). Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controlplane import authzrules
from controlplane.fields import FieldReader
from controlplane.linkerdschema import LINKERD_GROUP, SERVER_ROUTE
from controlplane.matching import RequestMatch, read_match
from controlplane.schema import check


@dataclass(frozen=True, slots=True)
class ServerRouteSpec:
    servers: tuple[str, ...]  # the Servers (of its namespace) whose traffic this is a part of
    matches: tuple[RequestMatch, ...]  # any one; empty: every request

    def matches_request(self, path: str, header: Callable[[str], str | None], method: str) -> bool:
        return not self.matches or any(m.matches(path, header, method) for m in self.matches)

    def operations(self) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """Each match as (Istio's ``to`` operation, ``when`` conditions for its headers); one
        ({}, []) for a route that matches every request."""
        return [_operation(m) for m in self.matches] or [({}, [])]

    def describe(self) -> str:
        return " or ".join(m.describe() for m in self.matches) or "everything"


def _operation(match: RequestMatch) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    operation: dict[str, Any] = {}
    if match.path is not None:
        value, base = match.path.value, match.path.value.rstrip("/")
        if match.path.type == "Exact":
            operation["paths"] = [value]
        elif base:  # PathPrefix, by whole segments, as matching.PathMatch: /api is /api itself and what is under /api/
            operation["paths"] = [value, base + "/*"]
    if match.method is not None:
        operation["methods"] = [match.method]
    when = [{"key": f"request.headers[{h.name}]", "values": [h.value]} for h in match.headers]
    return operation, when


def on_service(r: FieldReader, spec: Mapping[str, Any]) -> bool:
    """Whether a Linkerd HTTPRoute (its spec, checked against ``linkerdschema.HTTP_ROUTE``) is a
    Service's — Gateway API's route in Linkerd's group — rather than its Servers' parts."""
    kinds = [parent["kind"] for parent in spec["parentRefs"]]
    if "Service" in kinds and "Server" in kinds:
        raise r.fail(f"spec.parentRefs[{kinds.index('Server')}].kind",
                     "Server: a route is on Servers (a part of their traffic, for per-route authorization) or on one Service "
                     "(its traffic: matches, backends, filters, timeouts), not both — make two routes")
    return "Service" in kinds


def read_route(r: FieldReader, spec: Mapping[str, Any], namespace: str) -> ServerRouteSpec:
    """A route on Servers. ``namespace``: the route's (its Servers are of it, as every Linkerd
    reader here is told)."""
    for i, rule in enumerate(spec.get("rules") or []):
        for field in ("backendRefs", "filters", "timeouts", "retry"):
            if field in rule:
                raise r.fail(f"spec.rules[{i}].{field}", "a Server's route is a part of its traffic, for per-route "
                                                         "authorization: it only matches requests; to shape a Service's "
                                                         "traffic, make the route's parent the Service (kind: Service)")
    check(SERVER_ROUTE, spec, "spec", r)  # what a Server's route may say: matches only (a Service's says more)
    servers = []
    for i, parent in enumerate(spec["parentRefs"]):
        field = f"spec.parentRefs[{i}]"
        if parent.get("group", LINKERD_GROUP) != LINKERD_GROUP:
            raise r.fail(f"{field}.group", f"a Server's group is {LINKERD_GROUP}, not {parent['group']!r}")
        servers.append(parent["name"])
    rules = spec.get("rules") or [{}]  # no rules: Gateway API's default, every request
    matches = []
    for i, rule in enumerate(rules):
        for j, raw in enumerate(rule.get("matches", [])):
            field = f"spec.rules[{i}].matches[{j}]"
            value = (raw.get("path") or {}).get("value", "/")
            if "*" in value or "{" in value or "?" in value:
                raise r.fail(f"{field}.path.value", f"{value!r}: a path, starting with /, without *, {{ or ? "
                                                   "(PathPrefix for what is under it)")
            matches.append(read_match(r, {**raw, "path": {"type": "PathPrefix", **raw["path"]}} if "path" in raw else raw, field))
    every = any(not rule.get("matches") for rule in rules)  # a rule without matches matches every request
    route = ServerRouteSpec(tuple(servers), () if every else tuple(matches))
    # the ALLOW rules it will be part of, read as any AuthorizationPolicy's are (a header's name, a path's form)
    authzrules.read_rules(r, [{"to": [{"operation": op}], **({"when": when} if when else {})} if op else
                              ({"when": when} if when else {}) for op, when in route.operations()])
    return route


def chosen(routes: Sequence[Any], path: str, header: Callable[[str], str | None], method: str) -> Any | None:
    """The route (a Resource) a request to a Server with ``routes`` goes by, as Gateway API ranks
    matches — an Exact path over a prefix, a longer prefix over a shorter, a method over none, more
    headers over fewer, then the first route by name; None: no route matches (404)."""
    best: tuple[tuple[bool, int, bool, int], str, Any] | None = None
    for route in routes:
        for match in route.spec.matches or (RequestMatch(),):
            if match.matches(path, header, method):
                rank = (match.path is not None and match.path.type == "Exact", len(match.path.value) if match.path else 0,
                        match.method is not None, len(match.headers))
                if best is None or rank > best[0] or (rank == best[0] and route.name < best[1]):
                    best = (rank, route.name, route)
    return best[2] if best is not None else None
