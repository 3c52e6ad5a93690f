"""Pure rendering for the terminal UI: rows, sparklines, the topology and a request's fate,
from the plain dicts the control-plane API and the sandbox functions return. No I/O here, so
snapshot tests can feed it fixed data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text

from sandbox.proxystatus import SYNCED, policy_state
from sandbox.tapcli import FATE_KEYS

SPARK = "▁▂▃▄▅▆▇█"
LOCK, OPEN_LOCK = "🔒", "🔓"  # the same marks as tui.graph


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


def workload_rows(stats: list[dict[str, Any]], history: dict[tuple[str, str], Any], wide: bool = False) -> list[tuple]:
    """The dashboard's table: one row per deployment, failing ones styled to stand out.
    Narrow (80 columns): name, meshed, mTLS share, success, RPS, p50, p99, a minute of success."""
    rows = []
    for r in stats:
        key = (r["namespace"], r["name"])
        past = history.get(key, [])
        style = health_style(r["success_rate"], bool(r["not_answering"]))
        name = r["name"] + (" ✗" if r["not_answering"] else "")
        mtls = r.get("mtls_share")
        mtls_cell = Text("-" if mtls is None else f"{mtls * 100:.0f}%", style="green" if mtls == 1 else "bold yellow" if mtls is not None else "dim")
        success = Text(rate(r["success_rate"]), style=style)
        trend = Text(sparkline([s for s, _ in past], 10, top=1.0), style=style)
        if wide:
            rows.append((Text(r["namespace"], style="dim"), Text(name, style=style), r["meshed"], mtls_cell, success, f"{r['rps']:.1f}",
                         ms(r["latency_ms"]["p50"]), ms(r["latency_ms"]["p95"]), ms(r["latency_ms"]["p99"]),
                         "-" if r["tcp_conn"] is None else str(r["tcp_conn"]), trend, sparkline([q for _, q in past], 10)))
        else:
            rows.append((Text(name, style=style), r["meshed"], mtls_cell, success, f"{r['rps']:.1f}", ms(r["latency_ms"]["p50"]),
                         ms(r["latency_ms"]["p99"]), trend))
    return rows


def summary(snap: Any) -> Text:
    """The dashboard's first lines: sandbox, control plane, CA, readiness, gateways."""
    import datetime as dt

    st = snap.status or {}
    cp = st.get("controlplane", {})
    out = Text()
    out.append(f"sandbox {st.get('name', '?')} · {st.get('backend', '?')} · ")
    up = cp.get("ready") and not snap.problem
    out.append(f"control plane {'up' if up else 'DOWN'}", style="green" if up else "bold red")
    issuer = (snap.ca or {}).get("issuer", {})
    if issuer.get("notAfter"):
        left = dt.datetime.fromisoformat(issuer["notAfter"]) - dt.datetime.fromtimestamp(snap.taken, dt.UTC)
        if left.total_seconds() <= 0:
            out.append(" · CA EXPIRED", style="bold red")
        else:
            out.append(" · CA ok, issuer ")
            out.append(f"expires in {remaining_text(left.total_seconds())}", style="yellow" if left.days < 7 else "")
    else:
        out.append(" · CA ?", style="dim")
    workloads = st.get("workloads", [])
    ready = sum(1 for w in workloads if w["ready"])
    out.append(f" · ready {ready}/{len(workloads)}", style="" if ready == len(workloads) else "bold yellow")
    gateways = [f"{g['demo']} {g['url']}" for g in st.get("gateways", []) if g.get("url")]
    if gateways:
        out.append("\n" + "  ".join(gateways), style="dim")
    return out


def remaining_text(seconds: float) -> str:
    """A duration as a learner reads it (the same words as the CLI's)."""
    from sandbox.observe import human_duration

    return human_duration(seconds)


def active_text(lines: list[str]) -> Text:
    if not lines:
        return Text("no faults or policies in force — the Faults (5) and Policies (6) screens add some", style="dim")
    out = Text("in force: ", style="bold")
    out.append("\n".join(lines))
    return out


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


# -- a request's fate -----------------------------------------------------------------------

SHOWN_WHEN_SET = ("egress", "no_route", "subset", "balance")  # a host outside the mesh, a 404, Istio's subset, its loadBalancer


