"""What the local supervisor runs, as data: a supervised process (:class:`Proc`, restarted with
a kubelet's CrashLoopBackOff) and one replica of a Deployment (:class:`Instance`: its app, its
sidecar when injected, their ports and whether it is ready and registered)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controlplane.gatewayapi import GATEWAY_LABEL
from controlplane.spiffe import SpiffeId
from sandbox.forkserver import ForkServer
from sandbox.manifests import Deployment
from sandbox.ports import accepting
from sandbox.processes import Child, spawn

BACKOFF_START, BACKOFF_MAX, HEALTHY_AFTER = 1.0, 30.0, 60.0
# a proxy that has not listened this long after it started is stuck, and killed (a kubelet's
# failed startupProbe): its bootstrap gives up after 30 s by itself, so this is well past it,
# and inside the 90 s `meshdojo up` waits
STARTUP_DEADLINE = 40.0
# a ready app's port is probed this often (a kubelet's readinessProbe periodSeconds); one not
# ready yet at every round, so that `up` sees it the moment it listens
READY_PROBE_PERIOD = 2.0
FAILURE_THRESHOLD = 3  # a kubelet's readinessProbe default
# demo -> the service its ingress gateway fronts, that service's port, and what a learner opens there
GATEWAYS = {"emojivoto": ("web", 80, "emojivoto web UI"), "bookinfo": ("productpage", 9080, "bookinfo product page")}


def gateway_name(demo: str) -> str:
    """A demo's ingress gateway's name in both backends, the one the verbs take: bookinfo-ingress."""
    return f"{demo}-ingress"


def gateway_rows(status: dict[str, Any]) -> list[dict[str, Any]]:
    """A local sandbox's gateways as workload rows: each a proxy of its own, read at its admin
    port (on a cluster their pods are workloads already, and no entry has an admin port)."""
    return [{"name": gateway_name(g["demo"]), "deployment": gateway_name(g["demo"]), "namespace": g.get("namespace") or g["demo"],
             "meshed": True, "ready": True, "restarts": 0, "services": [], "ports": {"admin": g["admin"]}}
            for g in status.get("gateways", []) if g.get("admin")]


def with_flags(argv: list[str], values: dict[str, int | str]) -> list[str]:
    """``argv`` with each ``--flag``'s value set: replaced where it is given, appended where not."""
    out = list(argv)
    for flag, value in values.items():
        if flag in out[:-1]:
            out[out.index(flag) + 1] = str(value)
        else:
            out += [flag, str(value)]
    return out


def gateway_labels(name: str, demo: str) -> dict[str, str]:
    """A gateway's labels, in both backends: its app, the demo it fronts, and Istio's
    ``istio: ingressgateway``, which the policies of Istio's ingress tasks select."""
    return {"app": name, GATEWAY_LABEL: demo, "istio": "ingressgateway"}


@dataclass
class ReadinessProbe:
    """Whether a port accepts connections: looked at every round until it does (or while what
    it belongs to is not ready), then every READY_PROBE_PERIOD. A ready app becomes not ready
    only after FAILURE_THRESHOLD looks in a row fail, as a kubelet's readinessProbe has it: one
    slow accept on a busy machine (a connect that takes over 0.2 s) is no outage."""

    answered: bool = False
    probed_at: float = float("-inf")  # monotonic time of the last look
    failures: int = 0  # looks in a row that found the port not accepting (looked at every round while > 0)

    def due(self, now: float, ready: bool = True) -> bool:
        return not ready or not self.answered or self.failures > 0 or now - self.probed_at >= READY_PROBE_PERIOD

    def look(self, port: int, now: float, ready: bool = True) -> bool:
        if self.due(now, ready):
            self.answer(accepting(port), now, ready)
        return self.answered

    def answer(self, accepted: bool, now: float, ready: bool) -> None:
        """One look's outcome (pure: ``look`` connects, this decides)."""
        self.probed_at = now
        self.failures = 0 if accepted else self.failures + 1
        self.answered = accepted or (ready and self.answered and self.failures < FAILURE_THRESHOLD)


@dataclass
class Proc:
    """One supervised process: how to start it, and what happened to it."""

    role: str  # "app", "proxy", "controlplane", "gateway"
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    popen: Child | None = None
    restarts: int = 0
    next_start: float = 0.0
    backoff: float = BACKOFF_START

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None and self.popen.poll() is None else None

    started_at: float = 0.0
    forkserver: ForkServer | None = None  # forks it when it can (a sidecar with the supervisor's environment)

    def start(self) -> None:
        forked = None
        if self.forkserver is not None and self.env is None and self.cwd is None:
            forked = self.forkserver.spawn(self.argv, self.log)
        self.popen = forked or spawn(self.argv, self.log, self.env, cwd=self.cwd)
        self.started_at = time.monotonic()

    def schedule_restart(self, now: float) -> float:
        """Like a kubelet's CrashLoopBackOff: 1 s doubling to 30 s, reset after a minute of health.
        Returns the delay it will really wait (to log the truth)."""
        if now - self.started_at > HEALTHY_AFTER:
            self.backoff = BACKOFF_START
        self.popen = None
        self.restarts += 1
        self.next_start = now + self.backoff
        return self.backoff

    def exited(self) -> bool:
        return self.popen is not None and self.popen.poll() is not None


@dataclass
class Instance:
    deployment: Deployment
    index: int
    services: list[str]
    app: Proc | None = None
    proxy: Proc | None = None
    app_port: int = 0
    outbound_port: int = 0
    ports: dict[str, int] = field(default_factory=dict)  # the proxy's
    ready: bool = False
    registered: bool = False
    ever_ready: bool = False
    earlier_restarts: int = 0  # from previous launches of this instance (on fresh ports)
    app_probe: ReadinessProbe = field(default_factory=ReadinessProbe)  # its app's port

    def probe_due(self, now: float) -> bool:
        """Whether its app's port should be probed now (see READY_PROBE_PERIOD)."""
        return self.app_probe.due(now, self.ready)

    @property
    def name(self) -> str:
        return f"{self.deployment.name}-{self.index}"

    @property
    def identity(self) -> str:
        return SpiffeId(self.deployment.namespace, self.deployment.service_account).uri

    @property
    def meshed(self) -> bool:
        return self.proxy is not None
