"""Linkerd's ``AuthorizationPolicy``, ``MeshTLSAuthentication`` and ``NetworkAuthentication``
(``policy.linkerd.io``), the form of Linkerd's policy its reference documents beside
``ServerAuthorization``:

    AuthorizationPolicy    who may call its target — a Server, one of a Server's HTTPRoutes
                           (controlplane/linkerdroutes.py), or every Server of its namespace:
                           the callers that every one of its requiredAuthenticationRefs lets in
    MeshTLSAuthentication  a set of meshed callers: identities (Linkerd's form, SPIFFE IDs, * for
                           any) or identityRefs (ServiceAccounts, Namespaces)
    NetworkAuthentication  a set of addresses: networks, each a CIDR block with exceptions
    ServiceAccount         (a ref's kind too) the callers with that ServiceAccount's identity

Like a ServerAuthorization, an AuthorizationPolicy is not enforced by itself: at a workload a
Server covers, :func:`rules` turns it, with the authentications it names, into the rules of an
ALLOW AuthorizationPolicy in Istio's model (controlplane/linkerdserver.py derives it, named
``<policy>.authorizationpolicy``). "Every ref" is an AND that Istio's sources cannot say across
two principal lists, so the first ref's callers are the rule's ``from`` and each other ref's are
its ``when`` conditions (``source.principal``, ``source.ip``). A ref to an authentication that
does not exist lets nobody in, as Linkerd's policy controller ignores such a policy. Pure.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any

from controlplane import authzrules
from controlplane.fields import FieldReader
from controlplane.linkerdschema import LINKERD_GROUP
from controlplane.schema import CORE_GROUPS

# Linkerd's identities: SA.NS.serviceaccount.identity.linkerd.cluster.local (SA may be *)
LINKERD_IDENTITY = re.compile(r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)\.([a-z0-9]([-a-z0-9]*[a-z0-9])?)"
                              r"\.serviceaccount\.identity\.linkerd\.cluster\.local$")
IDENTITY_HINT = ("expected Linkerd's form SA.NS.serviceaccount.identity.linkerd.cluster.local (* for SA: any of NS), "
                 "a SPIFFE ID spiffe://meshdojo.local/ns/NS/sa/SA, or * for any meshed caller")
GATEWAY_ROUTE_HINT = ("a Gateway API HTTPRoute (gateway.networking.k8s.io) shapes a Service's traffic here; for per-route "
                      "authorization, write the route as Linkerd's HTTPRoute (apiVersion policy.linkerd.io/v1beta3) with "
                      "the Server as its parent, and target it with group policy.linkerd.io")


def principal(identity: str) -> str | None:
    """A Linkerd identity (or a SPIFFE ID, or ``*``) as Istio's principal in this mesh; None if it is neither."""
    if identity == "*":
        return "*"
    linkerd = LINKERD_IDENTITY.match(identity)
    if linkerd:
        return f"{authzrules.TRUST_DOMAIN}/ns/{linkerd[3]}/sa/{linkerd[1]}"
    if re.match(authzrules.PRINCIPAL_PATTERN, identity) and "*" not in identity:
        return identity.removeprefix("spiffe://").replace(f"{authzrules.ISTIO_TRUST_DOMAIN}/", f"{authzrules.TRUST_DOMAIN}/", 1)
    return None


def short_principal(principal_: str, namespace: str) -> str:
    ns, _, sa = principal_.removeprefix(f"{authzrules.TRUST_DOMAIN}/ns/").partition("/sa/")
    return f"sa/{sa}" if ns == namespace else f"sa/{ns}/{sa}" if sa else principal_


@dataclass(frozen=True, slots=True)
class AuthnRef:
    kind: str  # MeshTLSAuthentication, NetworkAuthentication or ServiceAccount
    namespace: str
    name: str

    def describe(self, here: str) -> str:
        where = "" if self.namespace == here else f"{self.namespace}/"
        return f"{self.kind} {where}{self.name}"


