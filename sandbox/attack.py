"""``meshdojo attack svc/NAME``: the control plane's intruder (controlplane/intruder.py) tries
each endpoint of the service — in plaintext, and with a foreign CA's certificate — from inside
the mesh's network (on a cluster, the control plane's pod), and the learner sees what the
current mTLS mode and policies did to it."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.intruder import Outcome


@dataclass(frozen=True)
class Attacked:
    endpoint: str
    address: str
    port: int
    meshed: bool
    outcomes: list[Outcome]


def attack_service(name: str, service: str, namespace: str | None) -> list[Attacked]:
    """Every endpoint of a sandbox's service, attacked."""
    from sandbox.resources import api_for, service_namespace

    ns = service_namespace(name, service, namespace)
    answer = api_for(name).call("POST", "/v1/attack", {"namespace": ns, "service": service}, timeout=60)
    return [Attacked(r["endpoint"], r["address"], r["port"], r["meshed"], [Outcome(**a) for a in r["attempts"]])
            for r in answer["results"]]
