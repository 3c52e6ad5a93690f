"""The Traces screen (9) on fixed data (tests/test_tui.py's FixedSource): the latest traces
listed, the highlighted one drawn, the slowest, the filters; and Tap's t, which opens the
selected request's trace. Against a real sandbox: tests/test_tui_sandbox.py."""

from __future__ import annotations

from textual.widgets import DataTable, Input, Static

from tests.test_tui import FAST, SLOW, app
from tui import tables


async def test_traces_lists_the_latest_and_draws_the_highlighted_one():
    ui = app()
    async with ui.run_test(size=(120, 40)) as pilot:
        await pilot.press("9")
        await pilot.pause()
        table = ui.query_one("#traces-table", DataTable)
        waterfall = ui.query_one("#waterfall", Static)
        await pilot.pause(0.3)
        assert [row.key.value for row in table.ordered_rows] == [FAST, SLOW]  # the latest first
        assert "not read: emojivoto/voting-0: connection refused" in str(ui.query_one("#traces-status", Static).render())
        drawn = str(waterfall.render())
        assert drawn.startswith(f"trace {FAST}: 2 spans at 1 sidecars") and "web-0 outbound: GET emoji/list -> 200" in drawn
        assert ui.last_action is not None and ui.last_action.cli == f"meshdojo trace {FAST[:16]}"

        await pilot.press("s")  # the slowest: its failed hop and why the sidecar answered it
        await pilot.pause(0.3)
        assert table.cursor_row == 1
        drawn = str(waterfall.render())
        assert "-> 503" in drawn and "answered by the sidecar: no healthy endpoint" in drawn
        assert ui.source.span_reads[-1] == (None, SLOW)

        await pilot.press("up")  # moving the cursor draws that one
        await pilot.pause(0.3)
        assert str(waterfall.render()).startswith(f"trace {FAST}")

        await pilot.click("#traces-failed")  # only the traces with a failed span
        await pilot.pause(0.3)
        assert [row.key.value for row in table.ordered_rows] == [SLOW]
        assert str(waterfall.render()).startswith(f"trace {SLOW}")  # the first listed is drawn

        ui.query_one("#traces-namespace", Input).value = "bookinfo"  # a namespace without traces: say how to get some
        ui.query_one("#traces-namespace", Input).focus()
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert table.row_count == 0 and "tracing-all.yaml" in str(waterfall.render())
        assert ui.source.span_reads[-1] == ("bookinfo", None) and ui.last_action.cli == "meshdojo trace -n bookinfo"


async def test_t_in_tap_opens_the_selected_requests_trace():
    ui = app()
    async with ui.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await pilot.pause()
        tap = ui.pane("tap")
        event = {"type": "end", "direction": "inbound", "workload": "web-0", "method": "GET", "authority": "web", "path": "/api/vote",
                 "status": 503, "latency_ms": 40.0, "src": "vote-bot", "dst": "web", "tls": True, "fate": {}}
        tap._add([event, {**event, "fate": {"trace": SLOW}}])
        await pilot.pause()
        ui.query_one("#tap-table", DataTable).move_cursor(row=0)
        await pilot.press("t")  # not sampled: it says how to have requests traced
        await pilot.pause()
        assert ui.active_tab() == "tap"
        ui.query_one("#tap-table", DataTable).move_cursor(row=1)
        await pilot.press("t")
        await pilot.pause(0.3)
        assert ui.active_tab() == "traces"
        assert str(ui.query_one("#waterfall", Static).render()).startswith(f"trace {SLOW}: 2 spans")
        assert tables.selected_key(ui.query_one("#traces-table", DataTable)) == SLOW  # the list shows where it is
