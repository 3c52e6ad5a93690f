"""Where the terminal UI's data comes from: the sandbox's public functions and the control
plane's operator API — the same ones the CLI uses, nothing else. Blocking calls; the app runs
them in worker threads."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sandbox import netcli, observe, tracecli
from sandbox.backends import backend_for
from sandbox.cpapi import ApiError
from sandbox.errors import SandboxError
from sandbox.resources import ResourceError, api_for

HISTORY_POINTS = 60


@dataclass
class Snapshot:
    """What one refresh saw. ``problem`` says, for a learner, why something is missing."""

    taken: float
    status: dict[str, Any] | None = None
    deployments: list[dict[str, Any]] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)  # traffic per service (only those with traffic)
    service_names: list[tuple[str, str]] = field(default_factory=list)  # every registered (namespace, service)
    edges: list[dict[str, Any]] = field(default_factory=list)
    edge_stats: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    netfaults: list[dict[str, Any]] = field(default_factory=list)
    policies: list[dict[str, Any]] = field(default_factory=list)
    ca: dict[str, Any] | None = None
    problem: str | None = None


class MeshSource:
    def __init__(self, name: str) -> None:
        self.name = name
        self.history: dict[tuple[str, str], deque[tuple[float | None, float]]] = {}

    def snapshot(self, window: str = "10s") -> Snapshot:
        snap = Snapshot(time.time())
        try:
            snap.status = backend_for(self.name).status()
        except (ValueError, SandboxError) as exc:  # a bad name; a cluster that does not answer (this screen recovers by itself)
            snap.problem = str(exc)
            return snap
        if snap.status is None:
            snap.problem = f"sandbox {self.name!r} is not running — start it with 'meshdojo up --name {self.name}' (this screen recovers by itself)"
            return snap
        try:
            api = api_for(self.name)
            snap.ca = api.call("GET", "/v1/ca", timeout=2)
            snap.deployments = api.call("GET", f"/v1/stats?resource=deploy&window={window}", timeout=2)["rows"]
            snap.services = api.call("GET", f"/v1/stats?resource=svc&window={window}", timeout=2)["rows"]
            snap.edges = api.call("GET", "/v1/edges?window=1m", timeout=2)["rows"]
            snap.service_names = [(s["namespace"], s["name"]) for s in api.call("GET", "/v1/services", timeout=2)["services"]]
            snap.netfaults = api.call("GET", "/v1/netfaults", timeout=2)["faults"]
            snap.policies = api.call("GET", "/v1/policies", timeout=2)["items"]
        except (ApiError, ResourceError, OSError) as exc:
            snap.problem = (f"control plane unreachable ({exc}) — the supervisor restarts it; "
                            "meanwhile the proxies keep serving what they last knew")
            return snap
        for e in snap.edges:  # an edge carries its own numbers (rps, success_rate, mtls_share)
            snap.edge_stats[(e["src"], e["dst"])] = e
        for d in snap.deployments:
            points = self.history.setdefault((d["namespace"], d["name"]), deque(maxlen=HISTORY_POINTS))
            points.append((d["success_rate"], d["rps"]))
        return snap

    def identities(self) -> dict[str, Any]:
        return observe.identities(self.name)

    def routes(self, service: str, namespace: str) -> list[dict[str, Any]]:
        return observe.routes(self.name, f"svc/{service}", namespace, None, "1m")

    def faults(self) -> list[dict[str, Any]]:
        return netcli.active(self.name)

    def described(self, deployment: str, namespace: str) -> list[str]:
        """``meshdojo describe deploy/NAME``'s lines: each instance as its sidecar sees it."""
        from sandbox import describe

        st = backend_for(self.name).status() or {"workloads": []}
        entries = describe.gather(self.name, describe.instances(st, f"deploy/{deployment}", namespace))
        return [line for entry in entries for line in ["", *describe.lines(entry)]]

    def spans(self, namespace: str | None, trace: str | None = None, limit: int = 200) -> dict[str, Any]:
        """What ``meshdojo trace`` reads: every sidecar's latest spans, or one trace's."""
        return tracecli.gather(self.name, namespace, trace, limit)

    def comparison(self) -> tuple[dict[str, Any], str]:
        """The minute before the last change and the time since (at most a minute), as
        ``meshdojo report --around-change`` compares them; with no recent change, the two
        minutes before the last one. Returns the report's data and the equivalent command."""
        from sandbox import report

        api = api_for(self.name)
        now = time.time()
        changes = api.call("GET", "/v1/changes", timeout=2)["changes"]
        try:
            before, after = report.around_last_change(changes, "1m", "1m", now)
            command = "meshdojo report --around-change"
        except report.ReportError:  # none, too recent, or too old to have a before window: the last minutes
            before, after = report.windows("2m", "1m", now)
            command = "meshdojo report --before 2m --after 1m"
        data = report.gather(lambda path: api.call("GET", path, timeout=5), before, after, points=24)
        return data, (command if self.name == "default" else f"{command} --name {self.name}")
