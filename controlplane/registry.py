"""The service registry and its watchers.

Services and their endpoints are plain values; every change is turned into discovery events
and offered to each watcher of that service. A watcher that falls behind (its queue is full)
is cut off and reconnects — it then gets a fresh snapshot — so one slow proxy never holds up
the control plane or the other proxies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from controlplane.protocol import Endpoint, fqdn

WATCH_QUEUE_SIZE = 256


@dataclass
class Service:
    namespace: str
    name: str
    ports: tuple[int, ...] = ()
    endpoints: dict[str, Endpoint] = field(default_factory=dict)  # by endpoint id
    selector: dict[str, str] = field(default_factory=dict)  # the pod labels it selects (for workload-selected policies)
    annotations: dict[str, str] = field(default_factory=dict)  # its Linkerd annotations (controlplane.serviceannotations)

    @property
    def fqdn(self) -> str:
        return fqdn(self.name, self.namespace)

    def snapshot_event(self, redirects: dict[str, tuple[str, int]] | None = None) -> dict[str, Any]:
        """Every endpoint; those in ``redirects`` (endpoint id -> (address, port)) point at a
        relay of the control plane instead, with the same identity (see controlplane.relay)."""
        if not self.endpoints:
            return {"type": "no_endpoints", "snapshot": True, "service": self.fqdn}
        redirects = redirects or {}
        return {
            "type": "add",
            "snapshot": True,
            "service": self.fqdn,
            "endpoints": [(replace(ep, address=redirects[eid][0], port=redirects[eid][1], labels=ep.labels) if eid in redirects else ep).to_json()
                          for eid, ep in self.endpoints.items()],
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "fqdn": self.fqdn,
            "ports": list(self.ports),
            "selector": dict(self.selector),
            **({"annotations": dict(self.annotations)} if self.annotations else {}),
            "endpoints": {eid: ep.to_json() for eid, ep in sorted(self.endpoints.items())},
        }


class Watch:
    """One subscriber's queue of events for one service. ``None`` means: you were cut off."""

    def __init__(self, key: tuple[str, str], client: tuple[str, str] | None = None) -> None:
        self.key = key
        self.client = client  # (namespace, instance) of the watching proxy, when it said
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(WATCH_QUEUE_SIZE)
        self.closed = False

    def offer(self, event: dict[str, Any] | None) -> bool:
        if self.closed:
            return False
        try:
            self.queue.put_nowait(event)
            return True
        except asyncio.QueueFull:
            self.closed = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)
            return False


class UnknownService(KeyError):
    pass


