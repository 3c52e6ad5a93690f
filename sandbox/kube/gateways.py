"""The demos' ingress gateways on a cluster, as data: per demo a ServiceAccount, a Deployment of
our proxy in gateway mode (as the local backend runs one), and a Service. On kind and minikube
the Service is a NodePort the cluster config publishes on the host (providers.GATEWAY_PORTS, and
GATEWAY_TLS_PORTS for the HTTPS listeners), so the demo answers on http://127.0.0.1:8080/ (and
https://127.0.0.1:8443/) as it does locally; on a cluster of the user's own it
is a ClusterIP reached with ``kubectl port-forward``."""

from __future__ import annotations

from typing import Any

from controlplane.gatewayapi import GATEWAY_SERVICE_ACCOUNT
from controlplane.injector import (
    CONTROLPLANE_NAMESPACE,
    GATEWAY_HTTPS_PORT,
    INJECT_ANNOTATION,
    OUTBOUND_PORT,
    InjectConfig,
    gateway_pod_spec,
)
from sandbox.instances import GATEWAY_LABEL, gateway_labels, gateway_name
from sandbox.kube.install import NAME as CONTROLPLANE_SERVICE_ACCOUNT
from sandbox.kube.providers import GATEWAY_PORTS, GATEWAY_TLS_PORTS

# demo -> (namespace, the service it fronts, that service's port, title); the local backend's GATEWAYS
DEMO_GATEWAYS = {"emojivoto": ("emojivoto", "web", 80, "emojivoto web UI"),
                 "bookinfo": ("bookinfo", "productpage", 9080, "bookinfo product page")}
SERVICE_ACCOUNT = GATEWAY_SERVICE_ACCOUNT
SECRET_READER = "meshdojo-gateway-secrets"  # the Role that lets the control plane read this namespace's Secrets, one by one
SERVICE_WRITER = "meshdojo-gateway-services"  # ... and create and patch the Service of each Gateway here (bookinfo-gateway-istio)
LABEL = GATEWAY_LABEL


def name_of(demo: str) -> str:
    return gateway_name(demo)


def manifests(demo: str, image: str, published: bool) -> list[dict[str, Any]]:
    namespace, service, port, _title = DEMO_GATEWAYS[demo]
    name = name_of(demo)
    labels = gateway_labels(name, demo)
    spec = gateway_pod_spec(InjectConfig(image=image), name, SERVICE_ACCOUNT, f"{service}.{namespace}:{port}")
    node_port = GATEWAY_PORTS[demo][0]
    svc_port: dict[str, Any] = {"name": "http", "port": 80, "targetPort": OUTBOUND_PORT, **({"nodePort": node_port} if published else {})}
    tls_port = {"name": "https", "port": 443, "targetPort": GATEWAY_HTTPS_PORT,
                **({"nodePort": GATEWAY_TLS_PORTS[demo][0]} if published else {})}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT, "namespace": namespace}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace, "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                  "template": {"metadata": {"labels": labels, "annotations": {INJECT_ANNOTATION: "disabled"}}, "spec": spec}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace, "labels": labels},
         "spec": {"type": "NodePort" if published else "ClusterIP", "selector": {"app": name}, "ports": [svc_port, tls_port]}},
        # the TLS Secrets a Gateway here names (its HTTPS listeners): the control plane may get a Secret of this
        # namespace by name, and gives it to this gateway only; no list, no watch, no other namespace
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": SECRET_READER, "namespace": namespace},
         "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": SECRET_READER, "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SECRET_READER},
         "subjects": [{"kind": "ServiceAccount", "name": CONTROLPLANE_SERVICE_ACCOUNT, "namespace": CONTROLPLANE_NAMESPACE}]},
        # each Gateway's own Service, named as Istio names it (controlplane/kube/gatewayservices.py): created and
        # server-side applied here only; never deleted by the control plane (the Gateway owns it: garbage-collected with it)
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": SERVICE_WRITER, "namespace": namespace},
         "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["create", "patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": SERVICE_WRITER, "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SERVICE_WRITER},
         "subjects": [{"kind": "ServiceAccount", "name": CONTROLPLANE_SERVICE_ACCOUNT, "namespace": CONTROLPLANE_NAMESPACE}]},
    ]


def entries(demos: list[str], published: bool) -> list[dict[str, Any]]:
    """``status``'s gateways: where the learner opens each demo."""
    out = []
    for demo in demos:
        namespace, service, _port, title = DEMO_GATEWAYS[demo]
        host, tls_host = GATEWAY_PORTS[demo][1], GATEWAY_TLS_PORTS[demo][1]
        out.append({"demo": demo, "namespace": namespace, "service": service, "title": title, "pid": None, "admin": None,
                    "url": f"http://127.0.0.1:{host}/" if published else None,
                    "reach": None if published else f"kubectl -n {namespace} port-forward svc/{name_of(demo)} {host}:80",
                    "https": f"https://127.0.0.1:{tls_host}/" if published else None,
                    "httpsReach": None if published else f"kubectl -n {namespace} port-forward svc/{name_of(demo)} {tls_host}:443"})
    return out
