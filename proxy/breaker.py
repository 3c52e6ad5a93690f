"""Circuit breaking by consecutive-failure accrual, per endpoint (Linkerd's model).

After ``consecutive_failures`` failures in a row an endpoint is taken out for a penalty —
``penalty`` doubling per trip up to ``max_penalty``, with ± ``jitter`` — then a single probe
request is let through: success closes the breaker, failure trips it again. At most
``max_ejection_percent`` of the endpoints are out at once (Istio's maxEjectionPercent; one always
may be): an endpoint past that stays in. Pure: clock and randomness are injected.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


@dataclass
class Accrual:
    failures: int = 0
    gateway_failures: int = 0  # of them, the gateway errors in a row (502, 503, 504, a failed connection)
    trips: int = 0
    open_until: float | None = None  # None: closed
    probing: bool = False

    def state(self, now: float) -> str:
        if self.open_until is None:
            return CLOSED
        return OPEN if now < self.open_until else HALF_OPEN


class Breaker:
    def __init__(self, consecutive_failures: int = 7, penalty: float = 1.0, max_penalty: float = 60.0, jitter: float = 0.5,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None,
                 max_ejection_percent: int = 100, gateway_threshold: int = 0) -> None:
        # 0: that count never trips (Istio's consecutive5xxErrors: 0; consecutiveGatewayErrors unless set)
        self.threshold, self.penalty, self.max_penalty, self.jitter = consecutive_failures, penalty, max_penalty, jitter
        self.gateway_threshold = gateway_threshold
        self.max_ejection_percent = max_ejection_percent
        self._clock = clock
        self._rng = rng or random.Random()
        self.endpoints: dict[object, Accrual] = {}

    def _get(self, key: object) -> Accrual:
        accrual = self.endpoints.get(key)
        if accrual is None:
            accrual = self.endpoints[key] = Accrual()
        return accrual

    def state(self, key: object) -> str:
        return self._get(key).state(self._clock())

    def forget_except(self, keys: set[object]) -> None:
        """Drop the accrual of every endpoint not in ``keys`` (it is gone: a new one starts closed)."""
        for key in list(self.endpoints):
            if key not in keys:
                del self.endpoints[key]

    def admit(self, key: object) -> bool:
        """May a request go to this endpoint now? In half-open state, only one probe at a time."""
        accrual = self._get(key)
        state = accrual.state(self._clock())
        if state == CLOSED:
            return True
        if state == HALF_OPEN and not accrual.probing:
            return True
        return False

    def _may_eject(self) -> bool:
        """Whether one more endpoint may go out: none is yet, or the share out stays within the cap."""
        now = self._clock()
        out = sum(1 for accrual in self.endpoints.values() if accrual.state(now) != CLOSED)
        return out == 0 or (out + 1) * 100 <= self.max_ejection_percent * len(self.endpoints)

    def begin(self, key: object) -> None:
        accrual = self._get(key)
        if accrual.state(self._clock()) == HALF_OPEN:
            accrual.probing = True

    def record(self, key: object, failure: bool, gateway_error: bool = False) -> str | None:
        """The outcome of a request (a gateway error is a failure too: 502, 503, 504 or a failed
        connection); returns "tripped" or "closed" when the state changed."""
        accrual = self._get(key)
        was_probe = accrual.probing
        accrual.probing = False
        if not failure:
            changed = "closed" if accrual.trips else None
            accrual.failures, accrual.gateway_failures, accrual.trips, accrual.open_until = 0, 0, 0, None
            return changed
        accrual.failures += 1
        accrual.gateway_failures = accrual.gateway_failures + 1 if gateway_error else 0  # a 500 breaks a run of gateway errors
        over = (self.threshold and accrual.failures >= self.threshold) or \
            (self.gateway_threshold and accrual.gateway_failures >= self.gateway_threshold)
        if was_probe or (over and self._may_eject()):
            accrual.trips += 1
            base = min(self.penalty * 2 ** (accrual.trips - 1), self.max_penalty)
            spread = 1 + self.jitter * (2 * self._rng.random() - 1)
            accrual.open_until = self._clock() + base * spread
            accrual.failures = accrual.gateway_failures = 0
            return "tripped"
        return None
