"""Tap: a live stream of requests, their responses and their fate, for ``meshdojo tap``.

It costs nothing when nobody taps (one truthiness check per request), and a slow reader can
never slow the proxy: each subscriber has a bounded queue, and what does not fit is dropped
and counted.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

QUEUE_SIZE = 1000


@dataclass
class TapFilter:
    path_prefix: str | None = None
    method: str | None = None
    to: str | None = None  # the destination's name: its service, authority host (or its first label) or server identity's SA

    def matches(self, event: dict[str, Any]) -> bool:
        if self.path_prefix and not str(event.get("path", "")).startswith(self.path_prefix):
            return False
        if self.method and event.get("method") != self.method:
            return False
        if self.to and self.to not in destination_names(event):
            return False
        return True


def destination_names(event: dict[str, Any]) -> set[str]:
    """What ``--to`` may name: ``emoji`` matches emoji, emoji:8080, emoji.emojivoto.svc and the SA
    emoji's identity — and never emojivoto (a substring is not a name)."""
    host = str(event.get("authority") or "").rpartition(":")[0] or str(event.get("authority") or "")
    server = str(event.get("server_id") or "").rpartition("/sa/")[2]
    return {n for n in (str(event.get("dst") or ""), host, host.split(".", 1)[0], server) if n}


@dataclass
class Subscriber:
    filters: TapFilter
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    dropped: int = 0  # events not delivered since the last "dropped" line
    dropped_requests: int = 0  # the requests they belonged to (a request's events go all or none)


class TapHub:
    def __init__(self) -> None:
        self.subscribers: list[Subscriber] = []
        self._ids = itertools.count(1)
        self.dropped_total = 0

    def next_id(self) -> int:
        return next(self._ids)

    def publish(self, events: list[dict[str, Any]]) -> None:
        """``events`` belong to one request (req, rsp, end): a subscriber gets all or none."""
        for sub in self.subscribers:
            if not sub.filters.matches(events[-1]):
                continue
            if sub.queue.maxsize - sub.queue.qsize() < len(events):
                sub.dropped += len(events)
                sub.dropped_requests += 1
                self.dropped_total += len(events)
                continue
            for event in events:
                sub.queue.put_nowait(event)

    def subscribe(self, filters: TapFilter) -> Subscriber:
        sub = Subscriber(filters)
        self.subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self.subscribers:
            self.subscribers.remove(sub)


class TapBody:
    """A streamed admin response: one JSON line per event until the reader goes away."""

    length = None

    def __init__(self, hub: TapHub, sub: Subscriber) -> None:
        self._hub, self._sub = hub, sub

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            yield json.dumps({"type": "hello", "note": "tap started: events appear as responses begin"}).encode() + b"\n"
            while True:
                event = await self._sub.queue.get()
                lines = [event]
                while not self._sub.queue.empty():
                    lines.append(self._sub.queue.get_nowait())
                if self._sub.dropped:
                    lines.append({"type": "dropped", "count": self._sub.dropped, "requests": self._sub.dropped_requests})
                    self._sub.dropped = self._sub.dropped_requests = 0
                yield b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines)
        finally:
            self._hub.unsubscribe(self._sub)

    def abandon(self) -> None:
        self._hub.unsubscribe(self._sub)
