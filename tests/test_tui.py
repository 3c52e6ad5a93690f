"""The terminal UI on fixed data: its pure rendering, its keys and focus, and snapshots of its
screens at 120x40 and 80x24 (reviewed: what they show is right)."""

from __future__ import annotations

from collections import deque

import pytest
from textual.widgets import DataTable, Input, Static, TabbedContent, TextArea
from textual.worker import WorkerFailed

from tui import graph, render
from tui.app import MeshdojoApp
from tui.panes.policies import field_line
from tui.source import MeshSource, Snapshot

NOW = 1_800_000_000.0  # 2027-01-15
DEMO = {"emojivoto": ["emojivoto-ingress", "vote-bot", "web", "emoji", "voting"],
        "bookinfo": ["bookinfo-ingress", "traffic", "productpage", "details", "reviews-v1", "reviews-v2", "reviews-v3", "ratings"]}


def _deploy(name: str, success: float | None, rps: float, ns: str = "emojivoto", meshed: str = "1/1", stale: tuple = (),
            mtls: float | None = 1.0) -> dict:
    return {"namespace": ns, "name": name, "meshed": meshed, "success_rate": success, "rps": rps,
            "latency_ms": {"p50": 2.5, "p95": 9.0, "p99": 19.0} if success is not None else {"p50": None, "p95": None, "p99": None},
            "tcp_conn": 2, "mtls_share": mtls if success is not None else None, "not_answering": list(stale)}


def _edge(src: str, dst: str, secured: bool = True, ns: str = "emojivoto", rps: float = 1.0, share: float | None = None) -> dict:
    return {"src": src, "dst": dst, "src_namespace": ns, "dst_namespace": ns, "secured": secured,
            "mtls_share": share if share is not None else (1.0 if secured else 0.0), "rps": rps, "success_rate": 1.0,
            "client_id": f"spiffe://meshdojo.local/ns/{ns}/sa/{src}", "server_id": f"spiffe://meshdojo.local/ns/{ns}/sa/{dst}" if secured else None}


class FixedSource(MeshSource):
    """The same snapshot every time (both demos): what the UI shows is then deterministic."""

    def __init__(self, issuer_expires: str = "2028-01-15T08:00:00+00:00") -> None:
        super().__init__("default")
        self.issuer_expires = issuer_expires
        self.span_reads: list[tuple[str | None, str | None]] = []
        for name, points in (("web", [(1.0, 2.0), (0.9, 2.0), (0.7, 2.1)]), ("voting", [(1.0, 1.0), (0.6, 1.0), (0.5, 1.0)])):
            self.history[("emojivoto", name)] = deque(points)

    def snapshot(self, window: str = "10s") -> Snapshot:
        deployments = [_deploy("emojivoto-ingress", 1.0, 0.5), _deploy("vote-bot", None, 0.0), _deploy("web", 0.75, 2.0, stale=("web-1",)),
                       _deploy("emoji", 1.0, 2.0, mtls=0.4), _deploy("voting", 0.5, 1.0)]
        deployments += [_deploy(n, 1.0, 1.0, "bookinfo") for n in DEMO["bookinfo"]]
        services = [{**_deploy(n, s, r, "emojivoto", "-"), "tcp_conn": None} for n, s, r in (("emoji", 1.0, 2.0), ("voting", 0.5, 1.0),
                                                                                              ("web", 0.75, 2.0))]
        workloads = [{"name": f"{d}-0", "namespace": ns, "deployment": d, "ready": True, "meshed": True, "restarts": 0, "pids": {},
                      "ports": {}, "services": [d.rsplit("-v", 1)[0]]} for ns, names in DEMO.items() for d in names if "ingress" not in d]
        snap = Snapshot(
            NOW,
            status={"name": "default", "backend": "local", "controlplane": {"ready": True, "pid": 1}, "workloads": workloads,
                    "gateways": [{"demo": "emojivoto", "title": "emojivoto web UI", "url": "http://127.0.0.1:8080/"}]},
            deployments=deployments, services=services,
            edges=[_edge("vote-bot", "web"), _edge("emojivoto-ingress", "web", rps=0.5), _edge("web", "emoji", secured=False, share=0.4),
                   _edge("web", "voting"), _edge("productpage", "reviews-v2", ns="bookinfo"), _edge("reviews-v2", "ratings", ns="bookinfo")],
            netfaults=[{"kind": "latency", "name": "latency-emoji", "description": "latency 300ms ± 0ms: every client -> svc/emoji.emojivoto",
                        "remaining_seconds": 95.0}],
            policies=[{"document": {"kind": "FaultInjection", "metadata": {"namespace": "emojivoto", "name": "voting-fault"}},
                       "expiresAt": NOW + 61}],
            ca={"issuer": {"notAfter": self.issuer_expires}},
        )
        snap.service_names = [("emojivoto", s["name"]) for s in services] + [("bookinfo", "reviews"), ("bookinfo", "ratings")]
        return snap

    def routes(self, service: str, namespace: str) -> list[dict]:
        return []

    def spans(self, namespace: str | None, trace: str | None = None, limit: int = 200) -> dict:
        self.span_reads.append((namespace, trace))
        found = [s for s in SPANS if (namespace is None or s["workload"].startswith(namespace + "/"))
                 and (trace is None or s["traceId"].startswith(trace))]
        return {"spans": found, "instances": 3, "lost": [{"workload": "emojivoto/voting-0", "error": "connection refused"}]}


