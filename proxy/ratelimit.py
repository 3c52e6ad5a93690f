"""A token bucket: ``rate`` tokens a second, at most ``burst`` saved up. Pure, clock injected."""

from __future__ import annotations

import time
from collections.abc import Callable


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

    def wait(self) -> float:
        """Seconds until the next token (what a 429's Retry-After should say)."""
        tokens = min(self.burst, self.tokens + (self._clock() - self._stamp) * self.rate)
        return max((1.0 - tokens) / self.rate, 0.0) if self.rate > 0 else float("inf")
