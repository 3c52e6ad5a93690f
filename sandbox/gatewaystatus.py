"""``meshdojo get gateway``, as ``kubectl get gateway`` reads: each Gateway's class, the address
a client opens (the URL of the demo's ingress gateway that serves its namespace), whether it is
PROGRAMMED (a gateway serves it), and the routes attached to it (controlplane/gatewayapi.py
decides which)."""

from __future__ import annotations

from typing import Any

from controlplane.gatewayapi import attached, service_name
from controlplane.policy import PolicyError, parse

HEADER = ("NAMESPACE", "NAME", "CLASS", "ADDRESS", "PROGRAMMED", "ROUTES", "LISTENERS")


def served(status: dict[str, Any] | None) -> dict[str, tuple[str, str]]:
    """namespace -> where its ingress gateway answers: HTTP, and HTTPS (a URL, or the
    port-forward that reaches it)."""
    return {g["namespace"]: (g.get("url") or g.get("reach") or "(starting)",
                             g.get("https") or g.get("httpsReach") or "(starting)")
            for g in (status or {}).get("gateways", []) if g.get("namespace")}


def rows(gateways: list[dict[str, Any]], routes: list[dict[str, Any]], served_at: dict[str, tuple[str, str]]) -> list[tuple[str, ...]]:
    """``gateways``, ``routes``: the API's items (Gateways, every HTTPRoute); ``served_at``: :func:`served`."""
    resources = []
    for i, item in enumerate([*gateways, *routes]):
        try:
            resources.append(parse(item["document"], "control plane", i))
        except PolicyError:  # the control plane validated it; a row without it is better than none
            continue
    out = [HEADER]
    for gateway in (r for r in resources if r.kind == "Gateway"):
        mine = {a.route.key for a in attached(resources, gateway.namespace)
                if a.parent_kind == "Gateway" and a.gateway == f"{gateway.namespace}/{gateway.name}"}
        at = served_at.get(gateway.namespace)
        if at and not at[0].startswith("http"):  # a cluster's gateway, reached through a port-forward: to the Gateway's own Service
            at = _port_forwards(gateway)
        protocols = {item.protocol for item in gateway.spec.listeners}  # type: ignore[union-attr]
        address = ",".join(url for protocol, url in zip(("HTTP", "HTTPS"), at, strict=True) if protocol in protocols) if at else None
        listeners = ",".join(f"{item.name}:{item.port}" + (f"/{item.protocol}" if item.protocol != "HTTP" else "")
                             + (f" {item.hostname}" if item.hostname else "")
                             for item in gateway.spec.listeners)  # type: ignore[union-attr]
        out.append((gateway.namespace, gateway.name, gateway.spec.class_name, address or "-",  # type: ignore[union-attr]
                    "True" if address else f"False (no ingress gateway runs in {gateway.namespace})",
                    str(len(mine)), listeners))
    return out


def _port_forwards(gateway: Any) -> tuple[str, str]:
    """How to reach a Gateway on a cluster of your own, as Istio's tasks do: a port-forward to
    the Service made for it (``kubectl port-forward svc/bookinfo-gateway-istio 8080:80``), to its
    first HTTP listener's port and its first HTTPS one's."""
    service = service_name(gateway.name, gateway.spec.class_name)
    first = {protocol: next((item.port for item in gateway.spec.listeners if item.protocol == protocol), None)
             for protocol in ("HTTP", "HTTPS")}
    return tuple(f"kubectl -n {gateway.namespace} port-forward svc/{service} {local}:{first[protocol]}"  # type: ignore[return-value]
                 for protocol, local in (("HTTP", 8080), ("HTTPS", 8443)))
