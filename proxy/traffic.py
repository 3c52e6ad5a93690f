"""The outbound policy layers, between discovery and the balancer — for the services an
HTTPRoute or a CircuitBreaker names (:func:`policy_layers`; the others skip them, since every
one of them would pass the request through untouched):

    route      HTTPRoute (or VirtualService): first matching rule, a backend by weight (404 if routes exist and none match)
    fault      a VirtualService rule's fault: delay and/or abort, here in the caller's sidecar (as Istio does)
    concrete   the chosen backend service's endpoints (of its subset, for a VirtualService's destination)
    timeout    timeouts.request: the whole request, retries included (504)
    retry      retry.codes/attempts (retries after the first try)/backoff, within the RetryBudget; replayable bodies only
    tries      timeouts.backendRequest: each attempt (504, retryable)
    breaker    CircuitBreaker: skip tripped endpoints; 503 at once when every one is tripped

Each decision is a pure function elsewhere (decisions, budget, breaker); these layers only
wire them to the request and record what happened in its fate.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from controlplane.protocol import fqdn
from controlplane.resiliencespecs import BreakerSpec, BudgetSpec
from proxy.breaker import HALF_OPEN, Breaker
from proxy.budget import RetryBudget
from proxy.classify import classify
from proxy.decisions import choose_route
from proxy.discovery import Discovery
from proxy.endpoint import client_error
from proxy.errors import ProxyError
from proxy.exchange import BytesBody, ConnectionBody, EmptyBody, Handler, Layer, Request, Response, header_of
from proxy.http1 import ConnectionClosed, ProtocolViolation, ReadTimeout
from proxy.metrics import ProxyMetrics
from proxy.policies import PolicyWatch
from proxy.subsets import subset_endpoints

GATEWAY_ERRORS = frozenset((502, 503, 504))  # with a failed connection, what Istio's consecutiveGatewayErrors counts

MAX_REPLAY_BYTES = 64 * 1024


class NoRoute(ProxyError):
    status = 404
    code = "no_route"


class RequestTimeout(ProxyError):
    status = 504
    code = "request_timeout"


class BackendTimeout(ProxyError):
    status = 504
    code = "backend_timeout"


class BreakerOpen(ProxyError):
    status = 503
    code = "breaker_open"


def policy_layers(policies: PolicyWatch, shaped: Handler) -> Layer:
    """Send a request through ``shaped`` (the policy layers) when an HTTPRoute or CircuitBreaker
    names its service; else straight to the inner handler (one try, no timeouts, no breaker)."""

    def layer(plain: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            if request.rule is not None or (request.dst_namespace, request.dst_service) in policies.shaped:  # a gateway's route
                return await shaped(request)
            return await plain(request)

        return handle

    return layer


def route(policies: PolicyWatch, rng: random.Random, gateway: bool = False) -> Layer:
    """``gateway``: this is an ingress gateway, which a VirtualService does not route (its
    ``gateways`` is ``mesh``, the sidecars: Istio's meaning)."""

    def layer(inner: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            if request.rule is not None:  # an ingress gateway's route chose already (proxy/gatewayroutes.py)
                return await inner(request)
            routes = policies.find("HTTPRoute", request.dst_namespace, request.dst_service) if "HTTPRoute" in policies.kinds else ()
            if gateway and routes:
                routes = [r for r in routes if r.kind != "VirtualService"]
            if not routes:
                return await inner(request)
            choice = choose_route(routes, request.path, header_of(request), request.head.method, rng,
                                  None if gateway else policies.workload)
            if choice is None:
                names = ", ".join(f"{r.namespace}/{r.name}" for r in routes)
                request.fate.no_route = f"no rule of HTTPRoute {names} matches"
                raise NoRoute(f"no rule of HTTPRoute {names} matches {request.head.method} {request.path} "
                              f"(once a route is attached to a service, unmatched requests get 404)")
            request.rule, request.backend = choice.rule, choice.chosen
            request.fate.route = choice.route
            request.fate.backend = choice.backend or request.dst_service
            request.fate.subset = choice.subset
            return await inner(request)

        return handle

    return layer


def concrete(discovery: Discovery, policies: PolicyWatch) -> Layer:
    def layer(inner: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            backend = request.fate.backend
            if backend and backend != request.dst_service:
                endpoint_set = await discovery.resolve(f"{backend}.{request.dst_namespace}")
                request.endpoints = endpoint_set.ordered
            if request.fate.subset is not None:  # a VirtualService's destination: the pods of a DestinationRule's subset
                request.endpoints = subset_endpoints(policies, request.dst_namespace, backend or request.dst_service,
                                                     request.fate.subset, request.endpoints)
            return await inner(request)

        return handle

    return layer


def rule_fault(metrics: ProxyMetrics, rng: random.Random, sleep=asyncio.sleep) -> Layer:
    """A VirtualService rule's ``fault``: the caller's sidecar delays the request, or answers it
    itself, before any retry or timeout of the rule (Istio's, where retries never see a fault)."""

    def layer(inner: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            fault = request.rule.fault if request.rule is not None else None
            if fault is None:
                return await inner(request)
            delay = fault.delay if fault.delay is not None and rng.random() * 100 < fault.delay_percent else None
            abort = fault.abort_status if fault.abort_status is not None and rng.random() * 100 < fault.abort_percent else None
            if delay is None and abort is None:
                return await inner(request)
            route = request.fate.route or ""
            request.fate.fault = f"{'delay ' + format(delay, 'g') + 's ' if delay else ''}" \
                f"{'abort ' + str(abort) + ' ' if abort else ''}by VirtualService {route}"
            if delay is not None:
                metrics.route_faults.labels("delay", route).inc()
                await sleep(delay)
            if abort is not None:
                metrics.route_faults.labels("abort", route).inc()
                body = f"meshdojo: fault injected by VirtualService {route} (in the caller's sidecar)\n".encode()
                return Response(abort, [(b"content-type", b"text/plain"), (b"x-meshdojo-fault", f"abort {route}".encode())],
                                BytesBody(body))
            return await inner(request)

        return handle

    return layer


def _timeout(kind: str, limit_of: Callable[[Request], float | None], error: type[ProxyError], metrics: ProxyMetrics) -> Layer:
    def layer(inner: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            limit = limit_of(request)
            if limit is None:
                return await inner(request)
            try:
                async with asyncio.timeout(limit):
                    return await inner(request)
            except TimeoutError:
                request.fate.timeout = f"{kind} timeout {limit:g}s"
                metrics.timeouts.labels(kind, request.fate.route or "").inc()
                raise error(f"no response within the route's {kind} timeout of {limit:g}s") from None

        return handle

    return layer


def request_timeout(metrics: ProxyMetrics) -> Layer:
    """timeouts.request: the whole request, retries included."""
    return _timeout("request", lambda r: r.rule.request_timeout if r.rule is not None else None, RequestTimeout, metrics)


def try_timeout(metrics: ProxyMetrics) -> Layer:
    """timeouts.backendRequest: each attempt."""
    return _timeout("backendRequest", lambda r: r.rule.backend_timeout if r.rule is not None else None, BackendTimeout, metrics)


class Budgets:
    """One RetryBudget per service, configured from RetryBudget resources (Linkerd's defaults otherwise)."""

    def __init__(self, policies: PolicyWatch, clock: Callable[[], float] = time.monotonic) -> None:
        self._policies = policies
        self._clock = clock
        self._budgets: dict[tuple[str, str], tuple[BudgetSpec, RetryBudget]] = {}

    def get(self, namespace: str, service: str) -> RetryBudget:
        found = self._policies.find("RetryBudget", namespace, service)
        spec: BudgetSpec = found[0].spec if found else BudgetSpec(service)  # type: ignore[assignment]
        current = self._budgets.get((namespace, service))
        if current is None or current[0] != spec:
            current = (spec, RetryBudget(spec.retry_ratio, spec.min_retries_per_second, spec.ttl, self._clock))
            self._budgets[(namespace, service)] = current
        return current[1]


def retry(budgets: Budgets, metrics: ProxyMetrics, sleep=asyncio.sleep) -> Layer:
    def layer(inner: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            policy = request.rule.retry if request.rule is not None else None
            if policy is None or policy.attempts == 0:  # attempts: how many retries, as in Gateway API
                return await inner(request)
            budget = budgets.get(request.dst_namespace, request.dst_service)
            budget.deposit()
            if isinstance(request.body, ConnectionBody):  # buffer it so it can be sent again
                if request.body.length is not None and request.body.length > MAX_REPLAY_BYTES:
                    request.fate.retry.append(f"not retryable: body of {request.body.length} bytes is over 64 KiB")
                    return await inner(request)
                buffered = await buffer_body(request.body, MAX_REPLAY_BYTES)
                request.body = buffered
                if not isinstance(buffered, BytesBody):  # a chunked body longer than 64 KiB: sent once, as it streams
                    request.fate.retry.append("not retryable: chunked body over 64 KiB")
                    return await inner(request)
            elif not isinstance(request.body, BytesBody | EmptyBody):
                request.fate.retry.append("not retryable: body cannot be replayed")
                return await inner(request)
            route_label = request.fate.route or ""
            tries = policy.attempts + 1  # the first try, then up to ``attempts`` retries
            for attempt in range(1, tries + 1):
                try:
                    response = await inner(request)
                except ProxyError as exc:
                    if exc.client_fault:  # the client's own request broke: sending it again cannot help
                        raise
                    if exc.status not in policy.codes and exc.code not in ("connect_failed", "backend_timeout", "breaker_open"):
                        raise
                    response = exc.response()
                if response.status not in policy.codes and response.error not in ("connect_failed", "backend_timeout"):
                    return response
                if attempt == tries:
                    request.fate.retry.append(f"gave up: {policy.attempts} {'retry' if policy.attempts == 1 else 'retries'} used")
                    metrics.retries.labels(route_label, "limit_exceeded").inc()
                    return response
                if not budget.withdraw():
                    request.fate.retry.append(f"no retry after {response.status}: retry budget exhausted")
                    metrics.retries.labels(route_label, "overflow").inc()
                    return response
                response.body.abandon()
                request.fate.retry.append(f"retried after {response.status}")
                metrics.retries.labels(route_label, "retried").inc()
                await sleep(policy.backoff * (0.5 + random.random()))
            raise AssertionError("unreachable")

        return handle

    return layer


class PrefixedBody:
    """A body whose first chunks were already read (while trying to buffer it), then the rest
    of the same chunk stream."""

    def __init__(self, prefix: list[bytes], body: ConnectionBody, rest) -> None:
        self._prefix, self._body, self._rest = prefix, body, rest
        self.length = body.length
        self.conn = body.conn  # copy_body flushes by its source's state

    async def chunks(self):
        for chunk in self._prefix:
            yield chunk
        async for chunk in self._rest:
            yield chunk

    def abandon(self) -> None:
        self._body.abandon()


async def buffer_body(body: ConnectionBody, limit: int) -> BytesBody | PrefixedBody:
    """The whole body of a client's request in memory if it fits in ``limit`` bytes, else what
    was read plus the rest. A body that breaks while it is read is the client's fault (a 400,
    as when it breaks while being forwarded), never a proxy failure."""
    parts, size = [], 0
    chunks = body.chunks()
    try:
        async for chunk in chunks:
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                return PrefixedBody(parts, body, chunks)
    except (ProtocolViolation, ReadTimeout, ConnectionClosed) as exc:
        raise client_error(exc) from None
    return BytesBody(b"".join(parts))


class Breakers:
    def __init__(self, policies: PolicyWatch, clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> None:
        self._policies = policies
        self._clock = clock
        self._rng = rng or random.Random()
        self._breakers: dict[tuple[str, str], tuple[BreakerSpec, Breaker]] = {}

    def get(self, namespace: str, service: str, subset: str | None = None) -> Breaker | None:
        """The breaker of ``service``'s requests, or of those routed to ``subset`` if it has its own."""
        if "CircuitBreaker" not in self._policies.kinds:
            return None
        service = self._policies.breaker_target(namespace, service, subset)  # reviews, or reviews/v1
        found = self._policies.find("CircuitBreaker", namespace, service)
        if not found:
            self._breakers.pop((namespace, service), None)
            return None
        spec: BreakerSpec = found[0].spec  # type: ignore[assignment]
        if not spec.outlier:  # only connection-pool limits (proxy.poollimits)
            self._breakers.pop((namespace, service), None)
            return None
        current = self._breakers.get((namespace, service))
        if current is None or current[0] != spec:
            current = (spec, Breaker(spec.consecutive_failures, spec.penalty, spec.max_penalty, spec.jitter, self._clock, self._rng,
                                     spec.max_ejection_percent, spec.gateway_failures))
            self._breakers[(namespace, service)] = current
        return current[1]

    def forget_except(self, keys: set[object]) -> None:
        for _spec, br in self._breakers.values():
            br.forget_except(keys)

    def states(self) -> dict[str, dict[str, str]]:
        # a ServiceEntry's host (always dotted, never a Service's name) is its own name
        return {_named(ns, svc): {f"{k[0]}:{k[1]}": b.state(k) for k in b.endpoints} for (ns, svc), (_s, b) in self._breakers.items()}


def _named(namespace: str, target: str) -> str:
    """A breaker's name: a ServiceEntry's host as is (dotted, never a Service's name), a Service's
    FQDN, and a subset's own after it: ``reviews.bookinfo.svc.cluster.local (subset v1)``."""
    if "." in target:
        return target
    service, _, subset = target.partition("/")
    return fqdn(service, namespace) + (f" (subset {subset})" if subset else "")


def breaker(breakers: Breakers, metrics: ProxyMetrics) -> Layer:
    def layer(inner: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            service = request.fate.backend or request.dst_service
            br = breakers.get(request.dst_namespace, service, request.fate.subset)
            if br is None:
                return await inner(request)
            everyone = request.endpoints
            admitted = [ep for ep in everyone if br.admit(ep.key)]
            if not admitted:
                request.fate.breaker = f"open for all {len(everyone)} endpoints"
                raise BreakerOpen(f"every endpoint of {service}.{request.dst_namespace} is failing (circuit breaker open); "
                                  "failing fast instead of waiting")
            probes = [ep for ep in admitted if br.state(ep.key) == HALF_OPEN]
            if probes:  # a penalty ran out: this request is that endpoint's one probe
                admitted = probes[:1]
                br.begin(admitted[0].key)
            if len(admitted) < len(everyone):
                request.fate.breaker = f"{len(everyone) - len(admitted)} of {len(everyone)} endpoints ejected"
            request.endpoints = admitted
            try:
                response = await inner(request)
            except ProxyError as exc:
                if not exc.client_fault:  # a client's malformed request says nothing about the endpoint
                    _record(br, request, service, True, metrics, gateway_error=True)  # no answer: a gateway error
                raise
            finally:
                request.endpoints = everyone  # the next attempt chooses afresh
            _record(br, request, service, classify(response).failure, metrics, response.status in GATEWAY_ERRORS)
            return response

        return handle

    return layer


def _record(br: Breaker, request: Request, service: str, failed: bool, metrics: ProxyMetrics, gateway_error: bool = False) -> None:
    if request.endpoint is None:
        return
    key = request.endpoint.key
    changed = br.record(key, failed, gateway_error)
    if changed is not None:
        metrics.breaker_transitions.labels(fqdn(service, request.dst_namespace), changed).inc()
        request.fate.breaker = f"{changed} for {key[0]}:{key[1]}"
