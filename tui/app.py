"""The learner's cockpit: a Textual app composed of one pane per screen (``tui/panes/``), over
the sandbox's public functions and the control plane's operator API — the same the CLI uses.
Every blocking call runs in a worker thread; the visible pane is refreshed once a second and
nothing waits on the network. A failure of the UI itself is one line and a crash log, never
a traceback dump, and the sandbox keeps running."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.css.query import NoMatches
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane
from textual.worker import WorkerFailed

from sandbox import local
from sandbox.cpapi import ApiError
from sandbox.resources import ResourceError
from tui import crash, render
from tui.actions import Action
from tui.dialogs import ConfirmScreen, QuitScreen, TextScreen
from tui.panes import PANES, Logs, Security, Tap, Traces
from tui.panes.base import Pane
from tui.source import MeshSource, Snapshot

FAILURES = (ApiError, ResourceError, local.SandboxError, ValueError, OSError)


class MeshCommands(Provider):
    """The command palette (ctrl+p): every screen, action and workload — listed before typing too."""

    def _candidates(self) -> list[tuple[str, Callable[[], Any], str]]:
        app = self.app
        assert isinstance(app, MeshdojoApp)
        out = [(f"screen: {pane.TITLE.lower()}", partial(app.action_show_tab, pane.KEY), f"key {i + 1}")
               for i, pane in enumerate(PANES)]
        out += [("clear every fault", app.clear_faults, "asks first"), ("help: every key", app.action_help, "?"),
                ("show the last action's CLI and YAML", app.action_show_cli, "c")]
        for deployment in app.deployment_names():
            out += [(f"tap deploy/{deployment}", partial(app.start_tap, deployment), "its requests, live"),
                    (f"logs of {deployment}", partial(app.show_logs, deployment), "its app's log")]
        return out

    async def discover(self) -> Hits:
        for label, callback, help_text in self._candidates():
            yield DiscoveryHit(label, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for label, callback, help_text in self._candidates():
            score = matcher.match(label)
            if score > 0:
                yield Hit(score, matcher.highlight(label), callback, help=help_text)


class ScreenTabs(TabbedContent):
    """The screens' tabs, switched by keys, the palette and actions only. Textual also shows the
    tab that holds a widget given the focus; a focus that lands after the next key was handled
    (4 then 1 typed quickly) would switch back to the screen just left. Narrower than
    ``ROOMY`` columns, the tabs take short titles and less padding, so all nine show at 80."""

    ROOMY = 96

    def on_resize(self, event: events.Resize) -> None:
        narrow = event.size.width < self.ROOMY
        self.set_class(narrow, "-narrow")
        for i, pane in enumerate(PANES):
            self.get_tab(pane.KEY).label = f"{i + 1} {pane.SHORT if narrow and pane.SHORT else pane.TITLE}"

    def _on_tab_pane_focused(self, event: TabPane.Focused) -> None:
        event.stop()
        event.prevent_default()  # not TabbedContent's: it would make the focused widget's tab active


class MeshdojoApp(App[str | None]):
    TITLE = "meshdojo"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {MeshCommands}
    BINDINGS = [
        # the tabs show their numbers; the footer keeps room for each screen's own keys
        *(Binding(str(i + 1), f"show_tab('{pane.KEY}')", pane.TITLE, show=False) for i, pane in enumerate(PANES)),
        Binding("question_mark", "help", "Help", key_display="?"), Binding("c", "show_cli", "CLI/YAML"),
        Binding("q", "quit_app", "Quit"), Binding("ctrl+c", "quit_app", "Quit", show=False, priority=True),
        Binding("ctrl+q", "quit_app", "Quit", show=False, priority=True),
        Binding("escape", "leave_field", "Leave field", show=False),
    ]

    def __init__(self, name: str = "default", started_by_up: bool = False, source: MeshSource | None = None,
                 refresh_every: float = 1.0) -> None:
        super().__init__()
        self.sandbox = name
        self.started_by_up = started_by_up
        self.source = source or MeshSource(name)
        self.refresh_every = refresh_every
        self.snapshot = Snapshot(0.0)
        self.last_action: Action | None = None
        self.refreshes = 0
        self.crash: tuple[str, Path] | None = None  # (one line, crash log) when the UI failed

    # -- failure: one line and a crash log, never a 1,000-line traceback on the terminal ----
    def _handle_exception(self, error: Exception) -> None:  # Textual's hook (pinned version)
        if self.crash is None:
            cause = error.error if isinstance(error, WorkerFailed) else error  # a worker's failure: say what it was
            self.crash = (crash.one_line(cause), crash.write_crash_log(self.sandbox, cause))
        super()._handle_exception(error)

    def _print_error_renderables(self) -> None:
        if self.crash is None:
            super()._print_error_renderables()
            return
        self._exit_renderables.clear()

    def safely(self, fn: Callable[..., Any], *args: Any) -> None:
        """From a worker thread: run ``fn`` on the UI, unless the UI (or that widget) is gone."""
        try:
            self.call_from_thread(self._guarded, fn, *args)
        except RuntimeError:  # the app has stopped: nothing to show it on
            pass

    @staticmethod
    def _guarded(fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except NoMatches:  # the widget left the screen while the worker ran
            pass

    # -- layout -----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="problem", markup=False)
        with ScreenTabs(initial="dashboard", id="tabs"):
            for i, pane in enumerate(PANES):
                with TabPane(f"{i + 1} {pane.TITLE}", id=pane.KEY):
                    yield pane(id=f"{pane.KEY}-pane")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"sandbox {self.sandbox}"
        self.refresh_data()
        self.set_interval(self.refresh_every, self.refresh_data)
        self.call_after_refresh(lambda: self.pane().shown())  # whichever pane is showing by then

    def pane(self, key: str | None = None) -> Pane:
        key = key or self.active_tab() or "dashboard"
        return self.query_one(f"#{key}-pane", Pane)

    def active_tab(self) -> str:
        try:
            return self.query_one("#tabs", TabbedContent).active
        except NoMatches:  # during shutdown the widgets may be gone
            return ""

    # -- refreshing -------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="refresh")
    def refresh_data(self) -> None:
        snap = self.source.snapshot()
        identities = None
        if self.active_tab() == "security" and not snap.problem:
            try:
                identities = self.source.identities()
            except FAILURES:
                identities = None
        self.safely(self.show_snapshot, snap, identities)

    def show_snapshot(self, snap: Snapshot, identities: dict | None = None) -> None:
        self.snapshot = snap
        self.refreshes += 1
        self.query_one("#problem", Static).update(render.problem_text(snap))
        pane = self.pane()
        pane.show(snap)  # only the visible pane: the others catch up when shown
        if identities is not None and isinstance(pane, Security):
            pane.show_identities(identities)

    def deployment_names(self) -> list[str]:
        return sorted({w["deployment"] for w in (self.snapshot.status or {}).get("workloads", [])})

    # -- lookups the panes share (no I/O: the latest snapshot) ------------------------------
    def service(self, target: str) -> tuple[str, str]:
        """(namespace, service) for ``svc/NAME`` or ``NAME``; a sentence when there is none."""
        service = (target.partition("/")[2] if "/" in target else target).strip()
        if not service:
            raise ValueError("type a service, e.g. emoji")
        matches = sorted({ns for ns, name in self.snapshot.service_names if name == service} |
                         {w["namespace"] for w in (self.snapshot.status or {}).get("workloads", []) if w["deployment"] == service})
        if not matches:
            known = ", ".join(sorted({name for _, name in self.snapshot.service_names})) or "none yet"
            raise ValueError(f"there is no service {service!r}; the services are {known}")
        return matches[0], service

    def service_of_instance(self, instance: str) -> tuple[str, str]:
        """(namespace, a service) of an instance such as emoji-1."""
        for w in (self.snapshot.status or {}).get("workloads", []):
            if w["name"] == instance and w.get("services"):
                return w["namespace"], w["services"][0]
        known = ", ".join(w["name"] for w in (self.snapshot.status or {}).get("workloads", []))
        raise ValueError(f"there is no instance {instance!r} behind a service; the instances are {known}")

    def deployment(self, target: str) -> tuple[str, str]:
        deployment = target.partition("/")[2] if "/" in target else target
        return local.find_deployment(self.snapshot.status or {"workloads": []}, deployment, None)

    # -- navigation and overlays ------------------------------------------------------------
    def action_show_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab

    @on(TabbedContent.TabActivated)
    def _tab_shown(self, _event: TabbedContent.TabActivated) -> None:
        pane = self.pane()
        pane.shown()  # never a text field: the number keys keep switching screens
        pane.show(self.snapshot)
        if isinstance(pane, Security):
            self.refresh_data()

    def action_leave_field(self) -> None:
        """Out of a text field, so the one-key shortcuts work again."""
        self.pane().shown()

    def action_help(self) -> None:
        lines = [f"{'1-' + str(len(PANES)):<14} the screens: " + ", ".join(f"{i + 1} {p.TITLE}" for i, p in enumerate(PANES))]
        lines += [f"{self.get_key_display(b):<14} {b.description}" for b in self.BINDINGS if b.description and b.show]
        lines += [f"{'ctrl+c / ctrl+q':<14} quit (as q)", f"{'ctrl+p':<14} command palette: any screen, action or workload",
                  f"{'esc':<14} leave a text field", f"{'tab':<14} next field; enter runs the field's action", ""]
        for i, pane in enumerate(PANES):
            keys = [f"{self.get_key_display(b)} {b.description.lower()}" for b in pane.BINDINGS if b.show]
            if keys:
                lines.append(f"{i + 1} {pane.TITLE}: " + ", ".join(keys))
        self.push_screen(TextScreen("Keys", "\n".join(lines)))

    def action_show_cli(self) -> None:
        if self.last_action is None:
            self.notify("no action yet: the CLI equivalent of the last action shows here", timeout=3)
            return
        self.push_screen(TextScreen("The same from a terminal", self.last_action.explain()))

    def action_quit_app(self) -> None:
        if not self.started_by_up:
            self.exit(None)
            return
        if isinstance(self.screen, QuitScreen):
            return
        self.push_screen(QuitScreen(), lambda choice: self.exit(choice) if choice else None)

    def confirm(self, question: str, consequence: str, then: Callable[[], None]) -> None:
        self.push_screen(ConfirmScreen(question, consequence), lambda yes: then() if yes else None)

    # -- running actions --------------------------------------------------------------------
    def perform(self, action: Action, pane: Pane, out: str | None = None) -> None:
        self.last_action = action
        self._run_action(action, pane, out)

    @work(thread=True, group="actions")
    def _run_action(self, action: Action, pane: Pane, out: str | None) -> None:
        try:
            result, ok = action.run(), True
        except ApiError as exc:
            result = "\n".join([str(exc), *(f"{e['field']}: {e['message']}" for e in exc.body.get("errors", []))])
            ok = False
        except FAILURES as exc:
            result, ok = str(exc), False
        self.safely(self._action_done, action, pane, result, ok, out)

    def _action_done(self, action: Action, pane: Pane, result: str, ok: bool, out: str | None) -> None:
        pane.action_done(action, result, ok, out)
        if not ok:
            self.notify(f"{action.title}: failed", severity="error", timeout=4)
        self.refresh_data()

    # -- what the palette and other screens start ----------------------------------------------
    def clear_faults(self) -> None:
        self.action_show_tab("faults")
        self.pane("faults").action_clear()  # type: ignore[attr-defined]

    def start_tap(self, deployment: str) -> None:
        self.action_show_tab("tap")
        tap = self.pane("tap")
        assert isinstance(tap, Tap)
        tap.start(deployment)

    def show_logs(self, deployment: str) -> None:
        self.action_show_tab("logs")
        logs = self.pane("logs")
        assert isinstance(logs, Logs)
        logs.follow(deployment)

    def show_trace(self, trace_id: str) -> None:
        self.action_show_tab("traces")
        pane = self.pane("traces")
        assert isinstance(pane, Traces)
        pane.open(trace_id)


@dataclass(frozen=True)
class UiExit:
    """How the UI ended: the learner's choice on quit ('stop', 'leave' or None), or a crash."""

    choice: str | None
    crash: tuple[str, Path] | None = None


def run(name: str = "default", started_by_up: bool = False) -> UiExit:
    """Run the UI in this terminal until the learner quits (or it fails)."""
    app = MeshdojoApp(name, started_by_up)
    choice = app.run()
    if app.crash is None and app.return_code not in (0, None):
        app.crash = ("the UI stopped with an error", crash.crash_log_path(name))
    return UiExit(choice if app.crash is None else None, app.crash)
