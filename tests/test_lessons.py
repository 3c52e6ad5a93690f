"""Lessons run unattended on the local backend, start to finish: each step's check fails before
its action and passes after it (both asserted, through the real CLI and sandbox); `reset` from a
later step puts back what the earlier steps leave; a broken lesson file is an error naming the
file, the step and the field."""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox.lessons import checks, model
from tests.meshkit import Cli

LESSONS = model.all_lessons()


def _write(tmp_path: Path, name: str, front: str) -> Path:
    path = tmp_path / name
    path.write_text(f"---\n{front}\n---\nbody\n")
    return path


STEP = "{title: t, explain: e, do: [status], hint: h, check: {query: ran, params: {command: status}}}"


@pytest.mark.parametrize(("name", "front", "error"), [
    ("1-x.md", f"title: x\ndemos: [emojivoto]\nsteps: [{STEP}]", "(file name): expected NN-topic.md"),
    ("01-x.md", "title: x\ndemos: [emojivoto]\nsteps: []", "steps: expected a non-empty list"),
    ("01-x.md", f"title: x\ndemos: [istio]\nsteps: [{STEP}]", "demos: expected a list of emojivoto"),
    ("01-x.md", "title: x\ndemos: [emojivoto]\nsteps: [{title: t, explain: e, do: [status], hint: h, check: {query: grafana}}]",
     "steps[0].check.query: expected one of status, deployments, stat"),
    ("01-x.md", "title: x\ndemos: [emojivoto]\nsteps: [{title: t, explain: e, do: status, hint: h, check: {query: status}}]",
     "steps[0].do: expected meshdojo's arguments as a list"),
    ("01-x.md", "title: x\ndemos: [emojivoto]\nsteps: [{title: t, explain: e, do: [status], check: {query: status}}]",
     "steps[0].hint: required field is missing"),
    ("01-x.md", "title: x\ndemos: [emojivoto]\nsteps: [{title: t, explain: e, do: [status], hint: h, check: {query: status, deadline: soon}}]",
     "steps[0].check.deadline:"),
    ("01-x.md", "title: x\ndemos: [emojivoto]\nsteps: [{title: t, explain: e, do: [status], hint: h, check: {query: ran}}]",
     "steps[0].check.params.command: a 'ran' check needs"),
])
def test_a_broken_lesson_names_the_file_step_and_field(tmp_path, name, front, error):
    path = _write(tmp_path, name, front)
    with pytest.raises(model.LessonError) as err:
        model.load(path)
    assert str(err.value).startswith(str(path)) and error in str(err.value)


def test_conditions():
    check = model.Check("edges", (), (("src", "web"),), (("mtls_share", ">", 0), ("latency_ms.p50", "<", 100)), False, 1.0)
    row = {"src": "web", "mtls_share": 0.5, "latency_ms": {"p50": 3.0}}
    assert checks.satisfied([row], check)
    assert not checks.satisfied([{**row, "mtls_share": 0}], check)
    assert not checks.satisfied([{**row, "src": "vote-bot"}], check)
    assert not checks.satisfied([{**row, "latency_ms": {"p50": None}}], check)
    absent = model.Check("policies", (), (("name", "x"),), (), True, 1.0)
    assert checks.satisfied([{"name": "y"}], absent) and not checks.satisfied([{"name": "x"}], absent)


def test_no_traffic_over_a_window_counts_only_once_the_whole_window_is_after_the_step_began():
    """"No traffic to v2 in the last 10 s" right after the route changed would still read the
    traffic (or a quiet spell) from before the learner acted."""
    quiet = model.Check("edges", (("window", "10s"),), (("dst", "reviews-v2"),), (("rps", ">", 0),), True, 40.0)
    assert not checks.window_since_step(quiet, since=1000.0, now=1009.9)
    assert checks.window_since_step(quiet, since=1000.0, now=1010.0)
    present = model.Check("edges", (("window", "10s"),), (("dst", "reviews-v3"),), (("rps", ">", 0),), False, 30.0)
    gone = model.Check("policies", (), (("name", "x"),), (), True, 1.0)
    assert checks.window_since_step(present, since=1000.0, now=1000.0)  # traffic seen is traffic seen
    assert checks.window_since_step(gone, since=1000.0, now=1000.0)  # not a window of metrics
    default = model.Check("stat", (), (), (), True, 1.0)  # the views' default window, 30 s
    assert not checks.window_since_step(default, 1000.0, 1029.0) and checks.window_since_step(default, 1000.0, 1030.0)


