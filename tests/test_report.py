"""`meshdojo report`: the windows it compares, the pure comparison, and the whole thing on a real
sandbox — the doughnut bug, then retries — with the HTML opened in headless Chromium."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from sandbox import report
from sandbox.processes import wait_until
from tests.meshkit import Cli

NOW = 1_800_000_000.0
ROOT = Path(__file__).resolve().parent.parent


def test_windows_are_times_ago_and_the_before_comes_first():
    before, after = report.windows("2m", "1m", NOW)
    assert (after.start, after.end) == (NOW - 60, NOW) and (before.start, before.end) == (NOW - 180, NOW - 60)
    before, after = report.windows("6m..4m", "2m..30s", NOW)
    assert (before.start, before.end, after.start, after.end) == (NOW - 360, NOW - 240, NOW - 120, NOW - 30)
    for bad, why in ((("2m", "1m..2m"), "longer ago than the second"), (("1m..0s", "2m"), "must come first"),
                     (("1s", "1m"), "at least 2s"), (("20m", "1m"), "keeps 15 minutes"), (("soon", "1m"), "--before 'soon'")):
        with pytest.raises(report.ReportError, match=why):
            report.windows(*bad, NOW)


def test_around_a_change_the_after_window_stops_now():
    before, after = report.around(NOW - 20, "30s", "1m", NOW)
    assert (before.start, before.end, after.start, after.end) == (NOW - 50, NOW - 20, NOW - 20, NOW)
    with pytest.raises(report.ReportError, match="1.0s ago"):
        report.around(NOW - 1, "30s", "30s", NOW)


def _row(name: str, success: float | None, rps: float, p99: float | None) -> dict:
    return {"namespace": "emojivoto", "name": name, "meshed": "1/1", "success_rate": success, "rps": rps,
            "latency_ms": {"p50": 1.0, "p95": 2.0, "p99": p99}}


def _data() -> dict:
    before, after = report.windows("60s", "30s", NOW)
    return {"windows": [{"label": "before", "start": before.start, "end": before.end},
                        {"label": "after", "start": after.start, "end": after.end}],
            "services": {"before": [_row("voting", 0.66, 1.0, 5), _row("emoji", 1.0, 2.0, 10), _row("idle", None, 0.0, None)],
                         "after": [_row("voting", 0.995, 1.0, 5), _row("emoji", 1.0, 2.0, 40)]},
            "stats": {"before": [_row("voting", 0.66, 1.0, 5)], "after": [_row("voting", 0.66, 3.0, 5)]},
            "edges": {"before": [], "after": []},
            "series": [{"time": before.start + 3 * i, "rows": [_row("voting", 0.66 if i < 20 else 0.99, 1.0, 5)]} for i in range(30)],
            "changes": [{"time": after.start, "action": "created", "kind": "HTTPRoute", "namespace": "emojivoto", "name": "voting-retries"}],
            "namespace": None}


def test_the_comparison_and_what_moved_are_pure():
    rows = report.comparison(_data())
    assert [r["name"] for r in rows] == ["emoji", "voting"]  # a service without traffic in either window is left out
    assert rows[1]["success_rate"] == (0.66, 0.995)
    assert report.summary(rows) == ["emojivoto/emoji: p99 latency rose from 10 ms to 40 ms",
                                    "emojivoto/voting: success rose from 66.0% to 99.5%"]
    page = report.build_report(_data(), NOW, "lab")
    assert page == report.build_report(_data(), NOW, "lab")  # the same data, the same file
    assert "voting-retries" in page and "success rose from 66.0% to 99.5%" in page
    assert "<script" in page and "cdn." not in page.split("<body>", 1)[1][:2000]  # plotly inlined, nothing fetched


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def rendered(page: Path) -> str:
    """The page's DOM after its scripts ran, from headless Chromium."""
    browser = _chromium()
    assert browser, "Debian's chromium is needed (apt-get install chromium); .ci/run installs it"
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                           "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_report_of_retries_for_a_flaky_emoji_drawn_by_chromium(tmp_path):
    cli = Cli(tmp_path / "home")
    cli.run("up", "--no-tui", "--demo", "emojivoto")
    try:
        def emoji(window: str) -> dict | None:
            rows = json.loads(cli.run("stat", "svc", "-n", "emojivoto", "-t", window, "-o", "json").stdout)
            return next((r for r in rows if r["name"] == "emoji" and r["rps"]), None)

        # the before: emoji fails 30 % of requests at random, and web sees it
        injecting = time.monotonic()
        cli.run("fault", "inject", "emoji", "--abort", "503", "--percent", "30", "--for", "5m")
        wait_until(lambda: (v := emoji("10s")) and v["success_rate"] is not None and v["success_rate"] < 0.9, 60,
                   "the flaky emoji in its callers' success rate", interval=0.5)
        # the before window starts a second before the fault was injected (the report lists that
        # change) and holds little else: the sandbox came up moments ago, and a longer window would
        # mix in its healthy start, which left the rise under the summary's 2 points on a slow run
        before = f"{math.ceil(time.monotonic() - injecting) + 1}s"
        # the change: retries, which fix a transient failure
        cli.run("apply", "-f", str(ROOT / "demo-apps/emojivoto/policies/emoji-retries.yaml"))
        wait_until(lambda: (v := emoji("5s")) and (v["success_rate"] or 0) > 0.97, 60, "retries to mend emoji", interval=0.5)

        out = tmp_path / "retries.html"

        def reported():  # the after window fills as time goes: its first seconds may still hold a failure from before
            done = cli.run("report", "--around-change", "--before", before, "--after", "30s", "-o", str(out))
            return done if "emojivoto/emoji: success rose from" in done.stdout else None

        done = wait_until(reported, 60, "the report to say emoji's success rose (the after window filling)", interval=1)
        assert f"wrote {out}" in done.stdout
        page = out.read_text()
        assert "emoji-retries" in page and "created HTTPRoute" in page and "created FaultInjection" in page
        dom = rendered(out)
        assert dom.count('class="main-svg"') >= 4, "plotly drew no charts"  # two figures, each its SVG layers
        assert dom.count('class="scatterlayer') >= 3 and 'class="barlayer' in dom  # three time series and the bars
        assert "emojivoto/emoji" in dom and "What changed in between" in dom

        # without -o, the report goes to the sandbox's folder
        default = cli.run("report", "--before", "20s", "--after", "10s")
        written = Path(default.stdout.strip().splitlines()[-1].split()[1])
        assert written.parent == tmp_path / "home" / "default" / "reports" and written.exists()
        # a window the control plane has no metrics for is one line that says why, not a traceback
        bad = cli.run("report", "--before", "20m", "--after", "1m", check=False)
        assert bad.returncode == 1 and "keeps 15 minutes" in bad.stderr and "Traceback" not in bad.stderr
    finally:
        cli.run("down", check=False)


def test_around_the_last_change_needs_one():
    with pytest.raises(report.ReportError, match="nothing was applied"):
        report.around_last_change([], "30s", "30s", NOW)
    before, after = report.around_last_change([{"time": NOW - 40}, {"time": NOW - 10}], "30s", "30s", NOW)
    assert (before.end, after.start, after.end) == (NOW - 10, NOW - 10, NOW)
