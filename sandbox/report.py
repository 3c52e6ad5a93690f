"""``meshdojo report``: the mesh before and after a change, as one HTML file that works offline.

    meshdojo report --before 2m --after 1m            the 2 minutes before the last minute, vs the last minute
    meshdojo report --before 6m..4m --after 2m..0s    explicit windows, as times ago
    meshdojo report --around-change                   the minute before the last change, vs the minute after it

The control plane keeps about 15 minutes of every proxy's metrics; the report asks it for each
window's golden signals per deployment and per edge (``/v1/stats`` and ``/v1/edges`` with
``until``), for a time series across both windows, and for what changed in between (policies
applied, changed, deleted or expired; network faults), then draws it with plotly — its
JavaScript inlined, so the file needs no network. Gathering is I/O; ``build_report`` is pure.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from controlplane.durations import InvalidDuration, parse_duration
from controlplane.telemetry import HISTORY_SECONDS

SERIES_POINTS = 40
MIN_WINDOW = 2.0


class ReportError(ValueError):
    pass


@dataclass(frozen=True)
class Window:
    label: str  # "before" or "after"
    start: float  # unix seconds
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def _ago(text: str, flag: str) -> float:
    try:
        return parse_duration(text)
    except InvalidDuration as exc:
        raise ReportError(f"{flag} {text!r}: {exc} (a duration such as 90s or 2m, or a range of times ago such as 5m..3m)") from None


def windows(before: str, after: str, now: float) -> tuple[Window, Window]:
    """``after``: a duration ending now, or ``A..B`` ago; ``before``: a duration ending where
    ``after`` starts, or ``A..B`` ago. Pure."""
    def parse(text: str, flag: str, ends_ago: float) -> tuple[float, float]:
        if ".." in text:
            first, _, second = text.partition("..")
            start, end = _ago(first, flag), _ago(second, flag)
            if start <= end:
                raise ReportError(f"{flag} {text!r}: the first time must be longer ago than the second (e.g. 5m..3m)")
            return start, end
        return ends_ago + _ago(text, flag), ends_ago

    after_start, after_end = parse(after, "--after", 0.0)
    before_start, before_end = parse(before, "--before", after_start)
    if before_end < after_start:
        raise ReportError(f"--before ends {before_end:g}s ago, after --after starts ({after_start:g}s ago): "
                          "the before window must come first")
    for flag, start, end in (("--before", before_start, before_end), ("--after", after_start, after_end)):
        if start - end < MIN_WINDOW:
            raise ReportError(f"{flag} is {start - end:g}s long; a window needs at least {MIN_WINDOW:g}s of samples")
    if before_start > HISTORY_SECONDS:
        raise ReportError(f"--before starts {before_start:g}s ago, but the control plane keeps {HISTORY_SECONDS // 60} minutes "
                          "of metrics: choose windows within them (e.g. --before 5m --after 2m)")
    return Window("before", now - before_start, now - before_end), Window("after", now - after_start, now - after_end)


def around(change: float, before: str, after: str, now: float) -> tuple[Window, Window]:
    """``before`` up to the change, ``after`` from it (but not past now). Pure."""
    lengths = [_ago(before, "--before"), _ago(after, "--after")]
    if now - change < MIN_WINDOW:
        raise ReportError(f"the last change was {now - change:.1f}s ago: wait a few seconds so the after window has samples")
    if now - change + lengths[0] > HISTORY_SECONDS:
        raise ReportError(f"the before window would start {now - change + lengths[0]:.0f}s ago, but the control plane keeps "
                          f"{HISTORY_SECONDS // 60} minutes of metrics: choose a shorter --before")
    return Window("before", change - lengths[0], change), Window("after", change, min(change + lengths[1], now))


def around_last_change(changes: list[dict[str, Any]], before: str, after: str, now: float) -> tuple[Window, Window]:
    """:func:`around` the newest of the control plane's changes (``/v1/changes``, oldest first)."""
    if not changes:
        raise ReportError("nothing was applied, deleted or injected since the control plane started: make a change "
                          "(e.g. meshdojo apply -f demo-apps/emojivoto/policies/emoji-retries.yaml), or give "
                          "--before/--after windows without --around-change")
    return around(changes[-1]["time"], before, after, now)


