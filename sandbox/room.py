"""``meshdojo room``: where each attendee of a room is — every sandbox under meshdojo's home, its
lesson and step (from its ``lesson.json``), since when, and whether it runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sandbox.lessons import model, progress
from sandbox.paths import home


def attendees(root: Path | None = None) -> list[str]:
    """The sandboxes that exist (a folder with a sandbox's files), by name."""
    base = root or home()
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))


def row(name: str, lessons: dict[int, model.Lesson], now: float, running: bool | None) -> dict[str, Any]:
    """One attendee's line. Pure but for reading its progress file."""
    where = progress.load(name)
    out: dict[str, Any] = {"attendee": name, "running": running, "lesson": None, "lesson_title": None, "step": None,
                           "steps": None, "step_title": None, "seconds_on_step": None, "passed": 0}
    if where is None:
        return out
    lesson = lessons.get(where.lesson)
    out |= {"lesson": where.lesson, "step": where.step + 1, "passed": len(where.passed),
            "seconds_on_step": round(max(now - where.since, 0.0), 1)}
    if lesson is not None:
        out |= {"lesson_title": lesson.title, "steps": len(lesson.steps),
                "step_title": lesson.steps[where.step].title if where.step < len(lesson.steps) else "done"}
    return out


def rows(now: float | None = None) -> list[dict[str, Any]]:
    from sandbox.backends import backend_for
    from sandbox.errors import SandboxError

    lessons = {lesson.number: lesson for lesson in model.all_lessons()}
    out = []
    for name in attendees():
        try:
            running: bool | None = backend_for(name).status() is not None
        except (SandboxError, ValueError, OSError):
            running = None  # a cluster that does not answer: unknown, not down
        out.append(row(name, lessons, now if now is not None else time.time(), running))
    return out


def table(found: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    lines = [("ATTENDEE", "SANDBOX", "LESSON", "STEP", "ON IT FOR")]
    for r in found:
        state = {True: "running", False: "stopped", None: "unknown"}[r["running"]]
        if r["lesson"] is None:
            lines.append((r["attendee"], state, "-", "not started", "-"))
            continue
        lesson = f"{r['lesson']:02d} {r['lesson_title'] or '?'}"
        step = f"{r['step']}/{r['steps']} {r['step_title']}" if r["steps"] else str(r["step"])
        minutes, seconds = divmod(int(r["seconds_on_step"]), 60)
        lines.append((r["attendee"], state, lesson, step, f"{minutes}m{seconds:02d}s"))
    return lines
