"""Fault injection decisions, applied by the destination's inbound proxy.

Pure: the rules that select this workload, the request's path and headers, and a random source go in; what to
do comes out. Because the fault happens at the destination, it looks to the caller exactly
like the service failing, so client-side retries, timeouts and breakers react to it as they
would to a real failure (Istio injects on the client side, where retries never see it).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from controlplane.policy import Resource


@dataclass(frozen=True, slots=True)
class FaultDecision:
    policy: str  # namespace/name of the FaultInjection
    delay: float | None
    abort_status: int | None


def decide(rules: Sequence[Resource], path: str, header: Callable[[str], str | None], rng: random.Random) -> FaultDecision | None:
    """``rules``: the FaultInjection resources that select this workload, in order."""
    for rule in rules:
        spec = rule.spec
        if spec.match is not None and not spec.match.matches(path, header):
            continue
        delay = spec.delay_seconds if spec.delay_seconds is not None and rng.random() * 100 < spec.delay_percent else None
        abort = spec.abort_status if spec.abort_status is not None and rng.random() * 100 < spec.abort_percent else None
        if delay is None and abort is None:
            return None  # the first matching rule decides, as with Istio's routes
        return FaultDecision(f"{rule.namespace}/{rule.name}", delay, abort)
    return None
