"""Istio's ``VirtualService`` and ``DestinationRule`` (``networking.istio.io``), as Istio's
request routing, traffic shifting, fault injection, request timeouts, retries and circuit
breaking tasks write them for Bookinfo (``samples/bookinfo/networking/``):

    VirtualService   a Service's routes, read into the same ``RouteSpec`` as Gateway API's HTTPRoute
                     (``routespec``): rules in order, the first matching one wins; weighted
                     destinations, each a Service or one of its subsets; timeout, retries, fault,
                     mirror, headers, rewrite, redirect
    DestinationRule  a Service's subsets (its pods by their labels: ``version: v1``), and its
                     trafficPolicy: connectionPool and outlierDetection, read as a CircuitBreaker's;
                     loadBalancer, the host's or a subset's own (controlplane/loadbalancing.py)

Where Istio and Gateway API differ, Istio's meaning is kept: a ``prefix`` is a string prefix
(``/api`` matches ``/apix``), ``retries.attempts`` counts retries, a fault is injected by the
caller's sidecar (retries never see it), a redirect is 301 unless it says, and at most
``maxEjectionPercent`` (10 %) of a Service's pods are ejected at once — one always may be.

A VirtualService whose ``gateways`` name an Istio Gateway is that Gateway's route instead, for
the host clients ask for (controlplane/istiogateway.py); one for a host outside the mesh (a
ServiceEntry's) shapes the requests to it, and a DestinationRule for such a host says the TLS the
sidecars originate to it (controlplane/istioegress.py). Pure.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controlplane import istioegress, istiogateway, routefilters
from controlplane.cors import read_istio_cors
from controlplane.durations import parse_duration
from controlplane.fields import FieldReader
from controlplane.istioegress import Origination
from controlplane.loadbalancing import LoadBalancerSpec, read_load_balancer
from controlplane.matching import PathMatch, RequestMatch, ValueMatch, string_match
from controlplane.resiliencespecs import BreakerSpec, PoolLimits
from controlplane.routespec import Backend, Retry, RouteRule, RouteSpec, RuleFault
from controlplane.spiffe import is_dns_label

# Istio's retryOn conditions -> the statuses they retry (failed connections and timed-out tries always are, here)
RETRY_ON = {"5xx": tuple(range(500, 600)), "gateway-error": (502, 503, 504), "connect-failure": (), "refused-stream": (),
            "reset": (), "retriable-status-codes": (), "unavailable": (), "cancelled": (), "retriable-4xx": (409,)}
DEFAULT_EJECTION_PERCENT = 10  # Istio's (Envoy's) default maxEjectionPercent
_EXTERNAL_HOST = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$")


@dataclass(frozen=True, slots=True)
class Subset:
    name: str
    labels: tuple[tuple[str, str], ...]
    balancer: LoadBalancerSpec | None = None  # its own trafficPolicy.loadBalancer
    breaker: BreakerSpec | None = None  # its own connectionPool or outlierDetection (each over the host's)

    def selects(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.labels)

    def describe(self) -> str:
        own = ([self.balancer.describe()] if self.balancer else []) + ([_breaker_words(self.breaker)] if self.breaker else [])
        return f"{self.name} ({'; '.join([_labels(self.labels), *own])})"


@dataclass(frozen=True, slots=True)
class DestinationRuleSpec:
    service: str  # the host: a Service of the rule's namespace
    subsets: tuple[Subset, ...]
    breaker: BreakerSpec | None  # its trafficPolicy's connectionPool and outlierDetection, if it has either
    balancer: LoadBalancerSpec | None = None  # its trafficPolicy's loadBalancer
    outside: bool = False  # its host is outside the mesh (a ServiceEntry's), not a Service: ``service`` is that host
    origination: Origination | None = None  # a host outside the mesh: the TLS the sidecars originate (istioegress)

    def subset(self, name: str) -> Subset | None:
        return next((s for s in self.subsets if s.name == name), None)

    def balancer_for(self, subset: str | None) -> LoadBalancerSpec | None:
        """How a request to the host (or to one of its subsets) picks a pod: the subset's own
        loadBalancer, else the host's; None: neither says (the sidecar's default)."""
        own = self.subset(subset) if subset is not None else None
        return (own.balancer if own is not None else None) or self.balancer

    def describe(self) -> str:
        parts = [f"subsets {', '.join(s.describe() for s in self.subsets)}"] if self.subsets else []
        if self.balancer is not None:
            parts.append(f"balance {self.balancer.describe()}")
        if self.breaker is not None:
            parts.append(_breaker_words(self.breaker))
        if self.origination is not None:
            parts.append(self.origination.describe())
        return "; ".join(parts) or "nothing but its host"


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels)


def _breaker_words(breaker: BreakerSpec) -> str:
    parts = []
    if breaker.outlier:
        after = ([f"{breaker.consecutive_failures} 5xx"] if breaker.consecutive_failures else []) + \
            ([f"{breaker.gateway_failures} gateway errors"] if breaker.gateway_failures else [])
        parts.append(f"eject after {' or '.join(after)} in a row, at most {breaker.max_ejection_percent}%")
    if breaker.pool is not None:
        parts.append(f"pool {breaker.pool.max_connections} connections, {breaker.pool.max_pending} pending")
    return "; ".join(parts)


def host_service(r: FieldReader, host: str, namespace: str, field: str) -> str:
    """The Service of ``namespace`` an Istio host names: ``reviews``, ``reviews.NS``,
    ``reviews.NS.svc`` or ``reviews.NS.svc.cluster.local``."""
    parts = host.split(".")
    name, rest = parts[0], parts[1:]
    short = not rest or rest[1:] in ([], ["svc"], ["svc", "cluster", "local"])
    if not is_dns_label(name) or not short or "*" in host:
        raise r.fail(field, f"{host!r}: a Service of the mesh, by its name (reviews) or reviews.{namespace}.svc.cluster.local "
                            "(a host outside the mesh is a ServiceEntry's)")
    if rest and rest[0] != namespace:
        raise r.fail(field, f"{host!r} is a Service of namespace {rest[0]!r}: here a VirtualService or DestinationRule is "
                            f"for a Service of its own namespace ({namespace}); set metadata.namespace to {rest[0]}")
    return name


# -- VirtualService ------------------------------------------------------------------------------

def read_virtual_service(r: FieldReader, spec: Mapping[str, Any], namespace: str) -> RouteSpec:
    """``spec`` checked against ``istioschema.VIRTUAL_SERVICE``: a Service's routes in the callers'
    sidecars, or (``gateways`` naming one) an Istio Gateway's, for the host clients ask for."""
    gateway = istiogateway.bound_gateway(r, spec.get("gateways", []), namespace)
    outside = spec["hosts"][0] if gateway is None and istioegress.outside_the_mesh(spec["hosts"][0], namespace) else None
    rules = tuple(_rule(r, rule, f"spec.http[{i}]", namespace, outside) for i, rule in enumerate(spec["http"]))
    if gateway is not None:
        for i, rule in enumerate(spec["http"]):
            for j, m in enumerate(rule.get("match", [])):
                for field in ("sourceLabels", "sourceNamespace"):
                    if field in m:
                        raise r.fail(f"spec.http[{i}].match[{j}].{field}", "is about the callers' sidecars, and this VirtualService "
                                     "is an Istio Gateway's (Istio: its gateways must include mesh for it): write it in a "
                                     "VirtualService of the mesh")
        return RouteSpec(None, rules, gateway=gateway, hostnames=istiogateway.gateway_hosts(r, spec["hosts"]))
    if len(spec["hosts"]) > 1:
        raise r.fail("spec.hosts[1]", "the sidecars' routes are one Service's: write one VirtualService for each Service "
                                      "(several hosts are a VirtualService's bound to an Istio Gateway, by its gateways)")
    if outside is not None:  # Istio's "manage traffic to external services": the host a ServiceEntry names
        return RouteSpec(None, rules, outside_host=outside)
    return RouteSpec(host_service(r, spec["hosts"][0], namespace, "spec.hosts[0]"), rules)


