"""The start screen (``meshdojo tui`` with no sandbox running): the backends this machine cannot
run greyed out with their reason, each step with its time, a failure with its fix and the offer
to switch to local — driven with the real backends (a Kubernetes context whose kubeconfig does
not exist fails for real; local then starts for real)."""

from __future__ import annotations

import time

import pytest
from textual.widgets import Button, RadioButton, Static

from sandbox.backends import backend_for
from tui.launcher import Launch, LauncherApp, start_sandbox

MACHINE = {"local": None, "kind": "no Docker engine answers (connection refused); start Docker (Docker Desktop, or `sudo systemctl start docker`)",
           "minikube": "minikube is not installed (or not on PATH): install it (https://minikube.sigs.k8s.io/docs/start/)",
           "context": None}


async def _until(pilot, check, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def test_snapshot_start_screen(snap_compare):
    async def checked(pilot):
        await _until(pilot, lambda: pilot.app.available, "the availability check")

    launcher = LauncherApp("default", Launch(lambda: dict(MACHINE), lambda *_: None), clock=lambda: 0.0)
    assert snap_compare(launcher, terminal_size=(100, 30), run_before=checked)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_failed_cluster_start_offers_local_which_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHDOJO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    real_start = start_sandbox("lab")
    started: list[str] = []

    def start(kind, demos, say):  # the real start; recorded so the test knows what was asked
        started.append(kind)
        return real_start(kind, ["emojivoto"] if kind == "local" else demos, say)

    app = LauncherApp("lab", Launch(lambda: dict(MACHINE), start))
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await _until(pilot, lambda: app.available, "the availability check")
            assert app.query_one("#backend-kind", RadioButton).disabled and app.query_one("#backend-minikube", RadioButton).disabled
            reasons = str(app.query_one("#reasons", Static).render())
            assert "kind: unavailable — no Docker engine answers" in reasons and "minikube: unavailable" in reasons
            await pilot.click("#backend-context")
            assert app.chosen() == "context"
            await pilot.click("#start")
            await _until(pilot, lambda: app.failed, "the context's failure")
            assert "no usable kubeconfig" in app.failed and "--kubeconfig" in app.failed  # the error, with its fix
            assert "That did not work" in str(app.query_one("#failure", Static).render())
            assert app.query_one("#use-local", Button).display
            await pilot.click("#use-local")
            await _until(pilot, lambda: app.return_value == "started", "local to start", timeout=90)
        assert started == ["context", "local"]
        st = backend_for("lab").status()
        assert st is not None and st["backend"] == "local" and {w["deployment"] for w in st["workloads"]} >= {"web", "emoji"}
        assert any("starting the control plane" in text for text, _ in app.steps)
    finally:
        backend_for("lab").down()