def _span(trace: str, span: str, parent: str | None, workload: str, direction: str, path: str, status: int, start: float,
          ms: float, error: str = "") -> dict:
    return {"traceId": trace, "spanId": span, "parentId": parent, "workload": workload, "deployment": workload.split("/")[1][:-2],
            "direction": direction, "method": "GET", "authority": "web" if path.startswith("/api") else "emoji", "path": path,
            "status": status, "start": start, "durationMs": ms, "peer": "spiffe://meshdojo.local/ns/emojivoto/sa/emoji",
            "fate": "route=emojivoto/emoji#0" if direction == "outbound" else "", "error": error}


FAST, SLOW = "a" * 32, "b" * 32
SPANS = [_span(FAST, "1" * 16, None, "emojivoto/web-0", "inbound", "/api/list", 200, NOW - 5, 4.0),
         _span(FAST, "2" * 16, "1" * 16, "emojivoto/web-0", "outbound", "/list", 200, NOW - 4.999, 3.0),
         _span(SLOW, "3" * 16, None, "emojivoto/web-0", "inbound", "/api/vote", 503, NOW - 9, 40.0),
         _span(SLOW, "4" * 16, "3" * 16, "emojivoto/web-0", "outbound", "/vote", 503, NOW - 8.99, 38.0, error="no healthy endpoint")]


def app(**kw) -> MeshdojoApp:
    return MeshdojoApp(source=kw.pop("source", FixedSource()), refresh_every=3600, **kw)


# -- pure rendering ----------------------------------------------------------------------------

def test_sparkline_scales_and_leaves_gaps():
    assert render.sparkline([0.0, 0.5, 1.0], 3, top=1.0) == "▁▅█"
    assert render.sparkline([None, 1.0], 4, top=1.0) == "   █"
    assert render.sparkline([], 3) == "   "


def test_the_graph_puts_callers_left_and_marks_mtls_and_plaintext():
    text = render.graph(FixedSource().snapshot()).plain
    lines = text.splitlines()

    def column(name: str) -> int:
        return next(line.index(f"┌ {name} ") for line in lines if f"┌ {name} " in line)

    assert column("vote-bot") < column("web") < column("emoji")  # callers left of whom they call
    assert column("productpage") < column("reviews-v2") < column("ratings")  # bookinfo's versions are callees, not roots
    assert "🔓½0.4/s" not in text and "🔓" in text and "🔒" in text  # plaintext and mutual TLS marks
    assert "🔒1.0/s 100%" in text  # an edge's own numbers, for a versioned deployment too


def test_traffic_leaving_the_mesh_is_drawn_beside_its_caller():
    from types import SimpleNamespace

    web = {"namespace": "emojivoto", "name": "web", "success_rate": 1.0, "rps": 2.0, "not_answering": []}
    edges = [{"src": "web", "dst": "PassthroughCluster", "src_namespace": "emojivoto", "dst_namespace": "", "secured": False,
              "mtls_share": 0.0, "rps": 5.6, "success_rate": 1.0},
             {"src": "web", "dst": "httpbin.example", "src_namespace": "emojivoto", "dst_namespace": "shared", "secured": False,
              "mtls_share": 0.0, "rps": 1.0, "success_rate": 0.5}]
    lines = render.graph(SimpleNamespace(deployments=[web], edges=edges)).plain.splitlines()
    assert [line for line in lines if line.startswith("── namespace")] == [next(x for x in lines if "namespace emojivoto" in x)]
    arrows = [line for line in lines if "▶│" in line]
    assert len(arrows) == 2 and all("│ outside the mesh" in line for line in lines if "outside" in line)
    assert "🔓5.6/s 100%" in "\n".join(lines) and "🔓1.0/s 50%" in "\n".join(lines)


