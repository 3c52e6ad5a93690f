"""Logs (7): an app's, its sidecar's or the control plane's log, followed as it grows."""

from __future__ import annotations

import threading
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Checkbox, RichLog, Select

from sandbox import local
from sandbox.backends import backend_for
from tui.actions import Action, command
from tui.panes.base import Pane
from tui.source import Snapshot

FAILURES = (local.SandboxError, ValueError, OSError)


class Logs(Pane):
    KEY, TITLE, FIRST = "logs", "Logs", "#log"

    def compose(self) -> ComposeResult:
        with Horizontal(classes="filters"):
            yield Select([("controlplane", "controlplane")], prompt="workload", id="log-target")
            yield Checkbox("sidecar (proxy) log", id="log-proxy")
        yield RichLog(id="log", max_lines=2000, wrap=False, highlight=False)

    def on_mount(self) -> None:
        self._names: list[str] = []
        self._stop: threading.Event | None = None

    def show(self, snap: Snapshot) -> None:
        names = ["controlplane"] + sorted(w["name"] for w in (snap.status or {}).get("workloads", []))
        if names != self._names and snap.status:
            self._names = names
            select = self.query_one("#log-target", Select)
            current = select.value
            select.set_options([(n, n) for n in names])
            if current in names:
                select.value = current

    def follow(self, deployment_or_instance: str) -> None:
        instance = next((w["name"] for w in (self.snapshot.status or {}).get("workloads", [])
                         if w["deployment"] == deployment_or_instance), deployment_or_instance)
        self.query_one("#log-target", Select).value = instance

    @on(Select.Changed, "#log-target")
    @on(Checkbox.Changed, "#log-proxy")
    def _changed(self, _event: Any = None) -> None:
        target = self.query_one("#log-target", Select).value
        if not isinstance(target, str):
            return
        proxy = self.query_one("#log-proxy", Checkbox).value
        if self._stop is not None:
            self._stop.set()
        self._stop = threading.Event()
        self.query_one("#log", RichLog).clear()
        self.meshdojo.last_action = Action(f"logs of {target}", command(self.sandbox, f"meshdojo logs {target}{' --proxy' if proxy else ''} -f"),
                                           "", lambda: "")
        self._follow(target, proxy, self._stop)

    @work(thread=True, group="logs")
    def _follow(self, target: str, proxy: bool, stop: threading.Event) -> None:
        try:
            path = backend_for(self.sandbox).log_file(target, None, proxy and target != "controlplane")
        except FAILURES as exc:
            self.meshdojo.safely(self._write, f"✗ {exc}")
            return
        position = max(path.stat().st_size - 20_000, 0) if path.exists() else 0
        while not stop.is_set():
            try:
                with path.open("rb") as handle:
                    handle.seek(position)
                    chunk = handle.read()
            except OSError:
                chunk = b""
            if chunk:
                position += len(chunk)
                self.meshdojo.safely(self._write, chunk.decode("utf-8", "replace").rstrip("\n"))
            stop.wait(0.5)

    def _write(self, text: str) -> None:
        self.query_one("#log", RichLog).write(text)

    def on_unmount(self) -> None:
        if self._stop is not None:
            self._stop.set()
