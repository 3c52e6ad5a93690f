"""Who may come in: the RequestAuthentication and AuthorizationPolicy layers, shared by a
workload's inbound side and the ingress gateways (the edge of the mesh, as Istio's).

    authn   RequestAuthentication: an end user's JWT verified (proxy/jwt.py); 401 if invalid
    authz   AuthorizationPolicy: CUSTOM first (an external authorizer asked: proxy/extauthz.py),
            then DENY, then an ALLOW must match (403); dry-run ones report

Which policies apply is decided once per policy snapshot from what the workload *is*
(controlplane/selection.py), never from what a request says; the rules read the request's
facts (controlplane/authzrules.py), built here from what the proxy verified.
"""

from __future__ import annotations

import logging

from controlplane import inboundpolicy, linkerdroutes, linkerdserver
from controlplane.authzrules import RequestFacts
from controlplane.extauthz import Denied, no_provider, unreachable, with_headers
from controlplane.policy import AuthzSpec, Resource
from controlplane.providers import HttpProvider
from proxy.decisions import authorize, custom_check
from proxy.exchange import BytesBody, Handler, Layer, Request, Response, header_of
from proxy.extauthz import ask
from proxy.jwt import Refused, Verified, without_cookie, without_param
from proxy.metrics import ProxyMetrics
from proxy.policies import PolicyWatch

log = logging.getLogger("meshdojo.proxy.access")