def test_the_graph_canvas_joins_lines_and_keeps_wide_glyphs():
    canvas = graph.Canvas(6, 3)
    canvas.line(1, 2, "─", "")
    canvas.line(1, 2, "│", "")
    canvas.put(0, 0, "🔒ab", "")
    assert canvas.text().plain.splitlines() == ["🔒ab", "  ┼"]


def test_summary_says_when_the_ca_expired():
    expired = render.summary(FixedSource(issuer_expires="2026-01-01T00:00:00+00:00").snapshot()).plain
    assert "CA EXPIRED" in expired and "CA ok" not in expired
    fine = render.summary(FixedSource().snapshot()).plain
    assert "CA ok, issuer expires in 365d0h" in fine


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
    assert not any(line.startswith("egress") for line in lines)  # only for a host outside the mesh
    outside = {**event, "fate": {"egress": "ServiceEntry emojivoto/httpbin", "attempts": ["127.0.0.1:9000 -> 200"]}}
    assert "egress     ServiceEntry emojivoto/httpbin" in render.fate_lines(outside)
    assert render.tap_row(outside)[-1].plain == "egress=ServiceEntry emojivoto/httpbin"
    assert not any(line.startswith("trace") for line in lines)  # only for a sampled request
    traced = {**event, "fate": {**event["fate"], "trace": "4bf92f3577b34da6a3ce929d0e0e4736", "request_id": "5f0c1d2e-0000-4000-8000-000000000001"}}
    assert "trace      4bf92f3577b34da6a3ce929d0e0e4736: t draws it (meshdojo trace 4bf92f3577b34da6)" in render.fate_lines(traced)
    assert "request id 5f0c1d2e-0000-4000-8000-000000000001" in render.fate_lines(traced)


def test_a_sidecars_policies_against_the_control_planes():
    assert render.policy_sync(9, 9) == "SYNCED v9" and render.policy_sync(8, 9) == "STALE v8 (v9)"
    assert render.policy_sync(None, 9) == "-"  # a sidecar that did not answer


def test_a_routes_status_in_a_line_or_what_does_not_hold():
    from controlplane.routestatus import desired
    from tests.test_gatewayapi import route

    stray = {"parents": [desired([route("stray")], {}, lambda ns, name: True, "t")[("shop", "stray")]]}
    assert render.status_text(stray) == ("status: Accepted False (NoMatchingParent): Gateway shop/web-gateway does not exist (yet): "
                                         "the route serves nothing until it does")
    mesh = {"parents": [desired([route("web", {"kind": "Service", "name": "web"})], {}, lambda ns, name: True, "t")[("shop", "web")]]}
    assert render.status_text(mesh) == "status: Accepted, ResolvedRefs" and render.status_text(None) == ""


def test_an_error_field_is_found_on_its_line():
    text = "kind: HTTPRoute\nspec:\n  rules:\n  - retry:\n      attempts: 11\n"
    assert field_line(text, "spec.rules[0].retry.attempts") == 4
    assert field_line(text, "nowhere") is None


def test_copied_commands_name_the_sandbox_unless_it_is_the_default():
    from tui import actions

    assert actions.kill("default", "emoji").cli == "meshdojo kill emoji"
    assert actions.kill("class-b", "emoji").cli == "meshdojo kill emoji --name class-b"
    assert actions.retries("class-b", "emoji", "emojivoto").cli == "meshdojo apply -f FILE.yaml --name class-b   # with the YAML below"


# -- snapshots (reviewed: every deployment visible, numbers unclipped, the right CA state) ---------

@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_snapshot_dashboard(snap_compare, size):
    assert snap_compare(app(), terminal_size=size)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_snapshot_topology(snap_compare, size):
    assert snap_compare(app(), press=["2"], terminal_size=size)


def test_snapshot_fault_preview(snap_compare):
    async def fill(pilot):
        await pilot.pause()  # the first refresh lands before any key
        await pilot.press("5")
        await pilot.pause()
        pilot.app.query_one("#fault-target", Input).value = "svc/voting"  # (typing is tested on its own below)
        pilot.app.query_one("#fault-value", Input).value = "503 30"
        await pilot.pause()

    assert snap_compare(app(), run_before=fill, terminal_size=(80, 24))