def test_what_a_lesson_counts_and_names_is_the_same_on_every_backend():
    from sandbox.netcli import newest_instance

    def pod(name, ready=True, meshed=True, created=None):
        return {"name": name, "namespace": "emojivoto", "deployment": "emoji", "ready": ready, "meshed": meshed, "created": created}

    st = {"deployments": {"emojivoto/emoji": {"replicas": 2, "inject": True}, "emojivoto/web": {"replicas": 1, "inject": False}},
          "workloads": [pod("emoji-0"), pod("emoji-1", ready=False)]}
    assert checks.deployment_rows(st) == [
        {"name": "emoji", "namespace": "emojivoto", "replicas": 2, "instances": 2, "ready": 1, "meshed": 2},
        {"name": "web", "namespace": "emojivoto", "replicas": 1, "instances": 0, "ready": 0, "meshed": 0}]
    # --instance newest: the ordinal locally, the creation time on a cluster (the pod a scale-down removes first)
    assert newest_instance(["emoji-1", "emoji-0", "emoji-10"], []) == "emoji-10"
    pods = [pod("emoji-7d9f-zzzzz", created="2026-11-27T01:00:00Z"), pod("emoji-7d9f-aaaaa", created="2026-11-27T01:05:00Z")]
    assert newest_instance(["emoji-7d9f-zzzzz", "emoji-7d9f-aaaaa"], pods) == "emoji-7d9f-aaaaa"


def test_the_shipped_lessons_load():
    assert [lesson.number for lesson in LESSONS] == list(range(1, len(LESSONS) + 1))
    assert all(lesson.steps and lesson.body for lesson in LESSONS)


def test_every_step_names_the_ui_screen_by_its_key():
    """A step's `tui` hint says "Policies (6): ..." — the number is the key that opens that
    screen, so it must be the screen's place in the UI's tabs."""
    from tui.panes import PANES

    keys = {pane.TITLE: str(i + 1) for i, pane in enumerate(PANES)}
    hints = [(lesson.slug, step.title, step.tui) for lesson in LESSONS for step in lesson.steps if step.tui]
    assert len(hints) > 40
    for lesson, step, hint in hints:
        named = re.match(r"(\w+) \((\d)\)", hint)
        assert named is not None and keys.get(named[1]) == named[2], (lesson, step, hint, keys)


def _in_process(*args: str) -> str:
    """A read-only lesson verb through the same ``main`` in this process (no interpreter start:
    the loop below runs about 60 of each); the actions still run as a learner's commands do."""
    from sandbox.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(args))
    assert code == 0, (args, code, out.getvalue())
    return out.getvalue()


def run_every_lesson(act: Callable[..., str], ask: Callable[..., str]) -> dict[str, list[float]]:
    """Each lesson from start to end: before each step its check is not met, after the step's
    action (as the learner's command) it is. Returns each step's seconds from action to ✓."""
    timings: dict[str, list[float]] = {}
    for lesson in LESSONS:
        out = act("lesson", "start", str(lesson.number))
        assert f"Lesson {lesson.number}, step 1 of {len(lesson.steps)}" in out
        for i in range(1, len(lesson.steps) + 1):
            before = ask("lesson", "status")
            assert f"step {i} of" in before and "✗ not yet" in before, (lesson.number, i, before)
            act("lesson", "do")
            began = time.monotonic()
            done = ask("lesson", "check")
            timings.setdefault(f"lesson {lesson.number}", []).append(time.monotonic() - began)
            assert f"✓ step {i} done" in done, (lesson.number, i, done)
        assert "is complete" in act("lesson", "status")
    return timings


def print_timings(timings: dict[str, list[float]]) -> None:
    for name, times in timings.items():
        print(f"\n{name}: check after the action took " + ", ".join(f"{t:.1f}s" for t in times))


@pytest.mark.long
@pytest.mark.timeout(600)
def test_every_lesson_runs_unattended_and_each_check_fails_before_its_action(cli, capsys, monkeypatch):
    monkeypatch.setenv("MESHDOJO_HOME", str(cli.home))
    demos = sorted({d for lesson in LESSONS for d in lesson.demos})
    cli.run("up", "--no-tui", "--demo", ",".join(demos))
    timings = run_every_lesson(lambda *args: cli.run(*args).stdout, _in_process)
    with capsys.disabled():
        print_timings(timings)

    # back to the last step of lesson 2: the retry route that step 4 applied is there again
    last = LESSONS[1]
    out = cli.run("lesson", "reset", str(last.number), "--to", str(len(last.steps))).stdout
    assert "doughnut-retries.yaml" in out
    routes = json.loads(cli.run("get", "httproute", "-o", "json").stdout)
    assert [r["metadata"]["name"] for r in routes] == ["voting-retries"]
    assert "✗ not yet" in cli.run("lesson", "status").stdout
    # and to its start: no policy at all
    cli.run("lesson", "reset", str(last.number))
    assert json.loads(cli.run("get", "-o", "json").stdout) == []


def test_lesson_commands_without_a_sandbox_say_what_to_do(tmp_path):
    c = Cli(tmp_path / "home")
    out = c.run("lesson", "start", "1", check=False)
    assert out.returncode == 1 and "meshdojo up --demo emojivoto" in out.stderr
    out = c.run("lesson", "check", check=False)
    assert out.returncode == 1 and "meshdojo lesson start 1" in out.stderr
