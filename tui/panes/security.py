"""Security (4): the CA, every workload's identity and certificate with its rotation countdown
and whether its sidecar holds the control plane's latest policies (``meshdojo proxy-status``),
the certificates the gateways serve to clients outside the mesh (``meshdojo get secrets``), what
an eavesdropper sees on an edge (w), and an intruder trying a service (i)."""

from __future__ import annotations

import time
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, DataTable, Input, Static

from sandbox import local, netcli
from sandbox.cpapi import ApiError
from sandbox.resources import ResourceError
from tui import actions, render, tables
from tui.actions import Action, command
from tui.panes.base import Pane
from tui.source import Snapshot

FAILURES = (ApiError, ResourceError, local.SandboxError, ValueError, OSError)


class Security(Pane):
    KEY, TITLE, FIRST = "security", "Security", "#identities"
    BINDINGS = [Binding("w", "wire", "Wire view"), Binding("i", "intruder", "Intruder")]

    def compose(self) -> ComposeResult:
        yield Static(id="ca-info", markup=False)
        table: DataTable = DataTable(id="identities", cursor_type="row")
        table.add_columns("WORKLOAD", "IDENTITY", "MODE", "POLICIES", "SERIAL", "ROTATES IN", "ROTATIONS")
        yield table
        certificates: DataTable = DataTable(id="gateway-certs", cursor_type="row")
        certificates.add_columns("GATEWAY CERTIFICATE", "HOSTS", "EXPIRES IN", "CLIENT CA", "USED BY")
        yield certificates
        with Horizontal(classes="filters"):
            yield Input(placeholder="edge: web emoji", id="wire-edge")
            yield Button("Wire w", id="wire-go")
            yield Input(placeholder="service: web", id="intruder-svc")
            yield Button("Intruder i", id="intruder-go")
        with VerticalScroll(classes="box"):
            yield Static("the wire view shows what an eavesdropper sees on an edge; the intruder tries a service "
                         "without the mesh's certificate", id="security-out", markup=False)

    def on_mount(self) -> None:
        for button in self.query(Button):
            button.can_focus = False

    def show(self, snap: Snapshot) -> None:
        edge = self.query_one("#wire-edge", Input)
        if not edge.value and snap.edges:  # real defaults: the first edge, its server
            first = next((e for e in snap.edges if e["secured"]), snap.edges[0])
            edge.value = f"{first['src']} {first['dst']}"
            self.query_one("#intruder-svc", Input).value = first["dst"]

    def show_identities(self, data: dict[str, Any]) -> None:
        anchor, issuer = data["trust_anchor"], data["issuer"]
        self.query_one("#ca-info", Static).update(f"trust anchor {anchor['subject']} until {anchor['notAfter'][:19]} · "
                                                 f"issuer {issuer['subject']} until {issuer['notAfter'][:19]}")
        rows = []
        for w in data["workloads"]:
            left = w.get("rotation_in_seconds")
            rows.append((w["workload"], [w["workload"], w.get("identity") or "-", w.get("mode") or w.get("error", "-"),
                                         render.policy_sync(w.get("policy_version"), data.get("policy_version")),
                                         (w.get("serial") or "-")[:12], "-" if left is None else render.remaining_text(left),
                                         str(w.get("rotations", "-"))]))
        tables.fill(self.query_one("#identities", DataTable), rows)
        tables.fill(self.query_one("#gateway-certs", DataTable),
                    render.gateway_certificate_rows(data.get("gateway_certificates") or [], time.time()))

    @on(Button.Pressed, "#wire-go")
    @on(Input.Submitted, "#wire-edge")
    def action_wire(self) -> None:
        parts = self.query_one("#wire-edge", Input).value.split()
        if len(parts) != 2:
            self._out("✗ type an edge as two deployments, the caller first: web emoji")
            return
        src, dst = (p.partition("/")[2] or p for p in parts)
        self.meshdojo.last_action = Action(f"wire {src} -> {dst}", command(self.sandbox, f"meshdojo wire deploy/{src} deploy/{dst}"),
                                           "TLS records under mTLS; readable HTTP after uninject", lambda: "")
        self._out(f"waiting for a new connection from {src} to {dst} …")
        self._wire(src, dst)

    @work(thread=True, group="wire", exclusive=True)
    def _wire(self, src: str, dst: str) -> None:
        try:
            text = "\n".join(netcli.render_wire(netcli.wire(self.sandbox, f"deploy/{src}", f"deploy/{dst}", None, 10)))
        except FAILURES as exc:
            text = f"✗ {exc}"
        self.meshdojo.safely(self._out, text)

    @on(Button.Pressed, "#intruder-go")
    @on(Input.Submitted, "#intruder-svc")
    def action_intruder(self) -> None:
        service = self.query_one("#intruder-svc", Input).value.strip().partition("/")[2] or self.query_one("#intruder-svc", Input).value.strip()
        try:
            ns, service = self.meshdojo.service(service)
        except ValueError as exc:
            self._out(f"✗ {exc}")
            return
        self.run(actions.intruder(self.sandbox, service, ns), "#security-out")

    def action_done(self, action: Action, text: str, ok: bool, out: str | None) -> None:
        self._out(render.action_result(action, text, ok))

    def _out(self, text: str) -> None:
        self.query_one("#security-out", Static).update(text)
