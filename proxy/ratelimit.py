"""A token bucket: ``rate`` tokens a second, at most ``burst`` saved up; and Linkerd's local rate
limit, made of them. Pure, clock injected."""

from __future__ import annotations

import time
from collections.abc import Callable

from controlplane.linkerdratelimit import LocalRateLimitSpec


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst = rate, burst
        self._clock = clock
        self.tokens = float(burst)
        self._stamp = clock()

    def take(self) -> bool:
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def full(self) -> bool:
        """Whether the bucket has refilled to its burst (its caller has been idle)."""
        return self.tokens + (self._clock() - self._stamp) * self.rate >= self.burst

    def wait(self) -> float:
        """Seconds until the next token (what a 429's Retry-After should say)."""
        tokens = min(self.burst, self.tokens + (self._clock() - self._stamp) * self.rate)
        return max((1.0 - tokens) / self.rate, 0.0) if self.rate > 0 else float("inf")


class LocalRateLimit:
    """Linkerd's HTTPLocalRateLimitPolicy at one sidecar (controlplane/linkerdratelimit.py): a
    request takes from the total bucket first, then from its override's bucket (shared by the
    callers the override names) or its identity's own; callers without an identity share one.
    Each bucket holds ``rps`` requests and refills at ``rps`` a second, as Linkerd's GCRA quota."""

    MAX_IDENTITIES = 1024  # past this many buckets, the full ones (idle callers) are dropped

    def __init__(self, spec: LocalRateLimitSpec, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._total = (spec.total, TokenBucket(spec.total, spec.total, clock)) if spec.total else None
        self._identity_rps = spec.identity
        self._identities: dict[str | None, TokenBucket] = {}
        self._overrides: dict[str, tuple[int, TokenBucket]] = {}
        for override in spec.overrides:
            shared = (override.requests_per_second, TokenBucket(override.requests_per_second, override.requests_per_second, clock))
            for client in override.clients:
                self._overrides[client] = shared  # a client two overrides name: the last, as Linkerd's map keeps it

    def check(self, identity: str | None) -> tuple[str, float] | None:
        """None when the request may pass; else Linkerd's words for the limit it went past, and
        the seconds until that bucket has a request again (a 429's retry-after)."""
        if self._total is not None and not self._total[1].take():
            return f"total rate limit exceeded: {self._total[0]}rps", self._total[1].wait()
        if identity is not None and identity in self._overrides:
            rps, bucket = self._overrides[identity]
            return None if bucket.take() else (f"override rate limit exceeded: {rps}rps", bucket.wait())
        if self._identity_rps:
            bucket = self._identities.get(identity)
            if bucket is None:
                if len(self._identities) >= self.MAX_IDENTITIES:
                    self._identities = {k: b for k, b in self._identities.items() if not b.full()}
                bucket = self._identities[identity] = TokenBucket(self._identity_rps, self._identity_rps, self._clock)
            if not bucket.take():
                return f"per-identity rate limit exceeded: {self._identity_rps}rps", bucket.wait()
        return None
