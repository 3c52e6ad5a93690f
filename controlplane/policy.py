"""Policy resources: Kubernetes-style documents parsed once into frozen values.

Gateway API ``HTTPRoute`` where it has the field; ``policy.meshdojo.dev/v1alpha1`` kinds
(Istio's and Linkerd's field names) where it doesn't: ``FaultInjection``, ``RetryBudget``,
``CircuitBreaker``, ``AuthorizationPolicy``, ``MeshTLS``, ``RateLimit``. Every error
names the source file, the document's index and the field path, and a batch is applied only
if every document in it is valid. Each kind's fields are defined once, in
:mod:`controlplane.policyschema`: a document is checked against them (types, ranges, known
fields) before it is read here, where only what a schema cannot say is checked; the CRDs are
generated from the same definitions.

    apiVersion: policy.meshdojo.dev/v1alpha1
    kind: FaultInjection
    metadata: {name: ratings-delay, namespace: bookinfo}
    spec:
      targetRef: {kind: Service, name: ratings}
      match: {path: {type: PathPrefix, value: /ratings}, headers: [{name: end-user, value: jason}]}
      delay: {fixedDelay: 7s, percentage: {value: 100}}
      abort: {httpStatus: 503, percentage: {value: 30}}
      duration: 2m          # optional: the resource removes itself after this long
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from controlplane import (
    authzrules,
    backendtls,
    egress,
    gatewayapi,
    ingress,
    kindnames,
    linkerdauthn,
    linkerdratelimit,
    linkerdroutes,
    linkerdserver,
    policyschema,
    providers,
    requestauthn,
    routeannotations,
    routeschema,
    telemetrypolicy,
)
from controlplane.authzrules import AuthzRule
from controlplane.durations import parse_duration
from controlplane.fields import FieldReader
from controlplane.foreignkinds import FOREIGN_KINDS, foreign_kind_message
from controlplane.istioschema import ISTIO_GATEWAY, read_as
from controlplane.linkerdschema import LINKERD_AUTHORIZATION_POLICY, LINKERD_HTTP_ROUTE
from controlplane.matching import PathMatch, RequestMatch, read_match
from controlplane.policyschema import GATEWAY_API, GATEWAY_GROUP, POLICY_API, TARGET_KINDS
from controlplane.requestauthn import RequestAuthnSpec
from controlplane.resiliencespecs import BreakerSpec, BudgetSpec, PoolLimits, RateLimitSpec
from controlplane.routefilters import backend_filters, parse_filters
from controlplane.routeschema import METHODS, PATH_TYPES
from controlplane.routespec import Backend, ParentGateway, Retry, RouteRule, RouteSpec
from controlplane.schema import CORE_GROUPS, check
from controlplane.spiffe import is_dns_label
from controlplane.telemetrypolicy import TelemetrySpec
from controlplane.workloadselector import WorkloadSelector

__all__ = ["GATEWAY_API", "KINDS", "METHODS", "PATH_TYPES", "POLICY_API", "TARGET_KINDS", "Backend", "ParentGateway", "Retry",
           "RouteRule", "RouteSpec", "WorkloadSelector"]
KINDS = {kind: api for kind, (api, _spec) in policyschema.KINDS.items()}
KIND_ALIASES = kindnames.aliases()  # singulars, plurals, short names: what get and delete take


class PolicyError(ValueError):
    def __init__(self, source: str, index: int, field: str, message: str) -> None:
        super().__init__(f"{source}: document {index}: {field}: {message}")
        self.source, self.index, self.field, self.message = source, index, field, message

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "index": self.index, "field": self.field, "message": self.message}


@dataclass(frozen=True, slots=True)
class FaultSpec:
    service: str | None  # the Service targeted (None when another kind of target selects the workloads)
    match: RequestMatch | None
    delay_seconds: float | None
    delay_percent: float
    abort_status: int | None
    abort_percent: float
    duration: float | None
    workloads: WorkloadSelector | None = None


@dataclass(frozen=True, slots=True)
class Resource:
    kind: str
    namespace: str
    name: str
    spec: Spec
    document: dict[str, Any]  # as applied, for `get -o yaml`

    @property
    def target(self) -> str | None:
        """The service this resource is about (None: the whole namespace, or a route whose
        parent is a ServiceEntry: see ``RouteSpec.entry``)."""
        return getattr(self.spec, "service", None)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)


class _Reader(FieldReader):
    def __init__(self, source: str, index: int) -> None:
        self.source, self.index = source, index

    def fail(self, field: str, message: str) -> PolicyError:
        return PolicyError(self.source, self.index, field, message)


def parse(raw: Any, source: str, index: int, default_namespace: str = "default", derived: bool = False) -> Resource:
    """One document as a Resource. ``derived``: a document meshdojo made from others (a Linkerd
    Server's AuthorizationPolicies), whose name has a dot so that no applied one can have it."""
    r = _Reader(source, index)
    top = r.obj(raw, "", {"apiVersion", "kind", "metadata", "spec", "status"}, {"apiVersion", "kind", "metadata", "spec"})
    # a status (as `get -o yaml` prints one) is the control plane's to write: ignored, as kubectl apply ignores it
    top = {k: v for k, v in top.items() if k != "status"}
    kind = policyschema.internal_kind(top["kind"], str(top["apiVersion"]))  # Linkerd's AuthorizationPolicy beside ours
    if kind in FOREIGN_KINDS and (kind not in KINDS or top["apiVersion"] not in policyschema.api_versions(kind)):
        raise r.fail("kind", foreign_kind_message(kind, top["apiVersion"]))
    if kind not in KINDS:
        raise r.fail("kind", f"unknown kind {kind!r} (supported today: {', '.join(map(policyschema.kube_kind, KINDS))})")
    if top["apiVersion"] not in policyschema.api_versions(kind):
        raise r.fail("apiVersion", f"{top['kind']} is {' or '.join(policyschema.api_versions(kind))}, not {top['apiVersion']!r}")
    meta = r.obj(top["metadata"], "metadata", {"name", "namespace", "labels", "annotations"}, {"name"})
    name, namespace = r.string(meta["name"], "metadata.name"), r.string(meta.get("namespace", default_namespace), "metadata.namespace")
    for field, value in (("metadata.name", name.partition(".")[0] if derived else name), ("metadata.namespace", namespace)):
        if not is_dns_label(value):
            raise r.fail(field, f"{value!r} must be lowercase letters, digits and '-'")
    for dotted, why in policyschema.REFUSED.get(kind, {}).items():  # by name, with why (the schema would say "unknown")
        parent, _, last = dotted.rpartition(".")
        holder = top["spec"].get(parent) if parent else top["spec"]
        if isinstance(holder, dict) and last in holder:
            raise r.fail(f"spec.{dotted}", why)
    if kind == "HTTPRoute" and isinstance(top["spec"], dict) and isinstance(top["spec"].get("parentRefs"), list):
        for i, ref in enumerate(top["spec"]["parentRefs"]):  # Linkerd reads this form too; here a Server's route is Linkerd's kind
            if isinstance(ref, dict) and ref.get("kind") == "Server":
                raise r.fail(f"spec.parentRefs[{i}].kind", f"Server: {linkerdauthn.GATEWAY_ROUTE_HINT}")
    check(policyschema.KINDS[kind][1], top["spec"], "spec", r)  # shape first: below, only what a schema cannot say
    # Linkerd's HTTPRoute on a Service is Gateway API's route in Linkerd's group (Linkerd's Dynamic Request Routing task)
    service_route = kind == LINKERD_HTTP_ROUTE and linkerdroutes.on_service(r, top["spec"])
    if service_route:
        check(routeschema.HTTP_ROUTE, top["spec"], "spec", r)
    for field, other, why in _service_ref_namespaces("HTTPRoute" if service_route else kind, top["spec"]):
        if other != namespace:
            fix = "name Services of this namespace" if "backendRefs" in field else f"set metadata.namespace to {other}"
            raise r.fail(field, f"{other!r} is another namespace: {why} (here {namespace}); leave namespace out, or {fix}")
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise r.fail("metadata.annotations", f"expected a mapping of names to strings, got {type(annotations).__name__}")
    if kind == "HTTPRoute" or service_route:  # Linkerd's retry and timeout annotations mean rule fields here
        return Resource(kind, namespace, name, _route(r, top["spec"], routeannotations.read(r, annotations), namespace), top)
    ours = read_as(kind)  # Istio's AuthorizationPolicy (ServiceEntry ...) is read as ours
    if ours == "AuthorizationPolicy":  # Istio's istio.io/dry-run: evaluated and reported, never enforced
        return Resource(kind, namespace, name, _authz(r, top["spec"], authzrules.dry_run(r, annotations, top["spec"])), top)
    if kind == "ExtensionProvider":  # named as Istio's meshConfig names a provider
        return Resource(kind, namespace, name, providers.read_provider(r, top["spec"], name, namespace), top)
    parsers = {"FaultInjection": _fault, "RetryBudget": _budget, "CircuitBreaker": _breaker, "MeshTLS": _meshtls, "PeerAuthentication": _peer_authentication, "RateLimit": _ratelimit,
               "ServiceEntry": egress.read_service_entry, "Sidecar": egress.read_sidecar, "Telemetry": _telemetry,
               "RequestAuthentication": _requestauthn, "BackendTLSPolicy": backendtls.read, "Server": linkerdserver.read_server,
               "NetworkAuthentication": linkerdauthn.read_network}
    if kind == "Ingress":  # its class may be named by an annotation; its rules are the routes its gateway serves
        return Resource(kind, namespace, name, _ingress(r, top, annotations, namespace, name), top)
    if kind == "ServerAuthorization":  # its ServiceAccounts are of its namespace unless they say
        return Resource(kind, namespace, name, linkerdserver.read_server_authorization(r, top["spec"], namespace), top)
    if kind in ("VirtualService", "DestinationRule", ISTIO_GATEWAY):  # their hosts are Services of their namespace
        # imported when one is read: a sidecar that never sees Istio's kinds does not carry their reader (issue #17's RSS)
        from controlplane import istiogateway, istionetworking

        read = {"VirtualService": istionetworking.read_virtual_service, "DestinationRule": istionetworking.read_destination_rule,
                ISTIO_GATEWAY: istiogateway.read_gateway}[kind]
        return Resource(kind, namespace, name, read(r, top["spec"], namespace), top)
    linkerd = {LINKERD_AUTHORIZATION_POLICY: linkerdauthn.read_policy, "MeshTLSAuthentication": linkerdauthn.read_mesh_tls,
               LINKERD_HTTP_ROUTE: linkerdroutes.read_route, "HTTPLocalRateLimitPolicy": linkerdratelimit.read_rate_limit}
    if kind in linkerd:  # their refs are of their namespace unless they say
        return Resource(kind, namespace, name, linkerd[kind](r, top["spec"], namespace), top)
    if kind == "Gateway":  # an HTTPS listener's Secrets are of the Gateway's namespace
        return Resource(kind, namespace, name, gatewayapi.read_gateway(r, top["spec"], namespace, annotations), top)
    return Resource(kind, namespace, name, parsers[ours](r, top["spec"]), top)


def _service_ref(ref: dict[str, Any]) -> str:
    return ref["name"]


def _service_ref_namespaces(kind: str, spec: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(field, namespace, why it must be the resource's own) of each Service reference that names one."""
    found = []
    if kind == "HTTPRoute":
        found += [(f"spec.parentRefs[{i}].namespace", ref["namespace"], "a route attaches to a Service of its own namespace")
                  for i, ref in enumerate(spec["parentRefs"]) if "namespace" in ref and parent_kind(ref) != "Gateway"]
        found += [(f"spec.rules[{i}].backendRefs[{j}].namespace", ref["namespace"],
                   "a route's backends are Services of its own namespace (meshdojo has no ReferenceGrant)")
                  for i, rule in enumerate(spec.get("rules", [])) for j, ref in enumerate(rule.get("backendRefs", []))
                  if "namespace" in ref]
    elif kind in ("RetryBudget", "CircuitBreaker") and "namespace" in spec["targetRef"]:
        found.append(("spec.targetRef.namespace", spec["targetRef"]["namespace"],
                      f"a {kind} applies to a Service of its own namespace"))
    return found


def _workloads(r: _Reader, spec: dict[str, Any], required: bool = False) -> WorkloadSelector | None:
    """``targetRef`` or Istio's ``selector.matchLabels``; neither: the whole namespace (the whole
    mesh in the meshdojo-system namespace)."""
    if "targetRef" in spec and "selector" in spec:
        raise r.fail("spec.selector", "give spec.targetRef or spec.selector, not both")
    if "targetRef" in spec:
        ref = spec["targetRef"]
        if "namespace" in ref:
            raise r.fail("spec.targetRef.namespace", "a policy targets workloads of its own namespace: set metadata.namespace instead")
        return WorkloadSelector(ref.get("kind", "Service"), ref["name"])
    if "selector" in spec:
        return WorkloadSelector("Labels", labels=tuple(sorted(spec["selector"]["matchLabels"].items())))
    if required:
        kinds = policyschema.SERVED_KINDS
        raise r.fail("spec.targetRef", f"required: the workloads this applies to (kind {' or '.join(kinds)}), or spec.selector.matchLabels")
    return None


def _fault(r: _Reader, spec: dict[str, Any]) -> FaultSpec:
    workloads = _workloads(r, spec, required=True)
    service = workloads.name if workloads and workloads.kind == "Service" else None
    match = read_match(r, spec["match"]) if "match" in spec else None
    delay_s, delay_pct, abort_status, abort_pct = None, 0.0, None, 0.0
    if "delay" in spec:
        delay_s = parse_duration(spec["delay"]["fixedDelay"])
        delay_pct = float(spec["delay"].get("percentage", {"value": 100})["value"])
    if "abort" in spec:
        abort_status = spec["abort"]["httpStatus"]
        abort_pct = float(spec["abort"].get("percentage", {"value": 100})["value"])
    if delay_s is None and abort_status is None:
        raise r.fail("spec", "a FaultInjection needs a delay, an abort, or both")
    duration = parse_duration(spec["duration"]) if "duration" in spec else None
    return FaultSpec(service, match, delay_s, delay_pct, abort_status, abort_pct, duration, workloads)


def canonical_kind(text: str) -> str | None:
    return text if text in KINDS else KIND_ALIASES.get(text.lower())


# -- HTTPRoute (Gateway API, GAMMA: parentRefs name a Service) ---------------------------------

def linkerd_retry(linkerd: routeannotations.RouteAnnotations) -> Retry | None:
    """The retry Linkerd's annotations ask for (with a route retry's default backoff, 25 ms)."""
    return Retry(linkerd.retry_codes, linkerd.retry_limit, 0.025) if linkerd.retry_codes is not None else None


def traffic_route(resource: Resource) -> bool:
    """Whether ``resource`` routes a Service's (ServiceEntry's, Gateway's) traffic: Gateway API's
    HTTPRoute, Istio's VirtualService, or Linkerd's on a Service (not a Linkerd route on Servers,
    for authorization)."""
    return resource.kind in ("HTTPRoute", "VirtualService") or (resource.kind == LINKERD_HTTP_ROUTE and isinstance(resource.spec, RouteSpec))


def parent_kind(ref: dict[str, Any]) -> str:
    """A parentRef's kind: as written, else Gateway API's default — a Gateway, or a Service when
    the group is the core group ("", or Linkerd's "core")."""
    return ref.get("kind") or ("Service" if ref.get("group") in CORE_GROUPS else "Gateway")


def _service_or_entry(r: _Reader, ref: dict[str, Any], field: str, role: str) -> tuple[str | None, str | None]:
    """(the Service, None) or (None, the ServiceEntry) a reference names, its group checked."""
    is_entry = ref.get("kind", "Service") == "ServiceEntry"
    if (ref.get("group", "") in CORE_GROUPS) == is_entry:
        want = "policy.meshdojo.dev (or networking.istio.io)" if is_entry else '"" (the core API group)'
        raise r.fail(f"{field}.group", f"a {ref.get('kind', 'Service')} {role}'s group is {want}")
    return (None, ref["name"]) if is_entry else (_service_ref(ref), None)


def _parent_gateway(r: _Reader, ref: dict[str, Any], namespace: str) -> ParentGateway:
    if ref.get("group", GATEWAY_GROUP) != GATEWAY_GROUP:
        raise r.fail("spec.parentRefs[0].group", f"a Gateway parent's group is {GATEWAY_GROUP} (or left out)")
    return ParentGateway(ref.get("namespace", namespace), ref["name"], ref.get("sectionName"), ref.get("port"))


def _route(r: _Reader, spec: dict[str, Any], linkerd: routeannotations.RouteAnnotations, namespace: str) -> RouteSpec:
    parent = spec["parentRefs"][0]
    gateway = _parent_gateway(r, parent, namespace) if parent_kind(parent) == "Gateway" else None
    if gateway is None:
        if "sectionName" in parent:
            raise r.fail("spec.parentRefs[0].sectionName", "names a Gateway's listener: a Service or ServiceEntry has none")
        service, entry = _service_or_entry(r, {**parent, "kind": parent_kind(parent)}, "spec.parentRefs[0]", "parent")
    else:
        service, entry = None, None
    rules = []
    for i, rule in enumerate(spec.get("rules", [{}])):
        where = f"spec.rules[{i}]"
        matches = tuple(read_match(r, m, f"{where}.matches[{j}]") for j, m in enumerate(rule.get("matches", [])))
        backends = tuple(Backend(b["name"], b.get("weight", 1), None,
                                 *backend_filters(r, b.get("filters", []), f"{where}.backendRefs[{j}]"))
                         for j, b in enumerate(rule.get("backendRefs", [])))
        if backends and not any(b.weight for b in backends):
            raise r.fail(f"{where}.backendRefs", "at least one backend needs a weight above 0")
        timeouts = rule.get("timeouts", {})
        for field, given, annotation in (("timeouts.request", "request" in timeouts, linkerd.request_timeout is not None),
                                         ("timeouts.backendRequest", "backendRequest" in timeouts, linkerd.try_timeout is not None),
                                         ("retry", "retry" in rule, linkerd.retries)):
            if given and annotation:
                raise r.fail(f"{where}.{field}", "this route's Linkerd annotations (metadata.annotations) already set it: "
                                                 "give the field or the annotation, not both")
        request_timeout = parse_duration(timeouts["request"]) if "request" in timeouts else linkerd.request_timeout
        backend_timeout = parse_duration(timeouts["backendRequest"]) if "backendRequest" in timeouts else linkerd.try_timeout
        retry = linkerd_retry(linkerd)
        if "retry" in rule:
            rr = rule["retry"]
            retry = Retry(tuple(rr.get("codes", [500, 502, 503, 504])), rr.get("attempts", 2),
                          parse_duration(rr["backoff"]) if "backoff" in rr else 0.025)
        filters = parse_filters(r, rule.get("filters", []), matches, bool(backends), where) if rule.get("filters") else None
        if gateway is not None and not backends and (filters is None or filters.redirect is None):
            raise r.fail(f"{where}.backendRefs", "a Gateway's route sends each request to a Service: name it in "
                                                 "backendRefs (or answer with a RequestRedirect filter)")
        rules.append(RouteRule(matches, backends, request_timeout, backend_timeout, retry, filters))
    return RouteSpec(service, tuple(rules), entry, gateway, tuple(spec.get("hostnames", ())) if gateway else ())


def _ingress(r: _Reader, top: dict[str, Any], annotations: dict[str, Any], namespace: str, name: str) -> ingress.IngressSpec:
    """An Ingress, with the routes its gateway serves: one per rule (named NAME, or NAME.I when
    there are several), its paths as the route's rules in the order they are matched, and
    ``defaultBackend`` as a route of its own for any host (NAME.default), tried last."""
    spec = ingress.read(r, top["spec"], annotations)
    parent = ParentGateway(namespace, name, None, None)
    single = len(spec.rules) == 1

    def route(suffix: str, host: str | None, rules: tuple[RouteRule, ...]) -> Resource:
        return Resource("HTTPRoute", namespace, name + suffix,
                        RouteSpec(None, rules, None, parent, (host,) if host else ()), top)

    routes = [route("" if single else f".{i}", rule.host,
                    tuple(RouteRule((RequestMatch(PathMatch(p.type, p.path)),), (Backend(p.service, 1),), None, None, None)
                          for p in rule.paths))
              for i, rule in enumerate(spec.rules)]
    if spec.default_service is not None:
        routes.append(route(".default", None, (RouteRule((), (Backend(spec.default_service, 1),), None, None, None),)))
    return replace(spec, routes=tuple(routes))


# -- RetryBudget, CircuitBreaker, RateLimit ----------------------------------------------------

def _budget(r: _Reader, spec: dict[str, Any]) -> BudgetSpec:
    service, entry = _service_or_entry(r, spec["targetRef"], "spec.targetRef", "target")
    return BudgetSpec(service, float(spec.get("retryRatio", 0.2)), float(spec.get("minRetriesPerSecond", 10)),
                      parse_duration(spec.get("ttl", "10s")), entry)


def _breaker(r: _Reader, spec: dict[str, Any]) -> BreakerSpec:
    penalty = parse_duration(spec.get("penalty", "1s"))
    max_penalty = parse_duration(spec.get("maxPenalty", "60s"))
    if max_penalty < penalty:
        raise r.fail("spec.maxPenalty", "must not be shorter than spec.penalty")
    pool = None
    if "connectionPool" in spec:
        raw = spec["connectionPool"]
        if not raw:
            raise r.fail("spec.connectionPool", "expected tcp.maxConnections and/or http.http1MaxPendingRequests, http.maxRequestsPerConnection")
        pool = PoolLimits.read(raw)
    outlier = pool is None or any(k in spec for k in ("consecutiveFailures", "penalty", "maxPenalty"))
    service, entry = _service_or_entry(r, spec["targetRef"], "spec.targetRef", "target")
    return BreakerSpec(service, spec.get("consecutiveFailures", 7), penalty, max_penalty,
                       float(spec.get("jitter", 0.5)), outlier, pool, entry)


def _ratelimit(r: _Reader, spec: dict[str, Any]) -> RateLimitSpec:
    rps = float(spec["requestsPerSecond"])
    workloads = _workloads(r, spec)
    return RateLimitSpec(workloads.name if workloads and workloads.kind == "Service" else None, rps,
                         spec.get("burst", max(1, int(rps))), workloads)


# -- AuthorizationPolicy and MeshTLS -----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AuthzSpec:
    service: str | None  # the Service targeted, if that is how the workloads are chosen
    action: str  # ALLOW, DENY, AUDIT, CUSTOM
    rules: tuple[AuthzRule, ...]  # a policy without rules matches nothing (so an ALLOW without rules allows nothing); one empty rule matches everything
    workloads: WorkloadSelector | None = None  # None: every workload of the namespace
    dry_run: bool = False  # Istio's istio.io/dry-run annotation: evaluated and reported, never enforced
    provider: str | None = None  # CUSTOM: the ExtensionProvider that decides (controlplane/providers.py)


def _authz(r: _Reader, spec: dict[str, Any], dry_run: bool = False) -> AuthzSpec:
    workloads = _workloads(r, spec)
    service = workloads.name if workloads and workloads.kind == "Service" else None
    action = spec.get("action", "ALLOW")
    provider = spec.get("provider", {}).get("name")
    if action == "CUSTOM" and provider is None:
        raise r.fail("spec.provider", "a CUSTOM policy names the external authorizer that decides: provider: {name: ...} "
                                      "(an ExtensionProvider in meshdojo-system)")
    if action != "CUSTOM" and provider is not None:
        raise r.fail("spec.provider", f"only a CUSTOM policy asks a provider; this one's action is {action}")
    return AuthzSpec(service, action, authzrules.read_rules(r, spec.get("rules", [])), workloads, dry_run, provider)


@dataclass(frozen=True, slots=True)
class MeshTlsSpec:
    service: str | None  # the Service targeted, if that is how the workloads are chosen
    mode: str  # STRICT or PERMISSIVE (a PeerAuthentication's DISABLE, or UNSET: the level above decides)
    workloads: WorkloadSelector | None = None  # None: the whole namespace (the mesh, in meshdojo-system)
    ports: tuple[tuple[int, str], ...] = ()  # a PeerAuthentication's portLevelMtls: (the pod's port, its mode)

    def mode_at(self, port: int | None) -> str:
        """The mode for the pod's ``port``: its own (portLevelMtls), else the policy's (UNSET: the level above's)."""
        own = dict(self.ports).get(port, "UNSET") if port is not None else "UNSET"
        return self.mode if own == "UNSET" else own


def _meshtls(r: _Reader, spec: dict[str, Any]) -> MeshTlsSpec:
    workloads = _workloads(r, spec)
    return MeshTlsSpec(workloads.name if workloads and workloads.kind == "Service" else None, spec["mode"], workloads)


def _peer_authentication(r: _Reader, spec: dict[str, Any]) -> MeshTlsSpec:
    """Istio's PeerAuthentication: a MeshTLS in Istio's words (``mtls.mode``; UNSET: the level
    above decides, so selection leaves it out)."""
    mode = (spec.get("mtls") or {}).get("mode", "UNSET")
    workloads = _workloads(r, spec)
    ports = []
    for key, port_mtls in (spec.get("portLevelMtls") or {}).items():
        if not str(key).isdigit() or not 1 <= int(key) <= 65535:
            raise r.fail(f"spec.portLevelMtls.{key}", "expected a port number (1 to 65535): one the pods declare, e.g. 8080")
        ports.append((int(key), port_mtls.get("mode", "UNSET")))
    if ports and workloads is None:
        raise r.fail("spec.portLevelMtls", "needs a selector (Istio's rule: a port is a workload's): add selector.matchLabels")
    return MeshTlsSpec(None, mode, workloads, tuple(sorted(ports)))


def _telemetry(r: _Reader, spec: dict[str, Any]) -> TelemetrySpec:
    return telemetrypolicy.read(r, spec, _workloads(r, spec))


def _requestauthn(r: _Reader, spec: dict[str, Any]) -> RequestAuthnSpec:
    return requestauthn.read(r, spec, _workloads(r, spec))


Spec = (FaultSpec | RouteSpec | BudgetSpec | BreakerSpec | RateLimitSpec | AuthzSpec | MeshTlsSpec | TelemetrySpec
        | RequestAuthnSpec | providers.HttpProvider | providers.ZipkinProvider | backendtls.BackendTlsSpec | gatewayapi.GatewaySpec
        | ingress.IngressSpec | linkerdserver.ServerSpec | linkerdserver.ServerAuthorizationSpec | linkerdauthn.LinkerdPolicySpec
        | linkerdauthn.MeshTlsAuthnSpec | linkerdauthn.NetworkAuthnSpec | linkerdroutes.ServerRouteSpec
        | linkerdratelimit.LocalRateLimitSpec)
