"""Topology (2): the graph of who calls whom — boxes per deployment, 🔒/🔓 arrows with RPS and
success — and a list of its nodes and edges: select one (the selection stays put as the screen
refreshes) and enter shows its details over the screen: identities, routes, what to try next."""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import ScrollableContainer
from textual.widgets import DataTable, Static

from tui import render, tables
from tui.dialogs import TextScreen
from tui.panes.base import Pane
from tui.source import Snapshot


class Topology(Pane):
    KEY, TITLE, FIRST = "topology", "Topology", "#items"
    SHORT = "Topo"

    def compose(self) -> ComposeResult:
        with ScrollableContainer(id="graph-box"):
            yield Static(id="graph", markup=False)
        yield DataTable(id="items", cursor_type="row")

    def on_mount(self) -> None:
        self.query_one("#items", DataTable).add_columns("NODE / EDGE", "MTLS", "RPS", "SUCCESS")

    def show(self, snap: Snapshot) -> None:
        selected = tables.selected_key(self.query_one("#items", DataTable))
        self.query_one("#graph", Static).update(render.graph(snap, selected))
        if snap.problem:
            return
        rows: list[tuple[str, list[Any]]] = []
        for d in snap.deployments:
            share = d.get("mtls_share")
            rows.append((f"{d['namespace']}/{d['name']}", [d["name"], "-" if share is None else f"{share * 100:.0f}%",
                                                           f"{d['rps']:.1f}", render.rate(d["success_rate"])]))
        for e in snap.edges:
            key = f"{e['src_namespace']}/{e['src']}>{e['dst_namespace']}/{e['dst']}"
            lock = render.LOCK if e["secured"] else render.OPEN_LOCK if e.get("reached", True) else "-"
            rows.append((key, [f"  {e['src']} → {e['dst']}", f"{lock} {e.get('mtls_share', 0) * 100:.0f}%", f"{e.get('rps', 0):.1f}",
                               render.rate(e.get("success_rate"))]))
        tables.fill(self.query_one("#items", DataTable), rows)

    @on(DataTable.RowHighlighted, "#items")
    def _highlighted(self) -> None:
        self.query_one("#graph", Static).update(render.graph(self.snapshot, tables.selected_key(self.query_one("#items", DataTable))))

    @on(DataTable.RowSelected, "#items")
    def _selected(self, event: DataTable.RowSelected) -> None:
        key = str(event.row_key.value or "")
        if ">" in key:
            src, _, dst = key.partition(">")
            edge = next((e for e in self.snapshot.edges if f"{e['src_namespace']}/{e['src']}" == src
                         and f"{e['dst_namespace']}/{e['dst']}" == dst), None)
            if edge is not None:
                self._edge_detail(edge)
        else:
            d = next((d for d in self.snapshot.deployments if f"{d['namespace']}/{d['name']}" == key), None)
            if d is not None:
                self._node_detail(d)

    @work(thread=True, group="detail", exclusive=True)
    def _node_detail(self, d: dict[str, Any]) -> None:
        """Its traffic, then each instance as its sidecar sees it (``meshdojo describe``)."""
        try:
            described = self.meshdojo.source.described(d["name"], d["namespace"])
        except Exception as exc:  # the detail still shows its traffic
            described = ["", f"(its sidecars could not be read: {exc})"]
        text = "\n".join([render.node_detail(d, self.snapshot.edges, self.sandbox), *described])
        self.meshdojo.safely(self.app.push_screen, TextScreen(f"deployment {d['namespace']}/{d['name']}", text))

    @work(thread=True, group="detail", exclusive=True)
    def _edge_detail(self, edge: dict[str, Any]) -> None:
        try:
            routes = self.meshdojo.source.routes(edge["dst"], edge["dst_namespace"])
        except Exception:
            routes = []
        self.meshdojo.safely(self.app.push_screen, TextScreen(f"edge {edge['src']} -> {edge['dst']}",
                                                              render.edge_detail(edge, routes, self.sandbox)))
