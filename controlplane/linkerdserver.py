"""Linkerd's ``Server`` and who may call it — ``ServerAuthorization``, or ``AuthorizationPolicy``
with the authentications it requires (controlplane/linkerdauthn.py) — as Linkerd's *Restricting
Access To Services* task applies them to emojivoto:

    Server               one port of the pods its podSelector selects; once a Server covers a
                         port, only the callers a ServerAuthorization names may reach it
                         (``accessPolicy: deny``, the default) — 403 for the others
    ServerAuthorization  who may call the Servers it names: meshed callers (``meshTLS``:
                         ServiceAccounts, identities, or any) or anyone (``unauthenticated``),
                         optionally only from some ``networks``

None is enforced by itself. At each workload, :func:`derived_policies` turns the Server that
covers the workload's port, with the ServerAuthorizations and AuthorizationPolicies that name it, into the
AuthorizationPolicies they mean in Istio's model (controlplane/authzrules.py), which the
sidecar's authorization layer enforces like any other — so fates, ``meshdojo authz`` and the
metrics name them:

    <authorization>.serverauthorization   ALLOW: the callers one ServerAuthorization names
    <policy>.authorizationpolicy          ALLOW: the callers every authentication one of Linkerd's
                                          AuthorizationPolicies requires lets in (a policy on one
                                          of the Server's HTTPRoutes: for what the route matches,
                                          controlplane/linkerdroutes.py)
    <route>.httproute                     one of the Server's HTTPRoutes: ALLOW nobody (a request
                                          it carries needs a policy of the route or the Server)
    <server>.server                       the Server itself: ALLOW nobody (deny, and no
                                          ServerAuthorization yet), anybody or any meshed caller
                                          (its accessPolicy is one of Linkerd's default policies)

With ``accessPolicy: audit`` they are dry-run: evaluated, logged and counted, never enforced —
Linkerd's audit mode. A port no Server covers keeps the default inbound policy
(controlplane/inboundpolicy.py). Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controlplane import authzrules, linkerdauthn, linkerdratelimit
from controlplane.fields import FieldReader
from controlplane.linkerdauthn import IDENTITY_HINT, principal, short_principal
from controlplane.linkerdschema import LINKERD_AUTHORIZATION_POLICY, LINKERD_HTTP_ROUTE, LINKERD_KINDS
from controlplane.policyschema import POLICY_API

SERVER_SUFFIX = ".server"  # the derived policies' names: no applied resource's name has a dot
AUTHORIZATION_SUFFIX = ".serverauthorization"
POLICY_SUFFIX = ".authorizationpolicy"  # a Linkerd AuthorizationPolicy's
ROUTE_SUFFIX = ".httproute"  # a Linkerd HTTPRoute's: nobody, unless a policy of the route says
AUTHENTICATION_KINDS = ("MeshTLSAuthentication", "NetworkAuthentication")
ROUTE_ANNOTATION = "meshdojo.dev/route"  # a derived policy's route (Linkerd's HTTPRoute), when it is one route's
DERIVED_FROM = "meshdojo.dev/derived-from"  # the annotation that names what a derived policy means
SERVER_ANNOTATION = "meshdojo.dev/server"  # and the Server whose port it is about


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """Kubernetes' label selector: every matchLabels pair and every expression must hold."""

    labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (key, In|NotIn|Exists|DoesNotExist, values)

    def matches(self, labels: Mapping[str, str]) -> bool:
        if not all(labels.get(k) == v for k, v in self.labels):
            return False
        for key, operator, values in self.expressions:
            has = key in labels
            held = {"In": has and labels[key] in values, "NotIn": not has or labels[key] not in values,
                    "Exists": has, "DoesNotExist": not has}[operator]
            if not held:
                return False
        return True

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.labels]
        parts += [f"{k} {op.lower()} ({','.join(vs)})" if vs else f"{k} {op}" for k, op, vs in self.expressions]
        return ",".join(parts) or "every pod"


