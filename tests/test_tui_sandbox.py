"""The terminal UI against a real local sandbox: every screen and action through Textual's
pilot, and the real `meshdojo tui` in tmux."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, RichLog, Select, Static, TextArea

from sandbox.processes import WaitTimeout, wait_until
from tests.meshkit import Cli, eventually
from tui.app import MeshdojoApp

pytestmark = pytest.mark.timeout(120)
POLICIES = Path(__file__).resolve().parent.parent / "demo-apps/emojivoto/policies"
RETRIES = str(POLICIES / "doughnut-retries.yaml")
TRACING_ALL = str(POLICIES / "tracing-all.yaml")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    cli = Cli(tmp_path_factory.mktemp("tui") / "home")
    before = os.environ.get("MESHDOJO_HOME")
    os.environ["MESHDOJO_HOME"] = str(cli.home)  # the in-process UI finds the sandbox as the CLI does
    cli.run("up", "--no-tui", "--demo", "emojivoto")
    try:
        yield cli
    finally:
        cli.run("down", check=False)
        if before is None:
            os.environ.pop("MESHDOJO_HOME", None)
        else:
            os.environ["MESHDOJO_HOME"] = before


async def until(pilot, predicate, what: str, timeout: float = 15.0):
    """``eventually`` for the UI: the app gets to process its messages between two looks."""
    async def look():
        await pilot.pause(0.1)
        return predicate()

    return await eventually(look, bool, what, timeout)


def text(app, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


async def test_dashboard_topology_security_and_logs(sandbox):
    app = MeshdojoApp()
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.query_one("#workloads", DataTable)
        await until(pilot, lambda: table.row_count == 5 and any(d["rps"] > 0 for d in app.snapshot.deployments), "the workloads' traffic")
        assert "control plane up" in text(app, "#summary") and "emojivoto http://127.0.0.1:" in text(app, "#summary")

        await pilot.press("2")
        await until(pilot, lambda: "🔒" in text(app, "#graph") and "┌ web " in text(app, "#graph"), "the topology")
        items = app.query_one("#items", DataTable)
        await until(pilot, lambda: any(str(r.key.value).endswith(">emojivoto/emoji") for r in items.ordered_rows),
                    "the edge web -> emoji in the list")
        row = next(i for i, r in enumerate(items.ordered_rows) if str(r.key.value).endswith(">emojivoto/emoji"))
        items.move_cursor(row=row)
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "TextScreen", "the edge's details")
        body = "\n".join(str(s.render()) for s in app.screen.query(Static))
        assert "client: spiffe://" in body and "routes (1m):" in body
        await pilot.press("escape")
        items.move_cursor(row=next(i for i, r in enumerate(items.ordered_rows) if r.key.value == "emojivoto/web"))
        await pilot.press("enter")  # a node: its traffic, then each instance as its sidecar sees it (meshdojo describe)
        await until(pilot, lambda: type(app.screen).__name__ == "TextScreen", "the node's details")
        body = "\n".join(str(s.render()) for s in app.screen.query(Static))
        assert "pod emojivoto/web-0 (deploy/web): ready" in body and "identity      spiffe://meshdojo.local/ns/emojivoto/sa/web" in body
        assert "meshdojo describe deploy/web -n emojivoto" in body
        await pilot.press("escape")

        await pilot.press("4")
        ids = app.query_one("#identities", DataTable)
        await until(pilot, lambda: ids.row_count >= 3, "identities with rotation countdowns")
        # each sidecar's policy snapshot against the control plane's (meshdojo proxy-status)
        await until(pilot, lambda: str(ids.get_row_at(0)[3]).startswith("SYNCED v"), "the sidecars' policies in step")
        await until(pilot, lambda: app.query_one("#wire-edge", Input).value, "a default edge for the wire view")
        app.query_one("#wire-edge", Input).value = "web emoji"
        app.pane().focus()
        await pilot.press("w")
        await until(pilot, lambda: "no readable HTTP" in text(app, "#security-out"), "the wire view", 15)
        assert "TLS 1.3" in text(app, "#security-out")

        await pilot.press("7")
        app.query_one("#log-target", Select).value = "web-0"
        log = app.query_one("#log", RichLog)
        await until(pilot, lambda: len(log.lines) > 0, "web's log")
        await pilot.press("c")  # the CLI equivalent of what is on screen
        await until(pilot, lambda: "meshdojo logs web-0 -f" in "\n".join(str(s.render()) for s in app.screen.query(Static)), "the CLI hint")


async def test_faults_and_policies_from_the_ui(sandbox):
    app = MeshdojoApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.snapshot.service_names, "the first refresh")
        await pilot.press("5")
        await pilot.pause()
        assert not isinstance(app.focused, Input)  # keys first: the form is a tab away
        await pilot.press("tab", "tab", *"svc/voting", "tab", *"503 30", "enter")
        await until(pilot, lambda: "✓ HTTP fault on voting" in text(app, "#fault-out"), "the fault applied")
        assert "voting-fault" in sandbox.run("get", "faultinjection").stdout

        app.query_one("#fault-kind", Select).value = "net-latency"
        app.query_one("#fault-target", Input).value = "svc/emoji"
        app.query_one("#fault-value", Input).value = "200ms"
        app.pane().focus()
        await pilot.press("a")
        await until(pilot, lambda: "✓ network latency" in text(app, "#fault-out"), "the network fault")
        assert "latency-emoji" in sandbox.run("status").stdout

        await pilot.press("x")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", "the question")
        await pilot.press("y")
        await until(pilot, lambda: "network fault latency-emoji removed" in text(app, "#fault-out"), "everything cleared")
        assert "No faultinjection resources" in sandbox.run("get", "faultinjection").stdout

        await pilot.press("6")
        await until(pilot, lambda: app.query_one("#toggle-svc", Input).value == "emoji", "a default service for the toggles")
        app.pane().focus()
        await pilot.press("t")
        await until(pilot, lambda: "httproute/emoji-retries created" in text(app, "#yaml-errors"), "the retries toggle")
        assert "emoji-retries" in sandbox.run("get", "httproute").stdout
        resources = app.query_one("#resources", DataTable)  # a route chosen: its YAML to edit, and its status in a line
        await until(pilot, lambda: "HTTPRoute/emojivoto/emoji-retries" in {k.value for k in resources.rows}, "the route listed")
        resources.focus()
        resources.move_cursor(row=resources.get_row_index("HTTPRoute/emojivoto/emoji-retries"))
        await pilot.press("enter")
        await until(pilot, lambda: "status: Accepted, ResolvedRefs" in text(app, "#yaml-errors"), "the route's status")

        area = app.query_one("#yaml", TextArea)
        area.load_text("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: bad\n  namespace: emojivoto\n"
                       "spec:\n  parentRefs:\n  - kind: Service\n    name: emoji\n  rules:\n  - retry:\n      attempts: 11\n")
        area.focus()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "✗ spec.rules[0].retry.attempts" in text(app, "#yaml-errors"), "the inline error")
        assert "(line 12)" in text(app, "#yaml-errors") and area.cursor_location[0] == 11
        assert "bad" not in sandbox.run("get", "httproute").stdout  # nothing half-applied
        sandbox.run("delete", "httproute", "emoji-retries")

        # kill an instance from the menu: the supervisor restarts it
        await pilot.press("escape", "5")  # out of the editor first: there, 5 is a character
        app.query_one("#fault-kind", Select).value = "kill"
        app.query_one("#fault-target", Input).value = "emoji"
        app.pane().focus()
        await pilot.press("a")
        await until(pilot, lambda: "SIGKILL sent" in text(app, "#fault-out"), "the kill")
        wait_until(lambda: any(w["restarts"] >= 1 for w in sandbox.status()["workloads"] if w["deployment"] == "emoji"), 15, "a restart")


async def test_tap_shows_each_requests_fate(sandbox):
    app = MeshdojoApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.snapshot.status, "the first refresh")
        await pilot.press("3")
        await until(pilot, lambda: app.query_one("#tap-target", Input).value == "web", "web as the default")
        app.query_one("#tap-target", Input).focus()
        await pilot.press("enter")
        table = app.query_one("#tap-table", DataTable)
        await until(pilot, lambda: table.row_count >= 2, "tapped requests", 20)
        table.focus()
        await pilot.press("down")
        await until(pilot, lambda: "attempts" in text(app, "#fate") and "src " in text(app, "#fate"), "a request's fate")
        await pilot.press("1")  # leaving the tap screen while its worker runs does not break anything


async def test_a_tapped_request_opens_its_trace_and_the_traces_screen_lists_the_latest(sandbox):
    sandbox.run("apply", "-f", TRACING_ALL)  # every request traced
    try:
        app = MeshdojoApp()
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.snapshot.status, "the first refresh")
            app.start_tap("web")
            tap = app.pane("tap")
            table = app.query_one("#tap-table", DataTable)
            # web's inbound request from the bot: the root of a trace through web's and a backend's sidecars
            await until(pilot, lambda: any((e.get("fate") or {}).get("trace") and e["direction"] == "inbound" for e in tap.events),
                        "a traced request", 20)
            index = next(i for i, e in enumerate(tap.events) if (e.get("fate") or {}).get("trace") and e["direction"] == "inbound")
            trace = tap.events[index]["fate"]["trace"]
            table.focus()
            table.move_cursor(row=table.get_row_index(str(index)))
            await pilot.press("t")
            await until(pilot, lambda: app.active_tab() == "traces", "the traces screen")
            waterfall = app.query_one("#waterfall", Static)
            await until(pilot, lambda: str(waterfall.render()).startswith(f"trace {trace}") and " outbound: " in str(waterfall.render())
                        and "(mutual TLS)" in str(waterfall.render()) and " at 1 sidecars" not in str(waterfall.render()),
                        "its waterfall: the hops at each sidecar, over mutual TLS")
            assert app.last_action is not None and app.last_action.cli == f"meshdojo trace {trace[:16]}"
            listed = app.query_one("#traces-table", DataTable)
            await until(pilot, lambda: listed.row_count >= 1, "the latest traces listed")
            assert any(" GET web" in str(listed.get_row_at(i)[-1]) for i in range(listed.row_count))  # the bot's calls to web
    finally:
        sandbox.run("delete", "-f", TRACING_ALL)


async def test_losing_the_control_plane_is_shown_and_recovers(sandbox):
    app = MeshdojoApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.snapshot.status and not app.snapshot.problem, "a healthy first refresh")
        await pilot.press("5")
        app.query_one("#fault-kind", Select).value = "kill-controlplane"
        app.pane().focus()
        await pilot.press("a")
        await until(pilot, lambda: "control plane unreachable" in text(app, "#problem"), "the outage banner", 15)
        # back: the banner goes, and the numbers return (the supervisor registers the workloads again)
        await until(pilot, lambda: "unreachable" not in text(app, "#problem") and not app.snapshot.problem
                    and any(d["rps"] > 0 for d in app.snapshot.deployments), "recovery", 30)


SOCKETS = itertools.count()  # one tmux server per window


class Tmux:
    """The real `meshdojo tui` in a tmux window: keys in, the screen and the cursor out."""

    def __init__(self, sandbox, width: int = 100, height: int = 30) -> None:
        self.session = f"meshdojo-tui-{os.getpid()}-{width}"
        # a tmux server of its own (-L): no other test's, benchmark's or window's session ending can take it down
        self.tmux = ["tmux", "-L", f"{self.session}-{next(SOCKETS)}"]
        self.exit_file = sandbox.home / f"{self.session}.exit"
        command = f"env MESHDOJO_HOME={sandbox.home} {sys.executable} -m sandbox.cli tui; echo $? > {self.exit_file}"
        subprocess.run([*self.tmux, "new-session", "-d", "-s", self.session, "-x", str(width), "-y", str(height),
                        "-c", str(Path(__file__).parent.parent), command], check=True)

    def screen(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-t", self.session], capture_output=True, text=True).stdout

    def wait(self, condition, timeout: float, what: str) -> None:
        """wait_until, and on a timeout the screen as it was, in the error."""
        try:
            wait_until(condition, timeout, what)
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}; the screen:\n{self.screen()}") from None

    def keys(self, *k: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.session, *k], check=True)

    def cursor(self) -> tuple[int, int]:
        out = subprocess.run([*self.tmux, "display", "-p", "-t", self.session, "#{cursor_x} #{cursor_y}"], capture_output=True, text=True).stdout
        x, y = (int(v) for v in out.split())
        return x, y

    def row_of(self, text: str) -> int | None:
        return next((i for i, line in enumerate(self.screen().splitlines()) if text in line), None)

    def caret_at(self, placeholder: str) -> bool:
        """Whether the caret is in the empty field showing ``placeholder``: on its row and within
        its columns (two fields side by side share a row, so the row alone does not say which has it)."""
        for y, line in enumerate(self.screen().splitlines()):
            if (x := line.find(placeholder)) >= 0:
                caret_x, caret_y = self.cursor()
                return caret_y == y and x <= caret_x < x + len(placeholder)
        return False

    def alive(self) -> bool:
        return subprocess.run([*self.tmux, "has-session", "-t", self.session], capture_output=True).returncode == 0

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-session", "-t", self.session], capture_output=True)


@pytest.mark.timeout(240)  # it may wait for the benchmarks' smoke run (on_time)
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)")
def test_smoke_the_real_tui_in_tmux(sandbox, on_time):
    ui = Tmux(sandbox)
    try:
        ui.wait(lambda: "1 Dash" in ui.screen() and "emojivoto" in ui.screen(), 20, "the UI's first paint")
        ui.keys("5")
        # the footer lists the pane's keys ("p Preview") only once the pane has the focus: Tab before that is lost
        ui.wait(lambda: "p Preview" in ui.screen() and "Clear all" in ui.screen(), 15, "the faults screen, keys in the footer")
        ui.keys("Tab", "Tab")  # the kind, then the target field: wait until the caret is really there
        ui.wait(lambda: ui.caret_at("target, e.g."), 15, "the target field's focus")
        ui.keys("-l", "svc/web")
        ui.wait(lambda: "value: an HTTP status and a percentage" in ui.screen(), 15, "the target to be read")
        ui.keys("Tab")
        ui.wait(lambda: ui.caret_at("value, e.g. 503 30"), 15, "the value field's focus")
        ui.keys("-l", "500 20")
        ui.wait(lambda: "meshdojo fault inject web" in ui.screen(), 15, "the live CLI preview")
        ui.keys("Enter")
        ui.wait(lambda: "web-fault" in sandbox.run("get", "faultinjection").stdout, 10, "the fault, seen by meshdojo get")
        ui.keys("C-c")  # ctrl+c quits, as q does (the UI was not started by up: no question)
        ui.wait(lambda: not ui.alive(), 10, "the UI to quit")
        assert ui.exit_file.read_text().strip() == "0"
        items = json.loads(sandbox.run("get", "faultinjection", "-o", "json").stdout)
        assert items[0]["spec"]["abort"] == {"httpStatus": 500, "percentage": {"value": 20.0}}
    finally:
        ui.close()
        sandbox.run("fault", "clear", check=False)


@pytest.mark.timeout(240)
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)")
def test_the_ui_survives_the_readmes_lesson_uninject_inject_scale_and_a_control_plane_restart(sandbox, on_time):
    """The README's lesson once crashed the UI: after uninject, an edge was briefly both mTLS
    and plaintext. Every change runs under the real UI on its topology screen, at 80x24."""
    ui = Tmux(sandbox, 80, 24)
    try:
        wait_until(lambda: "1 Dash" in ui.screen(), 20, "the UI's first paint")
        ui.keys("2")
        wait_until(lambda: "namespace emojivoto" in ui.screen(), 10, "the topology")
        steps = [(("uninject", "emoji"), lambda: any(not w["meshed"] for w in sandbox.status()["workloads"] if w["deployment"] == "emoji")),
                 (("inject", "emoji"), lambda: all(w["meshed"] for w in sandbox.status()["workloads"] if w["deployment"] == "emoji")),
                 (("scale", "web", "2"), lambda: sum(w["deployment"] == "web" for w in sandbox.status()["workloads"]) == 2),
                 (("kill", "controlplane"), lambda: sandbox.status()["controlplane"]["restarts"] >= 1)]
        for argv, done in steps:
            sandbox.run(*argv)
            wait_until(done, 60, f"{' '.join(argv)} to take effect")
            ui.keys("1")  # the dashboard refreshes every second too
            wait_until(lambda: "control plane up" in ui.screen(), 40, f"the dashboard after {' '.join(argv)}")
            ui.keys("2")
            wait_until(lambda: "namespace emojivoto" in ui.screen(), 10, f"the topology after {' '.join(argv)}")
            assert ui.alive() and "Traceback" not in ui.screen(), (argv, ui.screen())
        ui.keys("q")
        wait_until(lambda: not ui.alive(), 10, "the UI to quit")
        assert ui.exit_file.read_text().strip() == "0"
    finally:
        ui.close()
        sandbox.run("scale", "web", "1", check=False)




async def test_before_and_after_the_last_change(sandbox):
    retries = RETRIES
    # an earlier test of this module restarts the control plane: it answers again first
    wait_until(lambda: sandbox.run("get", check=False).returncode == 0, 30, "the control plane to answer", interval=0.2)
    sandbox.run("apply", "-f", retries)
    try:
        app = MeshdojoApp()
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.snapshot.status, "the first refresh")
            app.pane().focus()
            await pilot.press("b")
            await until(pilot, lambda: type(app.screen).__name__ == "TextScreen", "the before/after view", 20)
            body = "\n".join(str(s.render()) for s in app.screen.query(Static))
            assert "created HTTPRoute emojivoto/voting-retries" in body, body
            assert "SUCCESS before -> after" in body and "emojivoto/voting" in body, body
            assert "meshdojo report --" in body  # the CLI for the whole report
            await pilot.press("escape")
        assert app.crash is None
    finally:
        sandbox.run("delete", "-f", retries)