def graph(snap: Any, selected: str | None = None) -> Text:
    """The topology: a node per deployment, an arrow per edge (see tui.graph)."""
    from tui.graph import Arrow, Node, draw

    nodes, keys = [], set()
    for d in snap.deployments:
        key = f"{d['namespace']}/{d['name']}"
        keys.add(key)
        nodes.append(Node(key, d["name"], f"{rate(d['success_rate'])} {d['rps']:.1f}/s",
                          health_style(d["success_rate"], bool(d["not_answering"]))))
    arrows = []
    for e in snap.edges:
        # egress (PassthroughCluster, a ServiceEntry's host: a name with a dot, never a Deployment's) is drawn
        # beside its caller, so the arrow shows
        outside = not e["dst_namespace"] or "." in e["dst"]
        src = f"{e['src_namespace']}/{e['src']}"
        dst = f"{e['src_namespace'] if outside else e['dst_namespace']}/{e['dst']}"
        for key, name in ((src, e["src"]), (dst, e["dst"])):
            if key not in keys:  # an edge to something without a sidecar of its own shows up too
                keys.add(key)
                nodes.append(Node(key, name, "outside the mesh" if outside and key == dst else "no sidecar", "dim"))
        share = e.get("mtls_share", 1.0 if e["secured"] else 0.0)
        success = e.get("success_rate")
        arrows.append(Arrow(src, dst, e["secured"], 0 < share < 1, f"{e.get('rps', 0):.1f}/s {'-' if success is None else f'{success * 100:.0f}%'}",
                            "green" if e["secured"] else "dim" if not e.get("reached", True) else "bold yellow"))
    return draw(nodes, arrows, selected)


def policy_sync(held: int | None, latest: int | None) -> str:
    """A sidecar's policy snapshot against the control plane's, as meshdojo proxy-status says it."""
    if held is None or latest is None:
        return "-"
    state = policy_state(held, latest)
    return f"{state} v{held}" if state == SYNCED else f"{state} v{held} (v{latest})"


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
        if key not in SHOWN_WHEN_SET or fate.get(key):
            lines.append(f"{key:<10} {fate.get(key) or '-'}")
    attempts = fate.get("attempts") or []
    lines.append(f"attempts   {len(attempts)}" + "".join(f"\n  {i + 1}. {a}" for i, a in enumerate(attempts)))
    for reason in fate.get("retry") or []:
        lines.append(f"retry      {reason}")
    if event.get("error"):
        lines.append(f"error      {event['error']}")
    if fate.get("request_id"):  # the same on every hop: grep the sidecars' access logs for it
        lines.append(f"request id {fate['request_id']}")
    if fate.get("trace"):  # a sampled request: its whole path, every sidecar's span, from the CLI
        lines.append(f"trace      {fate['trace']}: t draws it (meshdojo trace {fate['trace'][:16]})")
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


def edge_detail(edge: dict[str, Any], routes: list[dict[str, Any]], sandbox: str = "default") -> str:
    secured = "mutual TLS " + LOCK if edge["secured"] else "PLAINTEXT " + OPEN_LOCK
    if not edge.get("reached", True):
        secured = "no connection: the caller's sidecar answered every request itself (a fault, a breaker, no route)"
    lines = [f"{edge['src']} -> {edge['dst']}  {secured}  ({edge.get('mtls_share', 0) * 100:.0f}% of requests mTLS)",
             f"client: {edge['client_id'] or '-'}", f"server: {edge['server_id'] or '-'}", "", "routes (1m):"]
    lines += [f"  {r['route']}  {rate(r['effective_success'])} {r['effective_rps']:.1f}rps "
              f"(actual {rate(r['actual_success'])} {r['actual_rps']:.1f}rps) p50 {ms(r['latency_ms']['p50'])} "
              f"p99 {ms(r['latency_ms']['p99'])}" for r in routes] or ["  (no routes: everything goes to the service)"]
    name = "" if sandbox == "default" else f" --name {sandbox}"
    lines.append(f"\nsee the bytes: meshdojo wire deploy/{edge['src']} deploy/{edge['dst']}{name}")
    return "\n".join(lines)


def node_detail(d: dict[str, Any], edges: list[dict[str, Any]], sandbox: str = "default") -> str:
    from sandbox.observe import counts_text  # as `meshdojo stat` writes it

    callers = sorted({e["src"] for e in edges if e["dst"] == d["name"] and e["dst_namespace"] == d["namespace"]})
    calls = sorted({e["dst"] for e in edges if e["src"] == d["name"] and e["src_namespace"] == d["namespace"]})
    name = "" if sandbox == "default" else f" --name {sandbox}"
    return "\n".join([
        f"{d['namespace']}/{d['name']}  meshed {d['meshed']}  success {rate(d['success_rate'])}  {d['rps']:.1f} rps",
        f"latency p50 {ms(d['latency_ms']['p50'])} p95 {ms(d['latency_ms']['p95'])} p99 {ms(d['latency_ms']['p99'])}",
        f"called by: {', '.join(callers) or 'nobody yet'}", f"calls: {', '.join(calls) or 'nobody'}",
        *([f"TLS refused: {counts_text(d['tls_refused'])} (meshdojo logs {d['name']}{name} says why)"] if d.get("tls_refused") else []),
        *([f"rate limited (429): {counts_text(d['rate_limited'])}"] if d.get("rate_limited") else []),
        f"\nits requests: meshdojo tap deploy/{d['name']}{name}", f"its log: meshdojo logs {d['name']}{name}",
        f"below, as its sidecars see it: meshdojo describe deploy/{d['name']} -n {d['namespace']}{name}",
    ])