def authorize_requests(policies: PolicyWatch, metrics: ProxyMetrics, own_namespace: str,
                       default: str = inboundpolicy.DEFAULT, send: Handler | None = None, pod_port: int | None = None) -> Layer:
    """AuthorizationPolicy, in Istio's order: CUSTOM first (its provider asked through ``send``,
    this proxy's outbound side); then DENY; if any ALLOW exists, one must match; else Linkerd's
    default inbound policy (``default``) decides. Which policies apply is decided by this
    workload (see controlplane.selection) — a client's Host or l5d-dst-canonical header cannot
    choose them. ``pod_port``: the port the pod declares, which ``ports`` read (see request_facts)."""

    def layer(inner: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            rules = policies.applied("AuthorizationPolicy").resources
            routes = policies.applied("ServerRoutes").resources  # Linkerd's HTTPRoutes on the Server that covers this port
            if routes:  # the request goes by one of them (none: 404), and only its policies and the Server's decide
                route = linkerdroutes.chosen(routes, request.path, header_of(request), request.head.method)
                if route is None:
                    return unrouted(request, policies.applied("Server").chosen, routes)
                rules = tuple(r for r in rules if linkerdserver.route_of(r) in (None, route.name))
            if not rules and default == inboundpolicy.DEFAULT:
                return await inner(request)
            facts = request_facts(request, own_namespace, pod_port)
            custom = custom_check(rules, facts)
            if custom is None:
                return await decide(request, rules, facts, inner)
            spec: AuthzSpec = custom.spec  # type: ignore[assignment]
            name, provider = f"{custom.namespace}/{custom.name}", policies.providers.get(spec.provider or "")
            if not isinstance(provider, HttpProvider):  # none by that name, or not an authorizer (zipkin)
                verdict = no_provider(name, spec.provider or "")
            else:  # (every stack that authorizes has a way out: send)
                verdict = await ask(provider, request, send) if send is not None else unreachable(provider, "no way out")
            metrics.ext_authz.labels(spec.provider, verdict.result).inc()
            said = f"ext_authz {spec.provider} for {name}" + (f" ({verdict.reason})" if verdict.reason else "")
            if isinstance(verdict, Denied):
                metrics.authz_deny.labels(name).inc()
                request.fate.authz = f"deny by {said}"
                log.info("denied %s %s from %s by %s", request.head.method, request.path, request.peer.identity or "unauthenticated", said)
                return Response(verdict.status, [*verdict.headers, (b"x-meshdojo-error", b"ext_authz_denied")],
                                BytesBody(verdict.body), error="ext_authz_denied")
            request.head.headers = with_headers(request.head.headers, verdict.upstream)
            response = await decide(request, rules, facts, inner, f"allow by {said}")
            response.headers = with_headers(response.headers, verdict.downstream) if verdict.downstream else response.headers
            return response

        async def decide(request: Request, rules: tuple[Resource, ...], facts: RequestFacts, inner: Handler,
                         custom: str = "") -> Response:
            decision = authorize(rules, facts, default)
            for name in decision.audited:
                metrics.authz_audit.labels(name).inc()
                log.info("AUDIT %s: %s %s from %s", name, request.head.method, request.path, request.peer.identity or "unauthenticated")
            for action, result, name in decision.dry_run:  # istio.io/dry-run: reported, never enforced
                metrics.authz_dry_run.labels(action, result, name).inc()
                log.info("dry-run %s policies: %s%s: %s %s from %s", action.upper(), result, f" by {name}" if name else "",
                         request.head.method, request.path, request.peer.identity or "unauthenticated")
            request.fate.authz = "; ".join(filter(None, (custom, decision.describe())))
            if decision.allowed:
                metrics.authz_allow.labels(decision.label).inc()
                return await inner(request)
            metrics.authz_deny.labels(decision.label).inc()
            log.info("denied %s %s from %s by %s", request.head.method, request.path, request.peer.identity or "unauthenticated",
                     decision.describe())
            server = linkerdserver.guarding_server(decision.unmatched) if decision.unmatched else None
            if server is not None:  # every ALLOW in force is a Linkerd Server's: say so in its words
                body = (f"meshdojo: denied by Server {server} (Linkerd's): no ServerAuthorization or AuthorizationPolicy "
                        "lets this caller in\n").encode()
            elif decision.default is not None:
                body = (f"meshdojo: denied by the default inbound policy {decision.default} ({inboundpolicy.ANNOTATION}): "
                        f"an AuthorizationPolicy that ALLOWs this caller lets it in\n").encode()
            else:
                body = f"meshdojo: denied by AuthorizationPolicy {decision.policy}\n".encode()
            return Response(403, [(b"content-type", b"text/plain"), (b"x-meshdojo-error", b"authz_denied")], BytesBody(body),
                            error="authz_denied")

        return handle

    return layer


def authenticate_requests(policies: PolicyWatch, metrics: ProxyMetrics) -> Layer:
    """RequestAuthentication, as Envoy's jwt_authn filter for Istio: a request with no token
    passes with no principal; an invalid one is refused with 401; a valid one gives the request
    its principal and claims (for AuthorizationPolicy), and leaves the app's request without the
    token unless ``forwardOriginalToken`` (proxy/jwt.py checks it)."""

    def layer(inner: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            checker = policies.jwt
            if checker is None:
                return await inner(request)
            outcome = checker.check(header_of(request), request.path)
            if outcome is None:  # no token: no principal, and AuthorizationPolicy decides
                return await inner(request)
            if isinstance(outcome, Refused):
                metrics.jwt.labels(outcome.policy, "refused").inc()
                request.fate.authn = f"refused: {outcome.reason}"
                realm = f"http://{request.authority}{request.path.partition('?')[0]}"
                body = (f"{outcome.reason}\nmeshdojo: refused by RequestAuthentication {outcome.policy or '(none names this issuer)'}: "
                        "send a valid token, or none\n").encode()
                return Response(401, [(b"content-type", b"text/plain"), (b"x-meshdojo-error", b"jwt_refused"),
                                      (b"www-authenticate", f'Bearer realm="{realm}", error="invalid_token"'.encode("latin-1"))],
                                BytesBody(body), error="jwt_refused")
            metrics.jwt.labels(outcome.policy, "verified").inc()
            request.jwt = outcome.auth
            request.fate.authn = f"jwt {outcome.auth.principal} by {outcome.policy}"
            request.head.headers = jwt_headers(request.head.headers, outcome)
            if outcome.location.param and not outcome.rule.forward:  # nor in the URL: out of the app's logs
                request.path = without_param(request.path, outcome.location.param)
            return await inner(request)

        return handle

    return layer


def jwt_headers(headers: list[tuple[bytes, bytes]], verified: Verified) -> list[tuple[bytes, bytes]]:
    """The app's request headers after a verified token: without the token (unless the rule
    forwards it) and with the rule's output headers, which replace any the caller sent."""
    rule = verified.rule
    outputs = {h.lower().encode() for h, _ in rule.claim_headers} | ({rule.payload_header.lower().encode()} if rule.payload_header else set())
    dropped = outputs | ({verified.location.header.encode()} if verified.location.header and not rule.forward else set())
    kept = [(n, v) for n, v in headers if n not in dropped]
    if verified.location.cookie and not rule.forward:  # the token's cookie leaves; the app keeps its others
        kept = [(n, without_cookie(v, verified.location.cookie) if n == b"cookie" else v) for n, v in kept]
        kept = [(n, v) for n, v in kept if n != b"cookie" or v]
    if rule.payload_header:
        kept.append((rule.payload_header.lower().encode(), verified.payload.encode()))
    for header, claim in rule.claim_headers:
        value = verified.auth.claims.get(claim)
        if isinstance(value, str | int | float | bool):
            kept.append((header.lower().encode(), (str(value).lower() if isinstance(value, bool) else str(value)).encode("latin-1", "replace")))
    return kept


def unrouted(request: Request, covering: Resource | None, routes: tuple[Resource, ...]) -> Response:
    """404 for a request that no route of the Server matches: Linkerd's per-route policy, where
    a Server with HTTPRoutes serves only what they match, whoever asks."""
    server = f"{covering.namespace}/{covering.name}" if covering is not None else "?"
    names = ", ".join(r.name for r in routes)
    request.fate.authz = f"no route of Server {server} matches"
    log.info("no route of Server %s matches %s %s from %s", server, request.head.method, request.path,
             request.peer.identity or "unauthenticated")
    body = (f"meshdojo: no HTTPRoute of Server {server} (Linkerd's) matches {request.head.method} "
            f"{request.path.partition('?')[0]}: once routes name a Server, it serves only what they match ({names})\n")
    return Response(404, [(b"content-type", b"text/plain"), (b"x-meshdojo-error", b"no_route")], BytesBody(body.encode()),
                     error="no_route")


def request_facts(request: Request, own_namespace: str, pod_port: int | None = None) -> RequestFacts:
    """What an AuthorizationPolicy may read of ``request``: the verified caller, the request, the
    connection's two ends (never anything the caller could forge about who it is). The destination
    port is the one the pod declares (``pod_port``: on a cluster the sidecar took it; locally the
    sidecar listens elsewhere), else the one the request arrived on."""
    source_ip = request.peer.address.rpartition(":")[0].strip("[]")
    local_ip, _, local_port = request.peer.local.rpartition(":")
    host = (request.head.header(b"host") or b"").decode("latin-1")  # as the caller wrote it (a gateway's authority is its upstream)
    return RequestFacts(request.peer.identity, own_namespace, request.head.method, request.path, host,
                        header_of(request), source_ip, local_ip.strip("[]"), pod_port or int(local_port or 0), request.jwt)


def at_the_edge(policies: PolicyWatch, metrics: ProxyMetrics) -> Layer:
    """An ingress gateway's RequestAuthentication and AuthorizationPolicy, when one selects it (as
    Istio's ``selector: {istio: ingressgateway}``): the edge decides before any request enters
    the mesh. The caller is outside, in plaintext: its facts are its address and its request.
    A CUSTOM policy's provider is asked through the layers below (discovery on)."""

    def layer(plain: Handler) -> Handler:
        shaped = authenticate_requests(policies, metrics)(
            authorize_requests(policies, metrics, policies.workload.namespace, send=plain)(plain))

        async def handle(request: Request) -> Response:
            return await (shaped if policies.inbound_active else plain)(request)

        return handle

    return layer
