"""The trust anchor, where proxies can mount it: a ConfigMap ``meshdojo-trust-anchor`` in every
namespace (a pod mounts ConfigMaps of its own namespace only), kept by the control plane as
Istio's keeps ``istio-ca-root-cert``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from controlplane.injector import EXCLUDED_NAMESPACES, TRUST_ANCHOR_CONFIGMAP
from controlplane.kube.watcher import Watcher, start_all

log = logging.getLogger("meshdojo.controlplane.kube")


def configmap(namespace: str, anchor_pem: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": TRUST_ANCHOR_CONFIGMAP, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "meshdojo"}},
            "data": {"ca.crt": anchor_pem}}


class TrustAnchorPublisher:
    def __init__(self, api_client: Any, anchor_pem: str) -> None:
        self._api = api_client
        self.anchor_pem = anchor_pem
        self._watcher: Watcher | None = None
        self.published: set[str] = set()
        self.namespaces: dict[str, dict[str, Any]] = {}  # name -> metadata (the injector reads their annotations)

    async def start(self, timeout: float = 30.0) -> None:
        from kubernetes import client

        core = client.CoreV1Api(self._api)
        loop = asyncio.get_running_loop()
        self._watcher = Watcher("namespaces", core.list_namespace, loop, self._sync, self._event)
        await start_all([self._watcher], timeout)

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()

    def namespace_meta(self, name: str) -> dict[str, Any] | None:
        return self.namespaces.get(name)

    def _sync(self, items: list[dict[str, Any]]) -> None:
        self.namespaces.clear()
        for ns in items:
            self._event("ADDED", ns)

    def _event(self, kind: str, ns: dict[str, Any]) -> None:
        name = (ns.get("metadata") or {}).get("name", "")
        if kind == "DELETED":
            self.namespaces.pop(name, None)
            self.published.discard(name)
            return
        self.namespaces[name] = ns.get("metadata") or {}
        if name not in EXCLUDED_NAMESPACES[:3] and name not in self.published and (ns.get("status") or {}).get("phase") != "Terminating":
            self.published.add(name)
            loop = asyncio.get_running_loop()
            loop.run_in_executor(None, self._publish, name, loop)

    def _publish(self, namespace: str, loop: asyncio.AbstractEventLoop) -> None:
        """In a thread: create or correct the ConfigMap; on failure, the namespace's next event tries again."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        core = client.CoreV1Api(self._api)
        body = configmap(namespace, self.anchor_pem)
        try:
            core.create_namespaced_config_map(namespace, body)
        except ApiException as exc:
            if exc.status == 409:  # there already: make sure it holds this anchor
                try:
                    core.replace_namespaced_config_map(TRUST_ANCHOR_CONFIGMAP, namespace, body)
                    return
                except ApiException as again:
                    exc = again
            log.warning("trust anchor ConfigMap in %s: %s %s", namespace, exc.status, exc.reason)
            loop.call_soon_threadsafe(self.published.discard, namespace)
