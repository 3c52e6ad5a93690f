"""The start screen: ``meshdojo tui`` (and ``make demo``) with no sandbox running.

The learner picks where the mesh runs — local, kind, minikube or the current kubeconfig context;
the ones this machine cannot run are greyed out with the preflight's reason — and which demos;
then each step of bringing it up is listed with its elapsed time (create the cluster, load the
image, install, apply the demos, wait for the pods). A failed step shows its error with the fix,
and offers to retry or to switch to local. When the sandbox is ready the launcher ends and the
dashboard opens.

What is available and how a sandbox starts are injected (:class:`Launch`), so the screen is
tested with the real backends and with any machine's answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Checkbox, Footer, Header, RadioButton, RadioSet, Static

from sandbox.errors import SandboxError

if TYPE_CHECKING:
    from sandbox.kube.preflight import Probes

BACKENDS = (("local", "local — processes on this machine (nothing to install)"),
            ("kind", "kind — a cluster in Docker that meshdojo makes"),
            ("minikube", "minikube — a cluster meshdojo makes"),
            ("context", "your cluster — the current kubeconfig context"))
DEMOS = ("emojivoto", "bookinfo")

Say = Callable[[str], None]


@dataclass(frozen=True)
class Launch:
    """What the screen needs from the world: each backend's availability (None: available, else
    why not) and how to start a sandbox (it reports each step to ``say``; raises SandboxError)."""

    availability: Callable[[], dict[str, str | None]]
    start: Callable[[str, list[str], Say], object]


def machine_availability(sandbox: str, probes: Probes | None = None) -> dict[str, str | None]:
    """This machine's answers: the kind/minikube preflight's first failure, the kubeconfig's current context."""
    from sandbox.kube.preflight import Probes, asked_once, checks, failures

    probes = asked_once(probes or Probes())  # kind and minikube share the engine and kubectl: ask each once
    found: dict[str, str | None] = {"local": None}
    for kind in ("kind", "minikube"):
        failed = failures(list(checks(kind, sandbox, probes)))
        found[kind] = (failed[0].hint or failed[0].message) if failed else None
    try:
        from kubernetes import config

        _contexts, current = config.list_kube_config_contexts()
        found["context"] = None if current else "the kubeconfig has no current context"
    except Exception as exc:  # no kubeconfig at all, or an unreadable one: say so
        found["context"] = f"no usable kubeconfig ({str(exc).splitlines()[0][:80]})"
    return found


def start_sandbox(sandbox: str) -> Callable[[str, list[str], Say], object]:
    """The real start: the backend chosen, remembered for the sandbox, brought up."""
    def start(kind: str, demos: list[str], say: Say) -> object:
        from sandbox.backends import backend_for
        from sandbox.backends.choice import BackendChoice, forget, remember
        from sandbox.paths import SandboxPaths

        choice, root = BackendChoice(kind=kind), SandboxPaths.for_name(sandbox).root
        if kind != "local":
            remember(root, choice)  # before it starts: a half-made cluster is then `meshdojo down`'s to remove
        else:
            earlier = backend_for(sandbox)
            if earlier.kind != "local":  # a cluster start that failed: what it made goes, not forgotten
                say(f"[   0.0s] removing what the {earlier.kind} start made")
                earlier.down()
            forget(root)
            say("[   0.0s] starting the control plane, the demo apps and their sidecars")
        return backend_for(sandbox, choice).up(demos, "24h", say)
    return start


