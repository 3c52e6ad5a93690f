"""Sidecar injection, as a pure function: a Pod (or a workload's pod template) in, the same
with meshdojo's proxy beside the app out — no I/O, so the admission webhook, ``meshdojo
inject -f`` and the golden-file tests all run exactly this.

What injection does to a pod (the same contract as the local backend):

- the proxy is a **native sidecar** (an init container with ``restartPolicy: Always``, started
  before the app and stopped after it) on API servers from 1.29; before that, the first
  ordinary container;
- the proxy's inbound listener takes the port Services target (the app container's first
  ``containerPort``), and the app moves to ``127.0.0.1:<private port>`` through its ``PORT``
  variable (``BIND_HOST=127.0.0.1``) — apps that don't read their port from the environment
  need transparent interception, a later step;
- every app container gets ``HTTP_PROXY`` pointing at the proxy's outbound listener;
- the proxy proves its identity with a projected ServiceAccount token (audience ``meshdojo``,
  short-lived), trusts the mesh's trust anchor (a ConfigMap), and reads the pod's labels from
  the downward API (for label-selected policies);
- it is **idempotent**: a pod that already has the proxy is returned unchanged.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass
from typing import Any

from controlplane import accesslogannotation, inboundpolicy
from controlplane.podannotations import AnnotationError

INJECT_ANNOTATION = "meshdojo.dev/inject"
INJECTED_ANNOTATION = "meshdojo.dev/injected"  # the proxy version that was injected
SKIPPED_ANNOTATION = "meshdojo.dev/inject-skipped"
PROXY_CONTAINER = "meshdojo-proxy"
OUTBOUND_PORT = 4140
GATEWAY_HTTPS_PORT = 4443  # an ingress gateway's TLS port: its Gateways' HTTPS listeners
ADMIN_PORT = 4191
DEFAULT_INBOUND_PORT = 4143  # for a pod that serves nothing (a pure client, like vote-bot)
APP_PORT = 14080  # where the app moves to, on 127.0.0.1
PROXY_UID = 2102
TOKEN_AUDIENCE = "meshdojo"
TOKEN_SECONDS = 3600
CONTROLPLANE_NAMESPACE = "meshdojo-system"
TRUST_ANCHOR_CONFIGMAP = "meshdojo-trust-anchor"
MOUNT = "/var/run/meshdojo.dev"
EXCLUDED_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease", CONTROLPLANE_NAMESPACE)
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")


@dataclass(frozen=True)
class InjectConfig:
    image: str
    native_sidecars: bool = True  # the API server is 1.29 or newer
    controlplane_url: str = f"https://meshdojo-controlplane.{CONTROLPLANE_NAMESPACE}.svc:8086"
    controlplane_identity: str = f"spiffe://meshdojo.local/ns/{CONTROLPLANE_NAMESPACE}/sa/meshdojo-controlplane"
    mode: str = "permissive"  # the proxy's default MeshTLS mode until a policy says otherwise


def native_sidecars_supported(major: str, minor: str) -> bool:
    """From the API server's /version (``minor`` may read ``29+``)."""
    digits = "".join(ch for ch in minor if ch.isdigit())
    return (int(major or 0), int(digits or 0)) >= (1, 29)


def wants_injection(pod_meta: dict[str, Any], namespace_meta: dict[str, Any] | None) -> bool:
    """The pod's annotation decides; without one, the namespace's (annotation or label)."""
    pod = (pod_meta.get("annotations") or {}).get(INJECT_ANNOTATION)
    if pod is not None:
        return pod == "enabled"
    ns = namespace_meta or {}
    value = (ns.get("annotations") or {}).get(INJECT_ANNOTATION) or (ns.get("labels") or {}).get(INJECT_ANNOTATION)
    return value == "enabled"


def is_injected(spec: dict[str, Any]) -> bool:
    return any(c.get("name") == PROXY_CONTAINER for c in [*spec.get("containers", []), *spec.get("initContainers", [])])


def deployment_of(meta: dict[str, Any]) -> str:
    """The Deployment a pod belongs to: its ReplicaSet owner's name without the pod-template-hash."""
    hash_ = (meta.get("labels") or {}).get("pod-template-hash", "")
    for owner in meta.get("ownerReferences") or []:
        if owner.get("kind") == "ReplicaSet" and hash_ and owner.get("name", "").endswith("-" + hash_):
            return owner["name"][: -len(hash_) - 1]
    return ""


