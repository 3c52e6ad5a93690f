"""Traces (9): the latest distributed traces the sidecars recorded, newest first, refreshed
while the screen shows; the highlighted one drawn as a waterfall — every hop under its caller,
where it sits in time, its fate. ``meshdojo trace``'s list and waterfall, with the same words."""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, ScrollableContainer
from textual.widgets import Checkbox, DataTable, Input, Static

from controlplane import traces
from sandbox import local, tracecli
from sandbox.cpapi import ApiError
from sandbox.resources import ResourceError
from tui import tables
from tui.actions import Action, command
from tui.panes.base import Pane
from tui.source import Snapshot

FAILURES = (ApiError, ResourceError, local.SandboxError, ValueError, OSError)
REFRESH_SECONDS = 3.0  # reading every sidecar's spans costs each of them a little: not every second
ROWS = 100
HINT = "select a trace for its waterfall; s: the slowest, r: read again"


class Traces(Pane):
    KEY, TITLE, FIRST = "traces", "Traces", "#traces-table"
    BINDINGS = [Binding("s", "slowest", "Slowest"), Binding("r", "reread", "Read again")]

    def compose(self) -> ComposeResult:
        with Horizontal(classes="filters"):
            yield Input(placeholder="namespace (every one) ⏎", id="traces-namespace")
            yield Checkbox("failed only", id="traces-failed")
        table: DataTable = DataTable(id="traces-table", cursor_type="row")
        table.add_columns(*tracecli.list_table([])[0])
        yield table
        yield Static(HINT, id="traces-status", markup=False, classes="dim")
        with ScrollableContainer(id="waterfall-box"):
            yield Static(id="waterfall", markup=False)

    def on_mount(self) -> None:
        self.summaries: list[traces.TraceSummary] = []
        self._read_at = 0.0  # the snapshot time of the last read of the list
        self._drawn: str | None = None  # the trace id the waterfall shows

    # -- the list ---------------------------------------------------------------------------
    def show(self, snap: Snapshot) -> None:
        if snap.problem is None and snap.taken - self._read_at >= REFRESH_SECONDS:
            self._read_at = snap.taken
            self.read_list()

    def namespace(self) -> str | None:
        return self.query_one("#traces-namespace", Input).value.strip() or None

    @work(thread=True, exclusive=True, group="traces-list")
    def read_list(self) -> None:
        namespace = self.namespace()
        try:
            found = self.meshdojo.source.spans(namespace)
        except FAILURES as exc:
            self.meshdojo.safely(self._status, f"✗ {exc.body.get('error') if isinstance(exc, ApiError) else exc}")
            return
        self.meshdojo.safely(self._listed, traces.summarize(found["spans"]), found["lost"])

    def _listed(self, summaries: list[traces.TraceSummary], lost: list[dict[str, Any]]) -> None:
        if self.query_one("#traces-failed", Checkbox).value:
            summaries = [t for t in summaries if t.failed or t.root["status"] >= 500]
        self.summaries = summaries[:ROWS]
        rows = tracecli.list_table(self.summaries)[1:]
        table = self.query_one("#traces-table", DataTable)
        keys = [t.trace_id for t in self.summaries]
        tables.fill(table, list(zip(keys, rows, strict=True)))
        if self._drawn in keys and tables.selected_key(table) != self._drawn:  # opened from elsewhere (Tap): put the cursor on it
            table.move_cursor(row=keys.index(self._drawn), animate=False)
        status = [HINT] + [f"not read: {x['workload']}: {x['error']}" for x in lost]
        self._status("\n".join(status))
        if not self.summaries:
            self._drawn = None
            self.query_one("#waterfall", Static).update(tracecli.NO_TRACES if not summaries else "no failed trace among the latest")
        elif self._drawn is None:
            self._open(self.summaries[0].trace_id)

    def _status(self, text: str) -> None:
        self.query_one("#traces-status", Static).update(text)

    @on(Input.Submitted, "#traces-namespace")
    @on(Checkbox.Changed, "#traces-failed")
    def _filter_changed(self) -> None:
        self._drawn = None
        self.query_one("#traces-table", DataTable).clear()
        namespace = self.namespace()
        self.meshdojo.last_action = Action("the latest traces", command(self.sandbox, "meshdojo trace" + (f" -n {namespace}" if namespace else "")),
                                           "each trace's first hop, duration and failed spans", lambda: "")
        self.read_list()
        self.query_one("#traces-table", DataTable).focus()

    def action_reread(self) -> None:
        self._drawn = None
        self.read_list()

    def action_slowest(self) -> None:
        """Jaeger's "longest first": the cursor to the slowest of the traces listed."""
        if not self.summaries:
            self.notify("no traces yet", timeout=3)
            return
        slowest = max(self.summaries, key=lambda t: t.duration_ms)
        table = self.query_one("#traces-table", DataTable)
        table.move_cursor(row=table.get_row_index(slowest.trace_id))
        self._open(slowest.trace_id)

    # -- one trace --------------------------------------------------------------------------
    @on(DataTable.RowHighlighted, "#traces-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row != event.data_table.cursor_row:  # the table was refilled since: the cursor is elsewhere now
            return
        if event.row_key.value and event.row_key.value != self._drawn:
            self._open(event.row_key.value)

    def open(self, trace_id: str) -> None:
        """From another screen (a traced request in Tap): that trace, whether listed or not."""
        self._open(trace_id)

    def _open(self, trace_id: str) -> None:
        self._drawn = trace_id
        self.meshdojo.last_action = Action(f"trace {trace_id[:16]}", command(self.sandbox, f"meshdojo trace {trace_id[:16]}"),
                                           "where the time went, hop by hop, and each hop's fate", lambda: "")
        self._read_trace(trace_id)

    @work(thread=True, exclusive=True, group="traces-one")
    def _read_trace(self, trace_id: str) -> None:
        try:
            spans = [s for s in self.meshdojo.source.spans(None, trace_id)["spans"] if s["traceId"] == trace_id]
        except FAILURES as exc:
            self.meshdojo.safely(self._draw, trace_id, f"✗ {exc}")
            return
        text = ("\n".join(tracecli.waterfall(trace_id, spans)) if spans else
                f"trace {trace_id} is no longer kept at any sidecar (each keeps only its latest spans)")
        self.meshdojo.safely(self._draw, trace_id, text)

    def _draw(self, trace_id: str, text: str) -> None:
        if trace_id == self._drawn:  # not a trace the learner has already moved away from
            self.query_one("#waterfall", Static).update(text)
