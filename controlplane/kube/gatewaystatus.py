"""Each Gateway's ``status`` on the cluster, as Gateway API controllers write it: Accepted,
Programmed (the ingress gateway of its namespace has a ready pod), its address (that gateway's
Service) and each listener's attached routes — so ``kubectl get gateway`` shows ADDRESS and
PROGRAMMED, and ``kubectl wait --for=condition=programmed gateway/NAME`` returns, as Istio's
tasks run it.

:func:`desired` is pure; the status writer (controlplane/kube/statuswriter.py) compares it with
what it last wrote and patches the status subresource of the Gateways whose status changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from controlplane.gatewayapi import GATEWAY_LABEL, routes_on, takes, unresolved
from controlplane.routestatus import condition

GROUP = "gateway.networking.k8s.io"
Key = tuple[str, str]


def desired(resources: list[Any], generations: dict[Key, int], gateways: dict[str, tuple[str, bool]], now: str,
            secret_of: Callable[[str, str], Any | None] = lambda ns, name: None,
            address_of: Callable[[Any], str | None] = lambda gateway: None) -> dict[Key, dict]:
    """(namespace, name) of each Gateway -> its status. ``gateways``: namespace -> (the address of
    its ingress gateway's Service, whether a pod of it is ready); ``now``: RFC 3339;
    ``secret_of``: the valid Secret an HTTPS listener names, or None (gatewayapi.unresolved);
    ``address_of``: the Gateway's own Service's address once it exists (gatewayservices.py), else None."""
    out: dict[Key, dict] = {}
    for gateway in (r for r in resources if r.kind == "Gateway"):
        key = (gateway.namespace, gateway.name)
        generation = generations.get(key, 1)
        address, ready = gateways.get(gateway.namespace, ("", False))
        address = (address_of(gateway) or address) if address else address
        if not address:
            programmed = ("NoResources", f"no ingress gateway runs in namespace {gateway.namespace}: meshdojo's gateways "
                                         "serve the Gateways of their own namespace")
        elif not ready:
            programmed = ("Pending", f"the ingress gateway {address} has no ready pod yet")
        else:
            programmed = ("Programmed", f"served by the ingress gateway {address}")
        routes = routes_on(resources, gateway)
        listeners = []
        for listener in gateway.spec.listeners:
            count = sum(1 for route in routes if takes(listener, route, gateway.namespace) is not None)
            missing = unresolved(listener, gateway.namespace, secret_of)
            refs = ("InvalidCertificateRef", missing) if missing else ("ResolvedRefs", "")
            listener_programmed = ("Invalid", missing) if missing else (programmed[0], "")
            listeners.append({"name": listener.name, "attachedRoutes": count,
                              "supportedKinds": [{"group": GROUP, "kind": "HTTPRoute"}],
                              "conditions": [condition("Accepted", True, "Accepted", "", generation, now),
                                             condition("Programmed", listener_programmed[0] == "Programmed", *listener_programmed,
                                                       generation, now),
                                             condition("ResolvedRefs", not missing, *refs, generation, now)]})
        kind = "IPAddress" if address.replace(".", "").isdigit() else "Hostname"  # locally the gateway is at 127.0.0.1
        out[key] = {"addresses": [{"type": kind, "value": address}] if address else [],
                    "conditions": [condition("Accepted", True, "Accepted", "the Gateway is valid", generation, now),
                                   condition("Programmed", programmed[0] == "Programmed", *programmed, generation, now)],
                    "listeners": listeners}
    return out


def refused(why: str, generation: int, now: str) -> dict[str, Any]:
    """The status of a Gateway (of our classes) the validator refused: not Accepted, not
    Programmed, the validator's words — so ``kubectl get gateway`` shows PROGRAMMED False and
    ``-o yaml`` why."""
    message = f"{why} — meshdojo ignores this Gateway until it is fixed"
    return {"addresses": [], "listeners": [],
            "conditions": [condition("Accepted", False, "Invalid", message, generation, now),
                           condition("Programmed", False, "Invalid", "not served: the Gateway is not valid", generation, now)]}


def ingress_gateways(services: dict[Key, dict[str, Any]], has_endpoints: Callable[[str, str], bool]) -> dict[str, tuple[str, bool]]:
    """namespace -> (its ingress gateway's Service address, a pod of it ready), from the Services
    that carry the gateway label."""
    out = {}
    for (namespace, name), service in sorted(services.items()):
        if GATEWAY_LABEL in ((service.get("metadata") or {}).get("labels") or {}):
            out[namespace] = (f"{name}.{namespace}.svc.cluster.local", has_endpoints(namespace, name))
    return out
