"""What a kind is called on the command line and in Kubernetes: its plural, its short names,
and every alias ``meshdojo get`` and ``delete`` take — made from one table, so a CRD's
``shortNames`` and the CLI's aliases cannot drift apart. Pure data."""

from __future__ import annotations

from controlplane.linkerdschema import LINKERD_AUTHORIZATION_POLICY
from controlplane.policyschema import KINDS, kube_kind

# a CRD's shortNames (kubectl's, and meshdojo's): ours, then Linkerd's and Istio's own
SHORT_NAMES = {"FaultInjection": ["fault"], "AuthorizationPolicy": ["authz"], "CircuitBreaker": ["cb"],
               "RetryBudget": ["rb"], "RateLimit": ["rl"], "MeshTLS": [], "ServiceEntry": ["se"], "Sidecar": [],
               "Telemetry": [], "RequestAuthentication": ["ra"], "ExtensionProvider": [],
               "Server": ["srv"], "ServerAuthorization": ["saz"], LINKERD_AUTHORIZATION_POLICY: ["authzpolicy"],
               "MeshTLSAuthentication": ["meshtlsauthn"], "NetworkAuthentication": ["netauthn"],
               "VirtualService": ["vs"], "DestinationRule": ["dr"], "PeerAuthentication": ["pa"]}
# what learners type besides: singulars and plurals kubectl does not know, and Gateway API's and Kubernetes' short names
MORE_ALIASES = {"faults": "FaultInjection", "route": "HTTPRoute", "routes": "HTTPRoute", "requestauthn": "RequestAuthentication",
                "provider": "ExtensionProvider", "providers": "ExtensionProvider", "btlspolicy": "BackendTLSPolicy",
                "gw": "Gateway", "ing": "Ingress", "serverauthz": "ServerAuthorization"}


def plural(kind: str) -> str:
    """Kubernetes' plural of one of meshdojo's kinds (Linkerd's AuthorizationPolicy: authorizationpolicies)."""
    lower = kube_kind(kind).lower()
    if lower.endswith("y") and lower[-2:-1] not in ("a", "e", "o", "u"):  # policies, telemetries; gateways
        return lower[:-1] + "ies"
    if lower.endswith("s"):
        return lower + "es"
    return lower + "s"


def aliases() -> dict[str, str]:
    """Every name a kind is known by, lower case -> meshdojo's kind: singular, plural, either with
    its group (``faultinjections.policy.meshdojo.dev``), short names. A kind whose name another
    group shares (Linkerd's AuthorizationPolicy, HTTPRoute) is known only with its group
    (``authorizationpolicies.policy.linkerd.io``): the bare names are ours and Gateway API's."""
    names = {}
    for kind, (api, _spec) in KINDS.items():
        group = api.partition("/")[0]
        names[f"{plural(kind)}.{group}"] = names[f"{kube_kind(kind).lower()}.{group}"] = kind  # as kubectl takes any kind
        if "." not in kind:  # AuthorizationPolicy.policy.linkerd.io: only with its group
            names[kind.lower()] = names[plural(kind)] = kind
    return {**names, **{short: kind for kind, shorts in SHORT_NAMES.items() for short in shorts}, **MORE_ALIASES}
