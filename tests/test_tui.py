"""The terminal UI on fixed data: its pure rendering, and snapshots of its screens."""

from __future__ import annotations

from collections import deque

from textual.worker import WorkerFailed

from tui import render
from tui.app import MeshdojoApp, field_line
from tui.source import MeshSource, Snapshot

NOW = 1_800_000_000.0


def _deploy(name: str, success: float | None, rps: float, meshed: str = "1/1", stale: tuple = ()) -> dict:
    return {"namespace": "emojivoto", "name": name, "meshed": meshed, "success_rate": success, "rps": rps,
            "latency_ms": {"p50": 2.5, "p95": 9.0, "p99": 19.0} if success is not None else {"p50": None, "p95": None, "p99": None},
            "tcp_conn": 2, "mtls_share": 1.0, "not_answering": list(stale)}


def _edge(src: str, dst: str, secured: bool = True) -> dict:
    return {"src": src, "dst": dst, "src_namespace": "emojivoto", "dst_namespace": "emojivoto", "secured": secured,
            "client_id": f"spiffe://meshdojo.local/ns/emojivoto/sa/{src}",
            "server_id": f"spiffe://meshdojo.local/ns/emojivoto/sa/{dst}" if secured else None}


class FixedSource(MeshSource):
    """The same snapshot every time: what the UI shows is then deterministic."""

    def __init__(self) -> None:
        super().__init__("default")
        for name, points in (("web", [(1.0, 2.0), (0.9, 2.0), (0.7, 2.1)]), ("voting", [(1.0, 1.0), (0.6, 1.0), (0.5, 1.0)])):
            self.history[("emojivoto", name)] = deque(points)

    def snapshot(self, window: str = "10s") -> Snapshot:
        deployments = [_deploy("emoji", 1.0, 2.0), _deploy("vote-bot", None, 0.0), _deploy("voting", 0.5, 1.0),
                       _deploy("web", 0.75, 2.0, stale=("web-1",))]
        services = [{**_deploy(n, s, r, "-"), "tcp_conn": None} for n, s, r in (("emoji", 1.0, 2.0), ("voting", 0.5, 1.0), ("web", 0.75, 2.0))]
        snap = Snapshot(
            NOW,
            status={"name": "default", "backend": "local", "controlplane": {"ready": True, "pid": 1},
                    "workloads": [{"name": f"{d}-0", "namespace": "emojivoto", "deployment": d, "ready": True, "meshed": True,
                                   "restarts": 0, "pids": {}, "ports": {}} for d in ("emoji", "vote-bot", "voting", "web")],
                    "gateways": [{"title": "emojivoto web UI", "url": "http://127.0.0.1:8080/"}]},
            deployments=deployments, services=services,
            edges=[_edge("vote-bot", "web"), _edge("web", "emoji", secured=False), _edge("web", "voting")],
            netfaults=[{"kind": "latency", "name": "latency-emoji", "description": "latency 300ms ± 0ms: every client -> svc/emoji.emojivoto",
                        "remaining_seconds": 95.0}],
            policies=[{"document": {"kind": "FaultInjection", "metadata": {"namespace": "emojivoto", "name": "voting-fault"}},
                       "expiresAt": NOW + 61}],
            ca={"issuer": {"notAfter": "2027-01-15T08:00:00+00:00"}},
        )
        snap.service_names = [("emojivoto", s["name"]) for s in services]
        by_service = {s["name"]: s for s in services}
        snap.edge_stats = {(e["src"], e["dst"]): by_service.get(e["dst"], {}) for e in snap.edges}
        return snap

    def routes(self, service: str, namespace: str) -> list[dict]:
        return []


def test_sparkline_scales_and_leaves_gaps():
    assert render.sparkline([0.0, 0.5, 1.0], 3, top=1.0) == "▁▅█"
    assert render.sparkline([None, 1.0], 4, top=1.0) == "   █"
    assert render.sparkline([], 3) == "   "


def test_layers_put_callers_left_of_callees_even_with_a_cycle():
    edges = [("a/bot", "a/web"), ("a/web", "a/emoji"), ("a/web", "a/voting"), ("a/voting", "a/web")]
    columns = render.layers(["a/bot", "a/web", "a/emoji", "a/voting"], edges)
    assert columns[0] == ["a/bot"] and "a/emoji" in columns[-1]
    assert sum(len(c) for c in columns) == 4


def test_topology_marks_mtls_and_plaintext_edges():
    source = FixedSource()
    snap = source.snapshot()
    text = render.topology(snap.edges, snap.deployments, snap.edge_stats).plain
    assert "└─🔒 1.0rps 50.0% ─▶ voting" in text and "└─🔓 2.0rps 100.0% ─▶ emoji" in text
    assert text.index("[vote-bot]") < text.index("[web]") < text.index("[voting]")