# -- gathering (the operator API) -------------------------------------------------------------------

def gather(call: Callable[[str], Any], before: Window, after: Window, namespace: str | None = None,
           points: int = SERIES_POINTS) -> dict[str, Any]:
    """Everything the report shows, from the operator API (``call(path)`` -> JSON)."""
    def query(path: str, window: float, until: float, **extra: str) -> list[dict[str, Any]]:
        params = {"window": f"{window:.3f}s", "until": f"{until:.3f}", **extra, **({"namespace": namespace} if namespace else {})}
        return call(f"{path}?{urlencode(params)}")["rows"]

    span_start, span_end = before.start, after.end
    step = max((span_end - span_start) / points, MIN_WINDOW)
    series = []
    t = span_start + step
    while t <= span_end + 1e-6:  # what callers saw of each service, step by step
        series.append({"time": t, "rows": query("/v1/stats", step, t, resource="svc")})
        t += step
    changes = [c for c in call("/v1/changes")["changes"] if span_start <= c["time"] <= span_end]
    return {
        "windows": [{"label": w.label, "start": w.start, "end": w.end} for w in (before, after)],
        "services": {w.label: query("/v1/stats", w.seconds, w.end, resource="svc") for w in (before, after)},
        "stats": {w.label: query("/v1/stats", w.seconds, w.end) for w in (before, after)},
        "edges": {w.label: query("/v1/edges", w.seconds, w.end) for w in (before, after)},
        "series": series,
        "changes": changes,
        "namespace": namespace,
    }


# -- the comparison (pure) ------------------------------------------------------------------------

def comparison(data: dict[str, Any], what: str = "services") -> list[dict[str, Any]]:
    """One row per service (what its callers saw; ``what="stats"``: per deployment, what its
    sidecar answered) with traffic in either window: each signal before and after."""
    before = {(r["namespace"], r["name"]): r for r in data[what]["before"]}
    after = {(r["namespace"], r["name"]): r for r in data[what]["after"]}
    rows = []
    for key in sorted(before.keys() | after.keys()):
        b, a = before.get(key), after.get(key)
        if not ((b and b["rps"]) or (a and a["rps"])):
            continue
        rows.append({"namespace": key[0], "name": key[1],
                     "success_rate": (_get(b, "success_rate"), _get(a, "success_rate")),
                     "rps": (_get(b, "rps"), _get(a, "rps")),
                     **{f"p{q}": (_latency(b, q), _latency(a, q)) for q in (50, 95, 99)}})
    return rows


def edge_comparison(data: dict[str, Any]) -> list[dict[str, Any]]:
    def index(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(f"{r['src_namespace']}/{r['src']}", f"{r['dst_namespace']}/{r['dst']}"): r for r in rows}

    before, after = index(data["edges"]["before"]), index(data["edges"]["after"])
    return [{"src": src, "dst": dst,
             "success_rate": (_get(before.get((src, dst)), "success_rate"), _get(after.get((src, dst)), "success_rate")),
             "rps": (_get(before.get((src, dst)), "rps"), _get(after.get((src, dst)), "rps")),
             "secured": (_get(before.get((src, dst)), "secured"), _get(after.get((src, dst)), "secured"))}
            for src, dst in sorted(before.keys() | after.keys())]


def _get(row: dict[str, Any] | None, key: str) -> Any:
    return row.get(key) if row else None


