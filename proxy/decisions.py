"""Routing and authorization decisions: pure functions of the request, the policies in force
and a random source."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from controlplane import inboundpolicy
from controlplane.authzrules import RequestFacts
from controlplane.policy import AuthzSpec, Resource, RouteRule, RouteSpec
from controlplane.routespec import Backend

Header = Callable[[str], str | None]


@dataclass(frozen=True, slots=True)
class RouteChoice:
    route: str  # namespace/name#rule
    rule: RouteRule
    backend: str | None  # service name; None: the parent service itself
    subset: str | None = None  # Istio's: a DestinationRule's subset of that service
    chosen: Backend | None = None  # the backend itself (its own header edits)


def choose_route(routes: Sequence[Resource], path: str, header: Header, method: str, rng: random.Random,
                 source: Any = None) -> RouteChoice | None:
    """The first rule (routes by name, rules in order) that matches, and a backend by weight.
    None when no rule matches — which, once a route is attached, means 404 (as in GAMMA).
    ``source``: the calling sidecar's workload (a VirtualService's sourceLabels); None at a gateway."""
    for resource in routes:
        spec: RouteSpec = resource.spec  # type: ignore[assignment]
        for i, rule in enumerate(spec.rules):
            if rule.matches_request(path, header, method, source):
                backend = pick_backend(rule, rng)
                return RouteChoice(f"{resource.namespace}/{resource.name}#{i}", rule, backend and backend.service,
                                   backend and backend.subset, backend)
    return None


def pick_backend(rule: RouteRule, rng: random.Random) -> Backend | None:
    if not rule.backends:
        return None
    total = sum(b.weight for b in rule.backends)
    point = rng.random() * total
    for backend in rule.backends:
        point -= backend.weight
        if point < 0:
            return backend
    return rule.backends[-1]


@dataclass(frozen=True, slots=True)
class AuthzDecision:
    allowed: bool
    policy: str | None  # which policy decided; None when none applies
    audited: tuple[str, ...] = ()
    default: str | None = None  # the default inbound policy decided (no ALLOW policy applies)
    dry_run: tuple[tuple[str, str, str], ...] = ()  # (action, result, policy) of the dry-run ALLOWs, then DENYs
    unmatched: tuple[Resource, ...] = ()  # denied because none of these ALLOW policies matched (not by a DENY)

    def describe(self) -> str:
        verdict = "allow" if self.allowed else "deny"
        if self.default is not None:
            said = f"{verdict} by the default inbound policy {self.default}"
        else:
            said = f"{verdict} by {self.policy}" if self.policy else f"{verdict} (no policy)"
        return "; ".join([said, *(f"dry-run {action}: {result}{' by ' + policy if policy else ''}"
                                  for action, result, policy in self.dry_run)])

    @property
    def label(self) -> str:
        """The ``policy`` label of the authz metrics (bounded: a policy's name, or default:<policy>)."""
        return f"default:{self.default}" if self.default is not None else self.policy or ""


def _matches(r: Resource, facts: RequestFacts) -> bool:
    spec: AuthzSpec = r.spec  # type: ignore[assignment]
    return any(rule.matches(facts) for rule in spec.rules)


def _name(r: Resource) -> str:
    return f"{r.namespace}/{r.name}"


def custom_check(policies: Sequence[Resource], facts: RequestFacts) -> Resource | None:
    """The CUSTOM policy whose provider must be asked about this request (the first by name
    whose rules match; Istio allows one provider per workload), or None."""
    return next((r for r in policies if r.spec.action == "CUSTOM" and _matches(r, facts)), None)  # type: ignore[union-attr]


def authorize(policies: Sequence[Resource], facts: RequestFacts, default: str = inboundpolicy.DEFAULT) -> AuthzDecision:
    """Istio's order (after CUSTOM, which ``custom_check`` picks and the proxy asks): any
    matching DENY denies; AUDIT only records; if any ALLOW policy exists, one of them must match. A policy with no rules never matches. With no ALLOW policy,
    Linkerd's default inbound policy (``default``) decides (controlplane/inboundpolicy.py).

    Policies annotated ``istio.io/dry-run: "true"`` take no part in that; as Envoy's shadow
    rules, the dry-run ALLOWs and the dry-run DENYs each give a result of their own: allowed if
    a dry-run ALLOW matches (else denied), denied if a dry-run DENY matches (else allowed)."""
    enforced = [r for r in policies if not r.spec.dry_run]  # type: ignore[union-attr]
    decision = _enforce(enforced, facts, default)
    if len(enforced) == len(policies):
        return decision
    shadow = []
    for action, hit, miss in (("ALLOW", "allowed", "denied"), ("DENY", "denied", "allowed")):
        dry = [r for r in policies if r.spec.dry_run and r.spec.action == action]  # type: ignore[union-attr]
        if dry:
            matched = next((r for r in dry if _matches(r, facts)), None)
            shadow.append((action.lower(), hit if matched else miss, _name(matched) if matched else ""))
    return replace(decision, dry_run=tuple(shadow))


def _enforce(policies: Sequence[Resource], facts: RequestFacts, default: str) -> AuthzDecision:
    matches = lambda r: _matches(r, facts)  # noqa: E731
    name = _name
    audited = tuple(name(r) for r in policies if r.spec.action == "AUDIT" and matches(r))  # type: ignore[union-attr]
    for r in policies:
        if r.spec.action == "DENY" and matches(r):  # type: ignore[union-attr]
            return AuthzDecision(False, name(r), audited)
    allows = [r for r in policies if r.spec.action == "ALLOW"]  # type: ignore[union-attr]
    if not allows:
        if default == inboundpolicy.DEFAULT:
            return AuthzDecision(True, None, audited)
        if default == "audit":  # let in, but note each caller as one that deny would refuse
            return AuthzDecision(True, None, (*audited, "default:audit"), default)
        return AuthzDecision(inboundpolicy.admits(default, facts.identity), None, audited, default)
    for r in allows:
        if matches(r):
            return AuthzDecision(True, name(r), audited)
    return AuthzDecision(False, f"{', '.join(name(r) for r in allows)} (no ALLOW rule matched)", audited, unmatched=tuple(allows))
