"""The UI's screens, one pane each: what they show and how they lay it out. They hold no
connections; the app feeds them snapshots and runs their actions in workers."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Checkbox, DataTable, Input, RichLog, Select, Static, TextArea

from tui import render
from tui.source import Snapshot

WORKLOAD_COLUMNS = ("NS", "DEPLOYMENT", "MESHED", "SUCCESS", "RPS", "P50", "P95", "P99", "TCP", "SUCCESS (1m)", "RPS (1m)")
FAULT_KINDS = [
    ("HTTP abort (status, percent)", "http-abort"), ("HTTP delay (duration, percent)", "http-delay"),
    ("network latency", "net-latency"), ("network bandwidth", "net-bandwidth"), ("network reset", "net-reset"),
    ("network blackhole", "net-blackhole"), ("network partition (deploy/A deploy/B)", "net-partition"),
    ("kill an instance or deployment", "kill"), ("kill the control plane", "kill-controlplane"), ("scale", "scale"),
    ("inject a sidecar", "inject"), ("uninject (no sidecar)", "uninject"), ("intruder test", "intruder"),
]
FAULT_HINTS = {
    "http-abort": ("svc/voting", "503 30"), "http-delay": ("svc/emoji", "1s 50"), "net-latency": ("svc/emoji", "300ms"),
    "net-bandwidth": ("svc/emoji", "10KB/s"), "net-reset": ("svc/voting", ""), "net-blackhole": ("svc/voting", ""),
    "net-partition": ("deploy/web deploy/emoji", ""), "kill": ("emoji", ""), "kill-controlplane": ("controlplane", ""),
    "scale": ("deploy/emoji", "2"), "inject": ("deploy/emoji", ""), "uninject": ("deploy/emoji", ""), "intruder": ("svc/web", ""),
}
TOGGLES = [("retries", "retries"), ("timeout 500ms", "timeout"), ("50/50 split", "split"), ("STRICT mTLS", "strict"),
           ("deny an edge", "deny")]


def problem_text(snap: Snapshot) -> Text:
    return Text(f"⚠ {snap.problem}", style="bold white on dark_red") if snap.problem else Text("")


class Dashboard(Vertical):
    def compose(self) -> ComposeResult:
        yield Static(id="summary", markup=False)
        table: DataTable = DataTable(id="workloads", cursor_type="row", zebra_stripes=True)
        table.add_columns(*WORKLOAD_COLUMNS)
        yield table
        yield Static("Active faults and policies", classes="heading")
        yield Static(id="active", markup=False, classes="box")

    def show(self, snap: Snapshot, history: dict) -> None:
        st = snap.status or {}
        cp = st.get("controlplane", {})
        issuer = (snap.ca or {}).get("issuer", {})
        days = ""
        if issuer.get("notAfter"):
            left = dt.datetime.fromisoformat(issuer["notAfter"]) - dt.datetime.fromtimestamp(snap.taken, dt.UTC)
            days = f", issuer expires in {left.days}d"
        ready = sum(1 for w in st.get("workloads", []) if w["ready"])
        summary = Text()
        summary.append(f"sandbox {st.get('name', '?')} · backend {st.get('backend', '?')} · ")
        summary.append(f"control plane {'up' if cp.get('ready') and not snap.problem else 'DOWN'}",
                       style="green" if cp.get("ready") and not snap.problem else "bold red")
        summary.append(f" · CA {'ok' if snap.ca else '?'}{days} · instances ready {ready}/{len(st.get('workloads', []))}")
        for gw in st.get("gateways", []):
            summary.append(f"\n{gw['title']}: {gw['url']}", style="dim")
        self.query_one("#summary", Static).update(summary)
        table = self.query_one("#workloads", DataTable)
        rows = render.workload_rows(snap.deployments, history)
        if not snap.problem:
            table.clear()
            for r, row in zip(snap.deployments, rows, strict=True):
                table.add_row(*row, key=f"{r['namespace']}/{r['name']}")
        lines = render.active_faults(snap.netfaults, snap.policies, snap.taken)
        self.query_one("#active", Static).update("\n".join(lines) or "none — the Faults (5) and Policies (6) screens add some")


class Topology(Horizontal):
    def compose(self) -> ComposeResult:
        with VerticalScroll(id="graph-box"):
            yield Static(id="graph", markup=False)
        with Vertical(id="topology-side"):
            edges: DataTable = DataTable(id="edges", cursor_type="row")
            edges.add_columns("SRC", "DST", "MTLS", "RPS", "SUCCESS")
            yield edges
            yield Static("select an edge or node (enter) for details", id="edge-detail", markup=False, classes="box")

    def show(self, snap: Snapshot, selected: str | None) -> None:
        self.query_one("#graph", Static).update(render.topology(snap.edges, snap.deployments, snap.edge_stats, selected))
        table = self.query_one("#edges", DataTable)
        if snap.problem:
            return
        table.clear()
        for e in snap.edges:
            stats = snap.edge_stats.get((e["src"], e["dst"]), {})
            table.add_row(e["src"], e["dst"], render.LOCK if e["secured"] else render.OPEN_LOCK, f"{stats.get('rps', 0):.1f}",
                          render.rate(stats.get("success_rate")), key=f"{e['src_namespace']}/{e['src']}>{e['dst_namespace']}/{e['dst']}")

    def detail(self, text: str) -> None:
        self.query_one("#edge-detail", Static).update(text)


class Tap(Vertical):
    def compose(self) -> ComposeResult:
        with Horizontal(classes="filters"):
            yield Input(placeholder="tap deploy (e.g. web) ⏎", id="tap-target")
            yield Input(placeholder="dst", id="tap-dst")
            yield Input(placeholder="path prefix", id="tap-path")
            yield Input(placeholder="status", id="tap-status")
            yield Checkbox("only failures", id="tap-failures")
        table: DataTable = DataTable(id="tap-table", cursor_type="row")
        table.add_columns("DIR", "SRC", "DST", "TLS", "METHOD", "PATH", "STATUS", "LATENCY", "FATE")
        yield table
        yield Static("type a deployment and press enter to tap it; select a request for its whole fate", id="fate", markup=False, classes="box")

    def filters(self) -> tuple[str, str, str, bool]:
        return (self.query_one("#tap-dst", Input).value.strip(), self.query_one("#tap-path", Input).value.strip(),
                self.query_one("#tap-status", Input).value.strip(), self.query_one("#tap-failures", Checkbox).value)


class Security(Vertical):
    def compose(self) -> ComposeResult:
        yield Static(id="ca-info", markup=False)
        table: DataTable = DataTable(id="identities", cursor_type="row")
        table.add_columns("WORKLOAD", "IDENTITY", "MODE", "SERIAL", "ROTATES IN", "ROTATIONS")
        yield table
        with Horizontal(classes="filters"):
            yield Input(placeholder="edge for the wire view: web emoji", id="wire-edge")
            yield Button("Wire (w)", id="wire-go")
            yield Input(placeholder="service for the intruder: web", id="intruder-svc")
            yield Button("Intruder (i)", id="intruder-go")
        with VerticalScroll(classes="box"):
            yield Static("the wire view shows what an eavesdropper sees on an edge; the intruder tries a service "
                         "without the mesh's certificate", id="security-out", markup=False)

    def show(self, data: dict[str, Any]) -> None:
        anchor, issuer = data["trust_anchor"], data["issuer"]
        self.query_one("#ca-info", Static).update(f"trust anchor {anchor['subject']} until {anchor['notAfter'][:19]} · "
                                                 f"issuer {issuer['subject']} until {issuer['notAfter'][:19]}")
        table = self.query_one("#identities", DataTable)
        table.clear()
        for w in data["workloads"]:
            left = w.get("rotation_in_seconds")
            table.add_row(w["workload"], w.get("identity") or "-", w.get("mode") or w.get("error", "-"), (w.get("serial") or "-")[:12],
                          "-" if left is None else f"{int(left) // 3600}h{int(left) % 3600 // 60:02d}m{int(left) % 60:02d}s",
                          str(w.get("rotations", "-")), key=w["workload"])


class Faults(Vertical):
    def compose(self) -> ComposeResult:
        yield Select(FAULT_KINDS, value="http-abort", allow_blank=False, id="fault-kind")
        with Horizontal(classes="filters"):
            yield Input(placeholder="target", id="fault-target")
            yield Input(placeholder="value", id="fault-value")
            yield Input(value="2m", placeholder="for (auto-revert)", id="fault-for")
            yield Input(placeholder="from deploy/X (optional)", id="fault-from")
        with Horizontal(classes="buttons"):
            yield Button("Preview CLI/YAML (p)", id="fault-preview")
            yield Button("Apply (a)", id="fault-apply", variant="warning")
            yield Button("Clear all faults (x)", id="fault-clear")
        with VerticalScroll(classes="box"):
            yield Static("pick a fault, fill target and value, preview it, apply it; every fault reverts by itself", id="fault-out", markup=False)

    def fields(self) -> dict[str, str]:
        return {k: self.query_one(f"#fault-{k}", Input).value.strip() for k in ("target", "value", "for", "from")} | {
            "kind": str(self.query_one("#fault-kind", Select).value)}


class Policies(Horizontal):
    def compose(self) -> ComposeResult:
        with Vertical(id="policy-left"):
            table: DataTable = DataTable(id="resources", cursor_type="row")
            table.add_columns("KIND", "NAMESPACE", "NAME", "TIME LEFT")
            yield table
            yield Select([], prompt="example policies (apply with enter)", id="examples")
            with Horizontal(classes="filters"):
                yield Input(placeholder="service (e.g. emoji)", id="toggle-svc")
                yield Select(TOGGLES, value="retries", allow_blank=False, id="toggle-kind")
                yield Button("Toggle (t)", id="toggle-go")
            yield Button("Delete selected (d)", id="policy-delete")
        with Vertical(id="policy-right"):
            yield TextArea(id="yaml", soft_wrap=False, show_line_numbers=True)
            with Horizontal(classes="buttons"):
                yield Button("Apply YAML (ctrl+s)", id="yaml-apply", variant="primary")
            yield Static("enter on a resource shows its YAML here; edit it and apply with ctrl+s", id="yaml-errors", markup=False, classes="box")

    def show(self, snap: Snapshot) -> None:
        table = self.query_one("#resources", DataTable)
        if snap.problem:
            return
        now = snap.taken
        keep = table.cursor_row
        table.clear()
        for item in snap.policies:
            doc = item["document"]
            meta = doc.get("metadata", {})
            left = render.remaining(item["expiresAt"] - now) if item.get("expiresAt") else "-"
            table.add_row(doc.get("kind", "?"), meta.get("namespace", ""), meta.get("name", ""), left,
                          key=f"{doc.get('kind')}/{meta.get('namespace')}/{meta.get('name')}")
        if table.row_count:
            table.move_cursor(row=min(keep, table.row_count - 1))


class Logs(Vertical):
    def compose(self) -> ComposeResult:
        with Horizontal(classes="filters"):
            yield Select([], prompt="workload", id="log-target")
            yield Checkbox("sidecar (proxy) log", id="log-proxy")
        yield RichLog(id="log", max_lines=2000, wrap=False, highlight=False)
