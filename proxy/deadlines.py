"""Coarse deadlines for the hot path.

Arming a loop timer for every read costs more than the read itself at high request rates.
Idle, header and body timeouts only need to be right to within a fraction of a second, so
connections record a deadline (a dict write) and one ticker sweeps them, and also runs
periodic housekeeping such as expiring idle pooled connections.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class Expirable(Protocol):
    def on_deadline(self) -> None: ...


class Deadlines:
    def __init__(self, resolution: float = 0.25, clock: Callable[[], float] = time.monotonic) -> None:
        self.resolution = resolution
        self.clock = clock
        self._due: dict[Expirable, float] = {}
        self._housekeeping: list[Callable[[float], None]] = []

    def set(self, item: Expirable, seconds: float) -> None:
        self._due[item] = self.clock() + seconds

    def clear(self, item: Expirable) -> None:
        self._due.pop(item, None)

    def every_tick(self, callback: Callable[[float], None]) -> None:
        self._housekeeping.append(callback)

    def sweep(self) -> None:
        now = self.clock()
        expired = [item for item, due in self._due.items() if due <= now]
        for item in expired:
            del self._due[item]
            item.on_deadline()
        for callback in self._housekeeping:
            callback(now)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.resolution)
            self.sweep()
