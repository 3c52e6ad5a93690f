"""A sandbox on a cluster, as data: the demos' manifests as the cluster gets them, and the
``status`` document (the same shape as the local backend's) made from the cluster's Pods and
Deployments. Pure functions; :mod:`sandbox.backends.kube` does the talking."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from controlplane.injector import INJECT_ANNOTATION, PROXY_CONTAINER
from controlplane.spiffe import SpiffeId

SANDBOX_LABEL = "meshdojo.dev/sandbox"  # on every namespace a sandbox made: `down` deletes them
DEMO_IMAGE_PREFIX = "ghcr.io/meshdojo/demo-apps"  # the demos' manifests name this; the cluster runs our image
WORKLOAD_KINDS = ("Namespace", "ServiceAccount", "Service", "Deployment")


def for_cluster(documents: Iterable[dict[str, Any]], sandbox: str, image: str) -> list[dict[str, Any]]:
    """The documents as applied: namespaces labelled with the sandbox (so ``down`` finds them),
    the demo apps' image replaced by meshdojo's (one image holds them). The input is not changed."""
    out = []
    for doc in documents:
        doc = copy.deepcopy(doc)
        meta = doc.setdefault("metadata", {})
        if doc.get("kind") == "Namespace":
            meta.setdefault("labels", {})[SANDBOX_LABEL] = sandbox
        if doc.get("kind") == "Deployment":
            spec = doc.get("spec", {}).get("template", {}).get("spec", {})
            for container in [*spec.get("containers", []), *spec.get("initContainers", [])]:
                if str(container.get("image", "")).startswith(DEMO_IMAGE_PREFIX):
                    container["image"] = image
                    container.setdefault("imagePullPolicy", "IfNotPresent")
        out.append(doc)
    return out


def namespaces_of(documents: Iterable[dict[str, Any]]) -> list[str]:
    found: list[str] = []
    for doc in documents:
        meta = doc.get("metadata") or {}
        ns = meta.get("name") if doc.get("kind") == "Namespace" else meta.get("namespace")
        if ns and ns not in found:
            found.append(ns)
    return found


def pod_deployment(pod: dict[str, Any]) -> str:
    """The Deployment a pod belongs to: its ReplicaSet's name without the pod-template-hash."""
    meta = pod["metadata"]
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("kind") == "ReplicaSet"), None)
    if owner is None:
        return meta["name"]
    suffix = (meta.get("labels") or {}).get("pod-template-hash")
    name = owner["name"]
    return name[: -len(suffix) - 1] if suffix and name.endswith("-" + suffix) else name.rsplit("-", 1)[0]


def has_sidecar(pod: dict[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    return any(c.get("name") == PROXY_CONTAINER for c in [*spec.get("containers", []), *(spec.get("initContainers") or [])])


def _ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def _restarts(pod: dict[str, Any]) -> int:
    status = pod.get("status") or {}
    return sum(int(c.get("restartCount") or 0) for c in [*(status.get("containerStatuses") or []),
                                                          *(status.get("initContainerStatuses") or [])])


def _inbound_port(pod: dict[str, Any]) -> int | None:
    """The port Services target: the proxy's inbound listener took the app's (see the injector)."""
    spec = pod.get("spec") or {}
    for container in [*spec.get("containers", []), *(spec.get("initContainers") or [])]:
        for port in container.get("ports") or []:
            if container.get("name") != PROXY_CONTAINER and port.get("protocol", "TCP") == "TCP":
                return port.get("containerPort")
            if port.get("name") == "mesh-inbound":
                return port.get("containerPort")
    return None


def workload(pod: dict[str, Any]) -> dict[str, Any]:
    meta, spec = pod["metadata"], pod.get("spec") or {}
    meshed = has_sidecar(pod)
    sa = spec.get("serviceAccountName") or "default"
    return {
        "name": meta["name"], "deployment": pod_deployment(pod), "namespace": meta["namespace"],
        "identity": SpiffeId(meta["namespace"], sa).uri if meshed else None,
        "meshed": meshed, "ready": _ready(pod), "restarts": _restarts(pod),
        "pids": {"app": None, "proxy": None},
        "ports": {"app": None, "inbound": _inbound_port(pod) if meshed else None, "outbound": None, "admin": None},
        "pod_ip": (pod.get("status") or {}).get("podIP"), "node": spec.get("nodeName"),
        "phase": (pod.get("status") or {}).get("phase"), "created": meta.get("creationTimestamp"),
        "services": [],
    }


def inject_wanted(deployment: dict[str, Any], namespace: dict[str, Any] | None) -> bool:
    """What the injector will do with the next pod: the pod template's annotation, else its namespace's."""
    template = (deployment["spec"]["template"].get("metadata") or {}).get("annotations") or {}
    if INJECT_ANNOTATION in template:
        return template[INJECT_ANNOTATION] == "enabled"
    return ((namespace or {}).get("metadata", {}).get("annotations") or {}).get(INJECT_ANNOTATION) == "enabled"


def status_document(sandbox: str, backend: str, demos: list[str], pods: list[dict[str, Any]], deployments: list[dict[str, Any]],
                    namespaces: dict[str, dict[str, Any]], controlplane: dict[str, Any]) -> dict[str, Any]:
    """``meshdojo status -o json`` on a cluster: the local backend's shape, pids left empty
    (pods have names, not processes), plus each pod's IP and node."""
    live = [p for p in pods if not (p["metadata"].get("deletionTimestamp"))]
    workloads = sorted((workload(p) for p in live), key=lambda w: (w["namespace"], w["deployment"], w["name"]))
    wanted = {f"{d['metadata']['namespace']}/{d['metadata']['name']}": {
        "replicas": int(d["spec"].get("replicas", 1)),
        "inject": inject_wanted(d, namespaces.get(d["metadata"]["namespace"]))} for d in deployments}
    settled = all(
        (d.get("status") or {}).get("observedGeneration", 0) >= d["metadata"].get("generation", 0)
        and int((d.get("status") or {}).get("readyReplicas") or 0) == int(d["spec"].get("replicas", 1))
        and int((d.get("status") or {}).get("updatedReplicas") or 0) == int(d["spec"].get("replicas", 1))
        for d in deployments)
    return {
        "name": sandbox, "backend": backend, "ready": bool(controlplane.get("ready")) and settled and all(w["ready"] for w in workloads),
        "demos": demos, "controlplane": controlplane, "gateways": [], "deployments": wanted, "workloads": workloads,
    }


def settled(st: dict[str, Any], ns: str, dep: str, replicas: int | None = None, meshed: bool | None = None) -> bool:
    mine = [w for w in st["workloads"] if w["namespace"] == ns and w["deployment"] == dep]
    if replicas is not None and len(mine) != replicas:
        return False
    return all(w["ready"] and (meshed is None or w["meshed"] == meshed) for w in mine)
