"""Pure rendering for the terminal UI: rows, sparklines, the topology and a request's fate,
from the plain dicts the control-plane API and the sandbox functions return. No I/O here, so
snapshot tests can feed it fixed data."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.text import Text

SPARK = "▁▂▃▄▅▆▇█"
LOCK, OPEN_LOCK = "🔒", "🔓"


def sparkline(values: Sequence[float | None], width: int = 20, top: float | None = None) -> str:
    """The last ``width`` values as block characters (a gap for None)."""
    recent = list(values)[-width:]
    known = [v for v in recent if v is not None]
    if not known:
        return " " * width
    high = top if top is not None else max(known)
    low = 0.0 if top is not None else min(known)
    span = (high - low) or 1.0
    cells = [" " if v is None else SPARK[min(int((v - low) / span * (len(SPARK) - 1) + 0.5), len(SPARK) - 1)] for v in recent]
    return "".join(cells).rjust(width)


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}ms" if value >= 10 else f"{value:.1f}ms"


def health_style(success: float | None, not_answering: bool = False) -> str:
    if not_answering:
        return "bold red"
    if success is None:
        return "dim"
    if success < 0.9:
        return "bold red"
    if success < 0.99:
        return "yellow"
    return "green"


def workload_rows(stats: list[dict[str, Any]], history: dict[tuple[str, str], list[tuple[float | None, float]]]) -> list[tuple]:
    """The dashboard's table: one row per deployment, failing ones styled to stand out."""
    rows = []
    for r in stats:
        key = (r["namespace"], r["name"])
        past = history.get(key, [])
        style = health_style(r["success_rate"], bool(r["not_answering"]))
        name = r["name"] + (" (not answering)" if r["not_answering"] else "")
        rows.append((
            Text(r["namespace"], style="dim"), Text(name, style=style), r["meshed"], Text(rate(r["success_rate"]), style=style),
            f"{r['rps']:.1f}", ms(r["latency_ms"]["p50"]), ms(r["latency_ms"]["p95"]), ms(r["latency_ms"]["p99"]),
            "-" if r["tcp_conn"] is None else str(r["tcp_conn"]),
            Text(sparkline([s for s, _ in past], 12, top=1.0), style=style), sparkline([q for _, q in past], 12),
        ))
    return rows


def remaining(seconds: float | None) -> str:
    if seconds is None:
        return "until removed"
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s left" if seconds >= 60 else f"{seconds}s left"


def active_faults(netfaults: list[dict[str, Any]], policies: list[dict[str, Any]], now: float) -> list[str]:
    """Faults and policies in force, each with its remaining time."""
    lines = []
    for f in netfaults:
        if f["kind"] != "wire":
            lines.append(f"network  {f['description']}  ({remaining(f.get('remaining_seconds'))})")
    for item in policies:
        doc = item["document"]
        meta = doc.get("metadata", {})
        expires = item.get("expiresAt")
        left = remaining(max(expires - now, 0) if expires else None)
        lines.append(f"{doc.get('kind', '?'):<8} {meta.get('namespace', '')}/{meta.get('name', '')}  ({left})")
    return lines


# -- topology ---------------------------------------------------------------------------------

