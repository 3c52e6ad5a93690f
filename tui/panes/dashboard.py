"""Dashboard (1): the sandbox at a glance — control plane, CA, every deployment's golden
metrics and mTLS share with a minute of history, and the faults and policies in force; ``b``
compares the minute before the last change with the time since (``meshdojo report``'s view)."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from tui import render, tables
from tui.dialogs import TextScreen
from tui.panes.base import Pane
from tui.source import Snapshot

NARROW = ("DEPLOYMENT", "MESHED", "MTLS", "SUCCESS", "RPS", "P50", "P99", "SUCCESS (1m)")
WIDE = ("NAMESPACE", "DEPLOYMENT", "MESHED", "MTLS", "SUCCESS", "RPS", "P50", "P95", "P99", "TCP", "SUCCESS (1m)", "RPS (1m)")
WIDE_AT = 110  # columns of terminal from which the wide table fits


class Dashboard(Pane):
    KEY, TITLE, FIRST = "dashboard", "Dashboard", "#workloads"
    SHORT = "Dash"
    BINDINGS = [Binding("b", "before_after", "Before/after")]

    def compose(self) -> ComposeResult:
        yield Static(id="summary", markup=False)
        yield DataTable(id="workloads", cursor_type="row", zebra_stripes=True)
        yield Static(id="active", markup=False)

    def on_mount(self) -> None:
        self._columns: tuple[str, ...] = ()

    def show(self, snap: Snapshot) -> None:
        self.query_one("#summary", Static).update(render.summary(snap))
        wide = self.app.size.width >= WIDE_AT
        columns = WIDE if wide else NARROW
        table = self.query_one("#workloads", DataTable)
        if columns != self._columns:
            table.clear(columns=True)
            table.add_columns(*columns)
            self._columns = columns
        if not snap.problem:
            rows = render.workload_rows(snap.deployments, self.meshdojo.source.history, wide)
            tables.fill(table, [(f"{d['namespace']}/{d['name']}", row) for d, row in zip(snap.deployments, rows, strict=True)])
        lines = render.active_faults(snap.netfaults, snap.policies, snap.taken)
        self.query_one("#active", Static).update(render.active_text(lines))

    def action_before_after(self) -> None:
        self.notify("comparing the minute before the last change with the time since ...", timeout=3)
        self._compare()

    @work(thread=True, group="compare", exclusive=True)
    def _compare(self) -> None:
        try:
            data, command = self.meshdojo.source.comparison()
            text = render.comparison_text(data, command)
        except Exception as exc:  # an unreachable control plane, an odd answer: said, never a crash
            text = f"no comparison: {exc}"
        self.meshdojo.safely(self.app.push_screen, TextScreen("Before and after the last change", text))
