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
API's (``gateway.networking.k8s.io``), which shapes a Service's traffic here. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controlplane import authzrules
from controlplane.fields import FieldReader
from controlplane.linkerdschema import LINKERD_GROUP
from controlplane.matching import RequestMatch, read_match


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


def read_route(r: FieldReader, spec: Mapping[str, Any], namespace: str) -> ServerRouteSpec:
    """``namespace``: the route's (its Servers are of it, as every Linkerd reader here is told)."""
    servers = []
    for i, parent in enumerate(spec["parentRefs"]):
        field = f"spec.parentRefs[{i}]"
        if parent["kind"] != "Server":
            raise r.fail(f"{field}.kind", f"{parent['kind']!r}: a policy.linkerd.io HTTPRoute here is a part of a Server's traffic "
                                          "(kind: Server), for per-route authorization; to shape the traffic to a Service, "
                                          "use Gateway API's HTTPRoute (apiVersion gateway.networking.k8s.io/v1)")
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