@dataclass(frozen=True, slots=True)
class LinkerdPolicySpec:
    target_kind: str  # Server, HTTPRoute (a Server's route) or Namespace
    target: str  # the Server's or route's name, or the namespace's
    required: tuple[AuthnRef, ...]  # every one must let a caller in; none: anyone may call

    def targets(self, server: Any) -> bool:
        """Whether this authorizes callers of ``server`` (a Server Resource of the policy's namespace)."""
        return self.target_kind == "Namespace" or (self.target_kind == "Server" and self.target == server.name)

    def targets_route(self, route: Any) -> bool:
        """Whether this authorizes the requests ``route`` (a Linkerd HTTPRoute Resource) matches."""
        return self.target_kind == "HTTPRoute" and self.target == route.name


@dataclass(frozen=True, slots=True)
class MeshTlsAuthnSpec:
    principals: tuple[str, ...]  # Istio's principals in this mesh (a * at one end for many)


@dataclass(frozen=True, slots=True)
class NetworkAuthnSpec:
    networks: tuple[tuple[str, tuple[str, ...]], ...]  # (cidr, its exceptions)


def read_policy(r: FieldReader, spec: Mapping[str, Any], namespace: str) -> LinkerdPolicySpec:
    target = spec["targetRef"]
    kind, group = target["kind"], target.get("group")
    if kind == "GRPCRoute":
        raise r.fail("spec.targetRef.kind", "GRPCRoute: meshdojo's sidecars speak HTTP/1.1, so there is no gRPC route; "
                                            "target an HTTPRoute (policy.linkerd.io) whose matches name the paths")
    if kind == "HTTPRoute":
        if group != LINKERD_GROUP:
            raise r.fail("spec.targetRef.group", f"{group!r}: {GATEWAY_ROUTE_HINT}")
    elif kind == "Server":
        if group not in (None, LINKERD_GROUP):
            raise r.fail("spec.targetRef.group", f"a Server's group is {LINKERD_GROUP}, not {group!r}")
    elif kind == "Namespace":
        if group not in (None, ""):
            raise r.fail("spec.targetRef.group", f"a Namespace is of the core group: leave group out, not {group!r}")
        if target["name"] != namespace:
            raise r.fail("spec.targetRef.name", f"{target['name']!r}: a policy may target only its own namespace, {namespace} "
                                                "(or set metadata.namespace)")
    else:
        raise r.fail("spec.targetRef.kind", f"expected Server (one Server's port), HTTPRoute (one of a Server's routes) or "
                                            f"Namespace (every Server of {namespace}), got {kind!r}")
    refs = []
    for i, ref in enumerate(spec["requiredAuthenticationRefs"]):
        want = "" if ref["kind"] == "ServiceAccount" else LINKERD_GROUP
        if ref.get("group", want) not in ((want,) if want else CORE_GROUPS):
            say = "the core group: leave group out" if not want else want
            raise r.fail(f"spec.requiredAuthenticationRefs[{i}].group", f"a {ref['kind']}'s group is {say}, not {ref['group']!r}")
        refs.append(AuthnRef(ref["kind"], ref.get("namespace", namespace), ref["name"]))
    return LinkerdPolicySpec(kind, target["name"], tuple(refs))


def read_mesh_tls(r: FieldReader, spec: Mapping[str, Any], namespace: str) -> MeshTlsAuthnSpec:
    given = [f for f in ("identities", "identityRefs") if spec.get(f)]
    if len(given) != 1:
        raise r.fail("spec", "expected exactly one of identities (mesh identities) and identityRefs (ServiceAccounts, "
                             "Namespaces), not empty")
    principals: list[str] = []
    for i, identity in enumerate(spec.get("identities", [])):
        mapped = principal(identity)
        if mapped is None:
            raise r.fail(f"spec.identities[{i}]", f"{identity!r}: {IDENTITY_HINT}")
        principals.append(mapped)
    for i, ref in enumerate(spec.get("identityRefs", [])):
        field = f"spec.identityRefs[{i}]"
        if ref.get("group", "") not in CORE_GROUPS:
            raise r.fail(f"{field}.group", f"a {ref['kind']} is of the core group: leave group out, not {ref['group']!r}")
        if ref["kind"] == "Namespace":
            if "namespace" in ref:
                raise r.fail(f"{field}.namespace", "a Namespace is not in a namespace: leave namespace out")
            principals.append(f"{authzrules.TRUST_DOMAIN}/ns/{ref['name']}/sa/*")
        elif ref["name"] == "*":
            principals.append("*")
        else:
            principals.append(f"{authzrules.TRUST_DOMAIN}/ns/{ref.get('namespace', namespace)}/sa/{ref['name']}")
    return MeshTlsAuthnSpec(("*",) if "*" in principals else tuple(principals))


