"""What ``meshdojo install`` puts on a cluster, as data: pure functions, no cluster needed
(``meshdojo install --dry-run -o yaml`` prints exactly this, for ``kubectl apply -f -``).

As with ``linkerd install --crds`` and ``linkerd install``, there are two sets: the CRDs (our
policy kinds, and Gateway API's HTTPRoute — the subset we implement — unless the cluster has the
real one), and the control plane: its namespace, ServiceAccount and least-privilege RBAC, the
issuer Secret, the Deployment and Services, and the injector's MutatingWebhookConfiguration
whose ``caBundle`` is the mesh's trust anchor.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from controlplane.crds import GATEWAY_KINDS, ISTIO_KINDS, LINKERD_KINDS, PART_OF, SUBSET_KINDS, plural, policy_crds, subset_crd
from controlplane.injector import CONTROLPLANE_NAMESPACE, EXCLUDED_NAMESPACES, INJECT_ANNOTATION, TRUST_ANCHOR_CONFIGMAP
from controlplane.kube.castore import ISSUER_SECRET, OPERATOR_KEY, OPERATOR_SECRET, issuer_secret_data
from controlplane.linkerdschema import LINKERD_GROUP
from controlplane.policyschema import KINDS, POLICY_GROUP

NAME = "meshdojo-controlplane"
WEBHOOK_SERVICE = "meshdojo-webhook"
WEBHOOK_CONFIG = "meshdojo-sidecar-injector"
API_PORT, MESH_PORT, WEBHOOK_PORT = 8085, 8086, 8443
UID = 2103


@dataclass(frozen=True)
class Pki:
    """The CA as PEM text: the issuer's certificate and key, and the trust anchor's certificate."""

    anchor_pem: str
    issuer_pem: str
    issuer_key_pem: str


def crd_manifests(gateway_kinds: bool | tuple[str, ...], mesh_kinds: tuple[str, ...] = (*LINKERD_KINDS, *ISTIO_KINDS)) -> list[dict[str, Any]]:
    """The CRDs, in the order they are applied: ours, then the subsets of Gateway API's kinds
    (``True``: all of them; or those named; ``False``: none), then of Linkerd's and Istio's (those named)."""
    kinds = GATEWAY_KINDS if gateway_kinds is True else gateway_kinds or ()
    return [*policy_crds(), *(subset_crd(k) for k in SUBSET_KINDS if k in kinds or k in mesh_kinds)]


def _meta(name: str, namespace: str | None = CONTROLPLANE_NAMESPACE, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {}), "labels": dict(PART_OF)}
    meta.update(extra)
    return meta


def rbac() -> list[dict[str, Any]]:
    """What the control plane may do, and nothing more: read the workloads' objects, keep its
    policies and the trust anchor ConfigMaps, review tokens, read its own issuer Secret."""
    policy_plurals = sorted(plural(k) for k, (api, _) in KINDS.items() if api.startswith(POLICY_GROUP))
    rules = [
        {"apiGroups": [""], "resources": ["pods", "services", "namespaces"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [POLICY_GROUP], "resources": policy_plurals,
         "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
        {"apiGroups": ["gateway.networking.k8s.io"], "resources": sorted(plural(k) for k in GATEWAY_KINDS),
         "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
        {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["gatewayclasses"],  # whose class is whose (an Istio there)
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["gateways/status", "httproutes/status"],
         "verbs": ["patch"]},  # a Gateway's Programmed and addresses; our entry of a route's status.parents
        {"apiGroups": [LINKERD_GROUP], "resources": sorted(plural(k) for k in LINKERD_KINDS),  # Linkerd's policy kinds
         "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
        *({"apiGroups": [group], "resources": sorted(plural(k) for k in ISTIO_KINDS if KINDS[k][0].startswith(group + "/")),
           "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}  # Istio's kinds, by group
          for group in sorted({KINDS[k][0].partition("/")[0] for k in ISTIO_KINDS})),
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"],  # Istio's Kubernetes Ingress task (class istio)
         "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},  # create cannot be limited by name
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [TRUST_ANCHOR_CONFIGMAP], "verbs": ["get", "update"]},
    ]
    subject = [{"kind": "ServiceAccount", "name": NAME, "namespace": CONTROLPLANE_NAMESPACE}]
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": _meta(NAME, None), "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": _meta(NAME, None),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME}, "subjects": subject},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(NAME),
         "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [ISSUER_SECRET, OPERATOR_SECRET], "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta(NAME),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME}, "subjects": subject},
    ]


def deployment(image: str, cert_lifetime: str = "24h") -> dict[str, Any]:
    labels = {"app": NAME, **PART_OF}
    # the relays of network faults listen on every address; pods are sent to the pod's own IP
    args = ["--kubernetes", "--state-dir", "/var/lib/meshdojo", "--host", "0.0.0.0", "--relay-address", "$(POD_IP)",
            "--api-port", str(API_PORT),
            "--mesh-port", str(MESH_PORT), "--webhook-port", str(WEBHOOK_PORT), "--proxy-image", image,
            "--cert-lifetime", cert_lifetime]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(NAME),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                "metadata": {"labels": labels, "annotations": {INJECT_ANNOTATION: "disabled"}},
                "spec": {
                    "serviceAccountName": NAME,
                    "containers": [{
                        "name": "controlplane", "image": image, "imagePullPolicy": "IfNotPresent",
                        "command": ["meshdojo", "controlplane"], "args": args,
                        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                        "ports": [{"name": "api", "containerPort": API_PORT}, {"name": "mesh", "containerPort": MESH_PORT},
                                  {"name": "webhook", "containerPort": WEBHOOK_PORT}],
                        "readinessProbe": {"tcpSocket": {"port": MESH_PORT}, "periodSeconds": 2},
                        "resources": {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "512Mi"}},
                        "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "allowPrivilegeEscalation": False,
                                            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "state", "mountPath": "/var/lib/meshdojo"}],
                    }],
                    "volumes": [{"name": "state", "emptyDir": {}}],
                },
            },
        },
    }


def services() -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(NAME),
         "spec": {"selector": {"app": NAME}, "ports": [{"name": "mesh", "port": MESH_PORT, "targetPort": MESH_PORT},
                                                       {"name": "api", "port": API_PORT, "targetPort": API_PORT}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(WEBHOOK_SERVICE),
         "spec": {"selector": {"app": NAME}, "ports": [{"name": "webhook", "port": 443, "targetPort": WEBHOOK_PORT}]}},
    ]


def webhook_configuration(anchor_pem: str, url: str | None = None) -> dict[str, Any]:
    """Pods are sent to the injector on CREATE, except in system namespaces; if it does not
    answer, the pod is admitted as it is (failurePolicy Ignore: the mesh never blocks a cluster).
    ``url`` replaces the Service (a control plane running outside the cluster, as in the tests)."""
    client = {"url": url} if url else {"service": {"name": WEBHOOK_SERVICE, "namespace": CONTROLPLANE_NAMESPACE,
                                                    "path": "/inject", "port": 443}}
    client["caBundle"] = base64.b64encode(anchor_pem.encode()).decode()
    return {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration", "metadata": _meta(WEBHOOK_CONFIG, None),
        "webhooks": [{
            "name": "sidecar-injector.meshdojo.dev",
            "clientConfig": client,
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                                                        "values": list(EXCLUDED_NAMESPACES)}]},
            "failurePolicy": "Ignore", "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 5,
            "reinvocationPolicy": "Never",
        }],
    }


def control_plane_manifests(image: str, pki: Pki, operator_token: str, cert_lifetime: str = "24h") -> list[dict[str, Any]]:
    """The control plane, in the order it is applied (the CRDs come first, on their own).
    ``operator_token`` is the operator API's bearer token, kept in a Secret; ``cert_lifetime`` the
    workloads' certificates' (the control plane's --cert-lifetime)."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(CONTROLPLANE_NAMESPACE, None,
                                                                    annotations={INJECT_ANNOTATION: "disabled"})},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME)},
        *rbac(),
        {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(ISSUER_SECRET), "type": "Opaque",
         "data": issuer_secret_data(pki.anchor_pem, pki.issuer_pem, pki.issuer_key_pem)},
        {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(OPERATOR_SECRET), "type": "Opaque",
         "data": {OPERATOR_KEY: base64.b64encode(operator_token.encode()).decode()}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(TRUST_ANCHOR_CONFIGMAP), "data": {"ca.crt": pki.anchor_pem}},
        deployment(image, cert_lifetime),
        *services(),
        webhook_configuration(pki.anchor_pem),
    ]


# what uninstall looks for, by label, besides the namespace (which takes its objects with it)
CLUSTER_KINDS = (("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
                 ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
                 ("rbac.authorization.k8s.io/v1", "ClusterRole"),
                 ("apiextensions.k8s.io/v1", "CustomResourceDefinition"))
NAMESPACED_KINDS = (("v1", "ConfigMap"),)  # the trust anchor in each workload namespace


def describe(obj: dict[str, Any]) -> str:
    """``customresourcedefinition.apiextensions.k8s.io/faultinjections.policy.meshdojo.dev``, as kubectl names it."""
    group = obj["apiVersion"].rpartition("/")[0]
    return f"{obj['kind'].lower()}{'.' + group if group else ''}/{obj['metadata']['name']}"
