"""Which workloads a workload-scoped policy names, as the proxy matches it against itself."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WorkloadSelector:
    """Which workloads a workload-scoped policy (AuthorizationPolicy, RateLimit, MeshTLS,
    FaultInjection, Sidecar) applies to: the pods a Service selects, a Deployment's pods, one Pod, a
    ServiceAccount's pods, or pods with some labels (Istio's ``selector.matchLabels``). The
    proxy decides it from what it knows about its own workload, never from a request."""

    kind: str  # Service, Deployment, Pod, ServiceAccount, Labels
    name: str = ""
    labels: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        if self.kind == "Labels":
            return ",".join(f"{k}={v}" for k, v in self.labels)
        return f"{self.kind.lower()}/{self.name}"
