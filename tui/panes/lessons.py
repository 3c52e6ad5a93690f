"""Lessons (8): the lessons, the current step with its check running live (✓ when it passes by
itself), "show me" (d), the hint (h), the next step (n) and back to the start of the step (r)."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from sandbox import local
from sandbox.cpapi import ApiError
from sandbox.lessons import checks, model, progress
from sandbox.resources import ResourceError
from tui import actions, render, tables
from tui.actions import Action, command
from tui.panes.base import Pane
from tui.source import Snapshot

FAILURES = (ApiError, ResourceError, local.SandboxError, model.LessonError, ValueError, OSError, RuntimeError)


class Lessons(Pane):
    KEY, TITLE, FIRST = "lessons", "Lessons", "#lesson-list"
    BINDINGS = [Binding("d", "show_me", "Show me"), Binding("n", "next_step", "Next step"), Binding("h", "hint", "Hint"),
                Binding("r", "restart_step", "Reset step")]

    def compose(self) -> ComposeResult:
        table: DataTable = DataTable(id="lesson-list", cursor_type="row")
        table.add_columns("", "LESSON", "TITLE", "STEPS", "AFTER")
        yield table
        with VerticalScroll(classes="box"):
            yield Static("choose a lesson and press Enter to start it", id="lesson-step", markup=False)
        yield Static("", id="lesson-out", markup=False)

    def on_mount(self) -> None:
        self._passed: bool | None = None
        self._hint = False
        self._drawn = ""
        try:
            self._lessons = model.all_lessons()
        except model.LessonError as exc:
            self._lessons = []
            self.query_one("#lesson-step", Static).update(f"✗ {exc}")

    # -- what is shown -----------------------------------------------------------------------
    def current(self) -> tuple[model.Lesson, progress.Progress] | None:
        now = progress.load(self.sandbox)
        lesson = next((lesson for lesson in self._lessons if now and lesson.number == now.lesson), None)
        return (lesson, now) if lesson and now else None

    def show(self, snap: Snapshot) -> None:
        now = self.current()
        rows = [(str(lesson.number), ["▶" if now and now[0].number == lesson.number else "", str(lesson.number), lesson.title,
                                      str(len(lesson.steps)), lesson.source]) for lesson in self._lessons]
        tables.fill(self.query_one("#lesson-list", DataTable), rows)
        self._draw_step(now)
        if now and now[1].step < len(now[0].steps) and not snap.problem:
            self._run_check(now[0].steps[now[1].step].check, now[1].since)

    def _draw_step(self, now: tuple[model.Lesson, progress.Progress] | None) -> None:
        if now is None:
            return
        lesson, where = now
        if where.step >= len(lesson.steps):
            text = f"Lesson {lesson.number} ({lesson.title}) is complete. Choose another and press Enter."
        else:
            step = lesson.steps[where.step]
            state = {None: "… checking", True: "✓ passes — press n for the next step", False: "✗ not yet"}[self._passed]
            text = (f"Lesson {lesson.number}, step {where.step + 1} of {len(lesson.steps)}: {step.title}\n\n{step.explain}\n\n"
                    f"Do:   {command(self.sandbox, 'meshdojo ' + ' '.join(step.do))}   (d: show me)\n"
                    + (f"Here: {step.tui}\n" if step.tui else "") + f"\nCheck: {state}"
                    + (f"\nHint: {step.hint}" if self._hint else "   (h: hint)"))
        if text != self._drawn:  # once a second the same text: no layout, no redraw
            self._drawn = text
            self.query_one("#lesson-step", Static).update(text)

    @work(thread=True, group="lesson-check", exclusive=True)
    def _run_check(self, check: model.Check, since: float) -> None:
        passed, _ = checks.wait(self.sandbox, check, since, deadline=0)
        self.meshdojo.safely(self._check_done, passed)

    def _check_done(self, passed: bool) -> None:
        if passed != self._passed:
            self._passed = passed
            self._draw_step(self.current())

    # -- keys --------------------------------------------------------------------------------
    @on(DataTable.RowSelected, "#lesson-list")
    def _start_selected(self, event: DataTable.RowSelected) -> None:
        self._passed, self._hint = None, False
        self.run(actions.lesson_start(self.sandbox, int(str(event.row_key.value))), "#lesson-out")

    def action_show_me(self) -> None:
        now = self.current()
        if now is None or now[1].step >= len(now[0].steps):
            self._out("start a lesson first: choose one and press Enter")
            return
        self.run(actions.lesson_do(self.sandbox, now[0].steps[now[1].step].do), "#lesson-out")

    def action_next_step(self) -> None:
        now = self.current()
        if now is None or now[1].step >= len(now[0].steps):
            return
        lesson, where = now
        if not self._passed:
            self._hint = True
            self._out("✗ the check does not pass yet: do the step (d shows you), then n")
            self._draw_step(now)
            return
        progress.advance(self.sandbox, lesson, where)
        self.meshdojo.last_action = Action("next step", command(self.sandbox, "meshdojo lesson check"), "the next step", lambda: "")
        self._passed, self._hint = None, False
        self._out(f"✓ step {where.step + 1} done")
        self.show(self.snapshot)

    def action_hint(self) -> None:
        self._hint = not self._hint
        self._draw_step(self.current())

    def action_restart_step(self) -> None:
        now = self.current()
        if now is not None:
            self._passed, self._hint = None, False
            self.run(actions.lesson_start(self.sandbox, now[0].number, min(now[1].step + 1, len(now[0].steps))), "#lesson-out")

    def action_done(self, action: Action, text: str, ok: bool, out: str | None) -> None:
        self._out(render.action_result(action, text, ok))
        self.show(self.snapshot)

    def _out(self, text: str) -> None:
        self.query_one("#lesson-out", Static).update(text)
