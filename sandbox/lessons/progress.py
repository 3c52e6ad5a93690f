"""Where a learner is: the lesson, the step, since when — kept in the sandbox's ``lesson.json``
— and how a sandbox is brought to the start of any step (``reset``)."""

from __future__ import annotations

import contextlib
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controlplane.statefiles import write_json
from sandbox.lessons.model import Lesson
from sandbox.paths import SandboxPaths

PROGRESS_FILE = "lesson.json"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Progress:
    lesson: int
    step: int  # 0-based; == len(steps) when the lesson is done
    since: float  # when the current step began (wall clock, for 'ran' checks)
    passed: list[int]

    def to_json(self) -> dict[str, Any]:
        return {"lesson": self.lesson, "step": self.step, "since": self.since, "passed": self.passed}


def load(sandbox: str) -> Progress | None:
    try:
        raw = json.loads((SandboxPaths.for_name(sandbox).root / PROGRESS_FILE).read_text())
        return Progress(int(raw["lesson"]), int(raw["step"]), float(raw["since"]), list(raw.get("passed", [])))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(sandbox: str, progress: Progress) -> None:
    write_json(SandboxPaths.for_name(sandbox).root / PROGRESS_FILE, progress.to_json())


def advance(sandbox: str, lesson: Lesson, now: Progress) -> Progress:
    """The current step passed: the next one begins now."""
    nxt = Progress(lesson.number, now.step + 1, time.time(), [*now.passed, now.step + 1])
    save(sandbox, nxt)
    return nxt


def run_verb(sandbox: str, argv: tuple[str, ...] | list[str], quiet: bool = False) -> tuple[int, str]:
    """Run one of meshdojo's commands against the sandbox, as the learner would type it."""
    from sandbox.cli import main

    # a lesson's example files are named from the meshdojo directory; found from anywhere
    argv = [str(ROOT / a) if a.startswith(("demo-apps/", "lessons/")) and not Path(a).exists() and (ROOT / a).exists() else a
            for a in argv]
    out = io.StringIO()
    with contextlib.ExitStack() as stack:
        if quiet:  # the terminal UI shows the output itself (its screen must not be written over)
            stack.enter_context(contextlib.redirect_stdout(out))
            stack.enter_context(contextlib.redirect_stderr(out))
        code = main([*argv, "--name", sandbox])
    return code, out.getvalue()


def clear(sandbox: str) -> None:
    """No policy, no fault and no Linkerd annotation on a Service in force: where every lesson starts from."""
    from sandbox.backends import backend_for
    from sandbox.resources import api_for

    api = api_for(sandbox)
    for item in api.call("GET", "/v1/policies")["items"]:
        doc = item["document"]
        api.call("DELETE", f"/v1/policies/{doc['kind']}/{doc['metadata'].get('namespace', 'default')}/{doc['metadata']['name']}")
    api.call("DELETE", "/v1/netfaults")
    for service in api.call("GET", "/v1/services")["services"]:
        if service.get("annotations"):
            backend_for(sandbox).annotate_service(service["namespace"], service["name"], {}, service["annotations"])


def reset(sandbox: str, lesson: Lesson, step: int) -> list[str]:
    """The sandbox as steps 1..step-1 leave it: policies and faults cleared, the lesson's setup
    run, then the actions of the earlier steps that change state. Returns the commands run."""
    clear(sandbox)
    ran = []
    for argv in (*lesson.setup, *(s.do for s in lesson.steps[:step - 1] if s.keeps)):
        code, out = run_verb(sandbox, argv, quiet=True)
        if code != 0:
            raise RuntimeError(f"resetting lesson {lesson.number}: `meshdojo {' '.join(argv)}` failed: {out.strip()[-300:]}")
        ran.append("meshdojo " + " ".join(argv))
    save(sandbox, Progress(lesson.number, step - 1, time.time(), []))
    return ran