def read_selector(r: FieldReader, raw: Mapping[str, Any], field: str) -> LabelSelector:
    """A selector already checked against the schema; an empty one would select everything."""
    if not raw.get("matchLabels") and not raw.get("matchExpressions"):
        raise r.fail(field, "expected matchLabels or matchExpressions (an empty selector would select every pod)")
    expressions = []
    for i, e in enumerate(raw.get("matchExpressions", [])):
        values = tuple(e.get("values", []))
        if (e["operator"] in ("In", "NotIn")) != bool(values):
            want = "needs values" if e["operator"] in ("In", "NotIn") else "takes no values"
            raise r.fail(f"{field}.matchExpressions[{i}].values", f"operator {e['operator']} {want}")
        expressions.append((e["key"], e["operator"], values))
    return LabelSelector(tuple(sorted(raw.get("matchLabels", {}).items())), tuple(expressions))


@dataclass(frozen=True, slots=True)
class ServerSpec:
    pods: LabelSelector
    port: int | str  # a number, or the name of a containerPort
    protocol: str  # proxyProtocol, kept as written (the sidecars speak HTTP/1.1)
    access: str  # accessPolicy: what callers no ServerAuthorization names get

    def covers(self, labels: Mapping[str, str], port: int, port_name: str) -> bool:
        """Whether this Server is about a pod with ``labels`` serving ``port`` (named ``port_name``).
        A port of 0 is unknown (the control plane's views): the pod's one port is assumed."""
        if not self.pods.matches(labels):
            return False
        if not port:
            return True
        return self.port == port if isinstance(self.port, int) else self.port == port_name


def read_server(r: FieldReader, spec: Mapping[str, Any]) -> ServerSpec:
    return ServerSpec(read_selector(r, spec["podSelector"], "spec.podSelector"), spec["port"],
                      spec.get("proxyProtocol", "unknown"), spec.get("accessPolicy", "deny"))


@dataclass(frozen=True, slots=True)
class ServerAuthorizationSpec:
    server: str | None  # a Server by name ...
    servers: LabelSelector | None  # ... or the Servers with these labels
    rules: tuple[dict[str, Any], ...]  # who, as Istio's rules[] (what the derived AuthorizationPolicy says)
    who: str  # the same, in a few words (for get and describe)

    def names(self, server: Any) -> bool:
        """Whether this authorizes callers of ``server`` (a Server Resource): by its name, or its labels."""
        if self.server is not None:
            return self.server == server.name
        return bool(self.servers and self.servers.matches(server.document["metadata"].get("labels") or {}))


def read_server_authorization(r: FieldReader, spec: Mapping[str, Any], namespace: str) -> ServerAuthorizationSpec:
    server = spec["server"]
    if ("name" in server) == ("selector" in server):
        raise r.fail("spec.server", "expected exactly one of name (a Server of this namespace) and selector")
    selector = read_selector(r, server["selector"], "spec.server.selector") if "selector" in server else None
    client = spec["client"]
    if ("meshTLS" in client) == bool(client.get("unauthenticated")):
        raise r.fail("spec.client", "expected exactly one of meshTLS (meshed callers) and unauthenticated: true (anyone)")
    principals: list[str] = []
    who = "anyone"
    if "meshTLS" in client:
        mesh = client["meshTLS"]
        given = [f for f in ("serviceAccounts", "identities", "unauthenticatedTLS") if mesh.get(f)]
        if len(given) != 1:
            raise r.fail("spec.client.meshTLS", "expected exactly one of serviceAccounts, identities and unauthenticatedTLS: true")
        principals += [f"{authzrules.TRUST_DOMAIN}/ns/{sa.get('namespace', namespace)}/sa/{sa['name']}"
                       for sa in mesh.get("serviceAccounts", [])]
        for i, identity in enumerate(mesh.get("identities", [])):
            mapped = principal(identity)
            if mapped is None:
                raise r.fail(f"spec.client.meshTLS.identities[{i}]", f"{identity!r}: {IDENTITY_HINT}")
            principals.append(mapped)
        if mesh.get("unauthenticatedTLS"):
            principals.append("*")
        who = "any meshed caller" if principals == ["*"] else "meshed " + ", ".join(short_principal(p, namespace) for p in principals)
    # named as written, before they become Istio's ipBlocks
    networks = linkerdauthn.read_networks(r, client.get("networks", []), "spec.client.networks")
    sources = linkerdauthn.network_sources(networks, principals)
    if not sources and principals:
        sources = [{"principals": principals}]
    rules = ({"from": [{"source": s} for s in sources]},) if sources else ({},)
    authzrules.read_rules(r, rules)  # the addresses checked as any AuthorizationPolicy's are
    if networks:
        who += " from " + ", ".join(cidr for cidr, _ in networks)
    return ServerAuthorizationSpec(server.get("name"), selector, rules, who)


