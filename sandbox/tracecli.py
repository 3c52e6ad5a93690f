"""``meshdojo trace``: the traces the sidecars recorded, as a list or as one trace's waterfall
(the spans the control plane gathered: ``GET /v1/traces``; put together by controlplane.traces)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from controlplane import traces
from sandbox.resources import api_for

BAR = 24
NO_TRACES = ("no traces yet. A sidecar starts a trace for 1 % of the requests that carry none (Istio's default); "
             "to sample them all: meshdojo apply -f demo-apps/emojivoto/policies/tracing-all.yaml (a Telemetry), "
             "or send a request with a 'traceparent: 00-<32 hex digits>-<16 hex digits>-01' header")


def gather(name: str, namespace: str | None, trace: str | None, limit: int) -> dict[str, Any]:
    query = {**({"namespace": namespace} if namespace else {}), **({"trace": trace} if trace else {}), "limit": limit}
    return api_for(name).call("GET", "/v1/traces?" + urlencode(query), timeout=15)


def _clock(when: float) -> str:
    return dt.datetime.fromtimestamp(when).strftime("%H:%M:%S")


def _hop(span: dict[str, Any]) -> str:
    return f"{span['method']} {span['authority']}{span['path']}"


def _peer(span: dict[str, Any]) -> str:
    """Whom the sidecar talked to: a workload's service account over mutual TLS, else an address."""
    peer = span.get("peer") or ""
    if not peer:
        return ""
    word = "to" if span["direction"] == "outbound" else "from"
    if peer.startswith("spiffe://"):
        return f" {word} {peer.rpartition('/sa/')[2]} (mutual TLS)"
    return f" {word} {peer}"


def list_table(summaries: list[traces.TraceSummary]) -> list[tuple[str, ...]]:
    rows = [("TRACE", "STARTED", "DURATION", "SPANS", "STATUS", "FIRST HOP")]
    for t in summaries:
        status = str(t.root["status"]) + (f" ({t.failed} failed)" if t.failed else "")
        rows.append((t.trace_id[:16], _clock(t.start), f"{t.duration_ms:.1f} ms", str(t.spans), status,
                     f"{t.root['workload']} {t.root['direction']}: {_hop(t.root)}"))
    return rows


def _bar(offset_ms: float, duration_ms: float, total_ms: float) -> str:
    scale = BAR / total_ms if total_ms > 0 else 0
    start = min(round(offset_ms * scale), BAR - 1)
    width = max(1, min(BAR - start, round(duration_ms * scale)))
    return "|" + " " * start + "█" * width + " " * (BAR - start - width) + "|"


def waterfall(trace_id: str, spans: list[dict[str, Any]]) -> list[str]:
    """One trace: a line per span under its parent, where it sits in time, and its fate."""
    ordered = traces.tree(spans)
    start = min(s["start"] for s in spans)
    total = max(s["start"] + s["durationMs"] / 1000 for s in spans) - start
    workloads = len({s["workload"] for s in spans})
    lines = [f"trace {trace_id}: {len(spans)} spans at {workloads} sidecars, {total * 1000:.1f} ms, started {_clock(start)}"]
    for depth, span in ordered:
        offset = (span["start"] - start) * 1000
        peer = _peer(span)
        lines.append(f"{offset:+8.1f} ms {span['durationMs']:8.1f} ms {_bar(offset, span['durationMs'], total * 1000)} "
                     f"{'  ' * depth}{span['workload']} {span['direction']}: {_hop(span)} -> {span['status']}{peer}")
        detail = [span["fate"]] if span.get("fate") and span["fate"] != "no policy applied" else []
        if span.get("error"):
            detail.append(f"answered by the sidecar: {span['error']}")
        for text in detail:
            lines.append(f"{'':47}{'  ' * depth}  {text}")
    broken = len(traces.roots(spans)) - 1
    if broken > 0:
        lines.append(f"({broken} span{'s' if broken > 1 else ''} without its parent here: an app that did not pass the "
                     f"trace's headers on, or a sidecar that was not read)")
    return lines
