"""What every screen of the UI is: a pane that owns its widgets, its keys and their handlers,
is shown the newest snapshot when it is visible, and runs its actions through the app."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.containers import Vertical
from textual.widgets import Button, Checkbox, Input, Select, TextArea

from tui.actions import Action
from tui.source import Snapshot

if TYPE_CHECKING:
    from tui.app import MeshdojoApp

FORM_CONTROLS = (Input, TextArea, Select, Checkbox, Button)


class Pane(Vertical, can_focus=True):
    KEY: ClassVar[str] = ""
    TITLE: ClassVar[str] = ""
    SHORT: ClassVar[str] = ""  # the title on a narrow terminal, when it is long
    FIRST: ClassVar[str | None] = None  # the widget to focus when the pane is shown (never a text field)

    @property
    def meshdojo(self) -> MeshdojoApp:
        return self.app  # type: ignore[return-value]

    @property
    def sandbox(self) -> str:
        return self.meshdojo.sandbox

    @property
    def snapshot(self) -> Snapshot:
        return self.meshdojo.snapshot

    def show(self, snap: Snapshot) -> None:
        """Called with each new snapshot while the pane is visible (no I/O here)."""

    def shown(self) -> None:
        """The pane became visible: focus its first widget, so one-key shortcuts work."""
        (self.query_one(self.FIRST) if self.FIRST else self).focus()

    def run(self, action: Action, out: str | None = None) -> None:
        self.meshdojo.perform(action, self, out)

    def action_done(self, action: Action, text: str, ok: bool, out: str | None) -> None:
        """An action's result, back from its worker (overridden where the pane shows it)."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """One-key shortcuts never fire while a form control has the keyboard (typing in a Select
        or on a button must not clear every fault)."""
        if len(self._binding_keys.get(action, "x")) == 1 and isinstance(self.app.focused, FORM_CONTROLS):
            return False
        return True

    @property
    def _binding_keys(self) -> dict[str, str]:
        return {b.action.split("(")[0]: b.key for b in self.BINDINGS if hasattr(b, "action")}
