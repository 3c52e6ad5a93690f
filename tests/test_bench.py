"""The benchmarks as CI runs them: every one, once and briefly (its figures are meaningless on
a busy runner, but it must run, and its output must parse); and the rules of the harness — a
failure is never a number, and the doc's figures are replaced only by a whole, clean run."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

import bench.__main__ as harness
from bench.measure import BenchError, Section, Spread

EXPECTED = {
    "Meshed path": ["c=1 meshed p50 overhead ms", "c=16 meshed/direct", "c=16 meshed cores busy", "c=16 callbacks-only/direct", "c=16 nginx/direct",
                    "c=16 direct load generator + app CPU us", "outbound proxy RSS MB", "inbound proxy RSS MB", "outbound proxy private MB", "tap on/off"],
    "Proxy memory": ["imported RSS MB", "imported private MB", "the proxy's own modules RSS MB"],
    "Traffic policy": ["propagation p99 ms", "idle layers added p50 ms"],
    "Telemetry": ["N=0 CPU share", "N=5 CPU share", "N=5 RSS MB", "N=5 live CPU share"],
    "Local sandbox": ["up seconds", "up seconds, exec", "up CPU seconds", "up CPU seconds, exec", "up PSS MB", "up PSS MB, exec",
                      "idle CPU share", "total RSS MB", "total PSS MB"],
    "Terminal UI": ["first paint seconds", "idle CPU share", "idle CPU share, Lessons screen", "fault to screen seconds",
                    "key to screen seconds"],
    "Demo apps": ["keep-alive p50 ms"],
    "Lessons": ["step confirmed seconds (median)", "step confirmed seconds (max)"],
}


@pytest.mark.timeout(400)
def test_every_benchmark_runs_and_its_output_parses(tmp_path, on_time):
    out = tmp_path / "figures.json"
    result = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--json", str(out)], capture_output=True, text=True,
                            timeout=380)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    for section, names in EXPECTED.items():
        for name in names:
            value = figures[section][name]
            assert isinstance(value, float | int) and math.isfinite(value), (section, name, value)
    assert figures["Meshed path"]["c=16 meshed req/s"] > 0 and figures["Terminal UI"]["first paint seconds"] > 0
    # the Markdown printed is what the doc would get: a table per comparison, a line per figure
    assert "| concurrency | path | p50 ms | p99 ms | req/s |" in result.stdout and "### Terminal UI" in result.stdout


def test_spread_is_median_with_its_range():
    s = Spread.of([3.0, 1.0, 2.0, 10.0, 2.5])
    assert (s.median, s.low, s.high) == (2.5, 1.0, 10.0)
    assert s.show(".1f", " ms") == "2.5 ms (1.0–10.0)"
    assert Spread.of([0.2, 0.25, 0.3]).show(".0%") == "25% (20–30%)"
    assert Spread.of([4.0]).show(".0f") == "4"
    with pytest.raises(BenchError):
        Spread.of([])


def test_figures_replace_only_what_is_between_the_markers(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nprose before\n\n{harness.BEGIN}\nold figures\n{harness.END}\n\nprose after\n")
    harness.write_figures(doc, f"{harness.BEGIN}\nnew figures\n{harness.END}")
    assert doc.read_text() == f"# Benchmarks\n\nprose before\n\n{harness.BEGIN}\nnew figures\n{harness.END}\n\nprose after\n"
    bare = tmp_path / "bare.md"
    bare.write_text("# Benchmarks\n\nonly prose\n")
    harness.write_figures(bare, f"{harness.BEGIN}\nfigures\n{harness.END}")
    assert bare.read_text().startswith("# Benchmarks\n\nonly prose\n\n## Figures\n\n" + harness.BEGIN)


def test_a_failing_benchmark_fails_the_run_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import bench.demo_apps

    def broken(settings, root):
        raise BenchError("policy propagation: 3 of 100 watchers did not get apply 7 within 5 s")

    def fine(settings, root):
        section = Section("Fine")
        section.add("- a figure: 1")
        return section

    monkeypatch.setattr(harness, "BENCHMARKS", ("demo_apps", "measure_ok"))
    monkeypatch.setattr(bench.demo_apps, "run", broken)
    monkeypatch.setitem(sys.modules, "bench.measure_ok", type(sys)("bench.measure_ok"))
    sys.modules["bench.measure_ok"].run = fine
    doc = tmp_path / "benchmarks.md"
    doc.write_text("untouched")
    assert harness.main(["--write", str(doc), "--repeats", "1", "--seconds", "0.1"]) == 1
    assert doc.read_text() == "untouched"
    err = capsys.readouterr().err
    assert "demo_apps FAILED: policy propagation: 3 of 100 watchers" in err and "nothing written" in err
    with pytest.raises(SystemExit):
        harness.main(["--write", str(doc), "--only", "demo_apps"])  # a partial run never rewrites the doc


def test_a_successful_run_writes_the_figures_with_todays_date_and_the_commit(tmp_path, monkeypatch):
    import time

    def fine(settings, root):
        section = Section("Fine")
        section.add("- a figure: 1")
        return section

    monkeypatch.setattr(harness, "BENCHMARKS", ("measure_ok",))
    monkeypatch.setitem(sys.modules, "bench.measure_ok", type(sys)("bench.measure_ok"))
    sys.modules["bench.measure_ok"].run = fine
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nprose\n\n{harness.BEGIN}\nold\n{harness.END}\n")
    assert harness.main(["--write", str(doc), "--repeats", "1", "--seconds", "0.1"]) == 0
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nprose\n\n") and "old" not in text and "- a figure: 1" in text
    assert time.strftime("%Y-%m-%d", time.gmtime()) in text and f"`{harness.commit().split()[0]}" in text


@pytest.mark.parametrize("module", ["bench.tlspipe", "bench.callbackrelay", "bench.workrelay", "bench.httpfloor"])
def test_a_reference_relay_pair_carries_the_request_to_the_app_and_its_answer_back(tmp_path, module):
    """The references the meshed path is measured against forward what the proxy forwards: the
    path with its query (an HTTP relay is sent the absolute form, as through HTTP_PROXY), and the
    app's answer unchanged; over keep-alive, request after request."""
    import http.client

    from bench.meshed_path import start_pair
    from sandbox.processes import stop_group
    from tests.apps import plain_http_server

    helpers: list = []
    with plain_http_server() as app_port:  # answers "<path> host=<Host>"
        try:
            port, _pids = start_pair(module, tmp_path, app_port, helpers)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                for n in range(3):
                    target = f"/echo/{n}?q={n}&r=x" if module == "bench.tlspipe" else f"http://bench-app/echo/{n}?q={n}&r=x"
                    conn.request("GET", target, headers={"Host": "bench-app"})
                    answer = conn.getresponse()
                    assert (answer.status, answer.read().decode()) == (200, f"/echo/{n}?q={n}&r=x host=bench-app")
            finally:
                conn.close()
        finally:
            for helper in helpers:
                stop_group(helper)