class Registry:
    def __init__(self, on_change: Callable[[Registry], None] | None = None) -> None:
        self._services: dict[tuple[str, str], Service] = {}
        self._watches: dict[tuple[str, str], set[Watch]] = {}
        self._on_change = on_change
        self.version = 0
        self.source: str | None = None  # "the Kubernetes cluster" in Kubernetes mode: the operator API may not write
        # (namespace, service, client) -> endpoint id -> relay port; set by the relay manager
        self.redirector: Callable[[str, str, tuple[str, str] | None], dict[str, tuple[str, int]]] | None = None

    def _changed(self) -> None:
        self.version += 1
        if self._on_change is not None:
            self._on_change(self)

    # -- persistence -------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"services": [s.to_json() for s in self.services()]}

    def load_json(self, raw: dict[str, Any]) -> None:
        """Restore services and endpoints saved by :meth:`to_json` (before any watch exists)."""
        for svc in raw.get("services", []):
            service = Service(svc["namespace"], svc["name"], tuple(svc.get("ports", ())), selector=dict(svc.get("selector") or {}),
                              annotations=dict(svc.get("annotations") or {}))
            for eid, ep in svc.get("endpoints", {}).items():
                service.endpoints[eid] = Endpoint.from_json(ep)
            self._services[(service.namespace, service.name)] = service

    # -- reads -----------------------------------------------------------------
    def get(self, namespace: str, name: str) -> Service | None:
        return self._services.get((namespace, name))

    def has(self, namespace: str, name: str) -> bool:
        """Is there a Service of that name (the predicate the routes' status and warnings ask)?"""
        return (namespace, name) in self._services

    def services(self) -> list[Service]:
        return [self._services[key] for key in sorted(self._services)]

    def watcher_count(self) -> int:
        return sum(len(ws) for ws in self._watches.values())

    # -- writes ----------------------------------------------------------------
    def selectors(self) -> dict[tuple[str, str], dict[str, str]]:
        """Every service's pod selector (services without one select nothing)."""
        return {key: dict(s.selector) for key, s in self._services.items() if s.selector}

    def annotations(self) -> dict[tuple[str, str], dict[str, str]]:
        """Every service's Linkerd annotations (services without any are left out)."""
        return {key: dict(s.annotations) for key, s in self._services.items() if s.annotations}

    def put_service(self, namespace: str, name: str, ports: tuple[int, ...], selector: dict[str, str] | None = None,
                    annotations: dict[str, str] | None = None) -> Service:
        """``selector`` and ``annotations`` None: keep what the service has."""
        service = self._services.get((namespace, name))
        if service is None:
            service = self._services[(namespace, name)] = Service(namespace, name, ports, selector=dict(selector or {}),
                                                                  annotations=dict(annotations or {}))
        else:
            service.ports = ports
            if selector is not None:
                service.selector = dict(selector)
            if annotations is not None:
                service.annotations = dict(annotations)
        self._changed()
        return service

    def delete_service(self, namespace: str, name: str) -> bool:
        service = self._services.pop((namespace, name), None)
        if service is None:
            return False
        self._changed()
        for watch in self._watches.pop((namespace, name), set()):
            watch.offer({"type": "no_endpoints", "service": service.fqdn})
            watch.offer(None)
        return True

    def put_endpoint(self, namespace: str, name: str, endpoint_id: str, endpoint: Endpoint) -> None:
        service = self._services.get((namespace, name))
        if service is None:
            raise UnknownService(f"service {name}.{namespace} is not registered")
        previous = service.endpoints.get(endpoint_id)
        if previous == endpoint and previous.labels == endpoint.labels:
            return
        service.endpoints[endpoint_id] = endpoint
        self._changed()
        if previous is not None and previous.key != endpoint.key:
            self._publish(service, {"type": "remove", "service": service.fqdn, "endpoints": [_addr(previous)]})
        self._publish(service, {"type": "add", "service": service.fqdn, "endpoints": [endpoint.to_json()]})

    def delete_endpoint(self, namespace: str, name: str, endpoint_id: str) -> bool:
        service = self._services.get((namespace, name))
        if service is None or endpoint_id not in service.endpoints:
            return False
        endpoint = service.endpoints.pop(endpoint_id)
        self._changed()
        if any(other.key == endpoint.key for other in service.endpoints.values()):
            return True
        self._publish(service, {"type": "remove", "service": service.fqdn, "endpoints": [_addr(endpoint)]})
        if not service.endpoints:
            self._publish(service, {"type": "no_endpoints", "service": service.fqdn})
        return True

    # -- watches ---------------------------------------------------------------
    def watch(self, namespace: str, name: str, client: tuple[str, str] | None = None) -> Watch:
        service = self._services.get((namespace, name))
        if service is None:
            raise UnknownService(f"service {name}.{namespace} is not registered")
        watch = Watch((namespace, name), client)
        watch.offer(service.snapshot_event(self._redirects(service, watch)))
        self._watches.setdefault((namespace, name), set()).add(watch)
        return watch

    def close_watches(self) -> None:
        """End every watch stream (on shutdown: clients re-watch, elsewhere or later)."""
        for watches in list(self._watches.values()):
            for watch in list(watches):
                watch.offer(None)
        self._watches.clear()

    def unwatch(self, watch: Watch) -> None:
        watches = self._watches.get(watch.key)
        if watches is not None:
            watches.discard(watch)
            if not watches:
                del self._watches[watch.key]

    def refresh(self, namespace: str, name: str) -> None:
        """A fresh snapshot to every watcher of a service (its redirects changed)."""
        service = self._services.get((namespace, name))
        if service is None:
            return
        for watch in list(self._watches.get((namespace, name), ())):
            if not watch.offer(service.snapshot_event(self._redirects(service, watch))):
                self.unwatch(watch)

    def _redirects(self, service: Service, watch: Watch) -> dict[str, tuple[str, int]]:
        return self.redirector(service.namespace, service.name, watch.client) if self.redirector is not None else {}

    def _publish(self, service: Service, event: dict[str, Any]) -> None:
        for watch in list(self._watches.get((service.namespace, service.name), ())):
            redirects = self._redirects(service, watch)  # a relayed watcher gets snapshots, rewritten
            if not watch.offer(service.snapshot_event(redirects) if redirects else event):
                self.unwatch(watch)


def _addr(endpoint: Endpoint) -> dict[str, Any]:
    return {"address": endpoint.address, "port": endpoint.port}