def layers(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """Nodes in columns: callers nobody calls first, each node one column right of its
    furthest caller. A cycle (a calls b calls a) is broken where a depth-first walk from the
    callers first meets it."""
    nodes = sorted(set(nodes))
    calls: dict[str, list[str]] = {n: [] for n in nodes}
    called = set()
    for src, dst in sorted(set(edges)):
        if src != dst and src in calls and dst in calls:
            calls[src].append(dst)
            called.add(dst)
    kept: dict[str, set[str]] = {n: set() for n in nodes}  # callee -> callers, back edges dropped
    state: dict[str, int] = {}  # 1 on the walk's stack, 2 done

    def walk(node: str) -> None:
        state[node] = 1
        for nxt in calls[node]:
            if state.get(nxt) == 1:
                continue  # a back edge: it would close a cycle
            kept[nxt].add(node)
            if nxt not in state:
                walk(nxt)
        state[node] = 2

    for root in [n for n in nodes if n not in called] + nodes:
        if root not in state:
            walk(root)
    depth: dict[str, int] = {}

    def place(node: str) -> int:
        if node not in depth:
            depth[node] = 1 + max((place(c) for c in kept[node]), default=-1)
        return depth[node]

    columns: list[list[str]] = []
    for n in nodes:
        d = place(n)
        columns += [[] for _ in range(d + 1 - len(columns))]
        columns[d].append(n)
    return columns


def topology(edges: list[dict[str, Any]], deployments: list[dict[str, Any]], edge_stats: dict[tuple[str, str], dict[str, Any]],
             selected: str | None = None) -> Text:
    """The services as a graph: one line per edge, grouped by column, a lock on mTLS edges and an
    open lock on plaintext ones, coloured by the destination's health."""
    health = {(d["namespace"], d["name"]): d for d in deployments}
    pairs = [(f"{e['src_namespace']}/{e['src']}", f"{e['dst_namespace']}/{e['dst']}") for e in edges]
    names = {f"{d['namespace']}/{d['name']}" for d in deployments} | {p for pair in pairs for p in pair}
    columns = layers(names, pairs)
    out = Text()
    width = max((len(n.split("/", 1)[1]) for n in names), default=8) + 2
    for depth, column in enumerate(columns):
        out.append(f"── tier {depth + 1} " + "─" * 40 + "\n", style="dim")
        for node in column:
            ns, name = node.split("/", 1)
            d = health.get((ns, name))
            style = health_style(d["success_rate"] if d else None, bool(d and d["not_answering"]))
            marker = "▶ " if node == selected else "  "
            out.append(marker)
            out.append(f"[{name}]".ljust(width + 2), style=style + (" reverse" if node == selected else ""))
            summary = f" {rate(d['success_rate'])} {d['rps']:.1f}rps" if d else ""
            out.append(f"{ns}{summary}\n", style="dim")
            for e in edges:
                if f"{e['src_namespace']}/{e['src']}" != node:
                    continue
                stats = edge_stats.get((e["src"], e["dst"]), {})
                lock = LOCK if e["secured"] else OPEN_LOCK
                label = f" {stats.get('rps', 0):.1f}rps {rate(stats.get('success_rate'))} "
                edge_style = "green" if e["secured"] else "bold yellow"
                out.append(" " * (width + 4) + "└─" + lock, style=edge_style)
                out.append(label, style=health_style(stats.get("success_rate")))
                out.append("─▶ ", style=edge_style)
                out.append(f"{e['dst']}\n", style="bold")
    if not edges:
        out.append("no traffic between workloads yet (the load generators start with the sandbox)\n", style="dim")
    return out


# -- a request's fate -----------------------------------------------------------------------

FATE_KEYS = ("route", "backend", "timeout", "breaker", "pool", "fault", "authz", "ratelimit")


def fate_lines(event: dict[str, Any]) -> list[str]:
    """The whole fate of one tapped request, a line per decision, for the detail pane."""
    fate = event.get("fate") or {}
    lines = [f"{event.get('method', '?')} {event.get('authority', '')}{event.get('path', '')} -> {event.get('status', '?')} "
             f"in {event.get('latency_ms', 0):.1f}ms ({'outbound' if event.get('direction') == 'outbound' else 'inbound'} "
             f"proxy of {event.get('workload', '?')})",
             f"src {event.get('src')} -> dst {event.get('dst')}, mTLS: {'yes' if event.get('tls') else 'NO'}"]
    for key in ("client_id", "server_id"):
        if event.get(key):
            lines.append(f"{key}: {event[key]}")
    for key in FATE_KEYS:
        lines.append(f"{key:<10} {fate.get(key) or '-'}")
    attempts = fate.get("attempts") or []
    lines.append(f"attempts   {len(attempts)}" + "".join(f"\n  {i + 1}. {a}" for i, a in enumerate(attempts)))
    for reason in fate.get("retry") or []:
        lines.append(f"retry      {reason}")
    if event.get("error"):
        lines.append(f"error      {event['error']}")
    return lines


def tap_row(event: dict[str, Any]) -> tuple:
    status = event.get("status", 0)
    style = "bold red" if status >= 500 else "yellow" if status >= 400 else ""
    fate = event.get("fate") or {}
    decided = "; ".join(f"{k}={fate[k]}" for k in FATE_KEYS if fate.get(k))
    retries = len(fate.get("attempts") or [])
    if retries > 1:
        decided = f"attempts={retries}; " + decided
    return ("out" if event.get("direction") == "outbound" else "in", Text(str(event.get("src", ""))), Text(str(event.get("dst", ""))),
            LOCK if event.get("tls") else OPEN_LOCK, event.get("method", ""), Text(str(event.get("path", ""))[:40]),
            Text(str(status), style=style), f"{event.get('latency_ms', 0):.1f}ms", Text(decided or "-"))


def tap_matches(event: dict[str, Any], workload: str, dst: str, path: str, status: str, failures_only: bool) -> bool:
    """The tap screen's filters (empty means any)."""
    if workload and workload not in str(event.get("workload", "")) and workload not in str(event.get("src", "")):
        return False
    if dst and dst not in str(event.get("dst", "")):
        return False
    if path and not str(event.get("path", "")).startswith(path):
        return False
    if status and not str(event.get("status", "")).startswith(status):
        return False
    return not failures_only or int(event.get("status", 0)) >= 500 or bool(event.get("error"))
