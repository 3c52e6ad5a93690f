"""Network faults, below HTTP, like toxiproxy's toxics: what one is, how it is validated, and
which connections it applies to. Pure; the relays that carry them out are in
:mod:`controlplane.relay`.

A fault applies to an *edge*: connections from clients (every meshed client, or one
deployment's instances) to a target (a service's endpoints, or one deployment's instances).
A partition applies both ways between two deployments. ``wire`` is not a fault: a relay that
only watches, for ``meshdojo wire``.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from typing import Any

from controlplane.fields import FieldReader

KINDS = ("latency", "bandwidth", "reset", "blackhole", "partition", "wire")
DEFAULT_DURATION = 300.0  # faults revert by themselves: 5 minutes unless told otherwise
MAX_DURATION = 24 * 3600.0
_RATE = re.compile(r"^(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB)/s$")
_RATE_UNITS = {"B": 1, "KB": 1000, "KiB": 1024, "MB": 1000 * 1000, "MiB": 1024 * 1024}
WHAT_TO_WATCH = {
    "latency": "responses on this edge arrive later by about the latency (± jitter): watch LATENCY_P50 in 'meshdojo stat'",
    "bandwidth": "large responses crawl at the given rate; small ones barely change: watch LATENCY_P99",
    "reset": "every new connection is reset: callers see 502/503 (connect_failed) unless a retry hides it",
    "blackhole": "connections are accepted and never answered: callers wait for their timeouts (504s, or hangs without one)",
    "partition": "neither side reaches the other: connects time out both ways; other edges are untouched",
    "wire": "nothing changes: the relay only shows what crosses the network",
}


class NetFaultError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class _Reader(FieldReader):
    unknown_hint = "known fields"

    def fail(self, field: str, message: str) -> Exception:
        return NetFaultError(field, message)


@dataclass(frozen=True)
class Workloads:
    """A set of instances: a service's endpoints, or a deployment's instances — or just one of
    them (``instance``, e.g. emoji-1: Linkerd's failure-accrual lesson needs one bad replica)."""

    namespace: str
    service: str | None = None
    deployment: str | None = None
    instance: str | None = None

    def describe(self) -> str:
        base = f"svc/{self.service}.{self.namespace}" if self.service else f"deploy/{self.deployment}.{self.namespace}"
        return f"{base} (instance {self.instance} only)" if self.instance else base

    def includes(self, namespace: str, service: str, deployment: str | None, instance: str | None) -> bool:
        return (self.namespace == namespace and (self.service is None or self.service == service)
                and (self.deployment is None or self.deployment == deployment)
                and (self.instance is None or self.instance == instance))


@dataclass(frozen=True)
class NetFault:
    name: str
    kind: str
    target: Workloads
    source: Workloads | None  # None: every client
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_bytes: int = 0  # bytes per second, for bandwidth
    expires_at: float | None = None
    created: float = 0.0

    def applies(self, client: Workloads | None, target_ns: str, service: str, target_deployment: str | None,
                target_instance: str | None = None) -> bool:
        """Does it apply to a connection from ``client`` (an instance's namespace and
        deployment; None if unknown) to an endpoint of ``service`` (of ``target_deployment``,
        instance ``target_instance``)?"""
        if self._one_way(self.source, self.target, client, target_ns, service, target_deployment, target_instance):
            return True
        return self.kind == "partition" and self._one_way(self.target, self.source, client, target_ns, service, target_deployment,
                                                          target_instance)

    @staticmethod
    def _one_way(source: Workloads | None, target: Workloads, client: Workloads | None, ns: str, service: str,
                 deployment: str | None, instance: str | None) -> bool:
        if not target.includes(ns, service, deployment, instance):
            return False
        if source is None:
            return True
        return client is not None and client.namespace == source.namespace and client.deployment == source.deployment

    def describe(self) -> str:
        edge = f"{self.source.describe() if self.source else 'every client'} -> {self.target.describe()}"
        if self.kind == "partition":
            edge = f"{self.source.describe() if self.source else '?'} <-> {self.target.describe()}"
        detail = {"latency": f" {self.latency_ms:g}ms ± {self.jitter_ms:g}ms", "bandwidth": f" {self.rate_bytes} B/s"}.get(self.kind, "")
        return f"{self.kind}{detail}: {edge}"

    def remaining(self, now: float) -> float | None:
        return None if self.expires_at is None else max(self.expires_at - now, 0.0)

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        out = asdict(self)
        out["description"] = self.describe()
        out["watch_for"] = WHAT_TO_WATCH[self.kind]
        if now is not None:
            out["remaining_seconds"] = self.remaining(now)
        return out

    @classmethod
    def from_saved(cls, raw: dict[str, Any]) -> NetFault:
        source = raw.get("source")
        return cls(raw["name"], raw["kind"], Workloads(**raw["target"]), Workloads(**source) if source else None,
                   float(raw.get("latency_ms", 0)), float(raw.get("jitter_ms", 0)), int(raw.get("rate_bytes", 0)),
                   raw.get("expires_at"), float(raw.get("created", 0)))


def parse_rate(text: Any) -> int:
    """``10KB/s``, ``1MiB/s``, ``500B/s`` -> bytes per second."""
    match = _RATE.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a rate (expected e.g. 500B/s, 10KB/s or 1MiB/s)")
    return max(int(float(match[1]) * _RATE_UNITS[match[2]]), 1)


def parse(raw: Any, now: float | None = None) -> NetFault:
    """A network fault from the operator API's JSON; every error names its field."""
    now = time.time() if now is None else now
    r = _Reader()
    body = r.obj(raw, "", {"name", "kind", "to", "from", "latency", "jitter", "rate", "duration"}, {"kind", "to"})
    # (to.instance narrows the target to one instance; it makes no sense for a partition's sides)
    kind = r.string(body["kind"], "kind")
    if kind not in KINDS:
        raise NetFaultError("kind", f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    target = _workloads(r, body["to"], "to")
    source = _workloads(r, body["from"], "from") if body.get("from") is not None else None
    if kind == "partition" and (source is None or source.deployment is None or target.deployment is None):
        raise NetFaultError("from", "a partition is between two deployments: give from and to as deployments")
    if source is not None and source.deployment is None:
        raise NetFaultError("from", "the client side is a deployment (its instances' connections), not a service")
    if source is not None and source.instance is not None:
        raise NetFaultError("from.instance", "the client side is a whole deployment; narrow the target with to.instance instead")
    if kind == "partition" and target.instance is not None:
        raise NetFaultError("to.instance", "a partition is between two whole deployments")
    latency = jitter = 0.0
    rate = 0
    if kind == "latency":
        latency = r.duration(body.get("latency"), "latency") * 1000
        jitter = r.duration(body["jitter"], "jitter") * 1000 if body.get("jitter") is not None else 0.0
        if not 0 < latency <= 60_000 or jitter > latency:
            raise NetFaultError("latency", "expected a latency from 1ms to 60s, and a jitter no larger than it")
    elif kind == "bandwidth":
        try:
            rate = parse_rate(body.get("rate"))
        except ValueError as exc:
            raise NetFaultError("rate", str(exc)) from None
    else:
        for extra in ("latency", "jitter", "rate"):
            if body.get(extra) is not None:
                raise NetFaultError(extra, f"a {kind} fault takes no {extra}")
    duration = r.duration(body["duration"], "duration") if body.get("duration") is not None else DEFAULT_DURATION
    if not 0 < duration <= MAX_DURATION:
        raise NetFaultError("duration", "expected a duration from 1s to 24h (faults always revert by themselves)")
    name = body.get("name") or default_name(kind, target, source)
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name) or len(name) > 100:
        raise NetFaultError("name", f"{name!r} is not a valid name (lowercase letters, digits, '-' and '.')")
    return NetFault(name, kind, target, source, latency, jitter, rate, now + duration, now)


def default_name(kind: str, target: Workloads, source: Workloads | None) -> str:
    parts = [kind, *([source.deployment] if source and source.deployment else []), target.instance or target.service or target.deployment or ""]
    return "-".join(parts)


def _workloads(r: _Reader, raw: Any, field: str) -> Workloads:
    body = r.obj(raw, field, {"namespace", "service", "deployment", "instance"}, {"namespace"})
    namespace = r.string(body["namespace"], f"{field}.namespace")
    service = r.string(body["service"], f"{field}.service") if body.get("service") is not None else None
    deployment = r.string(body["deployment"], f"{field}.deployment") if body.get("deployment") is not None else None
    if (service is None) == (deployment is None):
        raise NetFaultError(field, "expected exactly one of service or deployment")
    instance = r.string(body["instance"], f"{field}.instance") if body.get("instance") is not None else None
    return Workloads(namespace, service, deployment, instance)