def _rule(r: FieldReader, rule: Mapping[str, Any], where: str, namespace: str, outside: str | None = None) -> RouteRule:
    matches = tuple(_match(r, m, f"{where}.match[{j}]") for j, m in enumerate(rule.get("match", [])))
    answers = [k for k in ("route", "redirect", "directResponse") if k in rule]
    if not answers:
        raise r.fail(f"{where}.route", "required: where the rule's requests go (or a redirect, or a directResponse)")
    if len(answers) > 1:
        raise r.fail(f"{where}.{answers[1]}", f"a rule does one of route, redirect and directResponse (Istio); this one has {answers[0]}")
    if outside is not None:  # a host outside the mesh: its rules send to that host (the ServiceEntry's endpoints)
        _to_the_host(r, rule, where, outside)
    backends = () if outside is not None else tuple(_destination(r, d, f"{where}.route[{k}]", namespace, len(rule["route"]))
                                                    for k, d in enumerate(rule.get("route", [])))
    if len(backends) > 1 and sum(b.weight for b in backends) != 100:
        raise r.fail(f"{where}.route", f"the destinations' weights add up to {sum(b.weight for b in backends)}: "
                                       "they must add up to 100")
    timeout = parse_duration(rule["timeout"]) if "timeout" in rule else None
    retry, try_timeout = _retries(r, rule["retries"], f"{where}.retries") if "retries" in rule else (None, None)
    filters = _filters(r, rule, where, matches, namespace)
    fault = _fault(r, rule["fault"], f"{where}.fault") if "fault" in rule else None
    return RouteRule(matches, backends, timeout or None, try_timeout, retry, filters, fault)


