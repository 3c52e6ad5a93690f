"""``lesson``: guided lessons whose steps check themselves (see docs/lessons.md).

    meshdojo lesson list | start N | status | check | do | next | reset N
"""

from __future__ import annotations

import argparse
import textwrap
import time

from sandbox.cli.common import add_name, fail, print_table


def _lesson_of(args: argparse.Namespace):
    from sandbox.lessons import model, progress

    now = progress.load(args.name)
    if now is None:
        raise model.LessonError(f"no lesson started in sandbox {args.name!r}: `meshdojo lesson list`, then `meshdojo lesson start 1`")
    return model.find(now.lesson), now


def _current_step(args: argparse.Namespace):
    """(lesson, progress, step) of the step in progress; an exit status instead when there is none
    (no lesson started: an error; the lesson complete: it says so)."""
    from sandbox.lessons import model

    try:
        lesson, now = _lesson_of(args)
    except model.LessonError as exc:
        return fail(str(exc))
    if now.step >= len(lesson.steps):
        _print_step(lesson, now.step)
        return 0
    return lesson, now, lesson.steps[now.step]


def _print_step(lesson, index: int) -> None:
    if index >= len(lesson.steps):
        print(f"Lesson {lesson.number} ({lesson.title}) is complete. Next: `meshdojo lesson list`.")
        return
    step = lesson.steps[index]
    print(f"Lesson {lesson.number}, step {index + 1} of {len(lesson.steps)}: {step.title}\n")
    print(textwrap.indent(step.explain, "  "))
    print(f"\n  Do:    meshdojo {' '.join(step.do)}")
    if step.tui:
        print(f"  TUI:   {step.tui}")
    print("  Then:  meshdojo lesson check   (or `meshdojo lesson do` to have it done for you)")


def _list(args: argparse.Namespace) -> int:
    from sandbox.lessons import model, progress

    try:
        lessons = model.all_lessons()
    except model.LessonError as exc:
        return fail(str(exc))
    now = progress.load(args.name)
    rows = [("", "LESSON", "TITLE", "STEPS", "DEMOS", "AFTER")]
    for lesson in lessons:
        mark = "▶" if now and now.lesson == lesson.number else ""
        rows.append((mark, str(lesson.number), lesson.title, str(len(lesson.steps)), ",".join(lesson.demos), lesson.source))
    print_table(rows)
    print("\nStart one with: meshdojo lesson start N")
    return 0


def _start(args: argparse.Namespace, step: int = 1) -> int:
    from sandbox import local
    from sandbox.backends import backend_for
    from sandbox.lessons import model, progress

    try:
        lesson = model.find(args.number)
        st = backend_for(args.name).status()
        if st is None:
            return fail(f"sandbox {args.name!r} is not running: `meshdojo up --demo {','.join(lesson.demos)}"
                        f"{'' if args.name == 'default' else ' --name ' + args.name}` first")
        missing = [d for d in lesson.demos if d not in st.get("demos", [])]
        if missing:
            return fail(f"lesson {lesson.number} needs the {', '.join(missing)} demo: `meshdojo down`, then "
                        f"`meshdojo up --demo {','.join(sorted(set(st.get('demos', [])) | set(lesson.demos)))}`")
        if not 1 <= step <= len(lesson.steps):
            return fail(f"lesson {lesson.number} has steps 1 to {len(lesson.steps)}")
        ran = progress.reset(args.name, lesson, step)
    except (model.LessonError, local.SandboxError, RuntimeError) as exc:
        return fail(str(exc))
    print(f"Lesson {lesson.number}: {lesson.title}" + (f" (after {lesson.source})" if lesson.source else ""))
    if step == 1 and lesson.body:
        print("\n" + textwrap.indent(lesson.body, "  ") + "\n")
    if ran:
        print("The sandbox was set to the start of this step: policies, faults and Linkerd annotations cleared, then "
              + "; ".join(f"`{r}`" for r in ran) + "\n")
    _print_step(lesson, step - 1)
    return 0


def _status(args: argparse.Namespace) -> int:
    from sandbox.lessons import checks

    current = _current_step(args)
    if isinstance(current, int):
        return current
    lesson, now, step = current
    _print_step(lesson, now.step)
    ok, _ = checks.wait(args.name, step.check, now.since, deadline=0)
    print(f"\n  Check now: {'✓ passes — `meshdojo lesson check` to go on' if ok else '✗ not yet'}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from sandbox.lessons import checks, progress

    current = _current_step(args)
    if isinstance(current, int):
        return current
    lesson, now, step = current
    print(f"Checking step {now.step + 1}: {step.title} (up to {step.check.deadline:g}s) ...", flush=True)
    ok, took = checks.wait(args.name, step.check, now.since)
    if not ok:
        print(f"✗ not yet.\n  Hint: {step.hint}")
        return 1
    print(f"✓ step {now.step + 1} done ({took:.1f}s)\n")
    _print_step(lesson, progress.advance(args.name, lesson, now).step)
    return 0


def _do(args: argparse.Namespace) -> int:
    from sandbox.lessons import progress

    current = _current_step(args)
    if isinstance(current, int):
        return current
    _, _, step = current
    print(f"$ meshdojo {' '.join(step.do)}", flush=True)
    code, _ = progress.run_verb(args.name, step.do)
    if code == 0:
        print("\nNow: meshdojo lesson check")
    return code


def _next(args: argparse.Namespace) -> int:
    from sandbox.lessons import model, progress

    try:
        lesson, now = _lesson_of(args)
    except model.LessonError as exc:
        return fail(str(exc))
    step = min(now.step + 1, len(lesson.steps))
    progress.save(args.name, progress.Progress(lesson.number, step, time.time(), now.passed))
    _print_step(lesson, step)
    return 0


def _reset(args: argparse.Namespace) -> int:
    from sandbox.lessons import model, progress

    if args.step is None:
        try:
            args.number = (progress.load(args.name) or progress.Progress(0, 0, 0, [])).lesson
            if not args.number:
                raise model.LessonError("no lesson started: `meshdojo lesson start N`")
        except model.LessonError as exc:
            return fail(str(exc))
        return _start(args, args.to)
    args.number = args.step
    return _start(args, args.to)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lesson", help="guided lessons whose steps check themselves: lesson list, start N, check ...",
                       description="Guided lessons (lessons/*.md): each step says what to do, and `lesson check` confirms "
                                   "it by asking the sandbox.")
    lsub = p.add_subparsers(dest="lesson_command", metavar="COMMAND")
    lsub.required = True
    for name, helptext, handler in (("list", "the lessons, and where you are", _list),
                                    ("status", "the current step, and whether its check passes now", _status),
                                    ("check", "confirm the current step (waits up to its deadline), then go on", _check),
                                    ("do", "run the current step's command for you (show me)", _do),
                                    ("next", "skip to the next step without its check", _next)):
        q = lsub.add_parser(name, help=helptext)
        q.set_defaults(handler=handler)
        add_name(q)
    start = lsub.add_parser("start", help="start lesson N (the sandbox is set to its beginning)")
    start.add_argument("number", type=int, help="the lesson's number, e.g. 1")
    start.set_defaults(handler=lambda a: _start(a, 1))
    add_name(start)
    reset = lsub.add_parser("reset", help="back to the start of a step: reset [LESSON] --to STEP (policies and faults as "
                                          "the earlier steps leave them)")
    reset.add_argument("step", type=int, nargs="?", metavar="LESSON", help="the lesson (default: the current one)")
    reset.add_argument("--to", type=int, default=1, metavar="STEP", help="the step to go back to (default 1)")
    reset.set_defaults(handler=_reset)
    add_name(reset)
