"""``meshdojo install`` on a live cluster, as one function the CLI's ``install`` and the
Kubernetes backends' ``up`` share: the CRDs (Established before anything uses them), then the
control plane, with the CA and the operator API's token of an earlier install kept."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from controlplane.crds import GATEWAY_KINDS, ISTIO_KINDS, LINKERD_KINDS, subset_crd_name
from sandbox.kube import cluster
from sandbox.kube.install import Pki, control_plane_manifests, crd_manifests, describe, webhook_configuration


def crds_for(client: Any | None, with_gateway: bool, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Our CRDs; the subset of each of Gateway API's kinds (HTTPRoute, Gateway, BackendTLSPolicy),
    Linkerd's (Server, ServerAuthorization ...) and Istio's (VirtualService, DestinationRule) only
    when the cluster does not have that project's own CRD for it."""
    kinds = (GATEWAY_KINDS if with_gateway else ()) + LINKERD_KINDS + ISTIO_KINDS
    if client is not None:
        for kind in tuple(kinds):
            existing = cluster.crd_exists(client, subset_crd_name(kind))
            if existing is not None and (existing["metadata"].get("labels") or {}).get("app.kubernetes.io/part-of") != "meshdojo":
                kinds = tuple(k for k in kinds if k != kind)
                owner = "Linkerd" if kind in LINKERD_KINDS else "Istio" if kind in ISTIO_KINDS else "Gateway API"
                say(f"the cluster has {owner}'s {kind} CRD: meshdojo uses it as is")
    return crd_manifests(tuple(k for k in kinds if k in GATEWAY_KINDS), tuple(k for k in kinds if k not in GATEWAY_KINDS))


def control_plane_for(image: str, pki: Pki, operator_token: str, webhook_url: str | None,
                      cert_lifetime: str = "24h") -> list[dict[str, Any]]:
    objects = control_plane_manifests(image, pki, operator_token, cert_lifetime)
    if webhook_url:
        objects[-1] = webhook_configuration(pki.anchor_pem, webhook_url)
    return objects


def install(client: Any, image: str, *, webhook_url: str | None = None, with_httproute: bool = True, pki: Pki | None = None,
            crds_only: bool = False, wait: float = 60.0, cert_lifetime: str = "24h", say: Callable[[str], None] = print,
            note: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> list[dict[str, Any]]:
    """Apply the CRDs, wait until they are Established, then the control plane; each object is
    reported to ``say`` as kubectl would, remarks to ``note``. Raises ClusterError (nothing after
    the refusal is applied)."""
    crds = crds_for(client, with_httproute, note)
    cluster.apply(client, crds)
    for obj in crds:
        say(f"{describe(obj)} serverside-applied")
    cluster.wait_established(client, [o["metadata"]["name"] for o in crds], wait)
    if crds_only:
        return crds
    pki = pki or cluster.existing_pki(client) or cluster.new_pki()
    token = cluster.existing_operator_token(client) or cluster.new_operator_token()
    objects = control_plane_for(image, pki, token, webhook_url, cert_lifetime)
    cluster.apply(client, objects)
    for obj in objects:
        say(f"{describe(obj)} serverside-applied")
    return crds + objects
