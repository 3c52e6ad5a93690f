"""Which workload-scoped policies apply to a workload, decided from what the workload is — never
from what a request says.

A workload-scoped policy (the inbound AuthorizationPolicy, RequestAuthentication, RateLimit,
MeshTLS — or Istio's PeerAuthentication, which counts as one — and FaultInjection; the outbound Sidecar; Telemetry) applies at one of three levels, most specific first:

    workload   it names this workload: a Service that selects its pods, its Deployment, the
               Pod itself, its ServiceAccount, or labels its pods carry
    namespace  no target, in the workload's namespace
    mesh       no target, in the mesh's root namespace (meshdojo-system, as istio-system)

AuthorizationPolicy, RequestAuthentication and FaultInjection combine every policy that applies
(as Istio's AuthorizationPolicy and RequestAuthentication do); Telemetry too, field by field: the most specific one that sets a field
sets it (Istio merges Telemetry so). MeshTLS, RateLimit and Sidecar take one: the most specific level wins, and
two at that level are a *conflict* — the first by name is used, and ``meshdojo get``/``check``
say so. So are two Telemetry resources at one level that set the same field (Istio leaves that
undefined), and CUSTOM AuthorizationPolicies that name different providers for one workload
(Istio supports one provider per workload). Pure functions: the proxy runs them when a policy snapshot arrives, the control plane
runs them over every known workload to find conflicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from controlplane import linkerdratelimit, linkerdserver
from controlplane.istioschema import read_as
from controlplane.linkerdschema import LINKERD_KINDS
from controlplane.policy import Resource, parse

MESH_NAMESPACE = "meshdojo-system"
WORKLOAD_KINDS = ("AuthorizationPolicy", "RateLimit", "MeshTLS", "FaultInjection", "Sidecar", "Telemetry", "RequestAuthentication")
SINGLE_KINDS = ("MeshTLS", "RateLimit", "Sidecar")  # one applies: most specific wins
LEVELS = ("workload", "namespace", "mesh")
EDGE_KINDS = ("AuthorizationPolicy", "RequestAuthentication")  # what an ingress gateway enforces (proxy.access.at_the_edge)


def enforced_kind(kind: str) -> str:
    """The kind a policy of ``kind`` is enforced as: Istio's AuthorizationPolicy is ours, its
    PeerAuthentication a MeshTLS; every other kind is itself."""
    return "MeshTLS" if kind == "PeerAuthentication" else read_as(kind)


# (namespace, service) -> the labels that service selects pods by
ServiceSelectors = Mapping[tuple[str, str], Mapping[str, str]]


@dataclass(frozen=True)
class Workload:
    """What a proxy knows of the workload it serves (from its own configuration)."""

    namespace: str
    service_account: str
    deployment: str = ""
    instance: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    gateway: bool = False  # an ingress gateway (see level: a namespace's access policies are not about it)
    port: int = 0  # the port the pod declares for its app (0: unknown, in the control plane's views)
    port_name: str = ""  # that containerPort's name, if it has one (a Linkerd Server may name it)

    def describe(self) -> str:
        return f"{self.namespace}/{self.instance or self.deployment or self.service_account}"


def level(resource: Resource, workload: Workload, selectors: ServiceSelectors) -> str | None:
    """``workload``, ``namespace`` or ``mesh`` when ``resource`` applies to ``workload``; else None."""
    target = getattr(resource.spec, "workloads", None)
    if target is None:
        if resource.namespace == workload.namespace:
            # the demos' gateways stand in for Istio's, which live in istio-system: a demo namespace's allow-nothing
            # is about its workloads, not the door in front of them; a gateway is selected by name, label or the mesh
            return None if workload.gateway and enforced_kind(resource.kind) in EDGE_KINDS else "namespace"
        return "mesh" if resource.namespace == MESH_NAMESPACE else None
    if target.kind == "Labels":  # in the root namespace a label selector reaches every namespace (as Istio's)
        if resource.namespace not in (workload.namespace, MESH_NAMESPACE):
            return None
        return "workload" if all(workload.labels.get(k) == v for k, v in target.labels) else None
    if resource.namespace != workload.namespace:
        return None
    if target.kind == "Service":
        wanted = selectors.get((resource.namespace, target.name))
        return "workload" if wanted and all(workload.labels.get(k) == v for k, v in wanted.items()) else None
    name = {"Deployment": workload.deployment, "Pod": workload.instance, "ServiceAccount": workload.service_account}[target.kind]
    return "workload" if name and target.name == name else None


@dataclass(frozen=True)
class Applied:
    """The policies of one kind in force at one workload, in the order they are evaluated."""

    resources: tuple[Resource, ...] = ()
    conflict: tuple[str, ...] = ()  # namespace/name of policies tied at the winning level (the first is used)
    levels: tuple[str, ...] = ()  # each resource's level: workload, namespace or mesh (for describe)
    detail: str = ""  # what the tie is about, when it is not the whole policy (a Telemetry field, CUSTOM providers)

    @property
    def chosen(self) -> Resource | None:
        return self.resources[0] if self.resources else None


def applicable(resources: Iterable[Resource], workload: Workload, selectors: ServiceSelectors) -> dict[str, Applied]:
    """Per workload-scoped kind: what applies to ``workload`` — with the AuthorizationPolicies
    that a Linkerd Server covering its port means (under ``Server``: the Server used, and a tie)."""
    resources, server, routes, limit = _with_servers(list(resources), workload)
    found: dict[str, list[tuple[int, str, Resource]]] = {kind: [] for kind in WORKLOAD_KINDS}
    for resource in resources:
        kind = enforced_kind(resource.kind)
        if kind not in found or (getattr(resource.spec, "mode", None) == "UNSET" and not getattr(resource.spec, "ports", ())):
            continue  # a PeerAuthentication's UNSET: inherited
        where = level(resource, workload, selectors)
        if where is not None:
            found[kind].append((LEVELS.index(where), f"{resource.namespace}/{resource.name}", resource))
    result = {}
    for kind, items in found.items():
        items.sort(key=lambda item: (item[0], item[1]))
        if kind in SINGLE_KINDS and items:
            tied = [name for rank, name, _r in items if rank == items[0][0]]
            chosen = [items[0]]
            if getattr(items[0][2].spec, "mode", None) == "UNSET":  # a PeerAuthentication with ports' modes only: the
                chosen += [i for i in items[1:] if i[2].spec.mode != "UNSET"][:1]  # others are the level above's
            result[kind] = Applied(tuple(r for _rank, _name, r in chosen), tuple(tied) if len(tied) > 1 else (),
                                   tuple(LEVELS[rank] for rank, _name, _r in chosen))
        else:
            tied, detail = _field_ties(kind, items)
            result[kind] = Applied(tuple(r for _rank, _name, r in items), tied, tuple(LEVELS[rank] for rank, _name, _r in items), detail)
    result["Server"] = server
    result["ServerRoutes"] = routes  # Linkerd's HTTPRoutes on that Server: a request none matches gets 404
    result["HTTPLocalRateLimitPolicy"] = limit  # Linkerd's rate limit on that Server: 429 past it
    return result


def _with_servers(resources: list[Resource], workload: Workload) -> tuple[list[Resource], Applied, Applied, Applied]:
    """``resources`` and the AuthorizationPolicies the Linkerd Server that covers ``workload``'s
    port means (controlplane/linkerdserver.py); the Servers that cover it (a tie: the first is used);
    the Linkerd HTTPRoutes on that Server (controlplane/linkerdroutes.py); the HTTPLocalRateLimitPolicy
    on it (a tie: the first by name is used, controlplane/linkerdratelimit.py)."""
    servers = [r for r in resources if r.kind == "Server" and r.namespace == workload.namespace]
    if not servers or workload.gateway:
        return resources, Applied(), Applied(), Applied()
    covering = linkerdserver.covering(servers, workload.labels, workload.port, workload.port_name)
    if not covering:
        return resources, Applied(), Applied(), Applied()
    # who may call it, and the authentications (of any namespace) a Linkerd AuthorizationPolicy requires
    authorizations = [r for r in resources if r.kind in LINKERD_KINDS[1:]]
    derived = [parse(doc, f"Server {workload.namespace}/{covering[0].name}", i, derived=True)
               for i, doc in enumerate(linkerdserver.derived_policies(covering[0], authorizations, workload.instance))]
    tied = tuple(f"{s.namespace}/{s.name}" for s in covering) if len(covering) > 1 else ()
    routes = linkerdserver.server_routes(covering[0], authorizations)  # per-route: what else gets 404
    limits = linkerdratelimit.targeting(covering[0], authorizations)
    limit = Applied(tuple(limits[:1]), tuple(f"{r.namespace}/{r.name}" for r in limits) if len(limits) > 1 else (),
                    ("workload",) if limits else ())
    return resources + derived, Applied((covering[0],), tied, ("workload",)), Applied(tuple(routes)), limit


TELEMETRY_FIELDS = (("sampling_percent", "tracing's randomSamplingPercentage"), ("trace_provider", "tracing's providers"),
                    ("access_log", "accessLogging"))


def _field_ties(kind: str, items: list[tuple[int, str, Resource]]) -> tuple[tuple[str, ...], str]:
    """Of the kinds that combine: policies that decide the same thing for one workload and
    cannot both be used — (their names, first by name; what they tie on), or ((), "")."""
    if kind == "Telemetry":
        for attribute, field_name in TELEMETRY_FIELDS:
            setting = [(rank, name) for rank, name, r in items if getattr(r.spec, attribute) is not None]
            tied = [name for rank, name in setting if rank == setting[0][0]] if setting else []
            if len(tied) > 1:
                return tuple(tied), f"both set {field_name}"
    if kind == "AuthorizationPolicy":
        custom = [(name, r.spec.provider) for _rank, name, r in items if r.spec.action == "CUSTOM"]  # type: ignore[union-attr]
        providers = sorted({provider for _name, provider in custom})
        if len(providers) > 1:
            return (tuple(sorted(name for name, _provider in custom)),
                    f"are CUSTOM with different providers ({', '.join(providers)}); Istio supports one provider per workload")
    return (), ""


@dataclass(frozen=True)
class Conflict:
    kind: str
    workload: str  # namespace/instance
    policies: tuple[str, ...]  # the first is the one in force
    detail: str = ""  # what they tie on, when it is not the whole policy

    def describe(self) -> str:
        if self.kind == "Server":
            return (f"Servers {', '.join(self.policies)} both cover {self.workload}'s port (Linkerd refuses overlapping Servers); "
                    f"{self.policies[0]} is used (the first by name): narrow the others' podSelector or port")
        if self.kind == "HTTPLocalRateLimitPolicy":
            return (f"HTTPLocalRateLimitPolicies {', '.join(self.policies)} target the Server of {self.workload}'s port (a Server "
                    f"takes one, as in Linkerd); {self.policies[0]} is used (the first by name): delete the others")
        if self.kind == "AuthorizationPolicy":  # CUSTOM: not one used, but each request's first match asks its provider
            return (f"{self.kind} {', '.join(self.policies)} {self.detail} at {self.workload}: each request asks the "
                    f"provider of the first whose rules match it; keep one provider per workload")
        if self.detail:
            return (f"{self.kind} {', '.join(self.policies)} {self.detail} for {self.workload} at the same level; "
                    f"{self.policies[0]} is used (the first by name): delete or narrow the others")
        return (f"{self.kind} {', '.join(self.policies)} all apply to {self.workload} at the same level; "
                f"{self.policies[0]} is used (the first by name): delete or narrow the others")


def conflicts(resources: Sequence[Resource], workloads: Iterable[Workload], selectors: ServiceSelectors) -> list[Conflict]:
    """Every (kind, workload) where two single-valued policies tie."""
    out = []
    for workload in workloads:
        for kind, applied in applicable(resources, workload, selectors).items():
            if applied.conflict:
                out.append(Conflict(kind, workload.describe(), applied.conflict, applied.detail))
    return sorted(out, key=lambda c: (c.kind, c.workload))



@dataclass(frozen=True)
class TokenProblem:
    policy: str  # namespace/name of the AuthorizationPolicy
    workloads: tuple[str, ...]

    def describe(self) -> str:
        where = ", ".join(self.workloads[:3]) + (" ..." if len(self.workloads) > 3 else "")
        return (f"AuthorizationPolicy {self.policy} reads end users' tokens (requestPrincipals or request.auth), but no "
                f"RequestAuthentication selects {where}: no request there has a verified token, so those rules never match "
                f"one; apply a RequestAuthentication for the same workloads (e.g. demo-apps/bookinfo/policies/jwt-productpage.yaml)")


def unverified_tokens(resources: Sequence[Resource], workloads: Iterable[Workload], selectors: ServiceSelectors) -> list[TokenProblem]:
    """AuthorizationPolicies whose rules read an end user's token (``requestPrincipals``,
    ``request.auth.*``) at workloads no RequestAuthentication selects: no request there has a
    verified token, so those rules never match one (Istio says nothing; a learner would see 403s)."""
    found: dict[str, list[str]] = {}
    for workload in workloads:
        applied = applicable(resources, workload, selectors)
        if applied.get("RequestAuthentication", Applied()).resources:
            continue
        for policy in applied.get("AuthorizationPolicy", Applied()).resources:
            if any(rule.reads_jwt for rule in policy.spec.rules):  # type: ignore[union-attr]
                found.setdefault(f"{policy.namespace}/{policy.name}", []).append(workload.describe())
    return [TokenProblem(policy, tuple(sorted(where))) for policy, where in sorted(found.items())]