# -- keys and focus ------------------------------------------------------------------------------

async def test_no_screen_opens_with_focus_in_a_text_field_so_number_keys_switch_screens():
    ui = app()
    async with ui.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        for key, tab in zip("1234567", ("dashboard", "topology", "tap", "security", "faults", "policies", "logs"), strict=True):
            await pilot.press(key)
            await pilot.pause()
            assert ui.active_tab() == tab
            assert not isinstance(ui.focused, Input | TextArea), (tab, ui.focused)


async def test_a_focus_landing_after_the_next_key_does_not_switch_back():
    """4 then 1 typed quickly: a focus given on the Security screen reaches the tabs (as a message)
    after 1 chose the dashboard; the UI must stay on the dashboard (Textual alone would show the
    tab of the focused widget again)."""
    ui = app()
    async with ui.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        tabs = ui.query_one("#tabs", TabbedContent)
        for first, last in (("security", "dashboard"), ("faults", "topology"), ("policies", "dashboard")):
            tabs.active = first
            await pilot.pause()
            pane = ui.pane(first)
            target = next((w for w in pane.query("*") if w.focusable and w is not ui.focused), pane)
            ui.screen.set_focus(target)  # a focus on the first screen: its message to the tabs is on its way...
            tabs.active = last  # ...and the next key is handled before the tabs read it
            await pilot.pause()
            await pilot.pause()
            assert ui.active_tab() == last, (first, last, ui.active_tab())
            assert ui.focused is not None and ui.pane(last) in ui.focused.ancestors_with_self, (last, ui.focused)  # keys go there


async def test_typing_on_a_form_control_never_fires_a_one_key_shortcut():
    ui = app()
    async with ui.run_test(size=(100, 30)) as pilot:
        await pilot.press("5")
        ui.query_one("#fault-kind").focus()  # a Select: letters must not clear faults
        await pilot.press("x")
        await pilot.pause()
        assert type(ui.screen).__name__ != "ConfirmScreen"
        ui.pane().focus()
        await pilot.press("x")  # on the pane itself it does, and asks first
        await pilot.pause()
        assert type(ui.screen).__name__ == "ConfirmScreen"
        await pilot.press("n")
        assert type(ui.screen).__name__ != "ConfirmScreen"


async def test_enter_in_a_field_runs_its_action_and_empty_fields_are_filled_with_real_defaults():
    ui = app()
    async with ui.run_test(size=(100, 30)) as pilot:
        await pilot.press("4")
        await pilot.pause()
        assert ui.query_one("#wire-edge", Input).value == "vote-bot web" and ui.query_one("#intruder-svc", Input).value == "web"
        await pilot.press("3")
        await pilot.pause()
        assert ui.query_one("#tap-target", Input).value == "web"
        await pilot.press("5")
        ui.query_one("#fault-target", Input).focus()
        await pilot.press("enter")  # empty target: a sentence, not Python
        await pilot.pause()
        assert "target: type what to break, e.g. svc/voting" in str(ui.query_one("#fault-out", Static).render())
        await pilot.press(*"svc/voting", "tab", *"503 fifty")
        await pilot.pause()
        assert "'fifty' is not a percentage; write a number from 0 to 100" in str(ui.query_one("#fault-out", Static).render())


async def test_an_example_policy_is_previewed_and_applied_only_on_request():
    ui = app()
    async with ui.run_test(size=(120, 40)) as pilot:
        await pilot.press("6")
        examples = ui.query_one("#examples")
        first = examples._options[1][1]  # type: ignore[attr-defined]  (0 is the prompt)
        examples.value = first  # type: ignore[attr-defined]
        await pilot.pause()
        assert ui.query_one("#yaml", TextArea).text.startswith("#")
        out = str(ui.query_one("#yaml-errors", Static).render())
        assert out.startswith("preview of demo-apps/") and "a applies it" in out
        assert ui.last_action is None  # nothing was applied


