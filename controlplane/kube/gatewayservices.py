"""A Service per Gateway on the cluster, named as Istio names the one it deploys for a Gateway
(``<gateway>-<gatewayClassName>``: ``bookinfo-gateway-istio``), so Istio's tasks run as written:
``kubectl port-forward svc/bookinfo-gateway-istio 8080:80``, and ``kubectl get gateway`` shows
that Service as the ADDRESS.

Istio deploys a gateway per Gateway; here the namespace's ingress gateway (``meshdojo up``
runs one per demo) serves every Gateway of its namespace, so each Gateway's Service selects
that gateway's pods, one port per listener port (HTTP listeners to the gateway's HTTP port,
HTTPS ones to its TLS port), of the type Istio's ``networking.istio.io/service-type`` annotation
on the Gateway names (ClusterIP unless it says NodePort or LoadBalancer: Istio's default is a
LoadBalancer, which a kind cluster never gives an address, so Istio's tasks annotate ClusterIP
first — here that is the default, and the annotation still works). The Service is owned by its
Gateway (``ownerReferences``): the cluster's garbage collector deletes it with the Gateway. The control plane only creates and
patches Services, only in the namespaces of its ingress gateways (a Role there).

:func:`desired` is pure; :class:`GatewayServices` applies it (server-side apply, only what
changed since the last pass).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from controlplane.gatewayapi import GATEWAY_LABEL, service_name
from controlplane.injector import GATEWAY_HTTPS_PORT, OUTBOUND_PORT

log = logging.getLogger("meshdojo.controlplane.kube")
Key = tuple[str, str]
FIELD_MANAGER = "meshdojo-controlplane"
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"  # as Istio labels the Service of a Gateway
RETRY_AFTER = 30.0  # seconds before a refused Service is applied again unchanged


def gateway_selectors(services: dict[Key, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """namespace -> the pod selector of its ingress gateway's Service (the one with the gateway label)."""
    return {namespace: dict((service.get("spec") or {}).get("selector") or {})
            for (namespace, _), service in sorted(services.items())
            if GATEWAY_LABEL in ((service.get("metadata") or {}).get("labels") or {}) and (service.get("spec") or {}).get("selector")}


def desired(resources: list[Any], uid_of: Callable[[str, str], str | None], selectors: dict[str, dict[str, str]]) -> dict[Key, dict]:
    """(namespace, Service name) -> the Service of each valid Gateway in a namespace where an
    ingress gateway runs (``selectors``), owned by the Gateway (``uid_of``: its uid, or None
    while the cluster's object is not known)."""
    out: dict[Key, dict] = {}
    for gateway in sorted((r for r in resources if r.kind == "Gateway"), key=lambda r: r.key):
        selector, uid = selectors.get(gateway.namespace), uid_of(gateway.namespace, gateway.name)
        if not selector or uid is None:
            continue
        ports: dict[int, dict[str, Any]] = {}
        for listener in gateway.spec.listeners:  # one Service port per listener port: the first listener's protocol decides
            secure = listener.protocol == "HTTPS"
            ports.setdefault(listener.port, {"name": f"{'https' if secure else 'http'}-{listener.port}", "port": listener.port,
                                             "protocol": "TCP", "targetPort": GATEWAY_HTTPS_PORT if secure else OUTBOUND_PORT})
        name = service_name(gateway.name, gateway.spec.class_name)
        out[(gateway.namespace, name)] = {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": gateway.namespace,
                         "labels": {GATEWAY_NAME_LABEL: gateway.name, "app.kubernetes.io/managed-by": "meshdojo"},
                         "ownerReferences": [{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                                              "name": gateway.name, "uid": uid, "controller": True}]},
            "spec": {"type": gateway.spec.service_type, "selector": dict(selector), "ports": [ports[p] for p in sorted(ports)]},
        }
    return out


class GatewayServices:
    """Applies :func:`desired` after each change (``update()``): one pass at a time, only the
    Services that changed since they were last applied."""

    def __init__(self, dynamic_client: Callable[[], Any], wanted: Callable[[], dict[Key, dict]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._dynamic = dynamic_client
        self._wanted = wanted
        self._clock = clock
        self.applied: dict[Key, dict] = {}
        self._refused: dict[Key, tuple[dict, str, float]] = {}  # the manifest refused, why, when: not retried before RETRY_AFTER
        self._pending: asyncio.Task | None = None
        self._again = False

    def update(self) -> None:
        if self._pending is not None and not self._pending.done():
            self._again = True
            return
        self._pending = asyncio.get_running_loop().create_task(self._apply())

    async def _apply(self) -> None:
        while True:
            self._again = False
            wanted = self._wanted()
            for key, service in wanted.items():
                refused = self._refused.get(key)
                if self.applied.get(key) == service or (refused and refused[0] == service and self._clock() - refused[2] < RETRY_AFTER):
                    continue  # (a refusal is not retried at every pod's change: discovery changes often)
                try:
                    await asyncio.to_thread(self._server_side_apply, service)
                    self.applied[key] = service
                    self._refused.pop(key, None)
                except Exception as exc:  # a conflict (someone else's Service), RBAC, the namespace going: said once
                    if refused is None or refused[1] != str(exc):
                        log.warning("could not apply the Service %s/%s of a Gateway: %s", *key, exc)
                    self._refused[key] = (service, str(exc), self._clock())
            for key in set(self.applied) - set(wanted):  # its Gateway went: the garbage collector deletes the Service
                del self.applied[key]
            if not self._again:
                return

    def _server_side_apply(self, service: dict) -> None:
        """Never forced: a Service of that name that another manager made (Istio's own, on a
        cluster that runs Istio too) is refused with a conflict and left as it is."""
        meta = service["metadata"]
        self._dynamic().resources.get(api_version="v1", kind="Service").server_side_apply(
            body=service, name=meta["name"], namespace=meta["namespace"], field_manager=FIELD_MANAGER, force_conflicts=False)