def _value_match(r: FieldReader, name: str, m: Mapping[str, Any], where: str) -> ValueMatch:
    kind, value = string_match(r, m, where)
    if kind == "exact":
        return ValueMatch(name, value)
    return ValueMatch(name, re.escape(value) + ".*" if kind == "prefix" else value, regex=True)


def _match(r: FieldReader, m: Mapping[str, Any], where: str) -> RequestMatch:
    path = None
    if "uri" in m:
        kind, value = string_match(r, m["uri"], f"{where}.uri")
        if kind != "regex" and not value.startswith("/"):
            raise r.fail(f"{where}.uri.{kind}", "must start with '/'")
        ignore_case = bool(m.get("ignoreUriCase")) and kind != "regex"
        path = PathMatch({"exact": "Exact", "prefix": "Prefix", "regex": "RegularExpression"}[kind],
                         value.lower() if ignore_case else value, bool(m.get("ignoreUriCase")))
    elif m.get("ignoreUriCase"):
        raise r.fail(f"{where}.ignoreUriCase", "goes with uri: the path matched in any case")
    method = None
    if "method" in m:
        kind, method = string_match(r, m["method"], f"{where}.method")
        if kind != "exact":
            raise r.fail(f"{where}.method.{kind}", "a method is matched exactly here: {exact: GET}")
    headers = tuple(_value_match(r, name.lower(), v, f"{where}.headers.{name}") for name, v in (m.get("headers") or {}).items())
    query = tuple(_value_match(r, name, v, f"{where}.queryParams.{name}") for name, v in (m.get("queryParams") or {}).items())
    if "authority" in m:  # Envoy's :authority is the Host header here (an absolute-form target's host is what it says too)
        headers += (_value_match(r, "host", m["authority"], f"{where}.authority"),)
    without = tuple(_value_match(r, name.lower(), v, f"{where}.withoutHeaders.{name}") for name, v in (m.get("withoutHeaders") or {}).items())
    return RequestMatch(path, headers, method, query, without, tuple(sorted((m.get("sourceLabels") or {}).items())),
                        m.get("sourceNamespace"))