def inject_pod(meta: dict[str, Any], spec: dict[str, Any], config: InjectConfig, deployment: str = "",
               settings: LinkerdSettings | None = None) -> tuple[dict, dict]:
    """(metadata, spec) of the pod with the proxy; unchanged if it already has it.
    ``settings``: Linkerd's proxy annotations for the proxy (see :func:`settings_of`)."""
    if is_injected(spec):
        return meta, spec
    meta, spec = copy.deepcopy(meta), copy.deepcopy(spec)
    apps = spec.get("containers") or []
    served = next((p for c in apps for p in c.get("ports") or [] if p.get("protocol", "TCP") == "TCP"), None)
    inbound = served["containerPort"] if served else DEFAULT_INBOUND_PORT
    app_port = APP_PORT if inbound != APP_PORT else APP_PORT + 1
    for container in apps:
        _point_at_proxy(container, app_port)
    proxy = _proxy_container(config, inbound, app_port, deployment or deployment_of(meta), settings or LinkerdSettings(),
                             served.get("name", "") if served else "")
    if config.native_sidecars:
        spec["initContainers"] = [{**proxy, "restartPolicy": "Always"}, *(spec.get("initContainers") or [])]
    else:
        spec["containers"] = [proxy, *apps]
    spec["volumes"] = [*(spec.get("volumes") or []), *_volumes()]
    annotations = meta.setdefault("annotations", {})
    annotations[INJECTED_ANNOTATION] = config.image.rpartition(":")[2] or config.image
    return meta, spec


@dataclass(frozen=True)
class LinkerdSettings:
    """Linkerd's proxy annotations, as the proxy's arguments."""

    default_policy: str | None = None  # config.linkerd.io/default-inbound-policy
    access_log: str | None = None  # config.linkerd.io/access-log

    def args(self) -> list[str]:
        return [*(("--default-inbound-policy", self.default_policy) if self.default_policy else ()),
                *(("--access-log", self.access_log) if self.access_log else ())]


SETTINGS = (("default_policy", inboundpolicy.chosen), ("access_log", accesslogannotation.chosen))


def settings_of(meta: dict[str, Any], namespace_meta: dict[str, Any] | None = None) -> tuple[LinkerdSettings, list[str]]:
    """Each of Linkerd's proxy annotations: the pod's, else its namespace's. A value that is not
    Linkerd's is left out (the proxy's default), with a warning naming it."""
    found: dict[str, str | None] = {}
    warnings = []
    for name, read in SETTINGS:
        try:
            found[name] = read(meta.get("annotations") or {}, (namespace_meta or {}).get("annotations") or {})
        except AnnotationError as exc:
            warnings.append(f"meshdojo: {exc}; left out: the proxy uses Linkerd's default")
    return LinkerdSettings(**found), warnings


def checked_settings_of(meta: dict[str, Any]) -> LinkerdSettings:
    """The same for ``meshdojo inject -f``: a wrong value raises AnnotationError, nothing is printed."""
    return LinkerdSettings(**{name: read(meta.get("annotations") or {}, {}) for name, read in SETTINGS})


def _point_at_proxy(container: dict[str, Any], app_port: int) -> None:
    env = [e for e in container.get("env") or [] if e.get("name") not in ("PORT", "BIND_HOST", "HTTP_PROXY", "http_proxy", "NO_PROXY")]
    env += [{"name": "PORT", "value": str(app_port)}, {"name": "BIND_HOST", "value": "127.0.0.1"},
            {"name": "HTTP_PROXY", "value": f"http://127.0.0.1:{OUTBOUND_PORT}"},
            {"name": "http_proxy", "value": f"http://127.0.0.1:{OUTBOUND_PORT}"},
            {"name": "NO_PROXY", "value": "127.0.0.1,localhost"}]
    container["env"] = env


def _field(path: str) -> dict[str, Any]:
    return {"valueFrom": {"fieldRef": {"fieldPath": path}}}