def test_fate_lines_and_filters():
    event = {"type": "end", "direction": "outbound", "workload": "web-0", "src": "web", "dst": "voting", "tls": True,
             "method": "GET", "authority": "voting:8080", "path": "/api/vote", "status": 200, "latency_ms": 12.5,
             "server_id": "spiffe://meshdojo.local/ns/emojivoto/sa/voting",
             "fate": {"route": "emojivoto/voting-retries#0", "attempts": ["voting-0 -> 503", "voting-0 -> 200"],
                      "retry": ["retried after 503"], "fault": None, "authz": None}}
    lines = render.fate_lines(event)
    assert "route      emojivoto/voting-retries#0" in lines and "retry      retried after 503" in lines
    assert any("attempts   2" in line and "2. voting-0 -> 200" in line for line in lines)
    assert render.tap_matches(event, "", "voting", "/api", "2", False)
    assert not render.tap_matches(event, "", "", "", "", True)  # only failures
    assert render.tap_row(event)[-1].plain.startswith("attempts=2; route=")


def test_an_error_field_is_found_on_its_line():
    text = "kind: HTTPRoute\nspec:\n  rules:\n  - retry:\n      attempts: 11\n"
    assert field_line(text, "spec.rules[0].retry.attempts") == 4
    assert field_line(text, "nowhere") is None


def test_snapshot_dashboard(snap_compare):
    assert snap_compare(MeshdojoApp(source=FixedSource(), refresh_every=3600), terminal_size=(100, 30))


def test_snapshot_topology_at_80x24(snap_compare):
    assert snap_compare(MeshdojoApp(source=FixedSource(), refresh_every=3600), press=["2"], terminal_size=(80, 24))


def test_snapshot_fault_preview(snap_compare):
    async def fill(pilot):
        await pilot.press("5")
        await pilot.press(*"svc/voting", "tab", *"503 30")
        await pilot.pause()

    assert snap_compare(MeshdojoApp(source=FixedSource(), refresh_every=3600), run_before=fill, terminal_size=(100, 30))


async def test_quitting_the_ui_that_up_started_asks_first():
    app = MeshdojoApp(source=FixedSource(), refresh_every=3600, started_by_up=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("q")
        assert type(app.screen).__name__ == "QuitScreen"  # asks: stop the sandbox, or leave it running?
        await pilot.press("escape")
        assert type(app.screen).__name__ != "QuitScreen"
        await pilot.press("q", "l")
    assert app.return_value == "leave"


async def test_help_lists_every_key():
    app = MeshdojoApp(source=FixedSource(), refresh_every=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        body = "\n".join(str(s.render()) for s in app.screen.query("Static"))
        for key in ("1 ", "7 ", "question_mark", "ctrl+p", "ctrl+s", "q "):
            assert key in body, key


async def test_action_output_with_brackets_is_shown_as_text_not_markup():
    from tui.actions import Action

    app = MeshdojoApp(source=FixedSource(), refresh_every=3600)
    raw = "0000  17 03 03 5b 2f  |...[/|\nroute=[default] [bold]"
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        app.perform(Action("bytes", "meshdojo wire deploy/a deploy/b", "-", lambda: raw), "#fault-out")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert raw in str(app.query_one("#fault-out").render())


async def test_buttons_do_what_their_keys_do(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHDOJO_HOME", str(tmp_path))  # no sandbox there: the action fails, and says why
    app = MeshdojoApp(source=FixedSource(), refresh_every=3600)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("5")
        await pilot.click("#fault-clear")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "✗ clear every fault" in str(app.query_one("#fault-out").render())
        assert "is not running" in str(app.query_one("#fault-out").render())


class BrokenSource(FixedSource):
    """A control plane that answers something the UI does not expect."""

    def snapshot(self, window: str = "10s") -> Snapshot:
        snap = super().snapshot(window)
        snap.deployments = [{"namespace": "emojivoto", "name": "web"}]  # no numbers at all
        return snap


async def test_a_ui_failure_is_one_line_and_a_crash_log_and_exits_non_zero(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHDOJO_HOME", str(tmp_path))
    app = MeshdojoApp(source=BrokenSource(), refresh_every=3600)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
    except WorkerFailed:
        pass  # run_test re-raises the app's exception for test frameworks; the real run() does not
    assert app.return_code == 1
    line, log = app.crash
    assert line == "KeyError: 'success_rate'"
    assert log.parent == tmp_path / "default" / "logs" and log.stat().st_mode & 0o777 == 0o600
    assert "Traceback" in log.read_text() and "success_rate" in log.read_text()
    assert not app._exit_renderables  # nothing dumped on the terminal