def _destination(r: FieldReader, d: Mapping[str, Any], where: str, namespace: str, count: int) -> Backend:
    service = host_service(r, d["destination"]["host"], namespace, f"{where}.destination.host")
    edits = _header_edits(r, d.get("headers", {}), f"{where}.headers")
    return Backend(service, d.get("weight", 100 if count == 1 else 0), d["destination"].get("subset"), edits.get("request"),
                   edits.get("response"))


def _to_the_host(r: FieldReader, rule: Mapping[str, Any], where: str, host: str) -> None:
    """A rule of a VirtualService for a host outside the mesh sends to that host, whole."""
    for k, d in enumerate(rule.get("route", [])):
        destination = d["destination"]
        if destination["host"] != host:
            raise r.fail(f"{where}.route[{k}].destination.host", f"{destination['host']!r}: a VirtualService for {host}, a host "
                                                                 f"outside the mesh, sends its requests to {host} here")
        for field in ("subset", "headers"):
            if field in (d if field == "headers" else destination):
                raise r.fail(f"{where}.route[{k}]{'' if field == 'headers' else '.destination'}.{field}",
                             f"not for a host outside the mesh here: write {'the rule' if field == 'headers' else 'its ServiceEntry'}'s")
        if d.get("weight", 100) != 100:
            raise r.fail(f"{where}.route[{k}].weight", "the host outside the mesh takes every request: 100, or leave it out")
    for field in ("mirror", "mirrors"):
        if field in rule:
            raise r.fail(f"{where}.{field}", "not for a host outside the mesh here")


def _header_edits(r: FieldReader, headers: Mapping[str, Any], where: str) -> dict[str, routefilters.HeaderEdits]:
    """Istio's ``headers`` (``request``/``response``: ``set``, ``add``, ``remove``), as Gateway API's header modifiers."""
    edits = {}
    for side in ("request", "response"):
        if side in headers:
            ops = headers[side]
            for op in ("set", "add"):
                for name in ops.get(op, {}):
                    if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name):
                        raise r.fail(f"{where}.{side}.{op}.{name}", "expected a header name (letters, digits and !#$%&'*+.^_`|~-)")
            as_lists = {op: [{"name": k, "value": v} for k, v in ops[op].items()] for op in ("set", "add") if op in ops}
            edits[side] = routefilters.header_edits(r, {**as_lists, **({"remove": ops["remove"]} if "remove" in ops else {})},
                                                    f"{where}.{side}")
    return edits


def _retries(r: FieldReader, spec: Mapping[str, Any], where: str) -> tuple[Retry | None, float | None]:
    codes: set[int] = set()
    for condition in spec.get("retryOn", "").split(",") if "retryOn" in spec else ():
        if condition.isdigit() and 400 <= int(condition) <= 599:
            codes.add(int(condition))
        elif condition in RETRY_ON:
            codes.update(RETRY_ON[condition])
        else:
            raise r.fail(f"{where}.retryOn", f"{condition!r}: expected {', '.join(RETRY_ON)}, or a status from 400 to 599")
    try_timeout = parse_duration(spec["perTryTimeout"]) if "perTryTimeout" in spec else None
    attempts = spec.get("attempts", 2)
    return (Retry(tuple(sorted(codes)), attempts, 0.025) if attempts else None), try_timeout or None


def _fault(r: FieldReader, spec: Mapping[str, Any], where: str) -> RuleFault:
    delay, abort = spec.get("delay"), spec.get("abort")
    if delay is None and abort is None:
        raise r.fail(where, "expected a delay, an abort, or both")
    def share(part: Mapping[str, Any]) -> float:
        return float(part.get("percentage", {"value": 100})["value"])

    return RuleFault(parse_duration(delay["fixedDelay"]) if delay else None, share(delay) if delay else 0.0,
                     abort["httpStatus"] if abort else None, share(abort) if abort else 0.0)


