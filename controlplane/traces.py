"""Spans from every sidecar, put together into traces: pure functions over the span
dictionaries sidecars serve (``proxy.tracing.Span.to_json``), for ``meshdojo trace`` and
``GET /v1/traces``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Span = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TraceSummary:
    trace_id: str
    start: float  # the earliest span's start, wall clock
    duration_ms: float  # from the earliest start to the latest end
    spans: int
    root: Span  # the earliest span with no parent among these (the trace's first hop)
    failed: int  # spans answered with 5xx or by the sidecar itself

    def to_json(self) -> dict[str, Any]:
        return {"traceId": self.trace_id, "start": self.start, "durationMs": self.duration_ms, "spans": self.spans,
                "root": self.root, "failed": self.failed}


def _end(span: Span) -> float:
    return span["start"] + span["durationMs"] / 1000


def failed(span: Span) -> bool:
    return span["status"] >= 500 or bool(span.get("error"))


def group(spans: list[Span]) -> dict[str, list[Span]]:
    """Trace id -> its spans, each once (a sidecar read twice gives a span twice), by start."""
    traces: dict[str, dict[str, Span]] = {}
    for span in spans:
        traces.setdefault(span["traceId"], {})[span["spanId"]] = span
    return {trace: sorted(found.values(), key=lambda s: s["start"]) for trace, found in traces.items()}


def roots(spans: list[Span]) -> list[Span]:
    """The spans whose parent is not among ``spans``: the trace's start (and, when a sidecar's
    spans were lost or an app did not pass the context on, where the tree breaks)."""
    ids = {s["spanId"] for s in spans}
    return [s for s in spans if not s.get("parentId") or s["parentId"] not in ids]


def summarize(spans: list[Span]) -> list[TraceSummary]:
    """One line per trace, the latest first."""
    found = []
    for trace_id, members in group(spans).items():
        start = members[0]["start"]
        found.append(TraceSummary(trace_id, start, round((max(_end(s) for s in members) - start) * 1000, 3), len(members),
                                  roots(members)[0], sum(1 for s in members if failed(s))))
    return sorted(found, key=lambda t: t.start, reverse=True)


def tree(spans: list[Span]) -> list[tuple[int, Span]]:
    """(depth, span) in the order a waterfall draws them: each span under its parent, siblings
    by start."""
    members = sorted({s["spanId"]: s for s in spans}.values(), key=lambda s: s["start"])
    children: dict[str, list[Span]] = {}
    for span in members:
        if span.get("parentId"):
            children.setdefault(span["parentId"], []).append(span)
    ordered: list[tuple[int, Span]] = []
    stack = [(0, span) for span in reversed(roots(members))]
    while stack:
        depth, span = stack.pop()
        ordered.append((depth, span))
        stack.extend((depth + 1, child) for child in reversed(children.get(span["spanId"], [])))
    return ordered


def matching(spans: list[Span], prefix: str) -> list[str]:
    """The trace ids that start with ``prefix`` (a learner types the first few digits)."""
    return sorted({s["traceId"] for s in spans if s["traceId"].startswith(prefix)})
