"""The local supervisor's decisions, as a kubelet's: an instance relaunched on fresh ports when
it never served (a port taken between its choosing and its binding), and the readiness probe's
period and failure threshold. (The whole sandbox's lifecycle: tests/test_sandbox.py.)"""

from __future__ import annotations

import json

from sandbox.processes import wait_until
from tests.test_sandbox import DEMO_POLICIES


def one_deployment(tmp_path, name: str, command: list[str], env: dict[str, str] | None = None):
    """A directory with one meshed Deployment, ``name`` in namespace demo, running ``command``."""
    manifests = tmp_path / name
    manifests.mkdir()
    (manifests / "m.yaml").write_text(json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "demo"},
        "spec": {"template": {"metadata": {"labels": {"app": name}, "annotations": {"meshdojo.dev/inject": "enabled"}},
                              "spec": {"serviceAccountName": name, "containers": [{
                                  "name": name, "command": command, "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
                                  "ports": [{"containerPort": 8080}]}]}}}}))
    return manifests

def test_an_instance_that_dies_before_it_is_ready_is_relaunched_on_fresh_ports(tmp_path, monkeypatch):
    """E.g. a port taken between being chosen and being bound: retrying the same port forever
    would never work, so the whole instance starts again on new ports."""
    from sandbox.manifests import load_demo
    from sandbox.paths import SandboxPaths
    from sandbox.supervisor import Supervisor

    flag = tmp_path / "second-time"
    script = ("import os, sys, http.server\n"
              "if not os.path.exists(os.environ['FLAG']):\n"
              "    open(os.environ['FLAG'], 'w').close(); sys.exit(3)\n"
              "http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), http.server.BaseHTTPRequestHandler).serve_forever()\n")
    manifests = one_deployment(tmp_path, "flaky", ["python", "-c", script], {"FLAG": str(flag)})
    monkeypatch.setenv("MESHDOJO_HOME", str(tmp_path / "home"))
    supervisor = Supervisor(SandboxPaths.for_name("flaky"), [load_demo(manifests)], "24h")
    try:
        supervisor.start()
        first_port = supervisor.instances[0].app_port

        def settled():
            supervisor.tick()
            return supervisor.ready

        wait_until(settled, 30, "the flaky instance to be relaunched and ready")
        (workload,) = supervisor.status()["workloads"]
        assert workload["ready"] and workload["restarts"] == 1 and workload["ports"]["app"] != first_port
    finally:
        supervisor.stop()


def test_an_app_whose_port_another_process_took_is_relaunched_on_fresh_ports(tmp_path, monkeypatch):
    """The race the full suite once lost: another process bound web's app port between its
    choosing and the app's binding. The app failed with "Address already in use", but the
    readiness probe was answered by the other process, so the instance counted as ready and was
    restarted on the same port forever. An app that exits while its port still accepts is
    relaunched on fresh ports."""
    import socket

    from sandbox import supervisor as supervision
    from sandbox.manifests import load_demo
    from sandbox.paths import SandboxPaths
    from sandbox.supervisor import Supervisor

    manifests = one_deployment(tmp_path, "plain", ["python", "-m", "http.server", "$(PORT)", "--bind", "127.0.0.1"])
    with socket.socket() as thief:  # takes the first port the supervisor picks for an app
        thief.bind(("127.0.0.1", 0))
        thief.listen()
        taken = thief.getsockname()[1]
        ports = iter([taken])
        real = supervision.free_port
        monkeypatch.setattr(supervision, "free_port", lambda: next(ports, None) or real())
        monkeypatch.setenv("MESHDOJO_HOME", str(tmp_path / "home"))
        supervisor = Supervisor(SandboxPaths.for_name("plain"), [load_demo(manifests)], "24h")
        try:
            supervisor.start()

            def settled():
                supervisor.tick()
                return supervisor.ready and supervisor.instances and supervisor.instances[0].app_port != taken

            wait_until(settled, 30, "the instance to move off the taken port and be ready")
            (workload,) = supervisor.status()["workloads"]
            assert workload["ready"] and workload["ports"]["app"] != taken
            assert supervisor.instances[0].app is not None and not supervisor.instances[0].app.exited()
        finally:
            supervisor.stop()


