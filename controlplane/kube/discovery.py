"""Discovery from the cluster: Services, EndpointSlices and Pods into the registry.

Which endpoints a service has is decided by :func:`endpoints_of` (pure: the cached objects in,
``Endpoint`` values out); :class:`KubeDiscovery` keeps the caches from three watches and, after
each event, brings the registry to that decision — the registry then tells every watching
proxy what changed, as it does locally.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from controlplane.injector import ADMIN_PORT, PROXY_CONTAINER, deployment_of
from controlplane.kube.watcher import Watcher, start_all
from controlplane.protocol import Endpoint
from controlplane.registry import Registry
from controlplane.serviceannotations import linkerd_only
from controlplane.spiffe import SpiffeId

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
Key = tuple[str, str]


def is_meshed(pod: dict[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    return any(c.get("name") == PROXY_CONTAINER for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])])


def endpoints_of(slices: list[dict[str, Any]], pods: dict[Key, dict[str, Any]], namespace: str) -> dict[str, Endpoint]:
    """Ready endpoints of one service's EndpointSlices, by pod name (or address)."""
    out: dict[str, Endpoint] = {}
    for s in slices:
        ports = [p.get("port") for p in s.get("ports") or [] if p.get("port") and p.get("protocol", "TCP") == "TCP"]
        if not ports or s.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
            continue
        for ep in s.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready") is False or not ep.get("addresses"):
                continue
            ref = ep.get("targetRef") or {}
            pod = pods.get((namespace, ref.get("name", ""))) if ref.get("kind") == "Pod" else None
            address = ep["addresses"][0]
            if pod is None:
                out[address] = Endpoint(address, ports[0], None, meshed=False)
                continue
            meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
            meshed = is_meshed(pod)
            identity = SpiffeId(namespace, spec.get("serviceAccountName") or "default").uri if meshed else None
            declared = next((p for c in spec.get("containers") or [] if c.get("name") != PROXY_CONTAINER
                             for p in c.get("ports") or [] if p.get("containerPort") == ports[0]), {})
            out[meta["name"]] = Endpoint(address, ports[0], identity, meshed=meshed, labels=dict(meta.get("labels") or {}),
                                         instance=meta["name"], deployment=deployment_of(meta),
                                         pod_port=ports[0], pod_port_name=declared.get("name", ""))
    return out


def service_ports(service: dict[str, Any]) -> tuple[int, ...]:
    return tuple(p["port"] for p in (service.get("spec") or {}).get("ports") or [] if p.get("port"))


class KubeDiscovery:
    def __init__(self, api_client: Any, registry: Registry, telemetry: Any = None) -> None:
        self._api = api_client
        self.registry = registry
        self.telemetry = telemetry  # told about every pod: the meshed ones are scraped at <pod IP>:<admin port>
        self._workloads: set[Key] = set()
        self.services: dict[Key, dict[str, Any]] = {}
        self.slices: dict[Key, dict[str, Any]] = {}  # (namespace, slice name)
        self.pods: dict[Key, dict[str, Any]] = {}
        self.on_change: list[Callable[[], None]] = []  # told after the registry followed a change (the Gateways' status)
        self._watchers: list[Watcher] = []

    async def start(self, timeout: float = 30.0) -> None:
        from kubernetes import client

        loop = asyncio.get_running_loop()
        core, discovery = client.CoreV1Api(self._api), client.DiscoveryV1Api(self._api)
        self._watchers = [
            Watcher("pods", core.list_pod_for_all_namespaces, loop, functools.partial(self._sync, self.pods),
                    functools.partial(self._event, self.pods)),
            Watcher("services", core.list_service_for_all_namespaces, loop, functools.partial(self._sync, self.services),
                    functools.partial(self._event, self.services)),
            Watcher("endpointslices", discovery.list_endpoint_slice_for_all_namespaces, loop,
                    functools.partial(self._sync, self.slices), functools.partial(self._event, self.slices)),
        ]
        await start_all(self._watchers, timeout)

    def stop(self) -> None:
        for w in self._watchers:
            w.stop()

    # -- caches (on the event loop) ------------------------------------------------------
    def _sync(self, cache: dict[Key, dict[str, Any]], items: list[dict[str, Any]]) -> None:
        touched = {_key(o)[0] for o in cache.values()} | {_key(o)[0] for o in items}
        cache.clear()
        cache.update({_key(o): o for o in items})
        for namespace in touched:
            self._reconcile(namespace)

    def _event(self, cache: dict[Key, dict[str, Any]], kind: str, obj: dict[str, Any]) -> None:
        key = _key(obj)
        if kind == "DELETED":
            cache.pop(key, None)
        else:
            cache[key] = obj
        self._reconcile(key[0])

    # -- the registry follows ------------------------------------------------------------
    def _reconcile(self, namespace: str) -> None:
        """Bring the registry's services of ``namespace`` to what the caches say."""
        self._reconcile_workloads(namespace)
        wanted = {name: svc for (ns, name), svc in self.services.items() if ns == namespace}
        for service in [s for s in self.registry.services() if s.namespace == namespace and s.name not in wanted]:
            self.registry.delete_service(namespace, service.name)
        by_service: dict[str, list[dict[str, Any]]] = {}
        for (ns, _), s in self.slices.items():
            if ns == namespace:
                by_service.setdefault(((s.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL, ""), []).append(s)
        for name, svc in wanted.items():
            selector = (svc.get("spec") or {}).get("selector") or {}
            annotations = linkerd_only((svc.get("metadata") or {}).get("annotations"))
            current = self.registry.get(namespace, name)
            if (current is None or current.ports != service_ports(svc) or current.selector != selector
                    or current.annotations != annotations):
                current = self.registry.put_service(namespace, name, service_ports(svc), selector, annotations)
            endpoints = endpoints_of(by_service.get(name, []), self.pods, namespace)
            for eid in [eid for eid in current.endpoints if eid not in endpoints]:
                self.registry.delete_endpoint(namespace, name, eid)
            for eid, endpoint in endpoints.items():
                self.registry.put_endpoint(namespace, name, eid, endpoint)
        for listener in self.on_change:
            listener()

    def _reconcile_workloads(self, namespace: str) -> None:
        if self.telemetry is None:
            return
        running = {}
        for (ns, name), pod in self.pods.items():
            if ns == namespace and (workload := workload_of(pod)) is not None:
                running[name] = workload
        for key in [k for k in self._workloads if k[0] == namespace and k[1] not in running]:
            self.telemetry.delete_workload(*key)
            self._workloads.discard(key)
        for name, (deployment, identity, meshed, admin) in running.items():
            self.telemetry.put_workload(namespace, name, deployment, identity, meshed, admin)
            self._workloads.add((namespace, name))


def workload_of(pod: dict[str, Any]) -> tuple[str, str | None, bool, str | None] | None:
    """(deployment, identity, meshed, admin address) of a running pod, or None."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    if meta.get("deletionTimestamp") or status.get("phase") != "Running":
        return None
    meshed = is_meshed(pod)
    identity = SpiffeId(meta.get("namespace", ""), spec.get("serviceAccountName") or "default").uri if meshed else None
    admin = f"{status['podIP']}:{ADMIN_PORT}" if meshed and status.get("podIP") else None
    return deployment_of(meta) or meta.get("name", ""), identity, meshed, admin


def _key(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace", ""), meta.get("name", ""))
