"""Linkerd's ``HTTPLocalRateLimitPolicy`` (``policy.linkerd.io``), as Linkerd's *Configuring Rate
Limiting* task applies it to emojivoto's web: a limit on the requests a Server's port takes,
counted by each sidecar of the pods it covers.

    total        every caller's requests together, so many a second
    identity     each caller's, by mesh identity; the callers without one (unmeshed) count as one
    overrides    a limit instead of ``identity``'s for the callers some ServiceAccounts name,
                 shared by those callers

Each limit is a bucket of ``requestsPerSecond`` requests refilled at that rate (Linkerd's proxy
uses a GCRA quota of the same burst). A request takes from ``total`` first, then from its
override or its identity's bucket; the first that is empty answers 429 and names itself in
Linkerd's words (``per-identity rate limit exceeded: 4rps``). Only the Server's traffic is
limited: nothing here is enforced by the control plane — :func:`controlplane.selection.applicable`
says which policy is in force at a workload (one a Server, the first by name; Linkerd takes one
too), and the sidecar's rate-limit layer keeps the buckets (proxy/ratelimit.py). Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controlplane.fields import FieldReader
from controlplane.linkerdschema import LINKERD_GROUP
from controlplane.schema import CORE_GROUPS
from controlplane.spiffe import SpiffeId


@dataclass(frozen=True, slots=True)
class Override:
    requests_per_second: int
    clients: tuple[str, ...]  # the SPIFFE IDs of the ServiceAccounts it names
    names: tuple[str, ...]  # the same, as sa/NAME or sa/NS/NAME (for describe)


@dataclass(frozen=True, slots=True)
class LocalRateLimitSpec:
    server: str  # the Server it targets, of its namespace
    total: int | None  # requests a second, or None: no such limit
    identity: int | None
    overrides: tuple[Override, ...] = ()

    def describe(self) -> str:
        parts = [f"total {self.total} rps"] if self.total else []
        parts += [f"{self.identity} rps per identity"] if self.identity else []
        parts += [f"{o.requests_per_second} rps for {','.join(o.names)}" for o in self.overrides]
        return ", ".join(parts) or "no limit"


def read_rate_limit(r: FieldReader, spec: Mapping[str, Any], namespace: str) -> LocalRateLimitSpec:
    """A policy already checked against its schema; what a schema cannot say is checked here."""
    target = spec["targetRef"]
    if target.get("group") not in (None, "", LINKERD_GROUP):
        raise r.fail("spec.targetRef.group", f"a Server's group is {LINKERD_GROUP}, not {target['group']!r}")
    total = spec.get("total", {}).get("requestsPerSecond")
    identity = spec.get("identity", {}).get("requestsPerSecond")
    if total is not None and identity is not None and identity > total:
        raise r.fail("spec.identity.requestsPerSecond", f"{identity} is more than total.requestsPerSecond ({total}): no "
                                                         "caller could get it (Linkerd refuses it too); lower it")
    overrides = []
    for i, raw in enumerate(spec.get("overrides", [])):
        rps = raw["requestsPerSecond"]
        if total is not None and rps > total:
            raise r.fail(f"spec.overrides[{i}].requestsPerSecond", f"{rps} is more than total.requestsPerSecond ({total}): "
                                                                  "no caller could get it (Linkerd refuses it too); lower it")
        clients, names = [], []
        for j, ref in enumerate(raw["clientRefs"]):
            if ref.get("group", "") not in CORE_GROUPS:
                raise r.fail(f"spec.overrides[{i}].clientRefs[{j}].group",
                             f"a ServiceAccount is of the core group: leave group out, not {ref['group']!r}")
            ns = ref.get("namespace") or namespace
            try:
                clients.append(SpiffeId(ns, ref["name"]).uri)
            except ValueError as exc:
                raise r.fail(f"spec.overrides[{i}].clientRefs[{j}]", str(exc)) from None
            names.append(f"sa/{ref['name']}" if ns == namespace else f"sa/{ns}/{ref['name']}")
        overrides.append(Override(rps, tuple(clients), tuple(names)))
    if total is None and identity is None and not overrides:
        raise r.fail("spec", "expected total, identity or overrides: without one there is nothing to limit")
    return LocalRateLimitSpec(target["name"], total, identity, tuple(overrides))


def targeting(server: Any, resources: Sequence[Any]) -> list[Any]:
    """The HTTPLocalRateLimitPolicies (Resources) that target ``server``, by name: Linkerd lets a
    Server have one, so a second is a conflict (the first is used)."""
    return sorted((r for r in resources if r.kind == "HTTPLocalRateLimitPolicy" and r.namespace == server.namespace
                   and r.spec.server == server.name), key=lambda r: r.name)


def warnings(resource: Any, resources: Sequence[Any], denies_everyone: Callable[[Any], bool]) -> list[str]:
    """What makes an applied HTTPLocalRateLimitPolicy do nothing, or not what its author meant.
    ``denies_everyone``: whether a Server (a Resource) lets no caller in at all (linkerdserver's)."""
    name = f"HTTPLocalRateLimitPolicy {resource.namespace}/{resource.name}"
    servers = [r for r in resources if r.kind == "Server" and r.namespace == resource.namespace and r.name == resource.spec.server]
    if not servers:
        return [f"{name} targets Server {resource.spec.server}, which is not applied in {resource.namespace}: it limits "
                "nothing until that Server is (meshdojo get servers)"]
    out = []
    first = targeting(servers[0], resources)[0]
    if first.name != resource.name:
        out.append(f"{name}: Server {resource.spec.server} already has HTTPLocalRateLimitPolicy {first.name}, which is "
                   "used (a Server takes one, the first by name): delete one of them")
    if denies_everyone(servers[0]):
        out.append(f"{name}: Server {servers[0].name} has accessPolicy deny and nothing authorizes its callers, so each "
                   "gets 403 before any limit counts; set accessPolicy: all-unauthenticated on it (as Linkerd's task does), "
                   "or authorize them")
    return out
