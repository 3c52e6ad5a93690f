"""The learner's cockpit: a Textual app over the sandbox's public functions and the control
plane's operator API (the same the CLI uses). Every blocking call runs in a worker thread;
the screen refreshes once a second and never waits on the network."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import Hit, Hits, Provider
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import (
    Button,
    Checkbox,
    DataTable,
    Footer,
    Header,
    Input,
    RichLog,
    Select,
    Static,
    TabbedContent,
    TabPane,
    TextArea,
)
from textual.worker import WorkerFailed

from sandbox import local, netcli, tapcli
from sandbox.cpapi import ApiError
from sandbox.resources import ResourceError
from tui import actions, crash, render
from tui.actions import Action
from tui.panes import Dashboard, Faults, Logs, Policies, Security, Tap, Topology, problem_text
from tui.source import MeshSource, Snapshot

TABS = ("dashboard", "topology", "tap", "security", "faults", "policies", "logs")
BUTTON_ACTIONS = {"fault-preview": "preview_fault", "fault-apply": "apply_fault", "fault-clear": "clear_faults",
                  "toggle-go": "toggle_policy", "policy-delete": "delete_policy", "yaml-apply": "apply_yaml", "wire-go": "wire",
                  "intruder-go": "intruder"}
FAILURES = (ApiError, ResourceError, local.SandboxError, ValueError, OSError)


class TextScreen(ModalScreen[None]):
    """A text overlay (help, an action's CLI and YAML); any key closes it."""

    BINDINGS = [Binding("escape,q,question_mark,enter", "dismiss", "Close")]

    def __init__(self, title: str, body: str) -> None:
        super().__init__()
        self._title, self._body = title, body

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self._title, classes="heading", markup=False)
            yield Static(self._body, markup=False)
            yield Static("esc to close", classes="dim")


class QuitScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("s", "choose('stop')", "Stop the sandbox"), Binding("l", "choose('leave')", "Leave it running"),
                Binding("escape", "choose(None)", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("Quit meshdojo", classes="heading")
            yield Static("s: stop the sandbox (every process it started)\nl: leave it running (come back: meshdojo tui)\nesc: cancel")

    def action_choose(self, choice: str | None) -> None:
        self.dismiss(choice)


class MeshCommands(Provider):
    """The command palette: every screen, every action, every workload."""

    async def search(self, query: str) -> Hits:
        app = self.app
        assert isinstance(app, MeshdojoApp)
        matcher = self.matcher(query)
        candidates = [(f"screen: {tab}", partial(app.action_show_tab, tab)) for tab in TABS]
        candidates += [("clear every fault", app.action_clear_faults), ("help: every key", app.action_help)]
        for deployment in app.deployment_names():
            candidates += [(f"tap deploy/{deployment}", partial(app.start_tap, deployment)),
                           (f"logs of {deployment}", partial(app.show_logs, deployment))]
        for label, callback in candidates:
            score = matcher.match(label)
            if score > 0:
                yield Hit(score, matcher.highlight(label), callback)


class MeshdojoApp(App[str | None]):
    TITLE = "meshdojo"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {MeshCommands}
    BINDINGS = [
        Binding("1", "show_tab('dashboard')", "Dashboard"), Binding("2", "show_tab('topology')", "Topology"),
        Binding("3", "show_tab('tap')", "Tap"), Binding("4", "show_tab('security')", "Security"),
        Binding("5", "show_tab('faults')", "Faults"), Binding("6", "show_tab('policies')", "Policies"),
        Binding("7", "show_tab('logs')", "Logs"), Binding("question_mark", "help", "Help"),
        Binding("c", "show_cli", "CLI/YAML"), Binding("x", "clear_faults", "Clear faults"),
        Binding("p", "preview_fault", "Preview", show=False), Binding("a", "apply_fault", "Apply", show=False),
        Binding("w", "wire", "Wire", show=False), Binding("i", "intruder", "Intruder", show=False),
        Binding("t", "toggle_policy", "Toggle", show=False), Binding("d", "delete_policy", "Delete", show=False),
        Binding("ctrl+s", "apply_yaml", "Apply YAML", show=False), Binding("q", "quit_app", "Quit"),
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
        self.selected_node: str | None = None
        self.tap_events: list[dict[str, Any]] = []
        self._tap_stop: threading.Event | None = None
        self._log_stop: threading.Event | None = None
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

    # -- layout -----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="problem", markup=False)
        with TabbedContent(initial="dashboard", id="tabs"):
            for tab, pane in (("dashboard", Dashboard), ("topology", Topology), ("tap", Tap), ("security", Security),
                              ("faults", Faults), ("policies", Policies), ("logs", Logs)):
                with TabPane(f"{TABS.index(tab) + 1} {tab.title()}", id=tab):
                    yield pane(id=f"{tab}-pane")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"sandbox {self.sandbox}"
        examples = [(f"{p.parent.parent.name}/{p.name}", str(p)) for p in actions.example_policies()]
        self.query_one("#examples", Select).set_options(examples)
        self.refresh_data()
        self.set_interval(self.refresh_every, self.refresh_data)

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
        self.call_from_thread(self.show_snapshot, snap, identities)

    def active_tab(self) -> str:
        try:
            return self.query_one("#tabs", TabbedContent).active
        except Exception:  # during shutdown the widgets may be gone
            return ""

    def show_snapshot(self, snap: Snapshot, identities: dict | None = None) -> None:
        self.snapshot = snap
        self.refreshes += 1
        self.query_one("#problem", Static).update(problem_text(snap))
        self.query_one(Dashboard).show(snap, self.source.history)
        self.query_one(Topology).show(snap, self.selected_node)
        self.query_one(Policies).show(snap)
        if identities is not None:
            self.query_one(Security).show(identities)
        self._update_log_targets(snap)

    def deployment_names(self) -> list[str]:
        return sorted({w["deployment"] for w in (self.snapshot.status or {}).get("workloads", [])})

    # -- navigation -------------------------------------------------------------------------
    def action_show_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab

    def action_leave_field(self) -> None:
        """Out of a text field, so the one-key shortcuts (1-7, q, ?) work again."""
        self.set_focus(None)

    @on(TabbedContent.TabActivated)
    def _tab_shown(self, event: TabbedContent.TabActivated) -> None:
        first = {"faults": "#fault-target", "tap": "#tap-target"}.get(str(event.pane.id))
        if first:
            self.query_one(first, Input).focus()
        if event.pane.id == "security":
            self.refresh_data()

    def action_help(self) -> None:
        keys = "\n".join(f"{b.key:<16} {b.description}" for b in self.BINDINGS if b.description)
        self.push_screen(TextScreen("Keys", keys + "\nctrl+p          command palette: any screen, action or workload\n"
                                    "tab / shift+tab move between fields; enter selects; the mouse works too"))

    def action_show_cli(self) -> None:
        if self.last_action is None:
            self.notify("no action yet: the CLI equivalent of the last action shows here", timeout=3)
            return
        self.push_screen(TextScreen("The same from a terminal", self.last_action.explain()))

    def action_quit_app(self) -> None:
        if not self.started_by_up:
            self.exit(None)
            return
        self.push_screen(QuitScreen(), lambda choice: self.exit(choice) if choice else None)

    # -- running actions --------------------------------------------------------------------
    def perform(self, action: Action, out: str | None = None) -> None:
        self.last_action = action
        self._run_action(action, out)

    @work(thread=True, group="actions")
    def _run_action(self, action: Action, out: str | None) -> None:
        try:
            result = action.run()
            ok = True
        except ApiError as exc:
            result = "\n".join([str(exc), *(f"{e['field']}: {e['message']}" for e in exc.body.get("errors", []))])
            ok = False
        except FAILURES as exc:
            result, ok = str(exc), False
        self.call_from_thread(self._action_done, action, result, ok, out)

    def _action_done(self, action: Action, result: str, ok: bool, out: str | None) -> None:
        text = f"{'✓' if ok else '✗'} {action.title}\n{result}\n\nwatch for: {action.watch}\nCLI: {action.cli}  (c shows it with the YAML)"
        if out:
            self.query_one(out, Static).update(text)
        self.notify(f"{action.title}: {'done' if ok else 'failed'}", severity="information" if ok else "error", timeout=4)
        self.refresh_data()

    # -- faults -----------------------------------------------------------------------------
    def fault_action(self) -> Action:
        f = self.query_one(Faults).fields()
        kind, target, value, duration, source = f["kind"], f["target"], f["value"], f["for"] or "2m", f["from"] or None
        if not target and kind != "kill-controlplane":
            raise ValueError(f"target: expected e.g. {render_hint(kind)}")
        name = self.sandbox
        if kind in ("http-abort", "http-delay"):
            ns, service = self._service(target)
            parts = value.split() or [""]
            percent = float(parts[1]) if len(parts) > 1 else 100.0
            if kind == "http-abort":
                if not parts[0].isdigit():
                    raise ValueError("value: expected a status and a percentage, e.g. '503 30'")
                return actions.http_fault(name, service, ns, int(parts[0]), percent, None, duration)
            return actions.http_fault(name, service, ns, None, percent, parts[0] or "1s", duration)
        if kind.startswith("net-"):
            net = kind[4:]
            return actions.net_fault(name, net, target.split(), source, value if net == "latency" else None,
                                     value if net == "bandwidth" else None, duration)
        if kind == "kill-controlplane":
            return actions.kill(name, "controlplane")
        if kind == "kill":
            return actions.kill(name, target.partition("/")[2] or target)
        if kind == "intruder":
            ns, service = self._service(target)
            return actions.intruder(name, service, ns)
        ns, deployment = self._deployment(target)
        if kind == "scale":
            if not value.isdigit():
                raise ValueError("value: expected a number of instances, e.g. 2")
            return actions.scale(name, deployment, ns, int(value))
        return actions.inject(name, deployment, ns, kind == "inject")

    def _service(self, target: str) -> tuple[str, str]:
        service = target.partition("/")[2] if "/" in target else target
        matches = sorted({ns for ns, name in self.snapshot.service_names if name == service} |
                         {w["namespace"] for w in (self.snapshot.status or {}).get("workloads", []) if w["deployment"] == service})
        if not matches:
            raise ValueError(f"target: no service {service!r} seen yet (expected e.g. svc/emoji)")
        return matches[0], service

    def _deployment(self, target: str) -> tuple[str, str]:
        deployment = target.partition("/")[2] if "/" in target else target
        return local.find_deployment(self.snapshot.status or {"workloads": []}, deployment, None)

    def _form_action(self) -> Action | None:
        """The fault the form describes, or None (the reason shown) when it is incomplete."""
        if self.active_tab() != "faults":
            return None
        try:
            return self.fault_action()
        except FAILURES as exc:
            self.query_one("#fault-out", Static).update(f"✗ {exc}")
            return None

    def action_preview_fault(self) -> None:
        if (action := self._form_action()) is not None:
            self.last_action = action
            self.query_one("#fault-out", Static).update(action.explain())

    def action_apply_fault(self) -> None:
        if (action := self._form_action()) is not None:
            self.perform(action, "#fault-out")

    def action_clear_faults(self) -> None:
        self.perform(actions.clear_faults(self.sandbox), "#fault-out")

    @on(Select.Changed, "#fault-kind")
    def _fault_kind(self, event: Select.Changed) -> None:
        target, value = render_hint_pair(str(event.value))
        self.query_one("#fault-target", Input).placeholder = f"target, e.g. {target}"
        self.query_one("#fault-value", Input).placeholder = f"value, e.g. {value}" if value else "(no value)"

    @on(Input.Changed, "#faults-pane Input")
    @on(Select.Changed, "#fault-kind")
    def _fault_edited(self) -> None:
        """The preview follows the form as it is filled in (no I/O: built from what is on screen)."""
        try:
            self.query_one("#fault-out", Static).update(self.fault_action().explain())
        except FAILURES as exc:
            self.query_one("#fault-out", Static).update(f"… {exc}")

    @on(Input.Submitted, "#faults-pane Input")
    def _fault_submitted(self) -> None:
        self.action_apply_fault()




    # -- policies ---------------------------------------------------------------------------
    @on(DataTable.RowSelected, "#resources")
    def _resource_selected(self, event: DataTable.RowSelected) -> None:
        """Enter (or a click) on a resource puts its YAML in the editor; refreshes never do."""
        key = event.row_key.value if event.row_key else None
        item = next((i for i in self.snapshot.policies if _policy_key(i["document"]) == key), None)
        if item is not None:
            self.query_one("#yaml", TextArea).load_text(yaml.safe_dump(item["document"], sort_keys=False))

    @on(Select.Changed, "#examples")
    def _example_chosen(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            action = actions.apply_example(self.sandbox, Path(event.value))
            self.query_one("#yaml", TextArea).load_text(action.yaml or "")
            self.perform(action, "#yaml-errors")

    def action_toggle_policy(self) -> None:
        if self.active_tab() != "policies":
            return
        service = self.query_one("#toggle-svc", Input).value.strip()
        kind = str(self.query_one("#toggle-kind", Select).value)
        try:
            ns, service = self._service(service or "?")
            if kind == "retries":
                action = actions.retries(self.sandbox, service, ns)
            elif kind == "timeout":
                action = actions.timeout(self.sandbox, service, ns)
            elif kind == "strict":
                action = actions.strict_mtls(self.sandbox, ns)
            elif kind == "split":
                versions = sorted({w["deployment"] for w in (self.snapshot.status or {}).get("workloads", [])
                                   if w["deployment"].startswith(f"{service}-")})
                if len(versions) < 2:
                    raise ValueError(f"a split needs two versions of {service} (e.g. reviews: reviews-v1, reviews-v3)")
                action = actions.split(self.sandbox, service, ns, versions[0], versions[-1])
            else:
                callers = sorted({e["src"] for e in self.snapshot.edges if e["dst"] == service})
                if not callers:
                    raise ValueError(f"nobody calls {service} yet: no edge to deny")
                action = actions.deny_edge(self.sandbox, service, ns, callers[0])
        except FAILURES as exc:
            self.query_one("#yaml-errors", Static).update(f"✗ {exc}")
            return
        self.query_one("#yaml", TextArea).load_text(action.yaml or "")
        self.perform(action, "#yaml-errors")


    def action_delete_policy(self) -> None:
        if self.active_tab() != "policies":
            return
        table = self.query_one("#resources", DataTable)
        if not table.row_count:
            return
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value or ""
        kind, ns, resource = key.split("/", 2)
        self.perform(actions.delete_policy(self.sandbox, kind, ns, resource), "#yaml-errors")


    def action_apply_yaml(self) -> None:
        area = self.query_one("#yaml", TextArea)
        try:
            documents = [d for d in yaml.safe_load_all(area.text) if d is not None]
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            if mark is not None:
                area.move_cursor((mark.line, mark.column))
            self.query_one("#yaml-errors", Static).update(f"✗ not valid YAML: {exc}")
            return
        action = Action("apply the edited YAML", "meshdojo apply -f FILE.yaml   # with this YAML",
                        "the resources take effect within a second", lambda: actions.apply_documents(self.sandbox, documents, "tui editor"),
                        area.text)
        self.last_action = action
        self._apply_yaml(action, area.text)

    @work(thread=True, group="actions")
    def _apply_yaml(self, action: Action, text: str) -> None:
        try:
            result, errors = action.run(), []
        except ApiError as exc:
            result, errors = str(exc), exc.body.get("errors", [])
        except FAILURES as exc:
            result, errors = str(exc), []
        self.call_from_thread(self._yaml_applied, result, errors, text)

    def _yaml_applied(self, result: str, errors: list[dict], text: str) -> None:
        area = self.query_one("#yaml", TextArea)
        lines = [f"✗ {e.get('field')}: {e.get('message')}" + (f"  (line {n + 1})" if (n := field_line(text, e.get("field", ""))) is not None else "")
                 for e in errors]
        if errors and (n := field_line(text, errors[0].get("field", ""))) is not None:
            area.move_cursor((n, 0))
            area.select_line(n)
        self.query_one("#yaml-errors", Static).update("\n".join([result, *lines]) if errors else f"✓ {result}")
        self.refresh_data()


    # -- topology ---------------------------------------------------------------------------
    @on(DataTable.RowSelected, "#edges")
    def _edge_selected(self, event: DataTable.RowSelected) -> None:
        key = str(event.row_key.value or "")
        src, _, dst = key.partition(">")
        self.selected_node = src
        edge = next((e for e in self.snapshot.edges if f"{e['src_namespace']}/{e['src']}" == src and f"{e['dst_namespace']}/{e['dst']}" == dst), None)
        if edge is None:
            return
        self.query_one(Topology).show(self.snapshot, self.selected_node)
        self._edge_detail(edge)

    @work(thread=True, group="detail")
    def _edge_detail(self, edge: dict[str, Any]) -> None:
        try:
            routes = self.source.routes(edge["dst"], edge["dst_namespace"])
        except FAILURES:
            routes = []
        lines = [f"{edge['src']} -> {edge['dst']}  {'mutual TLS ' + render.LOCK if edge['secured'] else 'PLAINTEXT ' + render.OPEN_LOCK}",
                 f"client: {edge['client_id'] or '-'}", f"server: {edge['server_id'] or '-'}", "", "routes (1m):"]
        lines += [f"  {r['route']}  {render.rate(r['effective_success'])} {r['effective_rps']:.1f}rps "
                  f"(actual {render.rate(r['actual_success'])} {r['actual_rps']:.1f}rps) p50 {render.ms(r['latency_ms']['p50'])} "
                  f"p99 {render.ms(r['latency_ms']['p99'])}" for r in routes]
        lines.append(f"\nsee the bytes: meshdojo wire deploy/{edge['src']} deploy/{edge['dst']}")
        self.call_from_thread(self.query_one(Topology).detail, "\n".join(lines))

    # -- tap --------------------------------------------------------------------------------
    @on(Input.Submitted, "#tap-target")
    def _tap_submitted(self, event: Input.Submitted) -> None:
        self.start_tap(event.value.strip().partition("/")[2] or event.value.strip())

    def start_tap(self, deployment: str) -> None:
        self.action_show_tab("tap")
        self.query_one("#tap-target", Input).value = deployment
        if self._tap_stop is not None:
            self._tap_stop.set()
        self._tap_stop = threading.Event()
        self.tap_events.clear()
        self.query_one("#tap-table", DataTable).clear()
        self.last_action = Action(f"tap deploy/{deployment}", f"meshdojo tap deploy/{deployment}", "each request and its fate",
                                  lambda: "")
        self._follow_tap(deployment, self._tap_stop)

    @work(thread=True, group="tap")
    def _follow_tap(self, deployment: str, stop: threading.Event) -> None:
        try:
            _instances, events = tapcli.streams(self.sandbox, deployment, None, None, None, None, stop)
        except FAILURES as exc:
            self.call_from_thread(self.query_one("#fate", Static).update, f"✗ {exc}")
            return
        batch: list[dict[str, Any]] = []
        flushed = time.monotonic()
        for event in events:
            if event.get("type") == "end":
                batch.append(event)
            if batch and time.monotonic() - flushed > 0.25:  # a few screen updates a second, whatever the rate
                self.call_from_thread(self._add_tap_events, batch)
                batch, flushed = [], time.monotonic()

    def _add_tap_events(self, batch: list[dict[str, Any]]) -> None:
        table = self.query_one("#tap-table", DataTable)
        dst, path, status, failures = self.query_one(Tap).filters()
        for event in batch:
            self.tap_events.append(event)
            if render.tap_matches(event, "", dst, path, status, failures):
                table.add_row(*render.tap_row(event), key=str(len(self.tap_events) - 1))
        while table.row_count > 500:
            table.remove_row(table.coordinate_to_cell_key((0, 0)).row_key)

    @on(DataTable.RowHighlighted, "#tap-table")
    def _tap_selected(self, event: DataTable.RowHighlighted) -> None:
        index = int(event.row_key.value or 0) if event.row_key else 0
        if index < len(self.tap_events):
            self.query_one("#fate", Static).update("\n".join(render.fate_lines(self.tap_events[index])))

    # -- security ---------------------------------------------------------------------------
    def action_wire(self) -> None:
        if self.active_tab() != "security":
            return
        parts = self.query_one("#wire-edge", Input).value.split()
        if len(parts) != 2:
            self.query_one("#security-out", Static).update("✗ edge: expected two deployments, e.g. 'web emoji'")
            return
        src, dst = (p.partition("/")[2] or p for p in parts)
        self.last_action = Action(f"wire {src} -> {dst}", f"meshdojo wire deploy/{src} deploy/{dst}",
                                  "TLS records under mTLS; readable HTTP after uninject", lambda: "")
        self.query_one("#security-out", Static).update(f"waiting for a new connection from {src} to {dst} …")
        self._wire(src, dst)

    @work(thread=True, group="wire", exclusive=True)
    def _wire(self, src: str, dst: str) -> None:
        try:
            text = "\n".join(netcli.render_wire(netcli.wire(self.sandbox, f"deploy/{src}", f"deploy/{dst}", None, 10)))
        except FAILURES as exc:
            text = f"✗ {exc}"
        self.call_from_thread(self.query_one("#security-out", Static).update, text)


    def action_intruder(self) -> None:
        if self.active_tab() != "security":
            return
        try:
            ns, service = self._service(self.query_one("#intruder-svc", Input).value.strip() or "?")
        except ValueError as exc:
            self.query_one("#security-out", Static).update(f"✗ {exc}")
            return
        self.perform(actions.intruder(self.sandbox, service, ns), "#security-out")


    # -- logs -------------------------------------------------------------------------------
    def _update_log_targets(self, snap: Snapshot) -> None:
        select = self.query_one("#log-target", Select)
        names = ["controlplane"] + sorted(w["name"] for w in (snap.status or {}).get("workloads", []))
        if names != getattr(self, "_log_names", None) and snap.status:
            self._log_names = names
            current = select.value
            select.set_options([(n, n) for n in names])
            if current in names:
                select.value = current

    def show_logs(self, target: str) -> None:
        self.action_show_tab("logs")
        instance = next((w["name"] for w in (self.snapshot.status or {}).get("workloads", []) if w["deployment"] == target), target)
        self.query_one("#log-target", Select).value = instance

    @on(Select.Changed, "#log-target")
    @on(Checkbox.Changed, "#log-proxy")
    def _log_changed(self, _event: Any = None) -> None:
        target = self.query_one("#log-target", Select).value
        if not isinstance(target, str):
            return
        proxy = self.query_one("#log-proxy", Checkbox).value
        if self._log_stop is not None:
            self._log_stop.set()
        self._log_stop = threading.Event()
        self.query_one("#log", RichLog).clear()
        self.last_action = Action(f"logs of {target}", f"meshdojo logs {target}{' --proxy' if proxy else ''} -f", "", lambda: "")
        self._follow_log(target, proxy, self._log_stop)

    @work(thread=True, group="logs")
    def _follow_log(self, target: str, proxy: bool, stop: threading.Event) -> None:
        try:
            path = local.log_file(self.sandbox, target, None, proxy and target != "controlplane")
        except FAILURES as exc:
            self.call_from_thread(self.query_one("#log", RichLog).write, f"✗ {exc}")
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
                text = chunk.decode("utf-8", "replace").rstrip("\n")
                self.call_from_thread(self.query_one("#log", RichLog).write, text)
            stop.wait(0.5)

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        """Every button does what its key does."""
        action = BUTTON_ACTIONS.get(event.button.id or "")
        if action is not None:
            await self.run_action(action)

    def on_unmount(self) -> None:
        for stop in (self._tap_stop, self._log_stop):
            if stop is not None:
                stop.set()


def _policy_key(document: dict[str, Any]) -> str:
    meta = document.get("metadata", {})
    return f"{document.get('kind')}/{meta.get('namespace')}/{meta.get('name')}"


def field_line(text: str, field: str) -> int | None:
    """The line of the YAML where an error's field (``spec.rules[0].retry.attempts``) is written:
    the last named part, searched after the lines of the parts before it."""
    parts = [p.split("[")[0] for p in field.replace("]", "").split(".") if p and p.split("[")[0]]
    line = 0
    found = None
    lines = text.splitlines()
    for part in parts:
        for n in range(line, len(lines)):
            stripped = lines[n].lstrip(" -")
            if stripped.startswith(f"{part}:"):
                found = line = n
                break
    return found


def render_hint_pair(kind: str) -> tuple[str, str]:
    from tui.panes import FAULT_HINTS

    return FAULT_HINTS.get(kind, ("", ""))


def render_hint(kind: str) -> str:
    return render_hint_pair(kind)[0]


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
