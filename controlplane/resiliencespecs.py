"""The specs of the resilience kinds — ``RetryBudget``, ``CircuitBreaker`` (Istio's outlier
detection and connection pool) and ``RateLimit`` — as :mod:`controlplane.policy` reads them
and the proxy's traffic and access layers act on them. Values only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controlplane.workloadselector import WorkloadSelector


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    service: str | None  # None when the target is a ServiceEntry
    retry_ratio: float = 0.2
    min_retries_per_second: float = 10.0
    ttl: float = 10.0
    entry: str | None = None  # the target ServiceEntry: the budget is its hosts'


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """Istio's DestinationRule ``connectionPool``, per client proxy and service: at most
    ``max_connections`` requests in flight (HTTP/1.1: one per connection), at most
    ``max_pending`` waiting for one; the next is answered 503 at once (Envoy's pending overflow)."""

    max_connections: int = 1024
    max_pending: int = 1024
    max_requests_per_connection: int = 0  # 0: no limit

    @classmethod
    def read(cls, raw: Mapping[str, Any]) -> PoolLimits:
        """From a ``connectionPool`` checked against its schema (``istioschema.CONNECTION_POOL``)."""
        tcp, http = raw.get("tcp", {}), raw.get("http", {})
        return cls(tcp.get("maxConnections", 1024), http.get("http1MaxPendingRequests", 1024), http.get("maxRequestsPerConnection", 0))


@dataclass(frozen=True, slots=True)
class BreakerSpec:
    service: str | None  # None when the target is a ServiceEntry (``entry``: the breaker is its hosts')
    consecutive_failures: int = 7
    penalty: float = 1.0
    max_penalty: float = 60.0
    jitter: float = 0.5
    outlier: bool = True  # eject endpoints after consecutive failures (off when only connectionPool is given)
    pool: PoolLimits | None = None
    entry: str | None = None
    max_ejection_percent: int = 100  # of the Service's endpoints ejected at once (one always may be): Istio's maxEjectionPercent
    gateway_failures: int = 0  # Istio's consecutiveGatewayErrors: 502, 503, 504 or failed connections in a row eject too (0: not)


@dataclass(frozen=True, slots=True)
class RateLimitSpec:
    service: str | None
    requests_per_second: float
    burst: int
    workloads: WorkloadSelector | None = None