class LauncherApp(App[str | None]):
    """Ends with ``"started"`` (then the dashboard opens) or None (the learner quit)."""

    TITLE = "meshdojo"
    CSS = """
    #choices { height: auto; }
    #backends { width: 2fr; height: auto; }
    #demos { width: 1fr; height: auto; padding-left: 2; }
    #steps { height: auto; margin-top: 1; }
    #failure { height: auto; color: $error; margin-top: 1; }
    .buttons { height: auto; margin-top: 1; }
    .buttons Button { width: auto; min-width: 12; margin-right: 2; }
    .hidden { display: none; }
    """
    BINDINGS = [Binding("q,ctrl+c", "quit_launcher", "Quit", priority=True), Binding("enter", "start", "Start", show=False)]

    def __init__(self, sandbox: str, launch: Launch, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.sandbox, self.launch, self.clock = sandbox, launch, clock
        self.available: dict[str, str | None] = {}
        self.steps: list[tuple[str, float]] = []  # (text, when it began)
        self.running = False
        self.failed: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            yield Static(f"Start sandbox {self.sandbox!r}: where should the mesh run?", classes="heading")
            with Horizontal(id="choices"):
                with RadioSet(id="backends"):
                    for i, (key, label) in enumerate(BACKENDS):
                        yield RadioButton(label, value=i == 0, id=f"backend-{key}", disabled=key != "local")
                with Vertical(id="demos"):
                    yield Static("demos")
                    for demo in DEMOS:
                        yield Checkbox(demo, value=True, id=f"demo-{demo}")
            yield Static("checking what this machine can run ...", id="reasons", classes="dim", markup=False)
            with Horizontal(classes="buttons", id="start-buttons"):
                yield Button("Start", id="start", variant="primary")
            yield Static("", id="steps", markup=False)
            yield Static("", id="failure", markup=False, classes="hidden")
            with Horizontal(classes="buttons hidden", id="failure-buttons"):
                yield Button("Retry", id="retry", variant="primary")
                yield Button("Use local instead", id="use-local")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "start screen"
        self.check_availability()
        self.set_interval(0.5, self.show_steps)

    @work(thread=True, exclusive=True, group="availability")
    def check_availability(self) -> None:
        found = self.launch.availability()
        self.call_from_thread(self.show_availability, found)

    def show_availability(self, found: dict[str, str | None]) -> None:
        self.available = found
        lines = []
        for key, label in BACKENDS:
            reason = found.get(key, "not checked")
            button = self.query_one(f"#backend-{key}", RadioButton)
            button.disabled = reason is not None
            if reason is not None:
                lines.append(f"{label.split(' —')[0]}: unavailable — {reason}")
        self.query_one("#reasons", Static).update("\n".join(lines) or "every backend is available here")

    def chosen(self) -> str:
        pressed = self.query_one("#backends", RadioSet).pressed_button
        return (pressed.id or "backend-local").removeprefix("backend-") if pressed is not None else "local"

    def demos(self) -> list[str]:
        return [d for d in DEMOS if self.query_one(f"#demo-{d}", Checkbox).value]

    # -- starting ---------------------------------------------------------------------------------
    @on(Button.Pressed, "#start")
    @on(Button.Pressed, "#retry")
    def action_start(self) -> None:
        self.start_on(self.chosen())

    def start_on(self, kind: str) -> None:
        if self.running:
            return
        demos = self.demos()
        if not demos:
            self.notify("choose at least one demo", severity="warning")
            return
        if self.available.get(kind, "not checked") is not None and kind != "local":
            self.notify(f"{kind} is not available here: {self.available.get(kind)}", severity="error")
            return
        self.running, self.failed, self.steps = True, None, []
        for widget in ("#failure", "#failure-buttons"):
            self.query_one(widget).add_class("hidden")
        self.query_one("#start-buttons").add_class("hidden")
        self.bring_up(kind, demos)

    @on(Button.Pressed, "#use-local")
    def use_local(self) -> None:
        self.query_one("#backend-local", RadioButton).value = True
        self.start_on("local")

    @work(thread=True, exclusive=True, group="start")
    def bring_up(self, kind: str, demos: list[str]) -> None:
        def say(line: str) -> None:
            text = line.split("] ", 1)[1] if line.startswith("[") and "] " in line else line
            self.call_from_thread(self.add_step, text)

        try:
            self.launch.start(kind, demos, say)
        except (SandboxError, ValueError, OSError) as exc:
            self.call_from_thread(self.show_failure, str(exc))
            return
        self.call_from_thread(self.exit, "started")

    def add_step(self, text: str) -> None:
        self.steps.append((text, self.clock()))
        self.show_steps()

    def show_steps(self) -> None:
        now = self.clock()
        lines = []
        for i, (text, began) in enumerate(self.steps):
            last = i == len(self.steps) - 1
            ended = now if last else self.steps[i + 1][1]
            mark = "✓" if not last else "×" if self.failed else "…" if self.running else "✓"
            lines.append(f" {mark} {text}  ({ended - began:.1f}s)")
        self.query_one("#steps", Static).update("\n".join(lines))

    def show_failure(self, message: str) -> None:
        self.running, self.failed = False, message
        self.show_steps()
        failure = self.query_one("#failure", Static)
        failure.update(f"That did not work:\n{message}")
        failure.remove_class("hidden")
        self.query_one("#failure-buttons").remove_class("hidden")

    def action_quit_launcher(self) -> None:
        self.exit(None)


def run(sandbox: str, launch: Launch | None = None) -> str | None:
    app = LauncherApp(sandbox, launch or Launch(lambda: machine_availability(sandbox), start_sandbox(sandbox)))
    return app.run()
