"""The UI's overlays: a scrollable text (help, an action's CLI and YAML), the question on quit,
and a yes/no before anything destructive."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class TextScreen(ModalScreen[None]):
    """A text overlay; arrows and page keys scroll it, esc (or q, enter) closes it."""

    BINDINGS = [Binding("escape,q,enter", "dismiss", "Close")]

    def __init__(self, title: str, body: str) -> None:
        super().__init__()
        self._title, self._body = title, body

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self._title, classes="heading", markup=False)
            with VerticalScroll(id="overlay-body"):
                yield Static(self._body, markup=False)
            yield Static("↑↓ PgUp PgDn scroll · esc closes", classes="dim")

    def on_mount(self) -> None:
        self.query_one("#overlay-body").focus()


class QuitScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("s", "choose('stop')", "Stop the sandbox"), Binding("l", "choose('leave')", "Leave it running"),
                Binding("escape,n", "choose(None)", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("Quit meshdojo", classes="heading")
            yield Static("s: stop the sandbox (every process it started)\nl: leave it running (come back: meshdojo tui)\nesc: cancel")

    def action_choose(self, choice: str | None) -> None:
        self.dismiss(choice)


class ConfirmScreen(ModalScreen[bool]):
    """y to go ahead, anything else to cancel."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape,q", "answer(False)", "No")]

    def __init__(self, question: str, consequence: str) -> None:
        super().__init__()
        self._question, self._consequence = question, consequence

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self._question, classes="heading", markup=False)
            yield Static(self._consequence, markup=False)
            yield Static("y: yes · n or esc: no", classes="dim")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
