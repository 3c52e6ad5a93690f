"""CustomResourceDefinitions for the policy kinds, generated from the validator's field
definitions (:mod:`controlplane.policyschema`): the API server refuses what ``meshdojo apply``
refuses, and names the same field.

``HTTPRoute``, ``Gateway`` and ``BackendTLSPolicy`` belong to the Gateway API. A cluster that has their CRDs
keeps them (ours are never installed over them); a cluster without one gets
:func:`gateway_subset_crd`, the subset of the ``gateway.networking.k8s.io/v1`` kind that meshdojo
implements (an HTTPRoute's parent is a Service or a ServiceEntry, GAMMA, or a Gateway; a Gateway's
listeners are HTTP; a BackendTLSPolicy's target a ServiceEntry), labelled as such.
"""

from __future__ import annotations

from typing import Any

from controlplane.istioschema import ISTIO_GATEWAY, ISTIO_TWINS
from controlplane.kinddocs import KIND_DOCS
from controlplane.kindnames import SHORT_NAMES, plural
from controlplane.linkerdschema import LINKERD_KINDS
from controlplane.policyschema import KINDS, POLICY_GROUP, POLICY_VERSION, api_versions, kube_kind
from controlplane.schema import Field, openapi

PART_OF = {"app.kubernetes.io/part-of": "meshdojo"}
SUBSET_ANNOTATION = "meshdojo.dev/subset"
CATEGORY = "meshdojo"  # `kubectl get meshdojo -A` lists every policy


def _crd(group: str, version: str, kind: str, spec: Field, short_names: list[str], labels: dict[str, str],
         annotations: dict[str, str] | None = None, older: tuple[str, ...] = ()) -> dict[str, Any]:
    """``older``: versions served too, with the same schema (stored as ``version``)."""
    name, kube = f"{plural(kind)}.{group}", kube_kind(kind)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name, "labels": dict(labels), **({"annotations": annotations} if annotations else {})},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kube, "plural": plural(kind), "singular": kube.lower(), "listKind": f"{kube}List",
                      "shortNames": short_names, "categories": [CATEGORY]},
            "versions": [{
                "name": v, "served": True, "storage": v == version,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": KIND_DOCS[kind],
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": openapi(spec),
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    },
                }},
                "subresources": {"status": {}},
            } for v in (*older, version)],
        },
    }


def policy_crds() -> list[dict[str, Any]]:
    """One CRD per ``policy.meshdojo.dev`` kind."""
    return [_crd(POLICY_GROUP, POLICY_VERSION, kind, spec, SHORT_NAMES.get(kind, []), PART_OF)
            for kind, (api, spec) in KINDS.items() if api.startswith(POLICY_GROUP + "/")]


GATEWAY_KINDS = ("BackendTLSPolicy", "Gateway", "HTTPRoute")  # Gateway API's kinds meshdojo implements a subset of


def gateway_subset_crd(kind: str) -> dict[str, Any]:
    """One of Gateway API's kinds, only the fields meshdojo implements (for clusters without it)."""
    api, spec = KINDS[kind]
    group, _, version = api.partition("/")
    older = tuple(v.partition("/")[2] for v in api_versions(kind)[:-1])  # v1beta1 for HTTPRoute and Gateway
    return _crd(group, version, kind, spec, [], PART_OF,
                {SUBSET_ANNOTATION: f"the subset of Gateway API's {kind} that meshdojo implements; "
                                    "install the Gateway API CRDs to replace it",
                 # *.k8s.io groups are protected: a CRD there must say whether the API was approved. Ours is
                 # not Gateway API's own CRD, so it says so (the API server accepts it, with a condition)
                 "api-approved.kubernetes.io": f"unapproved, meshdojo's subset of Gateway API's {kind} for clusters without it"},
                older)


# Istio's kinds meshdojo implements a subset of: its own, then those it has a kind of the same name for
ISTIO_KINDS = ("VirtualService", "DestinationRule", ISTIO_GATEWAY, "PeerAuthentication", *ISTIO_TWINS)
SUBSET_KINDS = (*GATEWAY_KINDS, *LINKERD_KINDS, *ISTIO_KINDS)  # another project's kinds: a cluster with their CRDs keeps them


def mesh_subset_crd(kind: str, mesh: str) -> dict[str, Any]:
    """One of Linkerd's (or Istio's) kinds, only the fields meshdojo implements, in every version
    their docs write it in (for clusters without that mesh)."""
    api, spec = KINDS[kind]
    group, _, version = api.partition("/")
    older = tuple(v.partition("/")[2] for v in api_versions(kind)[:-1])
    return _crd(group, version, kind, spec, SHORT_NAMES.get(kind, []), PART_OF,
                {SUBSET_ANNOTATION: f"the subset of {mesh}'s {kube_kind(kind)} that meshdojo implements; installing {mesh} replaces it"},
                older)


def subset_crd(kind: str) -> dict[str, Any]:
    if kind in LINKERD_KINDS:
        return mesh_subset_crd(kind, "Linkerd")
    return mesh_subset_crd(kind, "Istio") if kind in ISTIO_KINDS else gateway_subset_crd(kind)


def subset_crd_name(kind: str) -> str:
    return f"{plural(kind)}.{KINDS[kind][0].partition('/')[0]}"
