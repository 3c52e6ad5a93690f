"""How the local supervisor tells the control plane what runs — what a kubelet and the
EndpointSlice controller tell the API server on a cluster: each ready instance as an endpoint
of its services and as a workload for telemetry, taken out again when it stops; and
``prometheus-targets.json`` for a real Prometheus next to the sandbox.

Each call is one idempotent PUT or DELETE; a failure is logged and retried by the supervisor's
next round (the instance stays unregistered)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from controlplane.gatewayapi import GATEWAY_SERVICE_ACCOUNT
from controlplane.spiffe import SpiffeId
from controlplane.statefiles import write_json
from sandbox.cpapi import ApiError, OperatorApi
from sandbox.instances import Instance, gateway_name

log = logging.getLogger("meshdojo.supervisor")


def endpoint_of(inst: Instance) -> dict[str, Any]:
    """The instance as discovery advertises it: its sidecar's inbound listener when meshed."""
    meshed = inst.proxy is not None
    return {"address": "127.0.0.1", "port": inst.ports["inbound"] if meshed else inst.app_port,
            "identity": inst.identity if meshed else None, "meshed": meshed,
            "labels": dict(inst.deployment.labels), "instance": inst.name, "deployment": inst.deployment.name,
            "podPort": inst.deployment.container.port or 0, "podPortName": inst.deployment.container.port_name}


def register(api: OperatorApi, inst: Instance) -> None:
    try:
        for service in inst.services:
            api.put_endpoint(inst.deployment.namespace, service, inst.name, endpoint_of(inst))
        api.call("PUT", f"/v1/workloads/{inst.deployment.namespace}/{inst.name}", {
            "deployment": inst.deployment.name, "identity": inst.identity if inst.meshed else None, "meshed": inst.meshed,
            "admin": inst.ports.get("admin") if inst.meshed else None})
        inst.registered = True
    except ApiError as exc:
        log.warning("could not register %s yet: %s", inst.name, exc)


def register_gateway(api: OperatorApi, demo: str, namespace: str, ports: dict[str, int]) -> bool:
    """A gateway's traffic is telemetry too: its edges (gateway -> web) show in 'edges' and the UI."""
    try:
        api.call("PUT", f"/v1/workloads/{namespace}/{gateway_name(demo)}", {
            "deployment": gateway_name(demo), "identity": SpiffeId(namespace, GATEWAY_SERVICE_ACCOUNT).uri,
            "meshed": True, "admin": ports.get("admin")})
        return True
    except ApiError as exc:
        log.warning("could not register %s-ingress for telemetry yet: %s", demo, exc)
        return False


def deregister(api: OperatorApi, inst: Instance, forget: bool = False) -> None:
    """Take it out of its services; with ``forget``, out of telemetry too (it is gone, not restarting)."""
    try:
        for service in inst.services:
            api.delete_endpoint(inst.deployment.namespace, service, inst.name)
        if forget:
            api.call("DELETE", f"/v1/workloads/{inst.deployment.namespace}/{inst.name}")
    except ApiError as exc:
        log.warning("could not deregister %s: %s", inst.name, exc)
    inst.registered = False


def prometheus_targets(instances: list[Instance]) -> list[dict[str, Any]]:
    """Every sidecar's /metrics in Prometheus' file_sd format (see docs/observability.md)."""
    return [{"targets": [f"127.0.0.1:{i.ports['admin']}"],
             "labels": {"namespace": i.deployment.namespace, "deployment": i.deployment.name, "instance_name": i.name}}
            for i in instances if i.meshed and i.ports.get("admin")]


def write_prometheus_targets(root: Path, targets: list[dict[str, Any]]) -> None:
    write_json(root / "prometheus-targets.json", targets)
