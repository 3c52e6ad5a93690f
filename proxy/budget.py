"""Retry budgets, as Linkerd's: retries may add at most ``retry_ratio`` of the requests seen
in the last ``ttl`` seconds, plus ``min_retries_per_second`` — so a failing service is never
hit by a retry storm. Pure arithmetic over an injected clock."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class RetryBudget:
    def __init__(self, retry_ratio: float = 0.2, min_retries_per_second: float = 10.0, ttl: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.retry_ratio, self.min_per_second, self.ttl = retry_ratio, min_retries_per_second, ttl
        self._clock = clock
        self._requests: deque[float] = deque()
        self._retries: deque[float] = deque()

    def _trim(self, now: float) -> None:
        for q in (self._requests, self._retries):
            while q and q[0] <= now - self.ttl:
                q.popleft()

    def deposit(self) -> None:
        """One original request."""
        now = self._clock()
        self._trim(now)
        self._requests.append(now)

    def allowance(self) -> float:
        self._trim(self._clock())
        return self.min_per_second * self.ttl + self.retry_ratio * len(self._requests) - len(self._retries)

    def withdraw(self) -> bool:
        """May one retry go? Counts it if so."""
        if self.allowance() < 1:
            return False
        self._retries.append(self._clock())
        return True
