"""The terminal UI against a real local sandbox: every screen and action through Textual's
pilot, and the real `meshdojo tui` in tmux."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import DataTable, RichLog, Select, Static, TextArea

from sandbox.processes import wait_until
from tests.meshkit import eventually
from tests.test_sandbox import Cli
from tui.app import MeshdojoApp

pytestmark = pytest.mark.timeout(120)


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
        assert "control plane up" in text(app, "#summary") and "emojivoto web UI" in text(app, "#summary")

        await pilot.press("2")
        await until(pilot, lambda: "🔒" in text(app, "#graph") and "─▶ web" in text(app, "#graph"), "the topology")
        edges = app.query_one("#edges", DataTable)
        edges.focus()
        await pilot.press("enter")
        await until(pilot, lambda: "client: spiffe://" in text(app, "#edge-detail"), "the edge's details")
        assert "routes (1m):" in text(app, "#edge-detail")

        await pilot.press("4")
        ids = app.query_one("#identities", DataTable)
        await until(pilot, lambda: ids.row_count >= 3, "identities with rotation countdowns")
        app.query_one("#wire-edge").value = "web emoji"
        app.set_focus(None)
        await pilot.press("w")
        await until(pilot, lambda: "no readable HTTP" in text(app, "#security-out"), "the wire view", 15)
        assert "TLS 1.3" in text(app, "#security-out")

        await pilot.press("7")
        app.query_one("#log-target", Select).value = "web-0"
        log = app.query_one("#log", RichLog)
        await until(pilot, lambda: len(log.lines) > 0, "web's log")
        await pilot.press("c")  # the CLI equivalent of what is on screen
        await until(pilot, lambda: "meshdojo logs web-0 -f" in str(app.screen.query_one(".dialog").query(Static)[1].render()), "the CLI hint")


async def test_faults_and_policies_from_the_ui(sandbox):
    app = MeshdojoApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.snapshot.service_names, "the first refresh")
        await pilot.press("5")  # focus lands in the target field
        await pilot.press(*"svc/voting", "tab", *"503 30", "enter")
        await until(pilot, lambda: "✓ HTTP fault on voting" in text(app, "#fault-out"), "the fault applied")
        assert "voting-fault" in sandbox.run("get", "faultinjection").stdout

        app.query_one("#fault-kind", Select).value = "net-latency"
        app.query_one("#fault-target").value = "svc/emoji"
        app.query_one("#fault-value").value = "200ms"
        app.set_focus(None)
        await pilot.press("a")
        await until(pilot, lambda: "✓ network latency" in text(app, "#fault-out"), "the network fault")
        assert "latency-emoji" in sandbox.run("status").stdout
        await until(pilot, lambda: "latency-emoji" in text(app, "#active") or "latency 200ms" in text(app, "#active"), "faults on the dashboard")

        await pilot.press("x")
        await until(pilot, lambda: "network fault latency-emoji removed" in text(app, "#fault-out"), "everything cleared")
        assert "No faultinjection resources" in sandbox.run("get", "faultinjection").stdout

        await pilot.press("6")
        app.query_one("#toggle-svc").value = "emoji"
        app.set_focus(None)
        await pilot.press("t")
        await until(pilot, lambda: "httproute/emoji-retries created" in text(app, "#yaml-errors"), "the retries toggle")
        assert "emoji-retries" in sandbox.run("get", "httproute").stdout

        area = app.query_one("#yaml", TextArea)
        area.load_text("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: bad\n  namespace: emojivoto\n"
                       "spec:\n  parentRefs:\n  - kind: Service\n    name: emoji\n  rules:\n  - retry:\n      attempts: 11\n")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "✗ spec.rules[0].retry.attempts" in text(app, "#yaml-errors"), "the inline error")
        assert "(line 12)" in text(app, "#yaml-errors") and area.cursor_location[0] == 11
        assert "bad" not in sandbox.run("get", "httproute").stdout  # nothing half-applied
        sandbox.run("delete", "httproute", "emoji-retries")

        # kill an instance from the menu: the supervisor restarts it
        await pilot.press("5")
        app.query_one("#fault-kind", Select).value = "kill"
        app.query_one("#fault-target").value = "emoji"
        app.set_focus(None)
        await pilot.press("a")
        await until(pilot, lambda: "SIGKILL sent" in text(app, "#fault-out"), "the kill")
        wait_until(lambda: any(w["restarts"] >= 1 for w in sandbox.status()["workloads"] if w["deployment"] == "emoji"), 15, "a restart")


async def test_tap_shows_each_requests_fate(sandbox):
    app = MeshdojoApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.snapshot.status, "the first refresh")
        await pilot.press("3", *"web", "enter")
        table = app.query_one("#tap-table", DataTable)
        await until(pilot, lambda: table.row_count >= 2, "tapped requests", 20)
        table.focus()
        await pilot.press("down")
        await until(pilot, lambda: "attempts" in text(app, "#fate") and "src " in text(app, "#fate"), "a request's fate")


async def test_losing_the_control_plane_is_shown_and_recovers(sandbox):
    app = MeshdojoApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.snapshot.status and not app.snapshot.problem, "a healthy first refresh")
        await pilot.press("5")
        app.query_one("#fault-kind", Select).value = "kill-controlplane"
        app.set_focus(None)
        await pilot.press("a")
        await until(pilot, lambda: "control plane unreachable" in text(app, "#problem"), "the outage banner", 15)
        # back: the banner goes, and the numbers return (the supervisor registers the workloads again)
        await until(pilot, lambda: "unreachable" not in text(app, "#problem") and not app.snapshot.problem
                    and any(d["rps"] > 0 for d in app.snapshot.deployments), "recovery", 30)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)")
def test_smoke_the_real_tui_in_tmux(sandbox):
    session = f"meshdojo-smoke-{os.getpid()}"
    env = f"MESHDOJO_HOME={sandbox.home}"
    command = f"env {env} {sys.executable} -m sandbox.cli tui"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", "-c", str(Path(__file__).parent.parent), command],
                   check=True)

    def screen() -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout

    def keys(*k: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", session, *k], check=True)

    try:
        wait_until(lambda: "Dashboard" in screen() and "emojivoto" in screen(), 20, "the UI's first paint")
        keys("5")
        wait_until(lambda: "Preview CLI/YAML" in screen(), 5, "the faults screen")
        keys("-l", "svc/web")
        wait_until(lambda: "value: expected a status" in screen(), 5, "the target to be read")

        def cursor_x() -> int:
            return int(subprocess.run(["tmux", "display", "-p", "-t", session, "#{cursor_x}"], capture_output=True, text=True).stdout or 0)

        in_target = cursor_x()
        keys("Tab")  # the next field: the terminal's cursor (the focused field's caret) moves right
        wait_until(lambda: cursor_x() > in_target + 3, 5, "the value field to have the focus")
        keys("-l", "500 20")
        wait_until(lambda: "meshdojo fault inject web" in screen(), 5, "the live CLI preview")
        keys("Enter")
        wait_until(lambda: "web-fault" in sandbox.run("get", "faultinjection").stdout, 10, "the fault, seen by meshdojo get")
        keys("C-q")  # ctrl+q works even inside a text field
        wait_until(lambda: subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode != 0, 10, "the UI to quit")
        items = json.loads(sandbox.run("get", "faultinjection", "-o", "json").stdout)
        assert items[0]["spec"]["abort"] == {"httpStatus": 500, "percentage": {"value": 20.0}}
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        sandbox.run("fault", "clear", check=False)