def test_a_sidecar_stuck_in_its_start_is_killed_and_started_again(tmp_path, monkeypatch, caplog):
    """A sidecar that never becomes ready (seen once: one waited forever before it listened,
    and `meshdojo up` with it) is killed after the startup deadline, as a kubelet kills a
    container whose startupProbe fails, and started again. Here it is stopped by SIGSTOP."""
    import logging
    import os
    import signal

    from sandbox.manifests import load_demo
    from sandbox.paths import SandboxPaths
    from sandbox.supervisor import Supervisor

    manifests = one_deployment(tmp_path, "stuck", ["python", "-m", "http.server", "$(PORT)", "--bind", "127.0.0.1"])
    monkeypatch.setenv("MESHDOJO_HOME", str(tmp_path / "home"))
    supervisor = Supervisor(SandboxPaths.for_name("stuck"), [load_demo(manifests)], "24h", startup_deadline=5)
    caplog.set_level(logging.WARNING, "meshdojo.supervisor")
    try:
        supervisor.start()
        sidecar = supervisor.instances[0].proxy
        assert sidecar is not None and sidecar.pid is not None
        stuck = sidecar.pid
        os.kill(stuck, signal.SIGSTOP)

        def settled():
            supervisor.tick()
            return supervisor.ready

        wait_until(settled, 60, "the stuck sidecar to be replaced and the instance ready")
        (workload,) = supervisor.status()["workloads"]
        assert workload["ready"] and workload["restarts"] >= 1
        assert supervisor.instances[0].proxy is not None and supervisor.instances[0].proxy.pid != stuck
        assert any("stuck-0's sidecar is not ready" in r.getMessage() and "killing it" in r.getMessage()
                   for r in caplog.records)
    finally:
        supervisor.stop()


def test_an_app_is_probed_at_every_round_until_ready_then_once_per_period():
    """Like a kubelet's readinessProbe: a ready app's port is not connected to twice a second
    (each probe costs a demo app a thread), but one that is not ready is probed at every round."""
    from sandbox.instances import READY_PROBE_PERIOD, Instance
    from sandbox.manifests import load_demo

    deployment = load_demo(DEMO_POLICIES.parent).deployments[0]
    inst = Instance(deployment, 0, [])
    assert inst.probe_due(0.0)  # never probed
    inst.app_probe.answered, inst.app_probe.probed_at = False, 10.0
    assert inst.probe_due(10.1)  # not answering yet: at every round
    inst.app_probe.answered, inst.app_probe.probed_at, inst.ready = True, 10.1, True
    assert not inst.probe_due(10.1 + READY_PROBE_PERIOD / 2)
    assert inst.probe_due(10.1 + READY_PROBE_PERIOD)
    inst.ready = False  # e.g. its app crashed and was restarted: at every round again
    assert inst.probe_due(10.2)


def test_a_ready_app_is_not_ready_only_after_three_failed_looks_in_a_row():
    """A kubelet's failureThreshold: one connect that took too long on a busy machine (the full
    suite once saw voting-0 "not ready" for one round) is no outage; three in a row are."""
    from sandbox.instances import FAILURE_THRESHOLD, ReadinessProbe

    probe = ReadinessProbe()
    probe.answer(False, 1.0, ready=False)
    assert not probe.answered  # starting: not ready until it accepts
    probe.answer(True, 1.5, ready=False)
    assert probe.answered and not probe.due(2.0)
    for i in range(FAILURE_THRESHOLD - 1):
        probe.answer(False, 4.0 + i, ready=True)
        assert probe.answered and probe.due(4.1 + i)  # still ready, but looked at every round now
    probe.answer(False, 9.0, ready=True)
    assert not probe.answered
    probe.answer(True, 9.5, ready=False)
    probe.answer(False, 12.0, ready=True)
    probe.answer(True, 12.5, ready=True)  # one failure, then an answer: the count starts again
    assert probe.answered and probe.failures == 0