def _filters(r: FieldReader, rule: Mapping[str, Any], where: str, matches: tuple[RequestMatch, ...],
             namespace: str) -> routefilters.RouteFilters | None:
    """mirror, headers, rewrite and redirect, as the Gateway API filters that do the same."""
    edits = _header_edits(r, rule.get("headers", {}), f"{where}.headers")
    mirrors: tuple[routefilters.Mirror, ...] = ()
    if "mirror" in rule:
        if "mirrors" in rule:
            raise r.fail(f"{where}.mirrors", "mirror or mirrors, not both: list the one mirror in mirrors")
        service = host_service(r, rule["mirror"]["host"], namespace, f"{where}.mirror.host")
        share = float(rule.get("mirrorPercentage", {"value": 100})["value"]) / 100
        mirrors = (routefilters.Mirror(service, share, rule["mirror"].get("subset")),)
    elif "mirrorPercentage" in rule:
        raise r.fail(f"{where}.mirrorPercentage", "goes with mirror: the Service that gets the copies")
    for k, item in enumerate(rule.get("mirrors", [])):
        service = host_service(r, item["destination"]["host"], namespace, f"{where}.mirrors[{k}].destination.host")
        mirrors += (routefilters.Mirror(service, float(item.get("percentage", {"value": 100})["value"]) / 100,
                                        item["destination"].get("subset")),)
    direct = None
    if "directResponse" in rule:
        body = rule["directResponse"].get("body", {})
        if len(body) > 1:
            raise r.fail(f"{where}.directResponse.body", "one of string and bytes")
        data = body["string"].encode() if "string" in body else base64.b64decode(body["bytes"]) if "bytes" in body else b""
        if len(data) > 64 * 1024:
            raise r.fail(f"{where}.directResponse.body", f"{len(data)} bytes: at most 64 KiB here")
        direct = routefilters.DirectResponse(rule["directResponse"]["status"], data)
    prefix_only = bool(matches) and all(m.path is not None and m.path.type == "Prefix" for m in matches)
    rewrite = redirect = None
    if "rewrite" in rule:
        spec = rule["rewrite"]
        path = routefilters.PathEdit("ReplacePrefixMatch" if prefix_only else "ReplaceFullPath", spec["uri"]) if "uri" in spec else None
        rewrite = routefilters.Rewrite(spec.get("authority"), path)
    if "redirect" in rule:
        spec = rule["redirect"]
        path = routefilters.PathEdit("ReplaceFullPath", spec["uri"]) if "uri" in spec else None
        redirect = routefilters.Redirect(spec.get("redirectCode", 301), spec.get("scheme"), spec.get("authority"), spec.get("port"), path)
        if rewrite is not None:
            raise r.fail(f"{where}.rewrite", "a rule cannot both redirect and rewrite")
    cors = read_istio_cors(r, rule["corsPolicy"], f"{where}.corsPolicy") if "corsPolicy" in rule else None
    if not (edits or mirrors or rewrite or redirect or cors or direct):
        return None
    return routefilters.RouteFilters(edits.get("request"), edits.get("response"), mirrors, redirect, rewrite, cors, direct)


# -- DestinationRule -----------------------------------------------------------------------------