def _latency(row: dict[str, Any] | None, q: int) -> float | None:
    return (row.get("latency_ms") or {}).get(f"p{q}") if row else None


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """What a learner should notice, one sentence per deployment whose signals moved."""
    lines = []
    for r in rows:
        name = f"{r['namespace']}/{r['name']}"
        (sb, sa), (pb, pa) = r["success_rate"], r["p99"]
        if sb is not None and sa is not None and abs(sa - sb) >= 0.02:
            lines.append(f"{name}: success {'rose' if sa > sb else 'fell'} from {sb:.1%} to {sa:.1%}")
        if pb is not None and pa is not None and pb > 0 and abs(pa - pb) / pb >= 0.25 and abs(pa - pb) >= 5:
            lines.append(f"{name}: p99 latency {'rose' if pa > pb else 'fell'} from {pb:.0f} ms to {pa:.0f} ms")
    return lines or ["no service's success rate moved by 2 points, nor its p99 latency by a quarter"]


# -- HTML ----------------------------------------------------------------------------------------

def build_report(data: dict[str, Any], generated: float, sandbox: str) -> str:
    """The HTML document. Pure: the same data gives the same file."""
    rows, deployments, edges = comparison(data), comparison(data, "stats"), edge_comparison(data)
    before, after = data["windows"]
    figure = _timeline(data)
    chart = figure.to_html(full_html=False, include_plotlyjs=True, div_id="timeline", config={"displaylogo": False})
    bars = _bars(rows).to_html(full_html=False, include_plotlyjs=False, div_id="bars", config={"displaylogo": False})
    esc = html.escape
    return "".join([
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>meshdojo report — {esc(sandbox)}</title><style>{_CSS}</style></head><body>",
        f"<h1>meshdojo report: sandbox {esc(sandbox)}</h1>",
        f"<p class=meta>before: {_when(before['start'])} – {_when(before['end'])} · after: {_when(after['start'])} – "
        f"{_when(after['end'])} · made {_when(generated)} with <code>meshdojo report</code></p>",
        "<h2>What moved</h2><ul>", *(f"<li>{esc(line)}</li>" for line in summary(rows)), "</ul>",
        "<h2>What changed in between</h2>", _changes_html(data["changes"]),
        "<h2>Over time</h2>", chart,
        "<h2>Before and after, per service (what its callers saw)</h2>", _table_html(rows, "service"), bars,
        "<h2>Per deployment (what its sidecar answered)</h2>", _table_html(deployments, "deployment"),
        "<h2>Edges</h2>", _edges_html(edges),
        "<p class=meta>Success rate, latency quantiles and requests per second come from the sidecars' metrics "
        "(response_total and response_latency_ms, as Linkerd names them), scraped every second by the control plane. "
        "A service's row is its callers' outbound view (after retries); a deployment's, its own inbound view.</p>",
        "</body></html>",
    ])


def _timeline(data: dict[str, Any]) -> Any:
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=("success rate (what callers saw)", "p99 latency (ms)", "requests per second"))
    names = sorted({(r["namespace"], r["name"]) for point in data["series"] for r in point["rows"] if r["rps"]})
    times = [_iso(p["time"]) for p in data["series"]]
    for ns, name in names:
        per_point = [next((r for r in p["rows"] if (r["namespace"], r["name"]) == (ns, name)), None) for p in data["series"]]
        for row, values in ((1, [_get(r, "success_rate") for r in per_point]), (2, [_latency(r, 99) for r in per_point]),
                            (3, [_get(r, "rps") for r in per_point])):
            fig.add_scatter(x=times, y=values, name=f"{ns}/{name}", legendgroup=f"{ns}/{name}", showlegend=row == 1,
                            mode="lines+markers", row=row, col=1)
    for window, color in zip(data["windows"], ("rgba(120,120,220,0.10)", "rgba(80,180,80,0.12)"), strict=True):
        fig.add_vrect(x0=_iso(window["start"]), x1=_iso(window["end"]), fillcolor=color, line_width=0, annotation_text=window["label"],
                      annotation_position="top left")
    for change in data["changes"]:
        fig.add_vline(x=_iso(change["time"]), line_dash="dot", line_color="#b33")
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05], row=1, col=1)
    fig.update_layout(height=720, margin={"l": 50, "r": 20, "t": 40, "b": 30}, hovermode="x unified", template="plotly_white")
    return fig