async def test_the_mirror_toggle_sends_to_the_first_version_and_copies_to_the_last():
    import yaml

    from controlplane import policy
    from tui.panes.policies import Policies

    ui = app()
    async with ui.run_test(size=(120, 40)) as pilot:
        await pilot.press("6")
        pane = ui.query_one(Policies)
        action = pane._toggle("mirror", "bookinfo", "reviews")
        rule = policy.parse(next(yaml.safe_load_all(action.yaml)), "toggle", 0).spec.rules[0]
        assert [b.service for b in rule.backends] == ["reviews-v1"]
        assert [(m.service, m.share) for m in rule.filters.mirrors] == [("reviews-v3", 1.0)]
        assert "reviews-v3 takes as many requests" in action.watch
        with pytest.raises(ValueError, match="a mirror needs two versions of emoji"):
            pane._toggle("mirror", "emojivoto", "emoji")


async def test_quitting_asks_first_with_q_and_with_ctrl_c_when_up_started_the_ui():
    ui = app(started_by_up=True)
    async with ui.run_test(size=(80, 24)) as pilot:
        await pilot.press("q")
        assert type(ui.screen).__name__ == "QuitScreen"
        await pilot.press("escape")
        assert type(ui.screen).__name__ != "QuitScreen"
        await pilot.press("ctrl+c")
        assert type(ui.screen).__name__ == "QuitScreen"
        await pilot.press("l")
    assert ui.return_value == "leave"


async def test_help_shows_keys_as_typed_and_the_palette_lists_commands_before_typing():
    ui = app()
    async with ui.run_test(size=(100, 40)) as pilot:
        await pilot.press("question_mark")
        body = "\n".join(str(s.render()) for s in ui.screen.query("Static"))
        for key in ("1-9", "7 Logs", "8 Lessons: d show me", "? ", "ctrl+c / ctrl+q", "ctrl+p", "5 Faults: p preview, a apply, x clear all"):
            assert key in body, key
        assert "question_mark" not in body
        await pilot.press("escape")
        from tui.app import MeshCommands

        hits = [hit async for hit in MeshCommands(ui.screen).discover()]
        assert any("screen: topology" in str(h.display) for h in hits) and any("tap deploy/web" in str(h.display) for h in hits)


async def test_the_topology_selection_survives_refreshes():
    ui = app()
    async with ui.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        items = ui.query_one("#items", DataTable)
        await pilot.press("down", "down", "down")
        chosen = items.cursor_row
        for _ in range(3):
            ui.show_snapshot(ui.source.snapshot())
            await pilot.pause()
        assert items.cursor_row == chosen and chosen == 3


async def test_action_output_with_brackets_is_shown_as_text_not_markup():
    from tui.actions import Action

    ui = app()
    raw = "0000  17 03 03 5b 2f  |...[/|\nroute=[default] [bold]"
    async with ui.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        ui.perform(Action("bytes", "meshdojo wire deploy/a deploy/b", "-", lambda: raw), ui.pane(), "#fault-out")
        await ui.workers.wait_for_complete()
        await pilot.pause()
        assert raw in str(ui.query_one("#fault-out").render())


