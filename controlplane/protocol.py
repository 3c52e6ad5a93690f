"""What the control plane and the proxies say to each other: endpoints and discovery events.

Discovery is a streamed HTTP response of JSON lines. The first event is a full snapshot
(``add`` with ``snapshot: true``, or ``no_endpoints``); later events are deltas::

    {"type": "add", "snapshot": true, "service": "emoji.emojivoto.svc.cluster.local", "endpoints": [...]}
    {"type": "remove", "service": "...", "endpoints": [{"address": "127.0.0.1", "port": 4143}]}
    {"type": "no_endpoints", "service": "..."}
    {"type": "heartbeat"}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

CLUSTER_SUFFIX = "svc.cluster.local"
HEARTBEAT_SECONDS = 10.0
# a request's fate, as the proxies' tap events and /fates carry it: the decisions, in the order every view
# writes them (x-meshdojo-fate, `meshdojo tap`, the UI's tap); proxy/fate.py fills them in
FATE_KEYS = ("egress", "route", "no_route", "backend", "subset", "balance", "filters", "timeout", "breaker", "pool", "fault",
             "authn", "authz", "ratelimit")


class ProtocolError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One instance behind a service, as a client must reach and verify it."""

    address: str
    port: int
    identity: str | None  # the SPIFFE ID the client must see; None when unmeshed
    meshed: bool = True
    weight: int = 1
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    instance: str = ""
    deployment: str = ""  # the workload behind it (Linkerd's dst_deployment label), when known
    pod_port: int = 0  # the port its pod declares for the app (0: unknown), and that containerPort's name
    pod_port_name: str = ""  # (what a Linkerd Server names: controlplane/linkerdserver.py)

    @property
    def key(self) -> tuple[str, int]:
        return (self.address, self.port)

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "port": self.port,
            "identity": self.identity,
            "meshed": self.meshed,
            "weight": self.weight,
            "labels": dict(self.labels),
            "instance": self.instance,
            "deployment": self.deployment,
            "podPort": self.pod_port,
            "podPortName": self.pod_port_name,
        }

    @classmethod
    def from_json(cls, raw: Any) -> Endpoint:
        if not isinstance(raw, dict):
            raise ProtocolError("endpoint must be an object")
        try:
            address, port = raw["address"], raw["port"]
        except KeyError as exc:
            raise ProtocolError(f"endpoint.{exc.args[0]} is required") from None
        if not isinstance(address, str) or not isinstance(port, int) or not 0 < port < 65536:
            raise ProtocolError("endpoint.address must be a string and endpoint.port an integer 1-65535")
        meshed = raw.get("meshed", True)
        identity = raw.get("identity")
        if not isinstance(meshed, bool):
            raise ProtocolError("endpoint.meshed must be true or false")
        if meshed and not isinstance(identity, str):
            raise ProtocolError("endpoint.identity is required for a meshed endpoint")
        weight = raw.get("weight", 1)
        if not isinstance(weight, int) or weight < 0:
            raise ProtocolError("endpoint.weight must be a non-negative integer")
        labels = raw.get("labels") or {}
        if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise ProtocolError("endpoint.labels must map strings to strings")
        instance = raw.get("instance", "")
        deployment = raw.get("deployment", "")
        if not isinstance(instance, str) or not isinstance(deployment, str):
            raise ProtocolError("endpoint.instance and endpoint.deployment must be strings")
        pod_port, pod_port_name = raw.get("podPort", 0), raw.get("podPortName", "")
        if not isinstance(pod_port, int) or not 0 <= pod_port < 65536 or not isinstance(pod_port_name, str):
            raise ProtocolError("endpoint.podPort must be a port number (0: unknown) and endpoint.podPortName a string")
        return cls(address, port, identity if meshed else None, meshed, weight, labels, instance, deployment, pod_port, pod_port_name)


def encode_event(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


def decode_event(line: bytes) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"discovery event is not JSON: {exc}") from None
    if not isinstance(event, dict) or event.get("type") not in {"add", "remove", "no_endpoints", "heartbeat"}:
        raise ProtocolError(f"unknown discovery event {line[:80]!r}")
    return event


def fqdn(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.{CLUSTER_SUFFIX}"
