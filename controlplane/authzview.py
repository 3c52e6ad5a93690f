"""``meshdojo authz deploy/NAME``: which authorization decided a workload's inbound requests,
and how often it allowed or denied them — as Linkerd's ``viz authz`` shows per authorization.

Pure: the rows come from the sidecars' decision counters (``inbound_http_authz_*_total``, by
policy) over a window and from the AuthorizationPolicies that apply to the workload, so a policy
in force shows even while nothing reached it. The operator API serves them
(``GET /v1/authz``, controlplane/viewapi.py) on both backends.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import zip_longest
from typing import Any

from controlplane.linkerdserver import DERIVED_FROM, ROUTE_ANNOTATION, SERVER_ANNOTATION

NO_POLICY = "(no policy)"


def _name(label: str) -> str:
    return label or NO_POLICY


def _what(label: str, actions: dict[str, str]) -> str:
    """What decided, in words: the policy's action, Linkerd's default, or the ALLOWs none matched."""
    if label in actions:
        return actions[label]
    if label.startswith("default:"):
        return "the default inbound policy (config.linkerd.io/default-inbound-policy)"
    if label.endswith("(no ALLOW rule matched)"):
        return "ALLOW policies apply and none matched: denied"
    if not label:
        return "let in: no DENY matched and no ALLOW applies"
    return "a policy its sidecars applied (one that selects it by label)"


def rows(counts: Iterable[tuple[dict[tuple[str, str], float], float]], applied: Iterable[Any],
         levels: Iterable[str] = ()) -> list[dict[str, Any]]:
    """One row per policy: ``counts`` holds each instance's (decisions, seconds) from
    telemetry.authz_counts; ``applied`` the AuthorizationPolicies in force at the workload, in
    the order they are evaluated, with their ``levels`` (workload, namespace, mesh)."""
    totals: dict[tuple[str, str], float] = {}
    seconds = 0.0
    for decisions, covered in counts:
        seconds = max(seconds, covered)
        for key, value in decisions.items():
            totals[key] = totals.get(key, 0.0) + value
    actions, order, linkerd = {}, [], {}
    for resource, level in zip_longest(applied, levels, fillvalue="-"):
        label = f"{resource.namespace}/{resource.name}"
        spec = resource.spec
        action = spec.action + (" (dry run)" if getattr(spec, "dry_run", False) else "")
        if spec.action == "CUSTOM":
            action += f" by {spec.provider}"
        annotations = (resource.document.get("metadata") or {}).get("annotations") or {}
        if annotations.get(DERIVED_FROM):  # a Linkerd Server's (controlplane/linkerdserver.py)
            action += f" ({annotations[DERIVED_FROM]})"
            # Linkerd's viz authz columns: the Server, and the route (default: the Server's every request)
            linkerd[label] = (annotations.get(SERVER_ANNOTATION, "").partition("/")[2], annotations.get(ROUTE_ANNOTATION, "default"))
        actions[label] = f"{action}, {level}"
        order.append(label)
    seen = [label for label in dict.fromkeys(label for _, label in sorted(totals)) if label not in actions]
    per_second = (lambda n: round(n / seconds, 3)) if seconds > 0 else (lambda n: 0.0)
    return [{"policy": _name(label), "decides": _what(label, actions),
             "server": linkerd.get(label, ("", ""))[0], "route": linkerd.get(label, ("", ""))[1],
             "allowed_rps": per_second(totals.get(("allow", label), 0.0)),
             "denied_rps": per_second(totals.get(("deny", label), 0.0)),
             "audited_rps": per_second(totals.get(("audit", label), 0.0)),
             "allowed": int(totals.get(("allow", label), 0.0)), "denied": int(totals.get(("deny", label), 0.0))}
            for label in [*order, *seen]]
