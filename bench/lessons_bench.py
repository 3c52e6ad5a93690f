"""The lessons: every lesson run start to finish on a sandbox with both demos, as a learner
would with `lesson do` and `lesson check` — the time from each step's action to its check
passing. A check that reads metrics over a window (stat, edges, routes with an expectation)
waits for its window by design; every other step should be confirmed within 3 s."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import time
from pathlib import Path
from unittest.mock import patch

from bench.measure import BenchError, Section, Settings, Spread, Target, targets_table

CONFIRM_SECONDS = 3.0  # the target for a step without a deliberate delay
WINDOWED = ("stat", "edges", "routes")


def deliberate(step) -> bool:
    """Does the step's check wait for a window of metrics to fill (a delay by design)?"""
    return step.check.query in WINDOWED and bool(step.check.expect)


def run(settings: Settings, root: Path) -> Section:
    from sandbox.cli import main
    from sandbox.lessons import model

    section = Section("Lessons")
    env = {**os.environ, "MESHDOJO_HOME": str(root)}
    lessons = model.all_lessons()
    if settings.smoke:
        lessons = lessons[:1]

    def cli(*argv: str) -> str:
        done = subprocess.run([sys.executable, "-m", "sandbox.cli", *argv], env=env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise BenchError(f"meshdojo {' '.join(argv)} failed: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def check() -> str:
        """`lesson check` in this process (it waits up to the step's deadline)."""
        out = io.StringIO()
        with patch.dict(os.environ, {"MESHDOJO_HOME": str(root)}), contextlib.redirect_stdout(out):
            code = main(["lesson", "check"])
        if code != 0:
            raise BenchError(f"lesson check failed: {out.getvalue().strip()}")
        return out.getvalue()

    demos = sorted({d for lesson in lessons for d in lesson.demos})
    cli("up", "--no-tui", "--demo", ",".join(demos))
    quick: list[float] = []
    slowest: tuple[float, str] = (0.0, "")
    try:
        section.add("| lesson | action to confirmed check, per step (s) |")
        section.add("|---|---|")
        began = time.monotonic()
        for lesson in lessons:
            cli("lesson", "start", str(lesson.number))
            times = []
            for i, step in enumerate(lesson.steps, start=1):
                cli("lesson", "do")
                t0 = time.monotonic()
                if f"✓ step {i} done" not in check():
                    raise BenchError(f"lesson {lesson.number} step {i}: its check did not pass")
                took = time.monotonic() - t0
                times.append(f"*{took:.1f}*" if deliberate(step) else f"{took:.1f}")
                if not deliberate(step):
                    quick.append(took)
                    slowest = max(slowest, (took, f"lesson {lesson.number} step {i}"))
            section.add(f"| {lesson.number:02d} {lesson.title} | {', '.join(times)} |")
        total = time.monotonic() - began
    finally:
        subprocess.run([sys.executable, "-m", "sandbox.cli", "down"], env=env, capture_output=True, timeout=120)
    spread = Spread.of(quick)
    section.figure("step confirmed seconds (median)", spread.median)
    section.figure("step confirmed seconds (max)", spread.high)
    section.add()
    section.add(f"- *italic*: the check reads metrics over a window and waits for it by design. The other {len(quick)} steps "
                f"were confirmed after {spread.show('.2f', ' s')}; the slowest, {slowest[1]}, after {slowest[0]:.2f} s. "
                f"All {len(lessons)} lessons took {total / 60:.1f} min, actions included.")
    targets_table(section, [Target(f"a step without a deliberate delay confirmed ≤ {CONFIRM_SECONDS:g} s",
                                   f"max {spread.high:.2f} s", spread.high <= CONFIRM_SECONDS)])
    return section