# -- what they mean at one workload --------------------------------------------------------------

DEFAULT_RULES = {  # a Server's accessPolicy other than deny and audit, as the rules of an ALLOW
    "all-unauthenticated": ({},), "cluster-unauthenticated": ({},),
    "all-authenticated": ({"from": [{"source": {"principals": ["*"]}}]},),
    "cluster-authenticated": ({"from": [{"source": {"principals": ["*"]}}]},),
}


def covering(servers: Iterable[Any], labels: Mapping[str, str], port: int, port_name: str) -> list[Any]:
    """The Servers (Resources) that cover a pod's port, by name: Linkerd refuses overlapping
    ones, so a second is a conflict (the first is used)."""
    return sorted((s for s in servers if s.spec.covers(labels, port, port_name)), key=lambda s: s.name)


def derived_policies(server: Any, authorizations: Sequence[Any], instance: str = "") -> list[dict[str, Any]]:
    """The AuthorizationPolicy documents (Istio's fields) that ``server`` (a Resource) and the
    ServerAuthorizations and Linkerd AuthorizationPolicies that name it mean, for the pods it
    covers (``instance``: the pod this is for, named when the Server's podSelector has
    expressions, which Istio's selector lacks). ``authorizations``: the Resources that may name
    it, with the MeshTLSAuthentications and NetworkAuthentications theirs may require."""
    spec: ServerSpec = server.spec
    if spec.pods.labels and not spec.pods.expressions:
        target: dict[str, Any] = {"selector": {"matchLabels": dict(spec.pods.labels)}}
    else:
        target = {"targetRef": {"kind": "Pod", "name": instance}} if instance else {}
    annotations = {authzrules.DRY_RUN_ANNOTATION: "true"} if spec.access == "audit" else {}

    def policy(name: str, rules: Sequence[dict[str, Any]], origin: str) -> dict[str, Any]:
        meta = {"name": name, "namespace": server.namespace,
                "annotations": {**annotations, DERIVED_FROM: origin, SERVER_ANNOTATION: f"{server.namespace}/{server.name}"}}
        return {"apiVersion": POLICY_API, "kind": "AuthorizationPolicy", "metadata": meta,
                "spec": {**target, "action": "ALLOW", "rules": list(rules)}}

    here = [a for a in authorizations if a.namespace == server.namespace]
    named = [a for a in here if a.kind == "ServerAuthorization" and a.spec.names(server)]
    docs = [policy(a.name + AUTHORIZATION_SUFFIX, a.spec.rules, f"ServerAuthorization {a.namespace}/{a.name}")
            for a in sorted(named, key=lambda a: a.name)]
    find = _finder(authorizations)
    linkerds = sorted((a for a in here if a.kind == LINKERD_AUTHORIZATION_POLICY), key=lambda a: a.name)
    for linkerd in (a for a in linkerds if a.spec.targets(server)):
        rules, _missing = linkerdauthn.rules(linkerd.spec, find)  # a ref to nothing: no rules, so nobody (warnings say)
        docs.append(policy(linkerd.name + POLICY_SUFFIX, rules, f"Linkerd's AuthorizationPolicy {linkerd.namespace}/{linkerd.name}"))
    routes = server_routes(server, here)
    for route in routes:  # per-route: the callers a policy names, for the requests its route matches
        for linkerd in (a for a in linkerds if a.spec.targets_route(route)):
            rules, _missing = linkerdauthn.rules(linkerd.spec, find)
            doc = policy(linkerd.name + POLICY_SUFFIX, _routed(rules, route.spec.operations()),
                         f"Linkerd's AuthorizationPolicy {linkerd.namespace}/{linkerd.name}, route {route.name}")
            doc["metadata"]["annotations"][ROUTE_ANNOTATION] = route.name
            docs.append(doc)
        # and the route itself: an ALLOW of nobody, so that a request it carries is denied unless one of its
        # policies (or the Server's) lets the caller in — the proxy leaves out the other routes' (linkerdroutes.py)
        doc = policy(route.name + ROUTE_SUFFIX, (), f"HTTPRoute {route.namespace}/{route.name}")
        doc["metadata"]["annotations"][ROUTE_ANNOTATION] = route.name
        docs.append(doc)
    if spec.access in DEFAULT_RULES:
        docs.append(policy(server.name + SERVER_SUFFIX, DEFAULT_RULES[spec.access], f"Server {server.namespace}/{server.name}"))
    elif not docs:  # deny or audit, and nobody authorized yet: an ALLOW that matches nobody
        docs.append(policy(server.name + SERVER_SUFFIX, (), f"Server {server.namespace}/{server.name}"))
    return docs


