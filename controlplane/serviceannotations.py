"""Linkerd's annotations on a Service, as Linkerd's retries, timeouts and circuit-breaking tasks
use them (``kubectl annotate svc/emoji retry.linkerd.io/http=5xx``):

    retry.linkerd.io/http, retry.linkerd.io/limit, retry.linkerd.io/timeout,
    timeout.linkerd.io/request, timeout.linkerd.io/response      every request to the Service
    balancer.linkerd.io/failure-accrual: consecutive              circuit breaking per endpoint, with
      balancer.linkerd.io/failure-accrual-consecutive-max-failures (7), -min-penalty (1s),
      -max-penalty (1m), -jitter-ratio (0.5)

They become the policies they mean, by :func:`derive`, wherever policies are read (each proxy,
and the control plane's ``routes``), and never change what was applied:

- a Service with no HTTPRoute gets a route of one rule that matches everything, named
  ``<service>.annotations`` in metrics, fates and ``meshdojo routes``;
- an HTTPRoute whose parent is the Service keeps what it says itself: a rule's own ``retry`` or
  ``timeouts`` field first, then the route's own annotations (any ``retry.linkerd.io`` key on the
  route overrides all of the Service's, as in Linkerd; likewise ``timeout.linkerd.io``), then the
  Service's;
- failure accrual is a CircuitBreaker's outlier detection; a CircuitBreaker that targets the
  Service and ejects endpoints itself wins, one with only connection-pool limits gains it.

Annotations that cannot be read are left out, whole group by group, and said (``meshdojo
check``); ``meshdojo annotate`` refuses them before they are written.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from controlplane import routeannotations
from controlplane.durations import format_duration
from controlplane.fields import FieldReader
from controlplane.policy import GATEWAY_API, POLICY_API, Resource, RouteRule, RouteSpec, linkerd_retry, traffic_route
from controlplane.resiliencespecs import BreakerSpec
from controlplane.routeannotations import RouteAnnotations, status_ranges

ACCRUAL = "balancer.linkerd.io/failure-accrual"
MAX_FAILURES = f"{ACCRUAL}-consecutive-max-failures"
MIN_PENALTY = f"{ACCRUAL}-consecutive-min-penalty"
MAX_PENALTY = f"{ACCRUAL}-consecutive-max-penalty"
JITTER = f"{ACCRUAL}-consecutive-jitter-ratio"
ACCRUAL_KEYS = (ACCRUAL, MAX_FAILURES, MIN_PENALTY, MAX_PENALTY, JITTER)
KNOWN = (*routeannotations.KNOWN, *ACCRUAL_KEYS)
PREFIXES = ("retry.linkerd.io/", "timeout.linkerd.io/", "balancer.linkerd.io/")
DERIVED_SUFFIX = ".annotations"  # <service>.annotations: a name no applied resource can have (names have no dots)

Key = tuple[str, str]  # (namespace, service)


class AnnotationError(ValueError):
    def __init__(self, service: str, field: str, message: str) -> None:
        super().__init__(f"Service {service}: {field}: {message}")
        self.field, self.message = field, message


class _Reader(FieldReader):
    def __init__(self, service: str) -> None:
        self.service = service

    def fail(self, field: str, message: str) -> AnnotationError:
        return AnnotationError(self.service, field, message)


def linkerd_only(annotations: Any) -> dict[str, str]:
    """The annotations this module reads (a Service carries many others: last-applied
    configuration, Helm's, ...); what the registry keeps."""
    if not isinstance(annotations, dict):
        return {}
    return {k: v for k, v in annotations.items() if isinstance(k, str) and k.startswith(PREFIXES)}


@dataclass(frozen=True, slots=True)
class ServiceAnnotations:
    route: RouteAnnotations  # retries and timeouts for every request to the Service
    accrual: BreakerSpec | None  # consecutive-failures failure accrual

    @property
    def shapes_routes(self) -> bool:
        return self.route != RouteAnnotations()

    def describe(self) -> list[str]:
        """What the annotations do to each request, a phrase each (for ``meshdojo annotate``)."""
        route, out = self.route, []
        if route.retries:
            codes = status_ranges(route.retry_codes or ()) or "no status (only tries that time out, and failed connections)"
            out.append(f"retried on {codes}, up to {route.retry_limit} time{'s' if route.retry_limit != 1 else ''}")
        if route.try_timeout is not None:
            out.append(f"each try within {format_duration(route.try_timeout)}" + (" (a try that runs out is retried)" if route.retries else ""))
        if route.request_timeout is not None:
            out.append(f"the whole request within {format_duration(route.request_timeout)}, retries included")
        if self.accrual is not None:
            out.append(f"an endpoint is left out after {self.accrual.consecutive_failures} failures in a row, for "
                       f"{format_duration(self.accrual.penalty)} at first, doubling up to {format_duration(self.accrual.max_penalty)}")
        return out


def read(namespace: str, name: str, annotations: dict[str, Any]) -> ServiceAnnotations:
    """What the Service's Linkerd annotations ask for; AnnotationError names the first bad one."""
    r = _Reader(f"{namespace}/{name}")
    ours = linkerd_only(annotations)
    for key in ours:
        if key.startswith("balancer.linkerd.io/") and key not in ACCRUAL_KEYS:
            raise r.fail(f"metadata.annotations.{key}", f"unknown Linkerd annotation (expected one of: {', '.join(ACCRUAL_KEYS)})")
    return ServiceAnnotations(routeannotations.read(r, ours), _accrual(r, name, ours))


def _accrual(r: _Reader, service: str, ours: dict[str, Any]) -> BreakerSpec | None:
    given = [k for k in ACCRUAL_KEYS if k in ours]
    for key in given:
        if not isinstance(ours[key], str):
            raise r.fail(f"metadata.annotations.{key}", f"expected a string (annotation values are strings: quote it, \"{ours[key]}\")")
    if ACCRUAL not in ours:
        if given:
            raise r.fail(f"metadata.annotations.{given[0]}", f"has no effect without {ACCRUAL}: consecutive")
        return None
    if ours[ACCRUAL] != "consecutive":
        raise r.fail(f"metadata.annotations.{ACCRUAL}", f"expected consecutive (the only mode Linkerd has), got {ours[ACCRUAL]!r}")
    failures = ours.get(MAX_FAILURES, "7")
    if not failures.isdigit() or not 1 <= int(failures) <= 1000:
        raise r.fail(f"metadata.annotations.{MAX_FAILURES}", f"expected a whole number from 1 to 1000, got {failures!r}")
    min_penalty = r.duration(ours.get(MIN_PENALTY, "1s"), f"metadata.annotations.{MIN_PENALTY}")
    max_penalty = r.duration(ours.get(MAX_PENALTY, "1m"), f"metadata.annotations.{MAX_PENALTY}")
    if min_penalty <= 0:
        raise r.fail(f"metadata.annotations.{MIN_PENALTY}", "must not be zero")
    if max_penalty < min_penalty:
        raise r.fail(f"metadata.annotations.{MAX_PENALTY}", f"must not be shorter than {MIN_PENALTY}")
    try:
        jitter = float(ours.get(JITTER, "0.5"))
    except ValueError:
        jitter = -1.0
    if not 0 <= jitter <= 1:
        raise r.fail(f"metadata.annotations.{JITTER}", f"expected a number from 0 to 1 (a share of the penalty), got {ours[JITTER]!r}")
    return BreakerSpec(service, int(failures), min_penalty, max_penalty, jitter)


def derive(resources: list[Resource], services: dict[Key, dict[str, str]]) -> tuple[list[Resource], list[str]]:
    """``resources`` as the Services' annotations (``services``: each Service's Linkerd
    annotations) make them, and what could not be used, one sentence each."""
    notes: list[str] = []
    read_ok: dict[Key, ServiceAnnotations] = {}
    for (namespace, name), raw in sorted(services.items()):
        try:
            read_ok[(namespace, name)] = read(namespace, name, raw)
        except AnnotationError as exc:
            notes.append(f"{exc}; its Linkerd annotations are not used until this is fixed")
    if not read_ok:
        return resources, notes
    out: list[Resource] = []
    routed: set[Key] = set()
    breakers: dict[Key, list[Resource]] = {}
    for resource in resources:
        key = (resource.namespace, resource.target or "")
        given = read_ok.get(key)
        if traffic_route(resource):  # Gateway API's, or Linkerd's on a Service
            routed.add(key)
            if given is not None and given.shapes_routes:
                resource = replace(resource, spec=_inherit(resource, given.route))
        elif resource.kind == "CircuitBreaker" and given is not None and given.accrual is not None:
            breakers.setdefault(key, []).append(resource)
            continue
        out.append(resource)
    for key, given in read_ok.items():
        namespace, service = key
        if given.shapes_routes and key not in routed:
            out.append(_route(namespace, service, given.route))
        if given.accrual is not None:
            out += _breakers(namespace, given.accrual, breakers.get(key, []), notes)
    return out, notes


def _inherit(route: Resource, service: RouteAnnotations) -> RouteSpec:
    """The route's rules with what the Service's annotations say where neither the rule's own
    fields nor the route's own annotations say it."""
    own = route.document.get("metadata", {}).get("annotations") or {}
    own_retry = any(k.startswith("retry.linkerd.io/") for k in own)
    own_timeouts = any(k.startswith("timeout.linkerd.io/") for k in own)
    spec: RouteSpec = route.spec  # type: ignore[assignment]
    rules = []
    for rule in spec.rules:
        inherit_retry = rule.retry is None and not own_retry
        try_timeout = rule.backend_timeout
        if try_timeout is None and (inherit_retry if service.retries else not own_timeouts and rule.retry is None):
            try_timeout = service.try_timeout  # with retries, part of them; else a response timeout, not for a rule that retries
        rules.append(replace(rule, retry=linkerd_retry(service) if inherit_retry else rule.retry, backend_timeout=try_timeout,
                             request_timeout=rule.request_timeout if rule.request_timeout is not None or own_timeouts
                             else service.request_timeout))
    return replace(spec, rules=tuple(rules))


def _route(namespace: str, service: str, given: RouteAnnotations) -> Resource:
    name = service + DERIVED_SUFFIX
    rule = RouteRule((), (), given.request_timeout, given.try_timeout, linkerd_retry(given))
    document = {"apiVersion": GATEWAY_API, "kind": "HTTPRoute", "metadata": {"name": name, "namespace": namespace},
                "spec": {"parentRefs": [{"kind": "Service", "name": service}], "rules": [{}]}}
    return Resource("HTTPRoute", namespace, name, RouteSpec(service, (rule,)), document)


def _breakers(namespace: str, accrual: BreakerSpec, existing: list[Resource], notes: list[str]) -> list[Resource]:
    name = accrual.service + DERIVED_SUFFIX
    if not existing:
        document = {"apiVersion": POLICY_API, "kind": "CircuitBreaker", "metadata": {"name": name, "namespace": namespace},
                    "spec": {"targetRef": {"kind": "Service", "name": accrual.service}}}
        return [Resource("CircuitBreaker", namespace, name, accrual, document)]
    first: BreakerSpec = existing[0].spec  # type: ignore[assignment]  # the one the proxy uses (by name)
    if first.outlier:
        notes.append(f"Service {namespace}/{accrual.service}: its failure-accrual annotations are not used: "
                     f"CircuitBreaker {namespace}/{existing[0].name} targets it and ejects endpoints itself")
        return existing
    merged = replace(accrual, pool=first.pool)  # the CircuitBreaker's connection-pool limits, the annotations' ejection
    return [replace(existing[0], spec=merged), *existing[1:]]
