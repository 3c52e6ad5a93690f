"""Tap (3): every request a deployment makes or receives, live, with its fate; select one for
the whole story, and t for its trace when it was sampled. Enter in the deployment field starts
(or moves) the tap."""

from __future__ import annotations

import threading
import time
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Checkbox, DataTable, Input, Static

from sandbox import local, tapcli
from tui import render, tables
from tui.actions import Action, command
from tui.panes.base import Pane
from tui.source import Snapshot

FAILURES = (local.SandboxError, ValueError, OSError)
KEEP = 500  # rows


class Tap(Pane):
    KEY, TITLE, FIRST = "tap", "Tap", "#tap-table"
    BINDINGS = [Binding("t", "trace", "Its trace")]

    def compose(self) -> ComposeResult:
        with Horizontal(classes="filters"):
            yield Input(placeholder="deployment ⏎", id="tap-target")
            yield Input(placeholder="dst", id="tap-dst")
            yield Input(placeholder="path prefix", id="tap-path")
            yield Input(placeholder="status", id="tap-status")
            yield Checkbox("failures", id="tap-failures")
        table: DataTable = DataTable(id="tap-table", cursor_type="row")
        table.add_columns("DIR", "SRC", "DST", "TLS", "METHOD", "PATH", "STATUS", "LATENCY", "FATE")
        yield table
        yield Static("enter in the first field taps that deployment; select a request for its whole fate", id="fate", markup=False,
                     classes="box")

    def on_mount(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._stop: threading.Event | None = None

    def show(self, snap: Snapshot) -> None:
        target = self.query_one("#tap-target", Input)
        if not target.value and snap.deployments:  # a real default instead of an empty field
            names = [d["name"] for d in snap.deployments]
            target.value = "web" if "web" in names else names[0]

    @on(Input.Submitted, "#tap-target")
    def _submitted(self, event: Input.Submitted) -> None:
        self.start(event.value.strip().partition("/")[2] or event.value.strip())

    @on(Input.Submitted, "#tap-dst, #tap-path, #tap-status")
    def _filter_submitted(self) -> None:
        self.query_one("#tap-table", DataTable).focus()

    def start(self, deployment: str) -> None:
        if not deployment:
            self.query_one("#fate", Static).update("✗ type a deployment to tap, e.g. web")
            return
        self.query_one("#tap-target", Input).value = deployment
        self.stop()
        self._stop = threading.Event()
        self.events.clear()
        self.query_one("#tap-table", DataTable).clear()
        self.query_one("#fate", Static).update(f"tapping deploy/{deployment} … requests appear as they end")
        self.meshdojo.last_action = Action(f"tap deploy/{deployment}", command(self.sandbox, f"meshdojo tap deploy/{deployment}"),
                                           "each request and its fate", lambda: "")
        self._follow(deployment, self._stop)

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    @work(thread=True, group="tap")
    def _follow(self, deployment: str, stop: threading.Event) -> None:
        try:
            _instances, events = tapcli.streams(self.sandbox, deployment, None, None, None, None, stop)
        except FAILURES as exc:
            self.meshdojo.safely(self.query_one("#fate", Static).update, f"✗ {exc}")
            return
        batch: list[dict[str, Any]] = []
        flushed = time.monotonic()
        for event in events:
            if event.get("type") == "end":
                batch.append(event)
            if batch and time.monotonic() - flushed > 0.25:  # a few screen updates a second, whatever the rate
                self.meshdojo.safely(self._add, batch)
                batch, flushed = [], time.monotonic()

    def _add(self, batch: list[dict[str, Any]]) -> None:
        table = self.query_one("#tap-table", DataTable)
        dst, path, status, failures = self._filters()
        for event in batch:
            self.events.append(event)
            if render.tap_matches(event, "", dst, path, status, failures):
                table.add_row(*render.tap_row(event), key=str(len(self.events) - 1))
        while table.row_count > KEEP:
            table.remove_row(table.coordinate_to_cell_key((0, 0)).row_key)

    def _filters(self) -> tuple[str, str, str, bool]:
        return (self.query_one("#tap-dst", Input).value.strip(), self.query_one("#tap-path", Input).value.strip(),
                self.query_one("#tap-status", Input).value.strip(), self.query_one("#tap-failures", Checkbox).value)

    @on(DataTable.RowHighlighted, "#tap-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        index = int(event.row_key.value or 0) if event.row_key else 0
        if index < len(self.events):
            self.query_one("#fate", Static).update("\n".join(render.fate_lines(self.events[index])))

    def action_trace(self) -> None:
        """The selected request's whole trace (Traces, 9), when a sidecar sampled it."""
        table = self.query_one("#tap-table", DataTable)
        key = tables.selected_key(table)
        event = self.events[int(key)] if key is not None and int(key) < len(self.events) else None
        trace = ((event or {}).get("fate") or {}).get("trace")
        if not trace:
            self.notify("this request was not traced: a sidecar samples 1 % of requests unless a Telemetry says more "
                        "(demo-apps/emojivoto/policies/tracing-all.yaml)", timeout=5)
            return
        self.meshdojo.show_trace(trace)

    def on_unmount(self) -> None:
        self.stop()
