"""The control plane's policy resources: applied atomically, expired when their ``duration``
runs out, saved in the state directory, and pushed to proxies as a snapshot per namespace
whenever anything changes."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from controlplane import serviceannotations
from controlplane.policy import PolicyError, Resource, parse

CHANGES_KEPT = 500


class PolicyStore:
    def __init__(self, clock: Callable[[], float] = time.time, on_change: Callable[[PolicyStore], None] | None = None,
                 selectors: Callable[[], dict[tuple[str, str], dict[str, str]]] | None = None,
                 annotations: Callable[[], dict[tuple[str, str], dict[str, str]]] | None = None) -> None:
        self._clock = clock
        self._on_change = on_change
        self.selectors = selectors or dict  # services' pod selectors: proxies need them for Service-targeted policies
        self.annotations = annotations or dict  # services' Linkerd annotations: proxies derive policies from them
        self.keys: Callable[[], list[dict[str, Any]]] = list  # RequestAuthentication issuers' keys (controlplane.jwks)
        self._resources: dict[tuple[str, str, str], tuple[Resource, float | None]] = {}  # -> (resource, expires_at)
        self._watchers: dict[str | None, set[asyncio.Queue[dict[str, Any] | None]]] = {}
        self.version = 0
        self.changes: deque[dict[str, Any]] = deque(maxlen=CHANGES_KEPT)  # what happened, for reports
        # Kubernetes mode: where applies and deletes are written (controlplane.kube.policies.KubePolicies),
        # and what the cluster holds that the control plane cannot use. None: this store is the truth.
        self.cluster: Any = None

    # -- reads ---------------------------------------------------------------------------
    def list(self, kind: str | None = None, namespace: str | None = None, name: str | None = None) -> list[tuple[Resource, float | None]]:
        return [entry for key, entry in sorted(self._resources.items())
                if (kind is None or key[0] == kind) and (namespace is None or key[1] == namespace) and (name is None or key[2] == name)]

    def snapshot(self, namespace: str | None) -> dict[str, Any]:
        """The resources of ``namespace`` (None: of every namespace)."""
        return {"type": "snapshot", "version": self.version, "namespace": namespace,
                "resources": [_wire(r, exp) for r, exp in self.list(namespace=namespace)],
                "selectors": [{"namespace": ns, "name": name, "selector": sel} for (ns, name), sel in sorted(self.selectors().items())],
                "annotations": [{"namespace": ns, "name": name, "annotations": ann} for (ns, name), ann in sorted(self.annotations().items())
                                if namespace is None or ns == namespace],
                "jwks": self.keys()}

    def effective(self, kind: str | None = None, namespace: str | None = None) -> tuple[list[Resource], list[str]]:
        """The resources in force as the proxies see them — with what the Services' Linkerd
        annotations add (controlplane.serviceannotations) — and what of those could not be used."""
        resources, notes = serviceannotations.derive([r for r, _ in self.list(namespace=namespace)],
                                                     {k: v for k, v in self.annotations().items() if namespace is None or k[0] == namespace})
        return [r for r in resources if kind is None or r.kind == kind], notes

    def refresh(self) -> None:
        """Push a new snapshot although no resource changed (a service's selector or annotations did)."""
        self._changed({None}, persist=False)

    # -- writes --------------------------------------------------------------------------
    def validate(self, documents: list[tuple[str, int, Any]], default_namespace: str = "default") -> list[Resource]:
        """Every document parsed, or PolicyErrors naming each bad one."""
        parsed, errors = [], []
        for source, index, raw in documents:
            try:
                parsed.append(parse(raw, source, index, default_namespace))
            except PolicyError as exc:
                errors.append(exc)
        if errors:
            raise PolicyErrors(errors)
        return parsed

    def sync(self, kind: str, entries: dict[tuple[str, str, str], tuple[Resource, float | None]]) -> None:
        """Make the resources of ``kind`` exactly ``entries`` (Kubernetes mode: what the cluster holds)."""
        now = self._clock()
        entries = {key: e for key, e in entries.items() if e[1] is None or e[1] > now}
        current = {key: e for key, e in self._resources.items() if key[0] == kind}
        changed = set()
        for key in current.keys() - entries.keys():
            del self._resources[key]
            changed.add(key[1])
            self._record(now, "deleted", key)
        for key, (resource, expires) in entries.items():
            old = current.get(key)
            if old is None or old[0].document != resource.document or old[1] != expires:
                self._resources[key] = (resource, expires)
                changed.add(key[1])
                self._record(now, "created" if old is None else "configured", key)
        self._changed(changed)

    def apply(self, documents: list[tuple[str, int, Any]], default_namespace: str = "default") -> list[dict[str, str]]:
        """Validate every document, then apply them all, or none (raises a list of PolicyError)."""
        parsed = self.validate(documents, default_namespace)
        now = self._clock()
        results, changed = [], set()
        for resource in parsed:
            old = self._resources.get(resource.key)
            action = "created" if old is None else ("unchanged" if old[0].document == resource.document else "configured")
            duration = getattr(resource.spec, "duration", None)
            expires = now + duration if duration is not None else None
            if action != "unchanged" or expires is not None:
                self._resources[resource.key] = (resource, expires)
                changed.add(resource.namespace)
            if action != "unchanged":
                self._record(now, action, resource.key)
            results.append({"kind": resource.kind, "namespace": resource.namespace, "name": resource.name, "action": action})
        self._changed(changed)
        return results

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        if self._resources.pop((kind, namespace, name), None) is None:
            return False
        self._record(self._clock(), "deleted", (kind, namespace, name))
        self._changed({namespace})
        return True

    def expire(self) -> list[tuple[str, str, str]]:
        now = self._clock()
        gone = [key for key, (_r, exp) in self._resources.items() if exp is not None and exp <= now]
        for key in gone:
            del self._resources[key]
            self._record(now, "expired", key)
        if gone:
            self._changed({key[1] for key in gone})
        return gone

    def restore(self, saved: list[dict[str, Any]]) -> None:
        now = self._clock()
        for i, item in enumerate(saved):
            resource = parse(item["document"], "saved state", i)
            expires = item.get("expiresAt")
            if expires is None or expires > now:
                self._resources[resource.key] = (resource, expires)

    def to_json(self) -> list[dict[str, Any]]:
        return [{"document": r.document, "expiresAt": exp} for r, exp in self.list()]

    def _record(self, when: float, action: str, key: tuple[str, str, str]) -> None:
        self.changes.append({"time": when, "action": action, "kind": key[0], "namespace": key[1], "name": key[2]})

    # -- watches -------------------------------------------------------------------------
    def watch(self, namespace: str | None) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=4)
        queue.put_nowait(self.snapshot(namespace))
        self._watchers.setdefault(namespace, set()).add(queue)
        return queue

    def unwatch(self, namespace: str | None, queue: asyncio.Queue) -> None:
        self._watchers.get(namespace, set()).discard(queue)

    def close_watches(self) -> None:
        for queues in self._watchers.values():
            for queue in queues:
                _replace(queue, None)
        self._watchers.clear()

    def _changed(self, namespaces: set[str | None], persist: bool = True) -> None:
        if not namespaces:
            return
        self.version += 1
        for namespace in {*namespaces, None}:
            for queue in list(self._watchers.get(namespace, ())):
                _replace(queue, self.snapshot(namespace))  # snapshots supersede each other: keep only the newest
        if persist and self._on_change is not None:
            self._on_change(self)


class PolicyErrors(ValueError):
    def __init__(self, errors: list[PolicyError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


def _replace(queue: asyncio.Queue, item: Any) -> None:
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(item)


def _wire(resource: Resource, expires_at: float | None) -> dict[str, Any]:
    return {"document": resource.document, "expiresAt": expires_at}