def read_destination_rule(r: FieldReader, spec: Mapping[str, Any], namespace: str) -> DestinationRuleSpec:
    """``spec`` checked against ``istioschema.DESTINATION_RULE``: a Service's, or a host outside
    the mesh's (controlplane/istioegress.py)."""
    policy = spec.get("trafficPolicy", {})
    if istioegress.outside_the_mesh(spec["host"], namespace):
        if not _EXTERNAL_HOST.match(spec["host"]):
            raise r.fail("spec.host", f"{spec['host']!r}: expected a Service (reviews) or a host outside the mesh a ServiceEntry "
                                      "names (edition.cnn.com, *.example.com), in lower case")
        origination = istioegress.read_origination(r, spec)
        return DestinationRuleSpec(spec["host"], (), _breaker(spec["host"], policy), None, True, origination)
    istioegress.refuse_outside_fields(r, spec)
    service = host_service(r, spec["host"], namespace, "spec.host")
    subsets, seen = [], {}
    for i, raw in enumerate(spec.get("subsets", [])):
        if raw["name"] in seen:
            raise r.fail(f"spec.subsets[{i}].name", f"{raw['name']!r} is subsets[{seen[raw['name']]}]'s name already")
        seen[raw["name"]] = i
        own = raw.get("trafficPolicy", {})  # each field it has replaces the host's (Istio's override)
        balancer = read_load_balancer(r, own["loadBalancer"], f"spec.subsets[{i}].trafficPolicy.loadBalancer") if "loadBalancer" in own else None
        breaker = _breaker(service, {**policy, **own}) if "connectionPool" in own or "outlierDetection" in own else None
        subsets.append(Subset(raw["name"], tuple(sorted(raw["labels"].items())), balancer, breaker))
    balancer = read_load_balancer(r, policy["loadBalancer"], "spec.trafficPolicy.loadBalancer") if "loadBalancer" in policy else None
    return DestinationRuleSpec(service, tuple(subsets), _breaker(service, policy), balancer)


def _breaker(service: str, policy: Mapping[str, Any]) -> BreakerSpec | None:
    """A trafficPolicy's connectionPool and outlierDetection, as a CircuitBreaker's (None: it has neither)."""
    if "connectionPool" not in policy and "outlierDetection" not in policy:
        return None
    pool = PoolLimits.read(policy["connectionPool"]) if "connectionPool" in policy else None
    outlier = policy.get("outlierDetection", {})
    penalty = parse_duration(outlier.get("baseEjectionTime", "30s"))  # each ejection in a row doubles it, up to 300s
    failures, gateway = outlier.get("consecutive5xxErrors", 5), outlier.get("consecutiveGatewayErrors", 0)
    return BreakerSpec(service, failures, penalty, max(penalty, 300.0), 0.0, "outlierDetection" in policy and bool(failures or gateway),
                       pool, max_ejection_percent=outlier.get("maxEjectionPercent", DEFAULT_EJECTION_PERCENT), gateway_failures=gateway)


def subset_problems(resources: list[Any]) -> list[dict[str, str]]:
    """``meshdojo check``'s (and ``apply``'s) findings: a VirtualService's destination or mirror
    that names a subset no DestinationRule for its host defines — its requests get 503 (Envoy's
    NC) until one does, as Istio's tasks warn ("apply the destination rules first")."""
    defined = {(r.namespace, r.spec.service, s.name) for r in resources if r.kind == "DestinationRule" for s in r.spec.subsets}
    found = []
    for route in sorted((r for r in resources if r.kind == "VirtualService"), key=lambda r: r.key):
        wanted = [(b.service, b.subset) for rule in route.spec.rules for b in rule.backends if b.subset]
        wanted += [(m.service, m.subset) for rule in route.spec.rules if rule.filters is not None
                   for m in rule.filters.mirrors if m.subset]
        for service, subset in dict.fromkeys(wanted):
            if (route.namespace, service, subset) not in defined:
                found.append({"namespace": route.namespace, "name": route.name, "kind": "virtualservice",
                              "message": f"VirtualService {route.namespace}/{route.name}: subset {subset} of {service} is "
                                         f"defined by no DestinationRule, so its requests get 503 (no_subset): apply a "
                                         f"DestinationRule with host {service} and that subset"})
    return found
