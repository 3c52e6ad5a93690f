"""Faults (5): one form for every fault a learner can cause — HTTP aborts and delays (on a
service, or one instance: pod/emoji-1), network faults on an edge, kills, scaling, injection —
previewed live as the CLI command and YAML, applied with a (or enter), cleared with x."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Select, Static

from tui import actions, render
from tui.actions import Action
from tui.panes.base import Pane
from tui.source import Snapshot

KINDS = [
    ("HTTP abort (status, percent)", "http-abort"), ("HTTP delay (duration, percent)", "http-delay"),
    ("network latency", "net-latency"), ("network bandwidth", "net-bandwidth"), ("network reset", "net-reset"),
    ("network blackhole", "net-blackhole"), ("network partition (deploy/A deploy/B)", "net-partition"),
    ("kill an instance or deployment", "kill"), ("kill the control plane", "kill-controlplane"), ("scale", "scale"),
    ("inject a sidecar", "inject"), ("uninject (no sidecar)", "uninject"), ("intruder test", "intruder"),
]
HINTS = {  # (target example, value example)
    "http-abort": ("svc/voting or pod/voting-0", "503 30"), "http-delay": ("svc/emoji", "1s 50"), "net-latency": ("svc/emoji", "300ms"),
    "net-bandwidth": ("svc/emoji", "10KB/s"), "net-reset": ("svc/voting", ""), "net-blackhole": ("svc/voting", ""),
    "net-partition": ("deploy/web deploy/emoji", ""), "kill": ("emoji or emoji-0", ""), "kill-controlplane": ("controlplane", ""),
    "scale": ("deploy/emoji", "2"), "inject": ("deploy/emoji", ""), "uninject": ("deploy/emoji", ""), "intruder": ("svc/web", ""),
}
DEFAULT_FOR = "5m"  # as `meshdojo fault inject` and `fault net`


class FormError(ValueError):
    """What is wrong with the form, as a sentence for the learner."""


class Faults(Pane):
    KEY, TITLE, FIRST = "faults", "Faults", None  # the pane itself: its keys (p, a, x) show in the footer
    BINDINGS = [Binding("p", "preview", "Preview"), Binding("a", "apply", "Apply"), Binding("x", "clear", "Clear all")]

    def compose(self) -> ComposeResult:
        yield Select(KINDS, value="http-abort", allow_blank=False, id="fault-kind")
        with Horizontal(classes="filters"):
            yield Input(placeholder="target", id="fault-target")
            yield Input(placeholder="value", id="fault-value")
        with Horizontal(classes="filters"):
            yield Input(value=DEFAULT_FOR, placeholder="for (auto-revert), e.g. 5m", id="fault-for")
            yield Input(placeholder="from deploy/X (optional)", id="fault-from")
        with Horizontal(classes="buttons"):
            yield Button("Preview p", id="fault-preview")
            yield Button("Apply a", id="fault-apply", variant="warning")
            yield Button("Clear all x", id="fault-clear")
        with VerticalScroll(classes="box"):
            yield Static("pick a fault, fill target and value, preview it, apply it; every fault reverts by itself",
                         id="fault-out", markup=False)

    def on_mount(self) -> None:
        for button in self.query(Button):
            button.can_focus = False  # keys do what buttons do; a focused button would swallow typing
        self._hint("http-abort")

    def fields(self) -> dict[str, str]:
        return {k: self.query_one(f"#fault-{k}", Input).value.strip() for k in ("target", "value", "for", "from")} | {
            "kind": str(self.query_one("#fault-kind", Select).value)}

    def build(self) -> Action:
        """The action the form describes (no I/O); FormError says what is missing or wrong."""
        f = self.fields()
        kind, target, value, duration, source = f["kind"], f["target"], f["value"], f["for"] or DEFAULT_FOR, f["from"] or None
        name = self.sandbox
        if not target and kind != "kill-controlplane":
            raise FormError(f"target: type what to break, e.g. {HINTS[kind][0]}")
        if kind in ("http-abort", "http-delay"):
            instance = target.partition("/")[2] if target.startswith("pod/") else None
            ns, service = self.meshdojo.service_of_instance(instance) if instance else self.meshdojo.service(target)
            parts = value.split()
            percent = _percent(parts[1] if len(parts) > 1 else "100")
            if kind == "http-abort":
                if not parts or not parts[0].isdigit() or not 200 <= int(parts[0]) <= 599:
                    raise FormError("value: an HTTP status and a percentage, e.g. 503 30")
                return actions.http_fault(name, service, ns, int(parts[0]), percent, None, duration, instance)
            return actions.http_fault(name, service, ns, None, percent, parts[0] if parts else "1s", duration, instance)
        if kind.startswith("net-"):
            net = kind[4:]
            targets = target.split()
            instance = None
            if targets and targets[0].startswith("pod/"):
                instance = targets[0][4:]
                targets = [f"svc/{self.meshdojo.service_of_instance(instance)[1]}"]
            if net in ("latency", "bandwidth") and not value:
                raise FormError(f"value: the {net}, e.g. {HINTS[kind][1]}")
            return actions.net_fault(name, net, targets, source, value if net == "latency" else None,
                                     value if net == "bandwidth" else None, duration, instance)
        if kind == "kill-controlplane":
            return actions.kill(name, "controlplane")
        if kind == "kill":
            return actions.kill(name, target.partition("/")[2] or target)
        if kind == "intruder":
            ns, service = self.meshdojo.service(target)
            return actions.intruder(name, service, ns)
        ns, deployment = self.meshdojo.deployment(target)
        if kind == "scale":
            if not value.isdigit() or not 0 <= int(value) <= 20:
                raise FormError("value: a number of instances from 0 to 20, e.g. 2")
            return actions.scale(name, deployment, ns, int(value))
        return actions.inject(name, deployment, ns, kind == "inject")

    def _out(self, text: str) -> None:
        self.query_one("#fault-out", Static).update(text)

    def _form(self) -> Action | None:
        try:
            return self.build()
        except ValueError as exc:
            self._out(f"✗ {exc}")
            return None

    @on(Button.Pressed, "#fault-preview")
    def action_preview(self) -> None:
        if (action := self._form()) is not None:
            self.meshdojo.last_action = action
            self._out(action.explain())

    @on(Button.Pressed, "#fault-apply")
    @on(Input.Submitted)
    def action_apply(self) -> None:
        if (action := self._form()) is not None:
            self.run(action, "#fault-out")

    @on(Button.Pressed, "#fault-clear")
    def action_clear(self) -> None:
        self.meshdojo.confirm("Clear every fault?", "Every HTTP and network fault of this sandbox is removed.",
                              lambda: self.run(actions.clear_faults(self.sandbox), "#fault-out"))

    @on(Select.Changed, "#fault-kind")
    def _kind(self, event: Select.Changed) -> None:
        self._hint(str(event.value))
        self._edited()

    @on(Input.Changed)
    def _edited(self) -> None:
        """The preview follows the form as it is filled in (built from what is on screen)."""
        try:
            self._out(self.build().explain())
        except ValueError as exc:
            self._out(f"… {exc}")

    def _hint(self, kind: str) -> None:
        target, value = HINTS.get(kind, ("", ""))
        self.query_one("#fault-target", Input).placeholder = f"target, e.g. {target}"
        self.query_one("#fault-value", Input).placeholder = f"value, e.g. {value}" if value else "(no value)"

    def action_done(self, action: Action, text: str, ok: bool, out: str | None) -> None:
        self._out(render.action_result(action, text, ok))

    def show(self, snap: Snapshot) -> None:
        pass


def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise FormError(f"value: {text!r} is not a percentage; write a number from 0 to 100, e.g. 30") from None
    if not 0 <= value <= 100:
        raise FormError(f"value: {value:g}% is outside 0 to 100")
    return value
