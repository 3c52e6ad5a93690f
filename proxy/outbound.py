"""The outbound side: what the app sends through ``HTTP_PROXY``.

The stack, outermost first (built in :func:`build_outbound_stack`):

    request id x-request-id: the app's kept, or a fresh one (a gateway always gives its own)
    trace      a span of each sampled request; the trace's context passed on (proxy/tracing.py)
    access     a line per request in the sidecar's log, when a Telemetry's accessLogging says so
    fate       record what happens; summarise it in x-meshdojo-fate on x-meshdojo-debug: 1
    metrics    count and time every request, labelled with what was chosen below
    errors     a ProxyError becomes a 4xx/5xx with x-meshdojo-error and a one-line reason
    target     absolute-form URI or Host header -> logical service name and path (a gateway's:
               the HTTPRoute attached to its Gateway that matches, or its one front service)
    discover   logical service -> its current endpoint set (watched, cached); a host that is
               not a Service: a ServiceEntry's endpoints, passed through, or refused (egress)
    policies   only for a service an HTTPRoute or CircuitBreaker names (the others go on to
               attempts, balance and endpoint: each layer in between would pass them through)
    route      HTTPRoute or VirtualService: matching rule, weighted backend (proxy/traffic.py)
    fault      a VirtualService rule's fault: delay, abort (not retried)
    filters    the rule's filters: redirect, headers, rewrite, mirror (proxy/filters.py)
    concrete   the backend service's endpoints (a DestinationRule's subset of them: proxy/subsets.py)
    timeout    timeouts.request over the whole request, retries included
    retry      retry policy within the RetryBudget
    attempts   count every actual attempt per route
    tries      timeouts.backendRequest per attempt
    pool       CircuitBreaker connectionPool: a slot in flight or pending, else 503 overflow
    breaker    CircuitBreaker: tripped endpoints are skipped
    balance    endpoint set -> one endpoint: a DestinationRule's loadBalancer (round robin, least
               request, random, a hash of the request's key), else peak-EWMA, power of two choices
    endpoint   mutual TLS (or plaintext if unmeshed) to that endpoint, pooled
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from controlplane.names import split_authority
from controlplane.protocol import Endpoint
from controlplane.routefilters import Redirect
from proxy import traffic
from proxy.access import at_the_edge
from proxy.accesslog import access_log, chosen_format
from proxy.balancer import P2cBalancer
from proxy.balancing import Picker, RequestKeys, caller_address, chosen_balancer, hash_input, set_cookie
from proxy.discovery import Discovery
from proxy.egress import entry_targets, leaves_the_mesh, outside_the_mesh
from proxy.endpoint import exchange
from proxy.errors import BadRequest, ConnectFailed, NoEndpoints, ProxyError, UnknownService
from proxy.exchange import EMPTY, Handler, Layer, Request, Response, header_of
from proxy.filters import Mirrors, redirect_location, route_filters
from proxy.gatewayroutes import asked_for, choose, host_of, sent_to_https
from proxy.layers import FateLog, count_attempts, errors, record_fate, record_metrics
from proxy.metrics import ProxyMetrics
from proxy.policies import PolicyWatch
from proxy.pool import ConnectionPool, Dest
from proxy.poollimits import Limiters, pool_limits
from proxy.requestid import request_id
from proxy.tap import TapHub
from proxy.tasks import TaskSet
from proxy.tracing import SpanLog, trace_layer

TO_HTTPS = Redirect(301, scheme="https")  # an Istio Gateway server's httpsRedirect: the same host and path, port 443


def parse_target(request: Request) -> None:
    """Fill ``authority`` and ``path`` from an absolute-form target or the Host header."""
    target = request.head.target
    if target.startswith("/"):
        host = request.head.header(b"host")
        if not host:
            raise BadRequest("origin-form request without a Host header: send an absolute URI via HTTP_PROXY, or a Host header")
        request.authority, request.path = host.decode("latin-1"), target
        return
    if target[:7].lower() == "http://":
        authority, path = _split_absolute(target[7:])
        if not authority:
            raise BadRequest(f"request target {target!r} has no host")
        request.authority, request.path = authority, path
        return
    if target.lower().startswith("https://") or request.head.method == "CONNECT":
        raise BadRequest("HTTPS through the mesh proxy is not supported: call the service over http://, the mesh adds mutual TLS")
    raise BadRequest(f"request target {target[:100]!r} is neither an absolute http:// URI nor an absolute path")


def _split_absolute(rest: str) -> tuple[str, str]:
    """``host:port/p?q#f`` (an absolute URI after its scheme) -> (``host:port``, ``/p?q``): the
    fragment is never sent, and an empty path is ``/``."""
    rest = rest.partition("#")[0]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    path = rest[cut:]
    return rest[:cut], ("/" + path if path.startswith("?") else path) or "/"


def target() -> Layer:
    def layer(inner: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            parse_target(request)
            return await inner(request)

        return handle

    return layer


def gateway_target(front: str, policies: PolicyWatch, rng: random.Random) -> Layer:
    """An ingress gateway's target: while no HTTPRoute is attached to a Gateway it serves, every
    request goes to ``front`` (the demo's front service, ``name.namespace:port``), whatever Host
    a browser sent; once routes are attached, the one that matches decides (proxy/gatewayroutes.py)
    and becomes the request's route — its filters, timeouts and retries act on the way to its
    backend, and the Host header stays the client's, as Envoy keeps it. No match: 404."""

    def layer(inner: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            target = request.head.target
            request.path = target if target.startswith("/") else _split_absolute(target.partition("://")[2])[1]
            secure = request.peer.scheme == "https"  # at the TLS port: the routes of HTTPS listeners; else of HTTP ones
            # as Envoy tells the backend: the scheme, and who a mutual TLS client's certificate says it is (never what a client sent)
            request.head.headers = [(n, v) for n, v in request.head.headers if n not in (b"x-forwarded-proto", b"x-forwarded-client-cert")]
            request.head.headers.append((b"x-forwarded-proto", b"https" if secure else b"http"))
            if request.peer.client_certificate is not None:
                request.head.headers.append((b"x-forwarded-client-cert", request.peer.client_certificate.encode()))
            if not policies.gateway_routes:  # the demo's gateway as it comes: one service, the browser's Host replaced by it
                request.authority = front
                request.head.headers = [(n, v) for n, v in request.head.headers if n != b"host"]
                request.head.headers.append((b"host", front.encode()))
                return await inner(request)
            routes = tuple(r for r in policies.gateway_routes if (r.protocol == "HTTPS") == secure)
            request.asked_for = asked_for(request)
            host = host_of(request.asked_for)
            if not secure and (redirecting := sent_to_https(routes, host)) is not None:  # Istio's httpsRedirect
                location = redirect_location(TO_HTTPS, request.asked_for, request.path, None)
                request.fate.route = f"{redirecting.route.namespace}/{redirecting.route.name}"
                request.fate.filters = f"redirect 301 to {location} (httpsRedirect of a server of {redirecting.gateway})"
                return Response(301, [(b"location", location.encode("latin-1"))], EMPTY)
            chosen = choose(routes, host, request, rng)
            if chosen is None:
                names = ", ".join(dict.fromkeys(f"Ingress {r.gateway}" if r.parent_kind == "Ingress"  # or a VirtualService
                                                else f"{r.route.kind} {r.route.namespace}/{r.route.name}" for r in routes)) or "(none)"
                over = " (its HTTPS listeners)" if secure else ""
                request.fate.no_route = f"no rule of {names} attached to this gateway{over} matches host {host}"
                raise traffic.NoRoute(f"no rule of the routes attached to this gateway{over} ({names}) matches "
                                      f"{request.head.method} {request.path} (host {host}): at a Gateway, only what a route matches gets in")
            gateway_route, choice = chosen
            request.rule, request.backend, request.fate.route, request.fate.backend = choice.rule, choice.chosen, choice.route, choice.backend
            request.fate.subset = choice.subset  # a VirtualService's destination at an Istio Gateway: a DestinationRule's subset
            # a redirect-only rule answers in its filter: the front service is only there to be resolved on the way
            request.authority = f"{choice.backend}.{gateway_route.route.namespace}" if choice.backend else front
            return await inner(request)

        return handle

    return layer


def discover(discovery: Discovery, outside: Callable[[Request, str, int | None], None] | None = None) -> Layer:
    """``outside``: what to do with a host that is not a Service (None: refuse it, as a gateway does)."""

    def layer(inner: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            try:
                host, port = split_authority(request.authority)
            except ValueError as exc:
                raise BadRequest(str(exc)) from None
            try:
                endpoint_set = await discovery.resolve(host)
            except UnknownService:
                if outside is None or not leaves_the_mesh(host):
                    raise
                outside(request, host, port)  # egress: a ServiceEntry, passthrough, or refused
                try:
                    return await inner(request)
                except ConnectFailed as exc:  # a mistyped Service name ends here too: say where it went
                    raise ConnectFailed(f"{exc.message} — {host!r} is not a Service of the mesh, so the request went "
                                        f"outside it ({request.fate.egress.partition(':')[0]}); check the name with "
                                        f"'meshdojo stat svc'") from None
            service, _, rest = endpoint_set.service.partition(".")
            request.dst_service, request.dst_namespace = service, rest.partition(".")[0]
            request.endpoints = endpoint_set.ordered
            return await inner(request)

        return handle

    return layer


def balance(picker: Picker, policies: PolicyWatch | None = None, own_pod: str = "") -> Layer:
    """One endpoint of the request's: as a DestinationRule's loadBalancer for its host (or subset)
    says, else by peak-EWMA power of two choices. ``own_pod``: this sidecar's pod, the caller's
    address for useSourceIp when the app reaches the sidecar over loopback (its pod's, in Istio)."""

    def layer(inner: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            endpoints = request.endpoints
            if not endpoints:
                raise NoEndpoints(f"service {request.dst_service}.{request.dst_namespace} has no endpoints")
            said = None
            if policies is not None and "DestinationRule" in policies.kinds:
                service = request.fate.backend or request.dst_service
                said = chosen_balancer(policies.find("DestinationRule", request.dst_namespace, service), request.fate.subset)
            if said is None:  # the common case: no DestinationRule says how
                request.endpoint = picker.p2c.pick(endpoints, key=endpoint_key)
                return await inner(request)
            spec, rule = said
            hashed = made = None
            if spec.hash_key is not None:
                peer = caller_address(request.peer.address, own_pod)
                hashed, made = hash_input(spec.hash_key, RequestKeys(header_of(request), request.path, peer, request.peer.local))
            request.endpoint = picker.pick(spec, endpoints, endpoint_key, turn=(request.dst_namespace, rule.spec.service,
                                                                                  request.fate.subset), hashed=hashed)
            request.fate.balance = f"{spec.describe()}{' (no key: any pod)' if spec.hash_key and hashed is None else ''} " \
                                   f"by DestinationRule {rule.namespace}/{rule.name}"
            response = await inner(request)
            if made is not None and spec.hash_key is not None and response.error is None:
                response.headers = [*response.headers, (b"set-cookie", set_cookie(spec.hash_key, made))]
            return response

        return handle

    return layer


def endpoint_key(ep: Endpoint) -> tuple[str, int]:
    return ep.key


def endpoint(pool: ConnectionPool, balancer: P2cBalancer, own_identity: str) -> Handler:
    async def handle(request: Request) -> Response:
        ep = request.endpoint
        assert ep is not None
        dest = Dest(ep.address, ep.port, ep.identity if ep.meshed else None, request.origin_sni)
        # tell the destination which service was asked for (as Linkerd does), for its policies
        request.head.headers = [(n, v) for n, v in request.head.headers if n != b"l5d-dst-canonical"]
        service = request.fate.backend or request.dst_service
        canonical = b"" if request.fate.egress else \
            f"l5d-dst-canonical: {service}.{request.dst_namespace}.svc.cluster.local\r\n".encode()  # not to the world outside
        where = ep.instance or f"{ep.address}:{ep.port}"
        try:
            response = await exchange(pool, dest, request, canonical, balancer.load(ep.key),
                                      max_requests=request.max_requests_per_connection)
        except ProxyError as exc:
            request.fate.attempts.append(f"{where} -> {exc.code}")
            raise
        request.fate.attempts.append(f"{where} -> {response.status}")
        return response

    return handle


def forget_gone_endpoints(discovery: Discovery, balancer: P2cBalancer, breakers: traffic.Breakers,
                          policies: PolicyWatch | None = None) -> None:
    """An endpoint gone from every service (and from every ServiceEntry) is forgotten by the
    balancer and the breakers (instances come and go on new ports: neither may keep state for
    each one ever seen)."""

    def forget() -> None:
        known: set[object] = set(discovery.known_keys()) | (entry_targets(policies.service_entries) if policies else set())
        balancer.forget_except(known)
        breakers.forget_except(known)

    discovery.on_change(forget)


def build_internal_sender(discovery: Discovery, pool: ConnectionPool, own_identity: str, policies: PolicyWatch,
                          own_ports: Callable[[], set[int]] = set, rng: random.Random | None = None, clock=time.monotonic) -> Handler:
    """The sidecar's own requests (span batches to a collector: proxy/zipkin.py), not the app's:
    target -> discover (a Service, or a host outside the mesh as the app's would go) -> balance
    -> endpoint (mutual TLS to a meshed one). No policies, fates, metrics or traces: failures
    are raised, and nothing of them is counted as the workload's traffic."""
    rng = rng or random.Random()
    balancer = P2cBalancer(rng, clock)
    handler = balance(Picker(balancer, rng))(endpoint(pool, balancer, own_identity))
    return target()(discover(discovery, outside_the_mesh(policies, own_ports))(handler))


def build_outbound_stack(discovery: Discovery, pool: ConnectionPool, metrics: ProxyMetrics, own_identity: str,
                         policies: PolicyWatch, fates: FateLog, breakers: traffic.Breakers, rng: random.Random | None = None,
                         clock=time.monotonic, gateway: str | None = None, tap: TapHub | None = None, workload: str = "",
                         tasks: TaskSet | None = None, own_ports: Callable[[], set[int]] = set,
                         spans: SpanLog | None = None, write_access: Callable[[str], None] = print) -> Handler:
    rng = rng or random.Random()
    tasks = tasks or TaskSet()
    balancer: P2cBalancer = P2cBalancer(rng, clock)
    forget_gone_endpoints(discovery, balancer, breakers, policies)
    handler = endpoint(pool, balancer, own_identity)  # mutual TLS to the chosen endpoint, pooled
    # one endpoint: as a DestinationRule's loadBalancer says, else by peak-EWMA power of two choices
    handler = balanced = balance(Picker(balancer, rng), policies, workload if gateway is None else "")(handler)
    handler = traffic.breaker(breakers, metrics)(handler)  # skip tripped endpoints
    handler = pool_limits(Limiters(policies), metrics)(handler)  # connectionPool: in flight + pending, else 503 overflow
    handler = traffic.try_timeout(metrics)(handler)  # timeouts.backendRequest, per attempt
    handler = count_attempts(metrics)(handler)  # every actual attempt per route (route_actual_response_total)
    handler = traffic.retry(traffic.Budgets(policies, clock), metrics)(handler)  # retries within the budget
    handler = traffic.request_timeout(metrics)(handler)  # timeouts.request, retries included
    handler = traffic.concrete(discovery, policies)(handler)  # the chosen backend's endpoints (of its subset)
    # a RequestMirror's copies go straight to balance + endpoint, counted like the app's own requests (so edges show them)
    mirrored = record_metrics("outbound", metrics, client_id_of_peer=False)(errors("outbound", metrics)(balanced))
    mirrors = Mirrors(discovery, mirrored, metrics, tasks.spawn, rng, policies)
    handler = route_filters(mirrors)(handler)  # the rule's filters: redirect, headers, rewrite, mirror
    handler = traffic.rule_fault(metrics, rng)(handler)  # a VirtualService rule's fault, before its filters and retries
    handler = traffic.route(policies, rng, gateway is not None)(handler)  # HTTPRoute (or VirtualService) match, weighted backend
    plain = count_attempts(metrics)(balanced)  # no policy for this service: one try, counted as the route's attempt
    handler = traffic.policy_layers(policies, shaped=handler)(plain)  # the layers above, for services with policies
    outside = None if gateway is not None else outside_the_mesh(policies, own_ports)  # egress (a gateway has none)
    handler = discover(discovery, outside)(handler)  # logical service -> endpoint set, or egress
    if gateway is not None:  # the mesh's edge: RequestAuthentication and AuthorizationPolicy that select the gateway
        handler = at_the_edge(policies, metrics)(handler)
    # request target -> logical service + path (a gateway's: its attached routes decide, or its one front service)
    handler = (target() if gateway is None else gateway_target(gateway, policies, rng))(handler)
    handler = errors("outbound", metrics)(handler)  # failures -> 5xx with x-meshdojo-error
    handler = record_metrics("outbound", metrics, client_id_of_peer=False)(handler)  # golden metrics
    handler = record_fate(fates, tap, workload)(handler)  # keep each request's fate; tap and x-meshdojo-debug show it
    handler = access_log(lambda: chosen_format(policies.access_log, None, "outbound"), write_access,  # a Telemetry's
                         keep=lambda: policies.access_filter)(handler)
    if spans is not None:  # a span of each sampled request, the trace's context passed on
        handler = trace_layer("outbound", spans, policies.trace_sampling, rng)(handler)
    return request_id(rng, edge=gateway is not None)(handler)  # one x-request-id on every hop (an edge's own)
