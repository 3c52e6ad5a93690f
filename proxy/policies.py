"""The policy resources that apply to this proxy, watched from the control plane.

A snapshot arrives now and after every change; requests read the latest one without I/O.
When the control plane is away the last snapshot stays in force (static stability), except
that time-boxed resources still expire on time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

from controlplane.accessfilter import LogFacts, compile_filter
from controlplane.backendtls import BackendTlsSpec
from controlplane.egress import ALLOW_ANY, NamedEntry
from controlplane.gatewayapi import GatewayRoute, TlsListener, attached, tls_listeners
from controlplane.istioschema import ISTIO_TWINS
from controlplane.linkerdschema import LINKERD_HTTP_ROUTE
from controlplane.policy import PolicyError, Resource, parse, traffic_route
from controlplane.policyschema import kube_kind
from controlplane.protocol import HEARTBEAT_SECONDS
from controlplane.providers import Provider, ZipkinProvider, providers
from controlplane.selection import Applied, Workload, applicable, enforced_kind
from controlplane.serviceannotations import derive
from controlplane.telemetrypolicy import effective
from proxy.cpclient import ControlPlaneClient, follow_snapshots
from proxy.identity import WorkloadIdentity
from proxy.jwt import JwtChecker
from proxy.tracing import DEFAULT_SAMPLING_PERCENT

log = logging.getLogger("meshdojo.proxy.policies")


INBOUND_REQUEST_KINDS = ("FaultInjection", "RateLimit", "AuthorizationPolicy", "RequestAuthentication", "HTTPLocalRateLimitPolicy")  # what the inbound policy layers act on
SHAPING_KINDS = ("HTTPRoute", "CircuitBreaker")  # what the outbound policy layers act on (RetryBudget only with a route)


def _note(resource: Resource) -> str:
    """A policy's gist for describe: ALLOW, DENY (dry-run), CUSTOM by a provider, 5 rps ..."""
    spec = resource.spec
    istios = "Istio's " if resource.kind in ISTIO_TWINS else ""  # enforced as ours: say whose kind it is
    if enforced_kind(resource.kind) == "AuthorizationPolicy":
        provider = getattr(spec, "provider", None)
        return (istios + spec.action + (f" by {provider}" if provider else "")  # type: ignore[union-attr]
                + (" (dry-run)" if spec.dry_run else ""))  # type: ignore[union-attr]
    if resource.kind in ("PeerAuthentication", *ISTIO_TWINS):
        return f"Istio's {kube_kind(resource.kind)}"
    if resource.kind == "RateLimit":
        return f"{spec.requests_per_second:g} rps, burst {spec.burst}"  # type: ignore[union-attr]
    if resource.kind == "Server":  # Linkerd's: its port here, and who the callers no ServerAuthorization names are
        return f"port {spec.port}, accessPolicy {spec.access}"  # type: ignore[union-attr]
    if resource.kind in (LINKERD_HTTP_ROUTE, "HTTPLocalRateLimitPolicy"):  # Linkerd's, on that Server: what a route matches,
        return spec.describe()  # type: ignore[union-attr]                 # or a rate limit's limits
    return ""


