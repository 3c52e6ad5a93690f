"""Policies from the cluster: our CRs, HTTPRoutes and Ingresses into the policy store, and the operator
API's apply and delete written to the cluster as CRs — so ``meshdojo apply -f X`` and
``kubectl apply -f X`` are the same act, and either is seen by ``meshdojo get``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from controlplane import ingress, policyschema
from controlplane.crds import plural
from controlplane.gatewayapi import GATEWAY_CLASSES
from controlplane.kube.watcher import Watcher, start_all
from controlplane.policy import PolicyError, Resource, parse
from controlplane.policyschema import GATEWAY_GROUP
from controlplane.policystore import PolicyStore

log = logging.getLogger("meshdojo.controlplane.kube")
FIELD_MANAGER = "meshdojo-controlplane"
OUR_CONTROLLERS = "meshdojo.dev/"  # a GatewayClass whose controllerName starts so is ours; any other, another's
DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/",)
DEPENDENTS = {"GatewayClass": ("Gateway", "HTTPRoute"), "Gateway": ("Gateway", "HTTPRoute")}  # what to push again on a change


def route_parent(obj: dict[str, Any]) -> dict[str, Any] | None:
    """An HTTPRoute object's first parentRef as written, if it has one (a route here has one)."""
    refs = (obj.get("spec") or {}).get("parentRefs")
    return refs[0] if isinstance(refs, list) and refs and isinstance(refs[0], dict) else None


def document_of(obj: dict[str, Any]) -> dict[str, Any]:
    """A CR as the learner wrote it: the server's bookkeeping (uid, resourceVersion, managedFields,
    kubectl's last-applied copy, status) left out."""
    meta = obj.get("metadata") or {}
    kept: dict[str, Any] = {"name": meta.get("name"), "namespace": meta.get("namespace")}
    if meta.get("labels"):
        kept["labels"] = dict(meta["labels"])
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith(DROPPED_ANNOTATIONS)}
    if annotations:
        kept["annotations"] = annotations
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": kept, "spec": obj.get("spec")}


def expires_at(resource: Resource, obj: dict[str, Any]) -> float | None:
    """A resource with ``duration`` ends that long after the object was created."""
    duration = getattr(resource.spec, "duration", None)
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    if duration is None or not created:
        return None
    return dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() + duration


def read(obj: dict[str, Any]) -> tuple[Resource, float | None] | PolicyError:
    meta = obj.get("metadata") or {}
    source = f"{obj.get('kind')} {meta.get('namespace')}/{meta.get('name')} in the cluster"
    try:
        resource = parse(document_of(obj), source, 0)
    except PolicyError as exc:
        return exc
    return resource, expires_at(resource, obj)