def read_networks(r: FieldReader, networks: Sequence[Mapping[str, Any]], where: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``networks`` (cidr, except), each address checked and named as written."""
    for i, network in enumerate(networks):
        for field, value in ((f"{where}[{i}].cidr", network["cidr"]),
                             *((f"{where}[{i}].except[{j}]", e) for j, e in enumerate(network.get("except", [])))):
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise r.fail(field, f"{value!r}: expected an IP address (10.1.2.3) or a CIDR block (10.1.0.0/16)") from None
    return tuple((n["cidr"], tuple(n.get("except", ()))) for n in networks)


def read_network(r: FieldReader, spec: Mapping[str, Any]) -> NetworkAuthnSpec:
    return NetworkAuthnSpec(read_networks(r, spec["networks"], "spec.networks"))


def network_sources(networks: Sequence[tuple[str, tuple[str, ...]]], principals: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Istio's sources for callers from ``networks`` (one per network: each has its own exceptions)."""
    return [{**({"principals": list(principals)} if principals else {}), "ipBlocks": [cidr],
             **({"notIpBlocks": list(ex)} if ex else {})} for cidr, ex in networks]


# -- what one means ---------------------------------------------------------------------------------

Find = Callable[[str, str, str], Any]  # (kind, namespace, name) -> the Resource, or None


def _callers(ref: AuthnRef, find: Find) -> list[dict[str, Any]] | None:
    """The callers one ref lets in, as alternative Istio sources; None: it names nothing there is."""
    if ref.kind == "ServiceAccount":
        return [{"principals": [f"{authzrules.TRUST_DOMAIN}/ns/{ref.namespace}/sa/{ref.name}"]}]
    found = find(ref.kind, ref.namespace, ref.name)
    if found is None:
        return None
    if ref.kind == "MeshTLSAuthentication":
        return [{"principals": list(found.spec.principals)}]
    return network_sources(found.spec.networks)


def _conditions(source: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A source as ``when`` conditions, which a rule ANDs (two sources in ``from`` would be OR)."""
    out = []
    if "principals" in source:
        out.append({"key": "source.principal", "values": list(source["principals"])})
    if "ipBlocks" in source:
        out.append({"key": "source.ip", "values": list(source["ipBlocks"]),
                    **({"notValues": list(source["notIpBlocks"])} if source.get("notIpBlocks") else {})})
    return out


def rules(spec: LinkerdPolicySpec, find: Find) -> tuple[list[dict[str, Any]], list[AuthnRef]]:
    """(the rules of the ALLOW that ``spec`` means, the refs that name nothing). Any missing ref:
    no rules, so the ALLOW lets nobody in. No refs at all: one empty rule, anyone."""
    requirements, missing = [], []
    for ref in spec.required:
        callers = _callers(ref, find)
        if callers is None:
            missing.append(ref)
        else:
            requirements.append(callers)
    if missing:
        return [], missing
    if not requirements:
        return [{}], []
    first, *rest = requirements
    out = []
    for combo in product(*rest):  # one rule per choice of the other refs' alternatives (networks)
        rule: dict[str, Any] = {"from": [{"source": source} for source in first]}
        when = [c for source in combo for c in _conditions(source)]
        out.append({**rule, "when": when} if when else rule)
    return out, []
