"""A route as the proxies follow it: rules of matches, weighted backends, timeouts, retries,
filters and faults. Gateway API's ``HTTPRoute`` (``policy._route``), Linkerd's on a Service, an
Ingress's rules and Istio's ``VirtualService`` (:mod:`controlplane.istionetworking`) are all read
into these frozen values; the proxy's route layer (``proxy/traffic.py``) and ``meshdojo routes``
know only them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controlplane import routeannotations
from controlplane.durations import format_duration
from controlplane.matching import RequestMatch
from controlplane.routefilters import HeaderEdits, RouteFilters


@dataclass(frozen=True, slots=True)
class Backend:
    service: str
    weight: int
    subset: str | None = None  # Istio's: the pods of a DestinationRule's subset of the Service (None: all of them)
    # the requests sent to this backend, and their answers: a backendRef's header filters (Istio: a destination's headers)
    request_headers: HeaderEdits | None = None
    response_headers: HeaderEdits | None = None

    def describe(self) -> str:
        return f"{self.service}/{self.subset}" if self.subset else self.service


@dataclass(frozen=True, slots=True)
class Retry:
    codes: tuple[int, ...]
    attempts: int  # retries after the first try: attempts 2 = up to three tries in all (Gateway API, GEP-1731)
    backoff: float


@dataclass(frozen=True, slots=True)
class RuleFault:
    """Istio's ``fault`` on a VirtualService's rule: injected by the caller's sidecar, after the
    rule is chosen and before any retry, so the destination never sees an abort."""

    delay: float | None
    delay_percent: float
    abort_status: int | None
    abort_percent: float

    def describe(self) -> str:
        parts = []
        if self.delay is not None:
            parts.append(f"delay {format_duration(self.delay)}" + (f" {self.delay_percent:g}%" if self.delay_percent < 100 else ""))
        if self.abort_status is not None:
            parts.append(f"abort {self.abort_status}" + (f" {self.abort_percent:g}%" if self.abort_percent < 100 else ""))
        return "fault: " + ", ".join(parts)


@dataclass(frozen=True, slots=True)
class RouteRule:
    matches: tuple[RequestMatch, ...]  # empty: matches everything
    backends: tuple[Backend, ...]  # empty: the parent service itself
    request_timeout: float | None
    backend_timeout: float | None
    retry: Retry | None
    filters: RouteFilters | None = None  # None: the rule has none
    fault: RuleFault | None = None  # Istio's VirtualService only

    def matches_request(self, path: str, header: Any, method: str, source: Any = None) -> bool:
        """``source``: the calling sidecar's workload, for a VirtualService's sourceLabels."""
        return not self.matches or any(m.matches(path, header, method, source) for m in self.matches)

    def describe(self) -> str:
        """What the rule matches and where it sends it, in one line (for ``meshdojo routes``)."""
        matches = " or ".join(m.describe() for m in self.matches) or "everything"
        if len(self.backends) > 1 or (self.backends and self.backends[0].weight not in (1, 100)):  # 100: a VirtualService's one
            matches += " -> " + ", ".join(f"{b.describe()} {b.weight}" for b in self.backends)
        elif self.backends:
            matches += f" -> {self.backends[0].describe()}"
        shaping = []
        if self.retry is not None:
            shaping.append(f"retries on {routeannotations.status_ranges(self.retry.codes) or 'timeouts and failed connections'}, up to {self.retry.attempts}")
        if self.backend_timeout is not None:
            shaping.append(f"each try {format_duration(self.backend_timeout)}")
        if self.request_timeout is not None:
            shaping.append(f"request {format_duration(self.request_timeout)}")
        if shaping:
            matches += f" [{'; '.join(shaping)}]"
        if self.filters is not None:
            matches += f" [{self.filters.describe()}]"
        if self.fault is not None:
            matches += f" [{self.fault.describe()}]"
        for b in self.backends:  # a backend's own header edits
            edits = [f"{side} headers: {e.describe()}" for side, e in (("request", b.request_headers), ("response", b.response_headers)) if e]
            if edits:
                matches += f" [{b.describe()}: {'; '.join(edits)}]"
        return matches


@dataclass(frozen=True, slots=True)
class ParentGateway:
    namespace: str
    name: str
    section: str | None  # one listener by name; None: every listener
    port: int | None


@dataclass(frozen=True, slots=True)
class RouteSpec:
    service: str | None  # the parent Service (None when the parent is a ServiceEntry or a Gateway)
    rules: tuple[RouteRule, ...]
    entry: str | None = None  # the parent ServiceEntry: the route shapes requests to its hosts
    gateway: ParentGateway | None = None  # the parent Gateway: its ingress gateway serves the route
    hostnames: tuple[str, ...] = ()  # a Gateway's route: the hosts it serves (none: any)
    outside_host: str | None = None  # a VirtualService for a host outside the mesh (a ServiceEntry's): shapes requests to it