class PolicyWatch:
    def __init__(self, client: ControlPlaneClient, identity: WorkloadIdentity, workload: Workload,
                 rng: random.Random | None = None) -> None:
        self._client = client
        self._identity = identity
        self.workload = workload
        self.inbound: dict[str, Applied] = {}  # per inbound kind: what applies to this workload (see controlplane.selection)
        self.services: frozenset[tuple[str, str]] = frozenset()  # (namespace, service) of the services that select it
        self._rng = rng or random.Random()
        self._entries: list[tuple[Resource, float | None]] = []
        self._expiry: dict[tuple[str, str, str], float | None] = {}
        self._index: dict[tuple[str, str, str | None], list[Resource]] = {}
        self._outside_rules: dict[str, list[Resource]] = {}  # namespace -> its DestinationRules for hosts outside the mesh
        self.kinds: set[str] = set()  # kinds present at all: the hot path skips a layer in one set lookup
        self.inbound_active = False  # does one of INBOUND_REQUEST_KINDS apply to this workload?
        self.shaped: frozenset[tuple[str, str | None]] = frozenset()  # (namespace, service) an HTTPRoute or CircuitBreaker names
        self.service_entries: tuple[NamedEntry, ...] = ()  # every ServiceEntry, whatever its namespace (Istio's exportTo "*")
        self.backend_tls: dict[tuple[str, str], BackendTlsSpec] = {}  # (namespace, name) -> a BackendTLSPolicy: TLS to an entry's host
        self.gateway_routes: tuple[GatewayRoute, ...] = ()  # the HTTPRoutes attached to the Gateways of this namespace (a gateway's)
        self.gateway_tls: tuple[TlsListener, ...] = ()  # their HTTPS listeners: which certificate for which server name
        self.sampling_percent = DEFAULT_SAMPLING_PERCENT  # of the requests that start a trace here (a Telemetry's)
        self.access_log: bool | None = None  # a Telemetry's accessLogging: on, off, or not said (None)
        self.access_filter: Callable[[LogFacts], bool] | None = None  # its filter.expression, compiled
        self.access_filter_text: str | None = None
        self.jwt: JwtChecker | None = None  # the RequestAuthentications in force here, with their issuers' keys
        self.providers: dict[str, Provider] = {}  # the ExtensionProviders a CUSTOM policy or a Telemetry may name
        self.trace_provider: str | None = None  # a Telemetry's tracing provider: where this sidecar's spans go
        self.exporting = asyncio.Event()  # set while that provider is defined: the span exporter wakes only then
        self.version = -1
        self.updated_at = 0.0

    def faults(self, now: float | None = None) -> list[Resource]:
        """The FaultInjection resources selecting this workload that have not expired."""
        applied = self.inbound.get("FaultInjection")
        if applied is None or not applied.resources:
            return []
        now = time.time() if now is None else now
        return [r for r in applied.resources if (expires := self._expiry.get(r.key)) is None or expires > now]

    def applied(self, kind: str) -> Applied:
        return self.inbound.get(kind) or Applied()

    def find(self, kind: str, namespace: str, service: str | None) -> list[Resource]:
        """Resources of ``kind`` in ``namespace`` that target ``service`` (sorted by name)."""
        return self._index.get((kind, namespace, service), [])

    def destination_rules(self, namespace: str) -> list[Resource]:
        """The DestinationRules of ``namespace`` for hosts outside the mesh (a ServiceEntry's)."""
        return self._outside_rules.get(namespace, [])

    def breaker_target(self, namespace: str, service: str, subset: str | None) -> str:
        """Whose CircuitBreaker a request to ``service`` (routed to ``subset``) counts against: the
        subset's own (``reviews/v1``, a DestinationRule subset's trafficPolicy), else the Service's."""
        if subset is not None and ("CircuitBreaker", namespace, f"{service}/{subset}") in self._index:
            return f"{service}/{subset}"
        return service

    def described(self) -> dict[str, dict]:
        """Per inbound kind in force here: the policies (most specific first), the level each
        applies at, what each does in a word (an AuthorizationPolicy's action), any tie."""
        return {kind: {"applied": [f"{r.namespace}/{r.name}" for r in a.resources], "levels": list(a.levels),
                       "notes": [_note(r) for r in a.resources], "conflict": list(a.conflict), "detail": a.detail}
                for kind, a in self.inbound.items() if a.resources}

    def callers(self) -> dict[str, dict[str, list[str]]]:
        """For each service that selects this workload: the policies its callers' sidecars act on
        (routes, circuit breakers, retry budgets), by kind — what describe shows."""
        return self.shaping(self.services)

    def shaping(self, services: Iterable[tuple[str, str]]) -> dict[str, dict[str, list[str]]]:
        """For each (namespace, service): the policies a sidecar acts on for requests to it, by
        kind; a service with none is left out. (This sidecar's own calls: the services it looked up.)"""
        found: dict[str, dict[str, list[str]]] = {}
        for namespace, service in sorted(set(services)):
            for kind in (*SHAPING_KINDS, "RetryBudget", "DestinationRule"):
                for r in self.find(kind, namespace, service):  # by their own kind: a VirtualService is one, not an HTTPRoute
                    names = found.setdefault(f"{namespace}/{service}", {}).setdefault(r.kind, [])
                    if f"{r.namespace}/{r.name}" not in names:
                        names.append(f"{r.namespace}/{r.name}")
        return found

    def tls_mode(self, port: int | None = None) -> str | None:
        """The mode of the MeshTLS in force at this workload (the most specific level wins), for
        the pod's ``port`` (a PeerAuthentication's portLevelMtls); None: no MeshTLS says."""
        for resource in self.applied("MeshTLS").resources:  # a PeerAuthentication UNSET but for ports: then the level above
            mode = resource.spec.mode_at(port)  # type: ignore[union-attr]
            if mode != "UNSET":
                return mode
        return None

    def zipkin(self) -> ZipkinProvider | None:
        """The collector this sidecar sends its spans to (a Telemetry names it), if it is defined."""
        provider = self.providers.get(self.trace_provider or "")
        return provider if isinstance(provider, ZipkinProvider) else None

    def trace_sampling(self) -> float:
        """The percentage of requests that start a trace here: a Telemetry's, else Istio's default 1 %."""
        return self.sampling_percent

    def outbound_mode(self) -> tuple[str, str]:
        """The outbound traffic policy in force here, and what set it (the Sidecar, or the default)."""
        chosen = self.applied("Sidecar").chosen
        if chosen is None:
            return ALLOW_ANY, "the default"
        return chosen.spec.mode, f"Sidecar {chosen.namespace}/{chosen.name}"  # type: ignore[union-attr]

    def apply_snapshot(self, event: dict) -> None:
        entries = []
        for i, item in enumerate(event.get("resources", [])):
            try:
                entries.append((parse(item["document"], "control plane", i), item.get("expiresAt")))
            except (PolicyError, KeyError, TypeError) as exc:  # the control plane validated it; be safe anyway
                log.warning("ignoring a policy the proxy cannot read: %s", exc)
        annotations = {(item["namespace"], item["name"]): item["annotations"] for item in event.get("annotations", [])
                       if isinstance(item, dict) and isinstance(item.get("annotations"), dict)}
        if annotations:  # what the Services' Linkerd annotations add: routes, retries, timeouts, failure accrual
            expiry = {r.key: expires for r, expires in entries}
            resources, problems = derive([r for r, _ in entries], annotations)
            entries = [(r, expiry.get(r.key)) for r in resources]
            for problem in problems:
                log.warning("%s", problem)
        self._entries = entries
        self._expiry = {r.key: expires for r, expires in entries}
        selectors = {(item["namespace"], item["name"]): item["selector"] for item in event.get("selectors", [])
                     if isinstance(item, dict) and isinstance(item.get("selector"), dict)}
        self.inbound = applicable([r for r, _ in entries], self.workload, selectors)
        telemetry = effective(self.applied("Telemetry").resources)  # field by field, the most specific Telemetry first
        self.sampling_percent = DEFAULT_SAMPLING_PERCENT if telemetry.sampling_percent is None else telemetry.sampling_percent
        self.access_log = telemetry.access_log
        self.access_filter = compile_filter(telemetry.access_filter) if telemetry.access_filter else None
        self.access_filter_text = telemetry.access_filter
        self.trace_provider = telemetry.trace_provider
        authn = self.applied("RequestAuthentication").resources  # the most specific first
        keys = {item["source"]: (item.get("jwks"), item.get("error")) for item in event.get("jwks", []) if isinstance(item, dict)}
        self.jwt = JwtChecker([(f"{r.namespace}/{r.name}", rule) for r in authn for rule in r.spec.rules],  # type: ignore[union-attr]
                              keys) if authn else None
        self.inbound_active = any(self.inbound.get(kind, Applied()).resources for kind in INBOUND_REQUEST_KINDS)
        self.services = frozenset(key for key, wanted in selectors.items()  # the services that select this workload
                                  if key[0] == self.workload.namespace and wanted
                                  and all(self.workload.labels.get(k) == v for k, v in wanted.items()))
        index: dict[tuple[str, str, str | None], list[Resource]] = {}
        for resource, _expires in sorted(entries, key=lambda e: e[0].key):  # Linkerd's route on a Service is an HTTPRoute
            kind = "HTTPRoute" if traffic_route(resource) else resource.kind  # as is Istio's VirtualService
            index.setdefault((kind, resource.namespace, resource.target), []).append(resource)
            breaker = getattr(resource.spec, "breaker", None) if resource.kind == "DestinationRule" else None
            if breaker is not None:  # its trafficPolicy is a CircuitBreaker's work (the DestinationRule's name on it)
                index.setdefault(("CircuitBreaker", resource.namespace, resource.target), []).append(replace(resource, spec=breaker))
            for subset in resource.spec.subsets if resource.kind == "DestinationRule" else ():  # type: ignore[union-attr]
                if subset.breaker is not None:  # a subset's own, for the requests routed to it (breaker_target)
                    index.setdefault(("CircuitBreaker", resource.namespace, f"{resource.target}/{subset.name}"), []).append(
                        replace(resource, spec=subset.breaker))
        # a route, circuit breaker or retry budget whose parent (target) is a ServiceEntry shapes the requests to each
        # of its hosts (egress labels them with the host)
        hosts = {(r.namespace, r.name): r.spec.hosts for r, _ in entries if enforced_kind(r.kind) == "ServiceEntry"}  # type: ignore[attr-defined]
        for resource, _expires in sorted(entries, key=lambda e: e[0].key):
            entry = getattr(resource.spec, "entry", None)
            for host in hosts.get((resource.namespace, entry), ()) if entry else ():
                index.setdefault((resource.kind, resource.namespace, host), []).append(resource)
            if outside := getattr(resource.spec, "outside_host", None):  # Istio's VirtualService for an entry's host
                index.setdefault(("HTTPRoute", resource.namespace, outside), []).append(resource)
        self._index = index
        outside: dict[str, list[Resource]] = {}
        for resource, _expires in sorted(entries, key=lambda e: e[0].key):
            if resource.kind == "DestinationRule" and resource.spec.outside:  # type: ignore[union-attr]
                outside.setdefault(resource.namespace, []).append(resource)
        self._outside_rules = outside
        self.providers = providers([r for r, _ in entries])
        if self.zipkin() is not None:
            self.exporting.set()
        else:
            self.exporting.clear()
        self.service_entries = tuple(NamedEntry(r.namespace, r.name, r.spec) for r, _ in entries  # type: ignore[arg-type]
                                     if enforced_kind(r.kind) == "ServiceEntry")  # ours and Istio's
        self.backend_tls = {(r.namespace, r.name): r.spec for r, _ in entries if r.kind == "BackendTLSPolicy"}  # type: ignore[misc]
        self.gateway_routes = attached((r for r, _ in entries), self.workload.namespace)
        self.gateway_tls = tls_listeners((r for r, _ in entries), self.workload.namespace)
        self.kinds = {kind for kind, _ns, _target in index}
        self.shaped = frozenset((ns, target) for kind, ns, target in index if kind in SHAPING_KINDS)
        self.version = event.get("version", self.version)
        self.updated_at = time.time()
        log.info("policy snapshot %s: %d resources", self.version, len(entries))

    def describe(self) -> list[dict]:
        return [{"kind": r.kind, "namespace": r.namespace, "name": r.name, "expiresAt": exp} for r, exp in self._entries]

    async def run(self) -> None:
        def lost(exc: Exception) -> None:  # keep the last snapshot; watch again
            log.debug("policy watch lost (%s); keeping %d resources", exc, len(self._entries))

        await follow_snapshots(self._client, "/v1/policies/watch", lambda: self._identity.client_ctx, self.apply_snapshot, lost,
                               self._rng, 3 * HEARTBEAT_SECONDS)
