"""Lessons as files: ``lessons/NN-topic.md`` — Markdown for the learner, with YAML front matter
that holds the steps. Read once into frozen values; a broken lesson is an error naming the
file, the step and the field.

    ---
    title: Meet the mesh
    source: Linkerd's getting started
    demos: [emojivoto]
    setup:                         # run by `lesson start` and `lesson reset` (meshdojo's verbs)
    - [uninject, deploy/web]
    steps:
    - title: Mesh the web front end
      explain: |
        ...
      do: [inject, deploy/web]     # the action: the CLI command ("show me" runs it)
      tui: "Topology (2): select web, press i"
      check:                       # a query of the sandbox, a condition, a deadline
        query: status              # status | deployments | stat | edges | routes | policies | annotations | spans | ran
        where: {deployment: web}
        expect: {meshed: true, ready: true}
        deadline: 30s
      hint: ...
    ---
    (Markdown: the lesson's introduction)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controlplane.durations import InvalidDuration, parse_duration
from controlplane.fields import FieldReader

LESSON_DIR = Path(__file__).resolve().parents[2] / "lessons"
QUERIES = ("status", "deployments", "stat", "edges", "routes", "authz", "policies", "annotations", "spans", "secrets", "ran")
OPERATORS = ("==", "!=", "<", "<=", ">", ">=")
_FILE = re.compile(r"(\d\d)-[a-z0-9-]+\.md")


class LessonError(ValueError):
    pass


@dataclass(frozen=True)
class Check:
    query: str
    params: tuple[tuple[str, str], ...]  # the query's parameters (namespace, service, command ...)
    where: tuple[tuple[str, Any], ...]  # a row must have these values ...
    expect: tuple[tuple[str, str, Any], ...]  # ... and meet these (field, operator, value)
    absent: bool  # true: passes when no row matches
    deadline: float


@dataclass(frozen=True)
class Step:
    title: str
    explain: str
    do: tuple[str, ...]  # meshdojo's argv, e.g. ("inject", "deploy/web")
    tui: str
    check: Check
    hint: str
    keeps: bool  # its action changes the sandbox's state (replayed by `reset` to a later step)


@dataclass(frozen=True)
class Lesson:
    number: int
    slug: str
    title: str
    source: str
    demos: tuple[str, ...]
    setup: tuple[tuple[str, ...], ...]
    steps: tuple[Step, ...]
    body: str
    path: Path

    @property
    def command(self) -> str:
        return f"meshdojo lesson start {self.number}"


class _Reader(FieldReader):
    unknown_hint = "a lesson reads"

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, field: str, message: str) -> LessonError:
        return LessonError(f"{self.path}: {field}: {message}")

    def argv(self, value: Any, field: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value or not all(isinstance(a, str) and a for a in value):
            raise self.fail(field, "expected meshdojo's arguments as a list of strings, e.g. [inject, deploy/web]")
        return tuple(value)


def load(path: Path) -> Lesson:
    r = _Reader(path)
    match = _FILE.fullmatch(path.name)
    if match is None:
        raise r.fail("(file name)", "expected NN-topic.md, e.g. 01-meet-the-mesh.md")
    text = path.read_text()
    if not text.startswith("---\n") or "\n---\n" not in text[4:]:
        raise r.fail("(front matter)", "expected YAML between a first line '---' and a later line '---'")
    front, body = text[4:].split("\n---\n", 1)
    try:
        raw = yaml.safe_load(front)
    except yaml.YAMLError as exc:
        raise r.fail("(front matter)", f"not valid YAML: {exc}") from None
    top = r.obj(raw, "", {"title", "source", "demos", "setup", "steps"}, {"title", "demos", "steps"})
    demos = top["demos"]
    if not isinstance(demos, list) or not demos or not all(d in ("emojivoto", "bookinfo") for d in demos):
        raise r.fail("demos", "expected a list of emojivoto and/or bookinfo")
    setup = tuple(r.argv(a, f"setup[{i}]") for i, a in enumerate(_list(r, top.get("setup", []), "setup")))
    steps = tuple(_step(r, s, f"steps[{i}]") for i, s in enumerate(_list(r, top["steps"], "steps", non_empty=True)))
    return Lesson(int(match[1]), path.stem, r.string(top["title"], "title"), str(top.get("source", "")), tuple(demos),
                  setup, steps, body.strip(), path)


def _list(r: _Reader, value: Any, field: str, non_empty: bool = False) -> list:
    if not isinstance(value, list) or (non_empty and not value):
        raise r.fail(field, "expected a non-empty list" if non_empty else "expected a list")
    return value


def _step(r: _Reader, raw: Any, where: str) -> Step:
    s = r.obj(raw, where, {"title", "explain", "do", "tui", "check", "hint", "keeps"}, {"title", "explain", "do", "check", "hint"})
    keeps = s.get("keeps", False)
    if not isinstance(keeps, bool):
        raise r.fail(f"{where}.keeps", "expected true or false")
    return Step(r.string(s["title"], f"{where}.title"), r.string(s["explain"], f"{where}.explain").strip(),
                r.argv(s["do"], f"{where}.do"), str(s.get("tui", "")), _check(r, s["check"], f"{where}.check"),
                r.string(s["hint"], f"{where}.hint").strip(), keeps)


def _check(r: _Reader, raw: Any, where: str) -> Check:
    c = r.obj(raw, where, {"query", "params", "where", "expect", "absent", "deadline"}, {"query"})
    if c["query"] not in QUERIES:
        raise r.fail(f"{where}.query", f"expected one of {', '.join(QUERIES)}, got {c['query']!r}")
    params = c.get("params", {})
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        raise r.fail(f"{where}.params", "expected a mapping of strings, e.g. {namespace: emojivoto}")
    if c["query"] == "ran" and "command" not in params:
        raise r.fail(f"{where}.params.command", "a 'ran' check needs the command the learner must run, e.g. stat")
    if c["query"] == "authz" and "target" not in params:
        raise r.fail(f"{where}.params.target", "an 'authz' check needs the deployment, e.g. {target: deploy/web}")
    match = c.get("where", {})
    if not isinstance(match, dict):
        raise r.fail(f"{where}.where", "expected a mapping of field to value")
    expect = []
    for field, cond in (c.get("expect") or {}).items():
        if isinstance(cond, dict):
            if len(cond) != 1 or next(iter(cond)) not in OPERATORS:
                raise r.fail(f"{where}.expect.{field}", f"expected one operator of {' '.join(OPERATORS)}, e.g. {{'<': 0.9}}")
            op, value = next(iter(cond.items()))
        else:
            op, value = "==", cond
        expect.append((str(field), op, value))
    absent = c.get("absent", False)
    if not isinstance(absent, bool):
        raise r.fail(f"{where}.absent", "expected true or false")
    try:
        deadline = parse_duration(str(c.get("deadline", "30s")))
    except InvalidDuration as exc:
        raise r.fail(f"{where}.deadline", str(exc)) from None
    return Check(c["query"], tuple(sorted(params.items())), tuple(sorted(match.items())), tuple(expect), absent, deadline)


def all_lessons(directory: Path = LESSON_DIR) -> list[Lesson]:
    return [load(p) for p in sorted(directory.glob("*.md"))]


def find(number: int, directory: Path = LESSON_DIR) -> Lesson:
    lessons = {lesson.number: lesson for lesson in all_lessons(directory)}
    if number not in lessons:
        raise LessonError(f"no lesson {number}; the lessons are {', '.join(str(n) for n in sorted(lessons))} "
                          "(meshdojo lesson list)")
    return lessons[number]