def route_of(policy: Any) -> str | None:
    """The Linkerd HTTPRoute a derived policy is about (None: the Server's every request)."""
    return ((policy.document.get("metadata") or {}).get("annotations") or {}).get(ROUTE_ANNOTATION)


def server_routes(server: Any, resources: Iterable[Any]) -> list[Any]:
    """The Linkerd HTTPRoutes (Resources) whose parent is ``server``, by name."""
    return sorted((r for r in resources if r.kind == LINKERD_HTTP_ROUTE and r.namespace == server.namespace
                   and server.name in getattr(r.spec, "servers", ())), key=lambda r: r.name)  # not a route on a Service


def _routed(rules: Sequence[dict[str, Any]], operations: Sequence[tuple[dict[str, Any], list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """``rules`` (who) for the requests a route matches: each rule once per match, with the match's
    operation (``to``) and its headers (``when``)."""
    out = []
    for rule in rules:
        for operation, headers in operations:
            when = [*rule.get("when", []), *headers]
            out.append({**rule, **({"to": [{"operation": operation}]} if operation else {}), **({"when": when} if when else {})})
    return out


def _finder(resources: Sequence[Any]) -> linkerdauthn.Find:
    by_key = {(r.kind, r.namespace, r.name): r for r in resources if r.kind in AUTHENTICATION_KINDS}
    return lambda kind, namespace, name: by_key.get((kind, namespace, name))


def guarding_server(allows: Sequence[Any]) -> str | None:
    """The Server (namespace/name) whose policies are the only ALLOWs in force, if they are:
    then a denied caller was denied by that Server, and the 403 says so in Linkerd's words."""
    servers = {((r.document.get("metadata") or {}).get("annotations") or {}).get(SERVER_ANNOTATION) for r in allows}
    return next(iter(servers)) if len(servers) == 1 and None not in servers else None


# -- what apply says about one ---------------------------------------------------------------------

def warnings(resource: Any, resources: Sequence[Any], workloads: Sequence[Any]) -> list[str]:
    """What a learner should know about a Server or ServerAuthorization just applied: a Server
    that covers no pod's port (Linkerd's task names its emojivoto's labels and ports, not the
    demo's), a ServerAuthorization that names no Server. ``workloads``: the known pods
    (controlplane.selection.Workload)."""
    here = [w for w in workloads if w.namespace == resource.namespace and not w.gateway]
    name = f"{resource.kind} {resource.namespace}/{resource.name}"
    if resource.kind == "Server":
        spec: ServerSpec = resource.spec
        selected = [w for w in here if spec.pods.matches(w.labels)]
        if not selected:
            labels = sorted({f"{k}={v}" for w in here for k, v in w.labels.items() if k == "app"})
            return [f"{name}: spec.podSelector ({spec.pods.describe()}) selects no pod in {resource.namespace}"
                    + (f" (its pods are labelled {', '.join(labels)})" if labels else "")
                    + "; it takes effect when such a pod runs"]
        if not any(spec.covers(w.labels, w.port, w.port_name) for w in selected):
            declared = sorted({f"{w.port}" + (f" ({w.port_name})" if w.port_name else "") for w in selected if w.port})
            return [f"{name}: spec.port {spec.port} is not a port its pods declare ({', '.join(declared)}): "
                    "it covers nothing until it names one of those, by number or name"]
    elif resource.kind == "ServerAuthorization":
        spec_: ServerAuthorizationSpec = resource.spec
        servers = [r for r in resources if r.kind == "Server" and r.namespace == resource.namespace]
        if not any(spec_.names(s) for s in servers):
            which = f"Server {spec_.server}" if spec_.server else f"a Server labelled {spec_.servers.describe() if spec_.servers else ''}"
            return [f"{name}: there is no {which} in {resource.namespace} (yet); it authorizes callers once there is"]
    elif resource.kind == LINKERD_AUTHORIZATION_POLICY:
        return _policy_warnings(resource, name, resources)
    elif resource.kind == LINKERD_HTTP_ROUTE:
        servers = {r.name for r in resources if r.kind == "Server" and r.namespace == resource.namespace}
        return [f"{name}: there is no Server {parent} in {resource.namespace} (yet); the route takes effect once there is"
                for parent in getattr(resource.spec, "servers", ()) if parent not in servers]  # a Service's route: none
    elif resource.kind == "HTTPLocalRateLimitPolicy":
        return linkerdratelimit.warnings(resource, resources, lambda server: _denies_everyone(server, resources))
    return []


def _denies_everyone(server: Any, resources: Sequence[Any]) -> bool:
    """Whether ``server`` lets no caller in: accessPolicy deny, and nothing authorizes anyone."""
    derived = derived_policies(server, [r for r in resources if r.kind in LINKERD_KINDS[1:]])
    return server.spec.access == "deny" and all(not doc["spec"]["rules"] for doc in derived)


def _policy_warnings(resource: Any, name: str, resources: Sequence[Any]) -> list[str]:
    """A Linkerd AuthorizationPolicy whose target or required authentications are not there."""
    spec: linkerdauthn.LinkerdPolicySpec = resource.spec
    out = []
    here = [r for r in resources if r.namespace == resource.namespace]
    if spec.target_kind == "HTTPRoute":
        if not any(r.kind == LINKERD_HTTP_ROUTE and spec.targets_route(r) and getattr(r.spec, "servers", ()) for r in here):
            out.append(f"{name}: there is no HTTPRoute {spec.target} (policy.linkerd.io) on a Server in {resource.namespace} "
                       "(yet); it authorizes the requests it matches once there is")
    elif not any(r.kind == "Server" and spec.targets(r) for r in here):
        which = f"Server {spec.target}" if spec.target_kind == "Server" else "Server"
        out.append(f"{name}: there is no {which} in {resource.namespace} (yet); it authorizes callers once there is "
                   "(a port no Server covers keeps the default inbound policy)")
    _rules, missing = linkerdauthn.rules(spec, _finder(resources))
    out += [f"{name}: spec.requiredAuthenticationRefs names {ref.describe(resource.namespace)}, which does not exist (yet): "
            "until it does, this policy lets nobody in" for ref in missing]
    return out