def action_result(action: Any, result: str, ok: bool) -> str:
    """What the UI says after running an action: the outcome, what to watch, the CLI equivalent."""
    return f"{'✓' if ok else '✗'} {action.title}\n{result}\n\nwatch for: {action.watch}\nCLI: {action.cli}  (c shows it with the YAML)"


def problem_text(snap: Any) -> Text:
    return Text(f"⚠ {snap.problem}", style="bold white on dark_red") if snap.problem else Text("")


def comparison_text(data: dict[str, Any], command: str) -> str:
    """``meshdojo report``'s comparison as a table with sparklines: the UI's before/after view."""
    import datetime as dt

    from sandbox import report

    def when(t: float) -> str:
        return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%H:%M:%S")

    before, after = data["windows"]
    rows = report.comparison(data)
    lines = [f"before {when(before['start'])}-{when(before['end'])}   after {when(after['start'])}-{when(after['end'])} (UTC)", ""]
    lines += ["changed in between:"] + ([f"  {when(c['time'])} {c['action']} {c['kind']} {c['namespace']}/{c['name']}"
                                          for c in data["changes"]] or ["  nothing (no policy or fault was applied, changed or deleted)"])
    lines += ["", "what moved:"] + [f"  {line}" for line in report.summary(rows)] + [""]
    table = [("SERVICE", "SUCCESS before -> after", "P99 before -> after", "RPS", "SUCCESS OVER TIME")]
    for r in rows:
        key = (r["namespace"], r["name"])
        series = [next((x["success_rate"] for x in point["rows"] if (x["namespace"], x["name"]) == key), None)
                  for point in data["series"]]
        table.append((f"{r['namespace']}/{r['name']}", f"{rate(r['success_rate'][0])} -> {rate(r['success_rate'][1])}",
                      f"{ms(r['p99'][0])} -> {ms(r['p99'][1])}", f"{(r['rps'][0] or 0):.1f} -> {(r['rps'][1] or 0):.1f}",
                      sparkline(series, width=len(series), top=1.0)))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
    if len(table) == 1:
        lines.append("(no traffic in either window)")
    lines += ["", f"the whole report, with charts, as one HTML file: {command}"]
    return "\n".join(lines)


def status_text(status: dict[str, Any] | None) -> str:
    """A route's (or Gateway's) status in a line or two: what holds, or each condition that does
    not, with its reason and message (as ``get -o yaml`` has them in full)."""
    if not status:
        return ""
    conditions = [("", c) for entry in status.get("parents") or [status] for c in entry.get("conditions") or []]
    conditions += [(f"listener {item.get('name')}: ", c) for item in status.get("listeners") or [] for c in item.get("conditions") or []]
    failing = [(where, c) for where, c in conditions if c.get("status") != "True"]
    if not failing:
        return "status: " + ", ".join(dict.fromkeys(c["type"] for _, c in conditions))
    return "\n".join(f"status: {where}{c['type']} False ({c.get('reason', '?')})" + (f": {c['message']}" if c.get("message") else "")
                     for where, c in failing)


def gateway_certificate_rows(items: list[dict[str, Any]], now: float) -> list[tuple[str, list[str]]]:
    """The Security screen's second table: each TLS Secret a gateway may serve (``meshdojo get
    secrets``): its hosts, the time left, the CA its clients' certificates are checked against
    (mutual TLS) and the listeners that use it. A row that says how to make one when there is none."""
    import datetime as dt

    from sandbox.observe import human_duration

    if not items:
        return [("-", ["(none)", "meshdojo create secret tls NAME --cert FILE --key FILE -n NS", "", "", ""])]
    rows = []
    for s in items:
        left = dt.datetime.fromisoformat(s["notAfter"]).timestamp() - now
        rows.append((f"{s['namespace']}/{s['name']}", [f"{s['namespace']}/{s['name']}", ",".join(s["hosts"]) or "-",
                                                      human_duration(left) if left > 0 else "EXPIRED",
                                                      s.get("clientCA") or "- (no mutual TLS)",
                                                      ",".join(s.get("usedBy") or []) or "(no Gateway names it)"]))
    return rows
