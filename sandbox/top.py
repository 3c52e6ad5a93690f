"""``meshdojo top deploy/X``: a live table of X's traffic, aggregated by source, destination,
method and path (count, best, worst, last latency, success rate), refreshed in place.
Built on the tap stream; the aggregation is a pure function of the events."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Row:
    count: int = 0
    successes: int = 0
    best: float = float("inf")
    worst: float = 0.0
    last: float = 0.0


class Top:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str, str], Row] = {}

    def add(self, event: dict[str, Any]) -> None:
        if event.get("type") != "end":
            return
        path = str(event.get("path", "")).partition("?")[0]
        row = self.rows.setdefault((str(event["src"]), str(event["dst"]), str(event["method"]), path), Row())
        latency = float(event["latency_ms"])
        row.count += 1
        row.successes += int(event["status"]) < 500
        row.best, row.worst, row.last = min(row.best, latency), max(row.worst, latency), latency

    def table(self, limit: int = 20) -> list[tuple[str, ...]]:
        lines = [("SOURCE", "DESTINATION", "METHOD", "PATH", "COUNT", "BEST", "WORST", "LAST", "SUCCESS")]
        ordered = sorted(self.rows.items(), key=lambda kv: -kv[1].count)[:limit]
        for (src, dst, method, path), r in ordered:
            lines.append((src, dst, method, path[:40], str(r.count), f"{r.best:.1f}ms", f"{r.worst:.1f}ms", f"{r.last:.1f}ms",
                          f"{r.successes / r.count:.0%}"))
        return lines


def run(name: str, target: str, namespace: str | None, duration: float | None, emit: Callable[[str], None]) -> Top:
    from sandbox import tapcli

    kind, _, deployment = target.partition("/")
    if kind not in ("deploy", "deployment") or not deployment:
        raise ValueError(f"{target!r}: expected deploy/NAME, e.g. 'meshdojo top deploy/web'")
    _instances, events = tapcli.streams(name, deployment, namespace, None, None, None)
    top = Top()
    stop_at = None if duration is None else time.monotonic() + duration
    redraw = time.monotonic() + 1
    live = duration is None and sys.stdout.isatty()
    for event in events:  # the tap stream says hello at once, so this loop wakes up regularly enough
        top.add(event)
        now = time.monotonic()
        if live and now >= redraw:
            emit("\x1b[H\x1b[2J" + render(top))  # redraw in place
            redraw = now + 1
        if stop_at is not None and now >= stop_at:
            break
    return top


def render(top: Top) -> str:
    table = top.table()
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table)


def rows_json(top: Top) -> list[dict[str, Any]]:
    return [{"source": src, "destination": dst, "method": method, "path": path, "count": r.count, "best_ms": round(r.best, 3),
             "worst_ms": round(r.worst, 3), "last_ms": round(r.last, 3), "success": round(r.successes / r.count, 4)}
            for (src, dst, method, path), r in sorted(top.rows.items(), key=lambda kv: -kv[1].count)]