async def test_buttons_do_what_their_keys_do(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHDOJO_HOME", str(tmp_path))  # no sandbox there: the action fails, and says why
    ui = app()
    async with ui.run_test(size=(100, 30)) as pilot:
        await pilot.press("5")
        await pilot.click("#fault-clear")
        await pilot.press("y")
        await ui.workers.wait_for_complete()
        await pilot.pause()
        assert "✗ clear every fault" in str(ui.query_one("#fault-out").render())
        assert "is not running" in str(ui.query_one("#fault-out").render())


class BrokenSource(FixedSource):
    """A control plane that answers something the UI does not expect."""

    def snapshot(self, window: str = "10s") -> Snapshot:
        snap = super().snapshot(window)
        snap.deployments = [{"namespace": "emojivoto", "name": "web"}]  # no numbers at all
        return snap


async def test_a_ui_failure_is_one_line_and_a_crash_log_and_exits_non_zero(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHDOJO_HOME", str(tmp_path))
    ui = app(source=BrokenSource())
    try:
        async with ui.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
    except (WorkerFailed, KeyError):
        pass  # run_test re-raises the app's exception for test frameworks; the real run() does not
    assert ui.return_code == 1
    line, log = ui.crash
    assert line == "KeyError: 'success_rate'"
    assert log.parent == tmp_path / "default" / "logs" and log.stat().st_mode & 0o777 == 0o600
    assert "Traceback" in log.read_text() and "success_rate" in log.read_text()
    assert not ui._exit_renderables  # nothing dumped on the terminal


async def test_the_lessons_screen_lists_lessons_and_runs_a_step(tmp_path, monkeypatch):
    """Lessons (8): Enter starts the selected lesson through the same code as `lesson start`;
    d runs the step's command; n refuses to go on while the check fails, and goes on once it passes."""
    from sandbox.lessons import checks, model, progress
    from tui.panes import Lessons

    started, ran = [], []
    monkeypatch.setattr(progress, "reset", lambda name, lesson, step: started.append((lesson.number, step)) or
                        progress.save(name, progress.Progress(lesson.number, step - 1, 0.0, [])) or [])
    monkeypatch.setattr(progress, "run_verb", lambda name, argv, quiet=False: ran.append(tuple(argv)) or (0, "done"))
    monkeypatch.setenv("MESHDOJO_HOME", str(tmp_path))
    (tmp_path / "default").mkdir()
    outcome = {"passed": False}
    monkeypatch.setattr(checks, "wait", lambda *a, **k: (outcome["passed"], 0.0))
    the_app = app()
    async with the_app.run_test(size=(120, 40)) as pilot:
        await pilot.press("8")
        pane = the_app.query_one(Lessons)
        await wait_for(pilot, lambda: the_app.focused is pane.query_one("#lesson-list"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: started == [(1, 1)])
        assert pane.query_one("#lesson-list", DataTable).row_count == len(model.all_lessons()) >= 19
        await pilot.press("d")
        await wait_for(pilot, lambda: ran == [("status",)])
        pane.show(the_app.snapshot)
        await wait_for(pilot, lambda: pane._passed is False)
        await pilot.press("n")
        assert progress.load("default").step == 0 and "Hint:" in str(pane.query_one("#lesson-step").render())
        outcome["passed"] = True
        pane.show(the_app.snapshot)
        await wait_for(pilot, lambda: pane._passed is True)
        await pilot.press("n")
        assert progress.load("default").step == 1


async def test_the_lessons_step_stays_on_screen_below_a_long_list(tmp_path, monkeypatch):
    """Nineteen lessons and more: the list scrolls on its own, and the started lesson's step (what
    to do, the check) stays in view on a 32-line terminal, not pushed below the screen."""
    from sandbox.lessons import model, progress
    from tui.panes import Lessons

    monkeypatch.setenv("MESHDOJO_HOME", str(tmp_path))
    (tmp_path / "default").mkdir()
    progress.save("default", progress.Progress(1, 0, 0.0, []))
    the_app = app()
    async with the_app.run_test(size=(120, 32)) as pilot:
        await pilot.press("8")
        pane = the_app.query_one(Lessons)
        pane.show(the_app.snapshot)
        await wait_for(pilot, lambda: "Lesson 1, step 1 of" in str(pane.query_one("#lesson-step").render()))
        assert pane.query_one("#lesson-list", DataTable).row_count == len(model.all_lessons()) >= 19
        box, visible = pane.query_one("#lesson-step").parent.region, pane.region
        assert box.height >= 3 and visible.y <= box.y and box.bottom <= visible.bottom, (box, visible)


async def wait_for(pilot, condition, rounds: int = 200) -> None:
    """Let the app run until ``condition()`` holds (its workers report through the event loop)."""
    for _ in range(rounds):
        if condition():
            return
        await pilot.pause(0.01)
    raise AssertionError("the UI did not get there")



def test_a_gateways_status_in_a_line_names_the_listener_whose_secret_is_missing():
    from controlplane.kube.gatewaystatus import desired
    from tests.test_gatewayapi import gateway

    gw = gateway(listeners=[{"name": "https", "port": 443, "protocol": "HTTPS", "tls": {"certificateRefs": [{"name": "cred"}]}}])
    served = {"shop": ("127.0.0.1", True)}
    missing = desired([gw], {}, served, "t", lambda ns, name: None)[("shop", "web-gateway")]
    why = ("Secret shop/cred is not there, or is not a valid TLS Secret: TLS handshakes for this listener fail "
           "(meshdojo create secret tls cred --cert FILE --key FILE -n shop)")
    assert render.status_text(missing).splitlines() == [f"status: listener https: Programmed False (Invalid): {why}",
                                                        f"status: listener https: ResolvedRefs False (InvalidCertificateRef): {why}"]
    there = desired([gw], {}, served, "t", lambda ns, name: True)[("shop", "web-gateway")]
    assert render.status_text(there) == "status: Accepted, Programmed, ResolvedRefs"
    assert there["addresses"] == [{"type": "IPAddress", "value": "127.0.0.1"}]  # the local gateway's
