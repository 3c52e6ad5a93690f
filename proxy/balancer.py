"""Peak-EWMA power-of-two-choices load balancing, as Linkerd does it.

Each endpoint keeps a latency estimate that jumps up to any slower observation at once
(the *peak*) and decays towards faster ones with a time constant. While an endpoint gets no
traffic its estimate decays towards zero (as Linkerd's does, here with a shorter time constant,
``IDLE_DECAY``), so an endpoint that was slow once — or was simply passed over — is tried again
within seconds instead of starving. Its cost is that estimate times (requests in flight + 1). To pick, draw
two distinct endpoints at random and take the cheaper one. An endpoint never measured costs
nothing while it is idle, so a new instance gets a first request (and a real measurement)
straight away, without a herd. Clock and randomness are injected; nothing here does I/O.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_RTT = 0.030  # seconds assumed for an endpoint never measured (Linkerd's default)
DECAY = 10.0  # seconds for an observation's weight to fall to 1/e
IDLE_DECAY = 2.0  # seconds for an unused endpoint's estimate to fall to 1/e (a 100x spike is forgotten in ~10 s)


@dataclass
class PeakEwma:
    clock: Callable[[], float] = time.monotonic
    decay: float = DECAY
    idle_decay: float = IDLE_DECAY
    estimate: float = DEFAULT_RTT
    stamp: float = field(default=-1.0)
    pending: int = 0

    def _weight(self, now: float, decay: float) -> float:
        """How much of the estimate survives the time since it was last updated."""
        return math.exp(-max(now - self.stamp, 0.0) / decay)

    def observe(self, rtt: float) -> None:
        now = self.clock()
        if self.stamp < 0 or rtt > self.estimate:
            self.estimate = rtt
        else:
            weight = self._weight(now, self.decay)
            self.estimate = self.estimate * weight + rtt * (1.0 - weight)
        self.stamp = now

    def cost(self) -> float:
        if self.stamp < 0:
            # never measured: idle, worth one probe (new endpoints get traffic at once); busy, the default
            return 0.0 if self.pending == 0 else self.estimate * (self.pending + 1)
        now = self.clock()
        if self.pending == 0:  # idle time decays the estimate towards zero
            self.estimate *= self._weight(now, self.idle_decay)
            self.stamp = now
        return self.estimate * (self.pending + 1)


class P2cBalancer(Generic[T]):
    """Chooses among ``endpoints``; keeps one :class:`PeakEwma` per endpoint key."""

    def __init__(self, rng: random.Random | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._rng = rng or random.Random()
        self._clock = clock
        self._loads: dict[object, PeakEwma] = {}

    def load(self, key: object) -> PeakEwma:
        load = self._loads.get(key)
        if load is None:
            load = self._loads[key] = PeakEwma(self._clock)
        return load

    def forget_except(self, keys: set[object]) -> None:
        for key in list(self._loads):
            if key not in keys:
                del self._loads[key]

    def pick(self, endpoints: Sequence[T], key: Callable[[T], object]) -> T:
        if not endpoints:
            raise IndexError("no endpoints to pick from")
        if len(endpoints) == 1:
            return endpoints[0]
        a, b = draw_two(self._rng, endpoints)
        return a if self.load(key(a)).cost() <= self.load(key(b)).cost() else b


def draw_two(rng: random.Random, endpoints: Sequence[T]) -> tuple[T, T]:
    """Two distinct endpoints at random (at least two are given): the power of two choices' draw."""
    i = rng.randrange(len(endpoints))
    j = rng.randrange(len(endpoints) - 1)
    return endpoints[i], endpoints[j + (j >= i)]