def _proxy_container(config: InjectConfig, inbound: int, app_port: int, deployment: str,
                     settings: LinkerdSettings = LinkerdSettings(), port_name: str = "") -> dict[str, Any]:
    args = [
        "--controlplane", config.controlplane_url, "--controlplane-identity", config.controlplane_identity,
        "--trust-anchor", f"{MOUNT}/trust-anchor/ca.crt",
        "--namespace", "$(POD_NAMESPACE)", "--service-account", "$(SERVICE_ACCOUNT)",
        "--token-file", f"{MOUNT}/serviceaccount/token",
        "--app-port", str(app_port),
        "--inbound-address", "0.0.0.0", "--inbound-port", str(inbound),
        "--outbound-port", str(OUTBOUND_PORT),
        "--admin-address", "0.0.0.0", "--admin-port", str(ADMIN_PORT),
        "--mode", config.mode, "--workload", "$(POD_NAME)",
        "--labels-file", f"{MOUNT}/podinfo/labels",
    ]
    if deployment:
        args += ["--deployment", deployment]
    if port_name:  # a Linkerd Server may name the port so
        args += ["--pod-port-name", port_name]
    args += settings.args()
    return {
        "name": PROXY_CONTAINER,
        "image": config.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["meshdojo", "proxy"],
        "args": args,
        "env": [{"name": "POD_NAME", **_field("metadata.name")}, {"name": "POD_NAMESPACE", **_field("metadata.namespace")},
                {"name": "SERVICE_ACCOUNT", **_field("spec.serviceAccountName")}],
        # the inbound port stays declared by the app container (Services may target it by name); the
        # proxy declares it only for a pod that serves nothing, so two containers never declare one port
        "ports": ([{"name": "mesh-inbound", "containerPort": inbound}] if inbound == DEFAULT_INBOUND_PORT else [])
        + [{"name": "mesh-admin", "containerPort": ADMIN_PORT}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": ADMIN_PORT}, "periodSeconds": 2},
        "resources": {"requests": {"cpu": "10m", "memory": "40Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": PROXY_UID, "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "meshdojo-token", "mountPath": f"{MOUNT}/serviceaccount", "readOnly": True},
                         {"name": "meshdojo-trust-anchor", "mountPath": f"{MOUNT}/trust-anchor", "readOnly": True},
                         {"name": "meshdojo-podinfo", "mountPath": f"{MOUNT}/podinfo", "readOnly": True}],
    }


def gateway_pod_spec(config: InjectConfig, deployment: str, service_account: str, upstream: str) -> dict[str, Any]:
    """An ingress gateway's pod: the proxy alone, in gateway mode (every request to ``upstream``),
    its outbound listener open on the pod's address, with the sidecar's identity plumbing."""
    proxy = _proxy_container(config, DEFAULT_INBOUND_PORT, APP_PORT, deployment)
    proxy["args"] = [*proxy["args"], "--gateway", upstream, "--outbound-address", "0.0.0.0", "--https-port", str(GATEWAY_HTTPS_PORT)]
    proxy["ports"] = [{"name": "http", "containerPort": OUTBOUND_PORT}, {"name": "https", "containerPort": GATEWAY_HTTPS_PORT},
                      *proxy["ports"]]
    return {"serviceAccountName": service_account, "containers": [proxy], "volumes": _volumes()}


def _volumes() -> list[dict[str, Any]]:
    return [
        {"name": "meshdojo-token", "projected": {"sources": [{"serviceAccountToken": {
            "audience": TOKEN_AUDIENCE, "expirationSeconds": TOKEN_SECONDS, "path": "token"}}]}},
        {"name": "meshdojo-trust-anchor", "configMap": {"name": TRUST_ANCHOR_CONFIGMAP}},
        {"name": "meshdojo-podinfo", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
    ]


# -- documents (meshdojo inject -f) ----------------------------------------------------------

def inject_document(doc: dict[str, Any], config: InjectConfig) -> dict[str, Any]:
    """A Pod or a workload (its pod template) with the proxy; other kinds unchanged. The
    template is annotated ``meshdojo.dev/inject: enabled`` too, so the webhook agrees. A wrong
    value of one of Linkerd's proxy annotations raises AnnotationError."""
    if not isinstance(doc, dict):
        return doc
    kind = doc.get("kind")
    if kind == "Pod":
        meta = doc.get("metadata") or {}
        meta, spec = inject_pod(meta, doc.get("spec") or {}, config, settings=checked_settings_of(meta))
        return {**doc, "metadata": meta, "spec": spec}
    if kind in WORKLOAD_KINDS:
        out = copy.deepcopy(doc)
        template = out.setdefault("spec", {}).setdefault("template", {})
        template_meta = template.setdefault("metadata", {})
        template_meta.setdefault("annotations", {})[INJECT_ANNOTATION] = "enabled"
        deployment = doc["metadata"]["name"] if kind == "Deployment" else ""
        template["metadata"], template["spec"] = inject_pod(template_meta, template.get("spec") or {}, config, deployment,
                                                            checked_settings_of(template_meta))
        return out
    return doc


# -- the admission webhook's decision --------------------------------------------------------

def review(request_review: dict[str, Any], config: InjectConfig, namespace_meta: dict[str, Any] | None) -> dict[str, Any]:
    """AdmissionReview (request) -> AdmissionReview (response). Always allowed: a pod we cannot
    or need not inject is admitted as it is (the webhook's failurePolicy is Ignore too)."""
    request = request_review.get("request") or {}
    response: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": True}
    pod = request.get("object") or {}
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    namespace = request.get("namespace") or meta.get("namespace") or ""
    if (request.get("kind") or {}).get("kind") == "Pod" and request.get("operation") == "CREATE" \
            and namespace not in EXCLUDED_NAMESPACES and not spec.get("hostNetwork") \
            and wants_injection(meta, namespace_meta) and not is_injected(spec):
        settings, warnings = settings_of(meta, namespace_meta)  # a wrong value: injected all the same, kubectl shows why
        if warnings:
            response["warnings"] = warnings
        new_meta, new_spec = inject_pod(meta, spec, config, settings=settings)
        patch = json_patch(meta, spec, new_meta, new_spec)
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


def json_patch(meta: dict, spec: dict, new_meta: dict, new_spec: dict) -> list[dict[str, Any]]:
    """RFC 6902 operations turning the pod into the injected one: whole fields added or replaced."""
    ops = []
    for prefix, old, new in (("/metadata", meta, new_meta), ("/spec", spec, new_spec)):
        for key in new:
            if old.get(key) != new[key]:
                ops.append({"op": "replace" if key in old else "add", "path": f"{prefix}/{key}", "value": new[key]})
    return ops
