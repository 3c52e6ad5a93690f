"""``meshdojo diagnostics endpoints``: what discovery tells the sidecars about a service — each
endpoint's address and port, its pod, and the identity a caller's sidecar checks over mutual TLS
(``-`` for one without a sidecar, reached in plaintext) — as ``linkerd diagnostics endpoints``
shows what Linkerd's destination controller hands its proxies.

Pure: the target's service (``svc/NAME``, or an authority as Linkerd takes it:
``emoji.emojivoto.svc.cluster.local:8080``) and the table, from the operator API's services.
"""

from __future__ import annotations

from typing import Any

from controlplane.names import resolve, split_authority

HEADER = ("NAMESPACE", "IP", "PORT", "POD", "SERVICE", "IDENTITY")


def service_named(target: str, namespace: str | None) -> tuple[str | None, str]:
    """(namespace, service) that ``target`` names; a namespace of None: find it by the name.
    ValueError when it names no service."""
    if target.startswith(("svc/", "service/")):
        return namespace, target.partition("/")[2]
    try:
        host = split_authority(target)[0]
    except ValueError:
        host = target
    found = resolve(host, namespace or "default")
    if found is None:
        raise ValueError(f"{target!r}: expected svc/NAME or a service's name, e.g. emoji.emojivoto.svc.cluster.local:8080")
    return (found[0] if "." in host else namespace), found[1]


def rows(services: list[dict[str, Any]], namespace: str, name: str) -> list[tuple[str, ...]]:
    """The endpoints of ``namespace/name`` as the table's rows, header first (only it: none)."""
    service = next((s for s in services if (s["namespace"], s["name"]) == (namespace, name)), None)
    if service is None:
        known = ", ".join(sorted(f"{s['name']}.{s['namespace']}" for s in services)) or "none"
        raise ValueError(f"no service {name}.{namespace}; the services are {known}")
    out = [HEADER]
    for endpoint_id, ep in sorted(service["endpoints"].items(), key=lambda item: (item[1].get("instance") or item[0])):
        out.append((namespace, str(ep["address"]), str(ep["port"]), ep.get("instance") or endpoint_id, f"{name}.{namespace}",
                    ep.get("identity") if ep.get("meshed", True) and ep.get("identity") else "-"))
    return out
