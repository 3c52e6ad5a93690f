"""Policies (6): the resources in force (d deletes the selected one, after asking), the demos'
example policies — choosing one previews it in the editor with what it teaches, a applies it —
one-key toggles for the common lessons (t), and a YAML editor (ctrl+s applies; errors name the
field and move the cursor to its line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Input, Select, Static, TextArea

from sandbox.cpapi import ApiError
from tui import actions, render, tables
from tui.actions import Action, command
from tui.panes.base import Pane
from tui.source import Snapshot

TOGGLES = [("retries", "retries"), ("timeout 500ms", "timeout"), ("50/50 split", "split"), ("mirror to a version", "mirror"),
           ("STRICT mTLS", "strict"), ("deny an edge", "deny")]


class Policies(Pane):
    KEY, TITLE, FIRST = "policies", "Policies", "#resources"
    BINDINGS = [Binding("a", "apply_yaml", "Apply YAML"), Binding("ctrl+s", "apply_yaml", "Apply YAML", show=False),
                Binding("t", "toggle", "Toggle"), Binding("d", "delete", "Delete")]

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="policy-left"):
                table: DataTable = DataTable(id="resources", cursor_type="row")
                table.add_columns("KIND", "NAMESPACE", "NAME", "LEFT")
                yield table
                yield Select([], prompt="example policies: choose to preview", id="examples")
                with Horizontal(classes="filters"):
                    yield Input(placeholder="service: emoji", id="toggle-svc")
                    yield Select(TOGGLES, value="retries", allow_blank=False, id="toggle-kind")
                yield Horizontal(Button("Toggle t", id="toggle-go"), Button("Delete d", id="policy-delete"), classes="buttons")
            with Vertical(id="policy-right"):
                yield TextArea(id="yaml", soft_wrap=False, show_line_numbers=True)
                yield Button("Apply a / ctrl+s", id="yaml-apply", variant="primary")
                yield Static("enter on a resource, or an example, shows its YAML here; edit it and apply with a (or ctrl+s "
                             "while editing)", id="yaml-errors", markup=False, classes="box")

    def on_mount(self) -> None:
        for button in self.query(Button):
            button.can_focus = False
        self.query_one("#examples", Select).set_options(
            [(actions.example_label(p), str(p)) for p in actions.example_policies()])

    def show(self, snap: Snapshot) -> None:
        if not self.query_one("#toggle-svc", Input).value and snap.service_names:
            self.query_one("#toggle-svc", Input).value = "emoji" if ("emojivoto", "emoji") in snap.service_names else snap.service_names[0][1]
        if snap.problem:
            return
        rows = []
        for item in snap.policies:
            doc = item["document"]
            meta = doc.get("metadata", {})
            left = render.remaining(item["expiresAt"] - snap.taken) if item.get("expiresAt") else "-"
            rows.append((_key(item), [item.get("kind") or doc.get("kind", "?"), meta.get("namespace", ""), meta.get("name", ""), left]))
        tables.fill(self.query_one("#resources", DataTable), rows)

    @on(DataTable.RowSelected, "#resources")
    def _resource(self, event: DataTable.RowSelected) -> None:
        item = next((i for i in self.snapshot.policies if _key(i) == event.row_key.value), None)
        if item is not None:
            self.query_one("#yaml", TextArea).load_text(yaml.safe_dump(item["document"], sort_keys=False))
            self._out("\n".join(x for x in ("its YAML is in the editor: change it and apply with a",
                                            render.status_text(item.get("status"))) if x))

    @on(Select.Changed, "#examples")
    def _example(self, event: Select.Changed) -> None:
        """Choosing an example previews it; applying it is a separate step (a)."""
        if isinstance(event.value, str):
            lesson, text = actions.preview_example(Path(event.value))
            self.query_one("#yaml", TextArea).load_text(text)
            path = Path(event.value).relative_to(actions.DEMO_ROOT.parent)
            self._out(f"preview of {path}: {lesson}\na applies it, as: {command(self.sandbox, f'meshdojo apply -f {path}')}")

    @on(Button.Pressed, "#toggle-go")
    def action_toggle(self) -> None:
        target = self.query_one("#toggle-svc", Input).value.strip()
        kind = str(self.query_one("#toggle-kind", Select).value)
        try:
            ns, service = self.meshdojo.service(target)
            action = self._toggle(kind, ns, service)
        except ValueError as exc:
            self._out(f"✗ {exc}")
            return
        self.query_one("#yaml", TextArea).load_text(action.yaml or "")
        self.run(action, "#yaml-errors")

    def _toggle(self, kind: str, ns: str, service: str) -> Action:
        if kind == "retries":
            return actions.retries(self.sandbox, service, ns)
        if kind == "timeout":
            return actions.timeout(self.sandbox, service, ns)
        if kind == "strict":
            return actions.strict_mtls(self.sandbox, ns)
        if kind in ("split", "mirror"):
            versions = sorted({w["deployment"] for w in (self.snapshot.status or {}).get("workloads", [])
                               if w["deployment"].startswith(f"{service}-")})
            if len(versions) < 2:
                raise ValueError(f"a {kind} needs two versions of {service} (try reviews: reviews-v1, reviews-v3)")
            make = actions.split if kind == "split" else actions.mirror
            return make(self.sandbox, service, ns, versions[0], versions[-1])
        callers = sorted({e["src"] for e in self.snapshot.edges if e["dst"] == service})
        if not callers:
            raise ValueError(f"nobody calls {service} yet: no edge to deny")
        return actions.deny_edge(self.sandbox, service, ns, callers[0])

    @on(Button.Pressed, "#policy-delete")
    def action_delete(self) -> None:
        key = tables.selected_key(self.query_one("#resources", DataTable))
        if key is None:
            self._out("✗ select a resource in the list first (↑↓)")
            return
        kind, ns, resource = key.split("/", 2)
        self.meshdojo.confirm(f"Delete {kind.lower()}/{resource}?", f"{kind} {ns}/{resource} stops applying within a second.",
                              lambda: self.run(actions.delete_policy(self.sandbox, kind, ns, resource), "#yaml-errors"))

    @on(Button.Pressed, "#yaml-apply")
    def action_apply_yaml(self) -> None:
        area = self.query_one("#yaml", TextArea)
        try:
            documents = [d for d in yaml.safe_load_all(area.text) if d is not None]
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            if mark is not None:
                area.move_cursor((mark.line, mark.column))
            self._out(f"✗ not valid YAML: {exc}")
            return
        if not documents:
            self._out("✗ the editor is empty: choose an example, or enter on a resource")
            return
        action = Action("apply the edited YAML", command(self.sandbox, "meshdojo apply -f FILE.yaml   # with this YAML"),
                        "the resources take effect within a second",
                        lambda: actions.apply_documents(self.sandbox, documents, "tui editor"), area.text)
        self.meshdojo.last_action = action
        self._apply_yaml(action, area.text)

    @work(thread=True, group="actions")
    def _apply_yaml(self, action: Action, text: str) -> None:
        try:
            result, errors = action.run(), []
        except ApiError as exc:
            result, errors = str(exc), exc.body.get("errors", [])
        except (ValueError, OSError) as exc:
            result, errors = str(exc), []
        self.meshdojo.safely(self._applied, result, errors, text)

    def _applied(self, result: str, errors: list[dict[str, Any]], text: str) -> None:
        area = self.query_one("#yaml", TextArea)
        lines = [f"✗ {e.get('field')}: {e.get('message')}" + (f"  (line {n + 1})" if (n := field_line(text, e.get("field", ""))) is not None else "")
                 for e in errors]
        if errors and (n := field_line(text, errors[0].get("field", ""))) is not None:
            area.move_cursor((n, 0))
            area.select_line(n)
        self._out("\n".join([result, *lines]) if errors else f"✓ {result}")
        self.meshdojo.refresh_data()

    def action_done(self, action: Action, text: str, ok: bool, out: str | None) -> None:
        self._out(render.action_result(action, text, ok))

    def _out(self, text: str) -> None:
        self.query_one("#yaml-errors", Static).update(text)


def _key(item: dict[str, Any]) -> str:
    """A policy's row: by meshdojo's kind, which tells Linkerd's AuthorizationPolicy from ours of the same name."""
    document = item["document"]
    meta = document.get("metadata", {})
    return f"{item.get('kind') or document.get('kind')}/{meta.get('namespace')}/{meta.get('name')}"


def field_line(text: str, field: str) -> int | None:
    """The line of the YAML where an error's field (``spec.rules[0].retry.attempts``) is written:
    the last named part, searched after the lines of the parts before it."""
    parts = [p.split("[")[0] for p in field.replace("]", "").split(".") if p and p.split("[")[0]]
    line = 0
    found = None
    lines = text.splitlines()
    for part in parts:
        for n in range(line, len(lines)):
            stripped = lines[n].lstrip(" -")
            if stripped.startswith(f"{part}:"):
                found = line = n
                break
    return found
