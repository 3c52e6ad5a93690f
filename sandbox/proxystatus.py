"""``meshdojo proxy-status``: has every sidecar got what the control plane last sent? As
``istioctl proxy-status`` says SYNCED or STALE per proxy, from what each sidecar reports it
holds (its ``/config``), not from what was sent:

    POLICIES   the policy snapshot's version the sidecar applied, against the control plane's
    ENDPOINTS  for each service the sidecar watches, its endpoints (by instance) against the
               registry's; a network fault's relay keeps the instance, so it is not a difference

:func:`rows` is pure; :func:`gather` reads the control plane, then every sidecar, then the
control plane's version again, so a change made in between is read once more rather than
shown as a stale sidecar.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sandbox.cpapi import ApiError
from sandbox.instances import gateway_rows

SYNCED, STALE, UNREACHABLE = "SYNCED", "STALE", "NOT ANSWERING"


def policy_state(held: int, latest: int) -> str:
    """A sidecar's policy snapshot against the control plane's: SYNCED or STALE (one read a
    moment after the control plane's may hold a newer one: in step too)."""
    return SYNCED if held >= latest else STALE


def _instances(endpoints: list[dict[str, Any]] | dict[str, dict[str, Any]]) -> set[str]:
    items = endpoints.values() if isinstance(endpoints, dict) else endpoints
    return {ep.get("instance") or f"{ep['address']}:{ep['port']}" for ep in items}


def rows(version: int, services: list[dict[str, Any]], sidecars: list[tuple[dict[str, Any], dict[str, Any] | None]],
         now: float) -> list[dict[str, Any]]:
    """A row per sidecar: (its workload as ``status`` lists it, its ``/config`` or None when it did not answer)."""
    registry = {s["fqdn"]: _instances(s.get("endpoints") or {}) for s in services}
    found = []
    for w, config in sidecars:
        row: dict[str, Any] = {"name": w["name"], "namespace": w["namespace"], "controlPlaneVersion": version}
        if config is None:
            found.append({**row, "policies": UNREACHABLE, "endpoints": UNREACHABLE, "stale": []})
            continue
        held = config["policies"]["version"]
        stale = []
        watched = config.get("discovery") or {}
        for name, seen in sorted(watched.items()):
            if seen.get("unknown") or not seen.get("service"):
                continue  # a name that is no Service (yet): nothing to be in step with
            want = registry.get(seen["service"], set())
            have = _instances(seen.get("endpoints") or [])
            if have != want:
                stale.append({"service": seen["service"], "name": name, "missing": sorted(want - have), "extra": sorted(have - want)})
        updated = config["policies"].get("updatedAt")
        found.append({**row, "policies": policy_state(held, version), "policyVersion": held,
                      "policyAge": None if not updated else max(0.0, now - updated),
                      "endpoints": STALE if stale else SYNCED, "services": len(watched), "stale": stale})
    return found


def gather(api: Any, status: dict[str, Any], read_config: Callable[[dict[str, Any]], dict[str, Any]],
           namespace: str | None = None, clock: Callable[[], float] = time.time) -> list[dict[str, Any]]:
    """Read the control plane, every meshed instance's sidecar, then the control plane again."""
    sidecars = [w for w in status.get("workloads", []) if w.get("meshed")]
    sidecars += gateway_rows(status)  # a local gateway: a proxy of its own
    sidecars = [w for w in sidecars if namespace is None or w["namespace"] == namespace]
    for _attempt in range(3):
        version = api.call("GET", "/v1/policies?kind=-")["version"]
        services = api.call("GET", "/v1/services")["services"]
        configs = []
        for w in sidecars:
            try:
                configs.append((w, read_config(w)))
            except (OSError, ApiError, ValueError):
                configs.append((w, None))
        if api.call("GET", "/v1/policies?kind=-")["version"] == version:
            break  # nothing changed while the sidecars were read
    return rows(version, services, configs, clock())


def table(found: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    from sandbox.observe import human_duration

    out = [("NAME", "NAMESPACE", "POLICIES", "ENDPOINTS", "POLICY UPDATED")]
    for r in found:
        if r["policies"] == UNREACHABLE:
            out.append((r["name"], r["namespace"], UNREACHABLE, UNREACHABLE, "-"))
            continue
        policies = f"{r['policies']} (v{r['policyVersion']}" + ("" if r["policies"] == SYNCED else f", control plane v{r['controlPlaneVersion']}") + ")"
        endpoints = f"{SYNCED} ({r['services']} service{'' if r['services'] == 1 else 's'})" if not r["stale"] else \
            f"{STALE}: " + ", ".join(s["service"].split(".svc.")[0] for s in r["stale"])
        age = "-" if r["policyAge"] is None else human_duration(r["policyAge"]) + " ago"
        out.append((r["name"], r["namespace"], policies, endpoints, age))
    return out