class KubePolicies:
    """Watches every policy kind; ``write``/``remove`` are blocking (call them in a thread)."""

    def __init__(self, api_client: Any, store: PolicyStore) -> None:
        self._api = api_client
        self.store = store
        self._objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {kind: {} for kind in policyschema.KINDS}
        self.rejected: dict[tuple[str, str, str], str] = {}  # (kind, ns, name) -> why the control plane ignores it
        self.on_change: list[Callable[[str], None]] = []  # told the kind after the store followed a change
        self._watchers: list[Watcher] = []
        self._classes: dict[str, str] = {}  # GatewayClass name -> its controllerName (Istio's istio: istio.io/gateway-controller)
        self._dynamic: Any = None
        self._dynamic_lock = threading.Lock()

    async def start(self, timeout: float = 30.0) -> None:
        from kubernetes import client

        custom = client.CustomObjectsApi(self._api)
        loop = asyncio.get_running_loop()
        for kind, (api_version, _spec) in policyschema.KINDS.items():
            group, _, version = api_version.partition("/")
            self._watchers.append(Watcher(
                kind, functools.partial(custom.list_cluster_custom_object, group, version, plural(kind)), loop,
                functools.partial(self._sync, kind), functools.partial(self._event, kind)))
        # GatewayClasses: a class another controller claims (an Istio on the same cluster) is its, not ours to serve
        self._watchers.append(Watcher(
            "GatewayClass", functools.partial(custom.list_cluster_custom_object, GATEWAY_GROUP, "v1", "gatewayclasses"), loop,
            self._classes_synced, self._class_event))
        await start_all(self._watchers, timeout)

    def stop(self) -> None:
        for w in self._watchers:
            w.stop()

    # -- from the cluster (on the event loop) ----------------------------------------------
    def _sync(self, kind: str, items: list[dict[str, Any]]) -> None:
        self._objects[kind] = {_key(o): o for o in items}
        self._changed(kind)

    def _event(self, kind: str, event: str, obj: dict[str, Any]) -> None:
        if event == "DELETED":
            self._objects[kind].pop(_key(obj), None)
        else:
            self._objects[kind][_key(obj)] = obj
        self._changed(kind)

    def _classes_synced(self, items: list[dict[str, Any]]) -> None:
        self._classes = {str((o.get("metadata") or {}).get("name")): str((o.get("spec") or {}).get("controllerName") or "")
                         for o in items}
        self._changed("GatewayClass")

    def _class_event(self, event: str, obj: dict[str, Any]) -> None:
        name = str((obj.get("metadata") or {}).get("name"))
        if event == "DELETED":
            self._classes.pop(name, None)
        else:
            self._classes[name] = str((obj.get("spec") or {}).get("controllerName") or "")
        self._changed("GatewayClass")

    def _changed(self, kind: str) -> None:
        """Push ``kind`` to the store, and what depends on it: a GatewayClass decides whose its
        Gateways are, and a Gateway whose its routes are (a GatewayClass itself is not stored)."""
        for pushed in DEPENDENTS.get(kind, (kind,)):
            self._push(pushed)

    def _elsewhere(self, kind: str, namespace: str, obj: dict[str, Any]) -> bool:
        """Another controller's object: an Ingress of another class (or none), a Gateway of another
        class or of a class another controller claims, a route on such a Gateway. Not ours to read,
        judge or write the status of."""
        if kind == "Ingress":
            return not ingress.is_ours(obj)
        if kind == "Gateway":
            return self._foreign_class(str((obj.get("spec") or {}).get("gatewayClassName")))
        parent = route_parent(obj) if kind == "HTTPRoute" else None
        return (parent is not None and parent.get("kind", "Gateway") == "Gateway" and parent.get("group", GATEWAY_GROUP) == GATEWAY_GROUP
                and self.foreign_gateway(str(parent.get("namespace") or namespace), str(parent.get("name"))))

    def _foreign_class(self, class_name: str) -> bool:
        claimed = self._classes.get(class_name)
        return class_name not in GATEWAY_CLASSES or (claimed is not None and not claimed.startswith(OUR_CONTROLLERS))

    def _push(self, kind: str) -> None:
        entries: dict[tuple[str, str, str], tuple[Resource, float | None]] = {}
        for (ns, name), obj in self._objects[kind].items():
            if self._elsewhere(kind, ns, obj):
                self.rejected.pop((kind, ns, name), None)
                continue
            result = read(obj)
            if isinstance(result, PolicyError):
                if self.rejected.get((kind, ns, name)) != str(result):
                    log.warning("ignoring %s", result)
                self.rejected[(kind, ns, name)] = str(result)
                continue
            self.rejected.pop((kind, ns, name), None)
            entries[result[0].key] = result
        self.store.sync(kind, entries)
        for listener in self.on_change:
            listener(kind)

    def object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The cluster's object as last seen, valid or not (None: there is none)."""
        return self._objects[kind].get((namespace, name))

    def foreign_gateway(self, namespace: str, name: str) -> bool:
        """A Gateway of another class, or of a class a GatewayClass gives another controller (an
        Istio on the same cluster claims istio): neither its status nor its routes' are ours to
        write, nor its faults ours to report."""
        gateway = self.object("Gateway", namespace, name)
        return gateway is not None and self._foreign_class(str((gateway.get("spec") or {}).get("gatewayClassName")))

    def elsewhere(self) -> list[tuple[str, str, str, str]]:
        """(namespace, name, class, controller) of each Gateway of a class meshdojo would serve
        (istio, meshdojo) that a GatewayClass gives another controller: left to it, with its routes."""
        out = []
        for (namespace, name), obj in sorted(self._objects["Gateway"].items()):
            class_name = str((obj.get("spec") or {}).get("gatewayClassName"))
            if class_name in GATEWAY_CLASSES and self._foreign_class(class_name):
                out.append((namespace, name, class_name, self._classes[class_name]))
        return out

    def ignored(self) -> list[tuple[str, str, str, dict[str, Any], str]]:
        """(kind, namespace, name, the object, why) of each object the validator refused, and the
        control plane therefore ignores — the API server took it (its schema checks the shape),
        ours checks the meaning. Another controller's objects are never read (see _elsewhere)."""
        return [(kind, namespace, name, obj, why) for (kind, namespace, name), why in sorted(self.rejected.items())
                if (obj := self.object(kind, namespace, name)) is not None]

    def generations(self, kind: str) -> dict[tuple[str, str], int]:
        """(namespace, name) -> metadata.generation of each object of ``kind`` (a status's observedGeneration)."""
        return {key: int((obj.get("metadata") or {}).get("generation") or 1) for key, obj in self._objects[kind].items()}

    # -- to the cluster (blocking) ---------------------------------------------------------
    def dynamic_client(self) -> Any:
        """One DynamicClient (its API discovery is done once), for the writes to the cluster."""
        with self._dynamic_lock:
            if self._dynamic is None:
                from kubernetes import dynamic

                self._dynamic = dynamic.DynamicClient(self._api)
            return self._dynamic

    def write(self, documents: list[dict[str, Any]]) -> None:
        """Server-side apply each (already validated) document as a CR."""
        dyn = self.dynamic_client()
        for doc in documents:
            meta = doc["metadata"]
            dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"]).server_side_apply(
                body=doc, name=meta["name"], namespace=meta["namespace"], field_manager=FIELD_MANAGER, force_conflicts=True)

    def remove(self, kind: str, namespace: str, name: str) -> bool:
        from kubernetes.dynamic.exceptions import NotFoundError

        api_version = policyschema.KINDS[kind][0]
        try:
            self.dynamic_client().resources.get(api_version=api_version, kind=policyschema.kube_kind(kind)).delete(
                name=name, namespace=namespace)
        except NotFoundError:
            return False
        return True


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace", ""), meta.get("name", ""))
