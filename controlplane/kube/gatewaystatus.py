"""Each Gateway's ``status`` on the cluster, as Gateway API controllers write it: Accepted,
Programmed (the ingress gateway of its namespace has a ready pod), its address (that gateway's
Service) and each listener's attached routes — so ``kubectl get gateway`` shows ADDRESS and
PROGRAMMED, and ``kubectl wait --for=condition=programmed gateway/NAME`` returns, as Istio's
tasks run it.

:func:`desired` is pure; :class:`GatewayStatusWriter` compares it with what it last wrote and
patches the status subresource of the Gateways whose status changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from controlplane.gatewayapi import GATEWAY_LABEL, routes_on, takes

log = logging.getLogger("meshdojo.controlplane.kube")
GROUP, VERSION = "gateway.networking.k8s.io", "v1"
Key = tuple[str, str]


def _condition(kind: str, ok: bool, reason: str, message: str, generation: int, now: str) -> dict[str, Any]:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message,
            "observedGeneration": generation, "lastTransitionTime": now}


def desired(resources: list[Any], generations: dict[Key, int], gateways: dict[str, tuple[str, bool]], now: str) -> dict[Key, dict]:
    """(namespace, name) of each Gateway -> its status. ``gateways``: namespace -> (the address of
    its ingress gateway's Service, whether a pod of it is ready); ``now``: RFC 3339."""
    out: dict[Key, dict] = {}
    for gateway in (r for r in resources if r.kind == "Gateway"):
        key = (gateway.namespace, gateway.name)
        generation = generations.get(key, 1)
        address, ready = gateways.get(gateway.namespace, ("", False))
        if not address:
            programmed = ("NoResources", f"no ingress gateway runs in namespace {gateway.namespace}: meshdojo's gateways "
                                         "serve the Gateways of their own namespace")
        elif not ready:
            programmed = ("Pending", f"the ingress gateway {address} has no ready pod yet")
        else:
            programmed = ("Programmed", f"served by the ingress gateway {address}")
        routes = routes_on(resources, gateway)
        listeners = []
        for listener in gateway.spec.listeners:
            count = sum(1 for route in routes if takes(listener, route, gateway.namespace) is not None)
            listeners.append({"name": listener.name, "attachedRoutes": count,
                              "supportedKinds": [{"group": GROUP, "kind": "HTTPRoute"}],
                              "conditions": [_condition("Accepted", True, "Accepted", "", generation, now),
                                             _condition("Programmed", programmed[0] == "Programmed", programmed[0], "", generation, now),
                                             _condition("ResolvedRefs", True, "ResolvedRefs", "", generation, now)]})
        out[key] = {"addresses": [{"type": "Hostname", "value": address}] if address else [],
                    "conditions": [_condition("Accepted", True, "Accepted", "the Gateway is valid", generation, now),
                                   _condition("Programmed", programmed[0] == "Programmed", *programmed, generation, now)],
                    "listeners": listeners}
    return out


def _without_times(status: dict) -> Any:
    """A status compared with another: the transition times left out."""
    if isinstance(status, dict):
        return {k: _without_times(v) for k, v in status.items() if k != "lastTransitionTime"}
    if isinstance(status, list):
        return [_without_times(v) for v in status]
    return status


def _keep_times(status: dict, before: dict | None) -> dict:
    """``status`` with each condition's lastTransitionTime taken from ``before`` where that
    condition (the Gateway's, or a listener's) had the same status: a time says when it changed."""
    if before is None:
        return status

    def kept(conditions: list[dict], earlier: list[dict]) -> list[dict]:
        was = {(c["type"], c["status"]): c["lastTransitionTime"] for c in earlier}
        return [{**c, "lastTransitionTime": was.get((c["type"], c["status"]), c["lastTransitionTime"])} for c in conditions]

    listeners_before = {item["name"]: item for item in before.get("listeners", [])}
    return {**status, "conditions": kept(status["conditions"], before.get("conditions", [])),
            "listeners": [{**item, "conditions": kept(item["conditions"], listeners_before.get(item["name"], {}).get("conditions", []))}
                          for item in status["listeners"]]}


def ingress_gateways(services: dict[Key, dict[str, Any]], has_endpoints: Callable[[str, str], bool]) -> dict[str, tuple[str, bool]]:
    """namespace -> (its ingress gateway's Service address, a pod of it ready), from the Services
    that carry the gateway label."""
    out = {}
    for (namespace, name), service in sorted(services.items()):
        if GATEWAY_LABEL in ((service.get("metadata") or {}).get("labels") or {}):
            out[namespace] = (f"{name}.{namespace}.svc.cluster.local", has_endpoints(namespace, name))
    return out


class GatewayStatusWriter:
    """``update()`` after anything the status reads changed; the patches run in a thread."""

    def __init__(self, api_client: Any, read: Callable[[], tuple[list[Any], dict[Key, int], dict[str, tuple[str, bool]]]],
                 clock: Callable[[], str]) -> None:
        self._api = api_client
        self._read = read
        self._clock = clock
        self._written: dict[Key, dict] = {}  # what was last written, times included
        self._refused: dict[Key, Any] = {}  # a status the API server refused: said once, tried again at the next change
        self._pending: asyncio.Task | None = None
        self._again = False

    def update(self) -> None:
        if self._pending is not None and not self._pending.done():
            self._again = True  # one more pass once this one is done: nothing is lost, nothing piles up
            return
        self._pending = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        while True:
            self._again = False
            resources, generations, gateways = self._read()
            wanted = desired(resources, generations, gateways, self._clock())
            changed = {k: _keep_times(v, self._written.get(k)) for k, v in wanted.items()
                       if k not in self._written or _without_times(self._written[k]) != _without_times(v)}
            for key in [k for k in self._written if k not in wanted]:
                del self._written[key]
            for key, status in changed.items():
                try:
                    await asyncio.to_thread(self._patch, key, status)
                    self._written[key] = status
                    self._refused.pop(key, None)
                except Exception as exc:  # the Gateway went meanwhile, or RBAC: the next change tries again
                    if self._refused.get(key) != _without_times(status):
                        log.warning("could not write the status of Gateway %s/%s: %s", *key, exc)
                    self._refused[key] = _without_times(status)
            if not self._again:
                return

    def _patch(self, key: Key, status: dict) -> None:
        from kubernetes import client

        client.CustomObjectsApi(self._api).patch_namespaced_custom_object_status(
            GROUP, VERSION, key[0], "gateways", key[1], {"status": status})