def _bars(rows: list[dict[str, Any]]) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("success rate", "p99 latency (ms)"))
    names = [f"{r['namespace']}/{r['name']}" for r in rows]
    for i, (label, color) in enumerate((("before", "#7878dc"), ("after", "#50b450"))):
        fig.add_trace(go.Bar(x=names, y=[r["success_rate"][i] for r in rows], name=label, marker_color=color, legendgroup=label), 1, 1)
        fig.add_trace(go.Bar(x=names, y=[r["p99"][i] for r in rows], name=label, marker_color=color, legendgroup=label,
                             showlegend=False), 1, 2)
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05], row=1, col=1)
    fig.update_layout(barmode="group", height=360, margin={"l": 50, "r": 20, "t": 40, "b": 30}, template="plotly_white")
    return fig


def _changes_html(changes: list[dict[str, Any]]) -> str:
    if not changes:
        return "<p>Nothing was applied, deleted or injected through the control plane between the two windows.</p>"
    items = "".join(f"<li><time>{_when(c['time'])}</time> {html.escape(c['action'])} {html.escape(c['kind'])} "
                    f"<b>{html.escape(c['namespace'])}/{html.escape(c['name'])}</b>"
                    f"{(' — ' + html.escape(c['detail'])) if c.get('detail') else ''}</li>" for c in changes)
    return f"<ul class=changes>{items}</ul>"


def _table_html(rows: list[dict[str, Any]], what: str) -> str:
    head = f"<tr><th>{what}</th><th>success</th><th>rps</th><th>p50</th><th>p95</th><th>p99</th></tr>"
    body = "".join(
        f"<tr><td>{html.escape(r['namespace'])}/{html.escape(r['name'])}</td>"
        f"<td>{_pair(r['success_rate'], _pct)}</td><td>{_pair(r['rps'], _num)}</td>"
        + "".join(f"<td>{_pair(r[f'p{q}'], _ms)}</td>" for q in (50, 95, 99)) + "</tr>" for r in rows)
    return f"<table class=compare>{head}{body or '<tr><td colspan=6>no traffic in either window</td></tr>'}</table>"


def _edges_html(edges: list[dict[str, Any]]) -> str:
    head = "<tr><th>from</th><th>to</th><th>success</th><th>rps</th><th>mTLS</th></tr>"
    body = "".join(f"<tr><td>{html.escape(e['src'])}</td><td>{html.escape(e['dst'])}</td><td>{_pair(e['success_rate'], _pct)}</td>"
                   f"<td>{_pair(e['rps'], _num)}</td><td>{_pair(e['secured'], _yes)}</td></tr>" for e in edges)
    return f"<table class=compare>{head}{body or '<tr><td colspan=5>no edges with traffic</td></tr>'}</table>"


def _pair(values: tuple[Any, Any], fmt: Callable[[Any], str]) -> str:
    b, a = values
    return f"{fmt(b)} → <b>{fmt(a)}</b>"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.0f} ms" if v >= 10 else f"{v:.1f} ms"


def _yes(v: bool | None) -> str:
    return "–" if v is None else "yes" if v else "no"


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat()


def _when(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%H:%M:%S UTC")


_CSS = re.sub(r"\s+", " ", """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.meta { color: #666; font-size: .9em; } table.compare { border-collapse: collapse; width: 100%; }
table.compare td, table.compare th { border-bottom: 1px solid #eee; padding: .3em .6em; text-align: left; }
ul.changes time { color: #b33; font-variant-numeric: tabular-nums; margin-right: .5em; }
""")
