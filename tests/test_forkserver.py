"""The sandbox's fork server (sandbox/forkserver.py) with real processes: a forked sidecar is
what ``spawn`` would have started (session, descriptors, log, command line, exit code), and a
fork server that dies takes its children with it and is never asked again."""

from __future__ import annotations

import json
import os
import signal
import sys
import urllib.request
from pathlib import Path

import pytest

from sandbox.forkserver import EXIT_UNKNOWN, ForkServer, runs
from sandbox.processes import pid_alive, spawn, stop_groups, wait_until
from tests.meshkit import Mesh


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name: state, ppid, pgrp, session, ..."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()


def _fd_targets(pid: int) -> dict[int, str]:
    return {int(fd.name): os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}


@pytest.fixture
def mesh(tmp_path):
    m = Mesh(tmp_path)
    m.start_controlplane()
    yield m
    m.close()


@pytest.fixture
def server(tmp_path):
    fs = ForkServer(tmp_path / "forkserver.log")
    fs.start()
    yield fs
    fs.stop(grace=5)


def _proxy_argv(mesh: Mesh, tmp_path: Path, name: str, *extra: str) -> list[str]:
    token = tmp_path / f"{name}.token"
    token.write_text(mesh.token("demo", name))
    token.chmod(0o600)
    return [sys.executable, "-m", "proxy", "--controlplane", mesh.mesh_url, "--trust-anchor", str(mesh.anchor),
            "--namespace", "demo", "--service-account", name, "--token-file", str(token), "--app-port", "1",
            "--ports-file", str(tmp_path / f"{name}.ports"), "--workload", f"{name}-0", *extra]


def test_a_forked_sidecar_is_what_spawn_would_have_started(mesh, server, tmp_path):
    log = tmp_path / "web.proxy.log"
    child = server.spawn(_proxy_argv(mesh, tmp_path, "web"), log)
    assert child is not None
    ports = wait_until(lambda: (tmp_path / "web.ports").exists() and (tmp_path / "web.ports").read_text(), 20,
                       "the forked proxy to listen")
    assert '"inbound"' in ports
    # it serves: its admin port answers, and it holds a certificate from the control plane
    admin = json.loads(ports)["admin"]
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    assert "\nidentity_cert_expiration_timestamp_seconds " in metrics

    state, ppid, pgrp, session = _stat(child.pid)[:4]
    assert int(ppid) == server.popen.pid  # the fork server is its parent (and reaps it)
    assert int(pgrp) == int(session) == child.pid  # its own session and group, as spawn's start_new_session
    cmdline = Path(f"/proc/{child.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert " -m proxy --controlplane " in cmdline and "--workload web-0" in cmdline  # what ps shows
    fds = _fd_targets(child.pid)
    assert fds[0] == os.devnull and fds[1] == fds[2] == str(log)
    server_pipes = {t for fd, t in _fd_targets(server.popen.pid).items() if t.startswith("pipe:")}
    assert server_pipes and not server_pipes & set(fds.values())  # none of the fork server's descriptors
    assert "certificate serial" in log.read_text()

    # SIGTERM: the proxy stops cleanly, and its exit status comes back through the fork server
    os.kill(child.pid, signal.SIGTERM)
    assert child.wait(10) == 0
    wait_until(lambda: not pid_alive(child.pid), 5, "the proxy to be reaped")


def test_exit_codes_and_what_it_will_not_run(server, tmp_path):
    log = tmp_path / "bad.log"
    child = server.spawn([sys.executable, "-m", "proxy", "--no-such-flag"], log)
    assert child is not None and child.wait(10) == 2  # argparse's exit status, as with exec
    assert "usage: python -m proxy" in log.read_text()
    # a process killed by a signal reports it as Popen does (negative)
    sleeper = server.spawn([sys.executable, "-m", "proxy", "--controlplane", "https://127.0.0.1:9", "--trust-anchor",
                            str(tmp_path / "none.crt"), "--namespace", "a", "--service-account", "b", "--app-port", "1"],
                           tmp_path / "sleeper.log")
    assert sleeper is not None
    os.kill(sleeper.pid, signal.SIGKILL)
    assert sleeper.wait(10) == -signal.SIGKILL
    # only `python -m proxy` is forked; the caller starts anything else itself
    assert not runs([sys.executable, "-m", "controlplane"]) and not runs(["/usr/bin/python3", "-m", "proxy"])
    assert server.spawn([sys.executable, "-m", "controlplane"], log) is None
    assert server.alive


def test_children_die_with_the_fork_server_and_it_is_not_asked_again(mesh, server, tmp_path):
    child = server.spawn(_proxy_argv(mesh, tmp_path, "emoji"), tmp_path / "emoji.log")
    assert child is not None
    wait_until(lambda: (tmp_path / "emoji.ports").exists(), 20, "the forked proxy to listen")
    os.kill(server.popen.pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(child.pid), 10, "the child to die with its fork server (PDEATHSIG)")
    assert child.poll() == EXIT_UNKNOWN and not server.alive
    assert server.spawn(_proxy_argv(mesh, tmp_path, "voting"), tmp_path / "voting.log") is None
    # stop_groups treats a forked child like any other
    plain = spawn([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "plain.log")
    stop_groups([plain, child], grace=5)
    assert plain.returncode == -signal.SIGTERM


def test_sigkill_of_the_supervisor_side_takes_the_fork_server_and_its_children(mesh, tmp_path):
    """The chain that keeps a SIGKILLed supervisor from leaving sidecars behind: the fork
    server dies with the process that started it, its children with it."""
    owner = spawn([sys.executable, "-c", f"""
import sys, time
sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
from pathlib import Path
from sandbox.forkserver import ForkServer
fs = ForkServer(Path({str(tmp_path / 'fs.log')!r}))
fs.start()
child = fs.spawn(sys.argv[1:], Path({str(tmp_path / 'ratings.log')!r}))
print(fs.popen.pid, child.pid, flush=True)
time.sleep(120)
""", *_proxy_argv(mesh, tmp_path, "ratings")], tmp_path / "owner.log")
    try:
        pids = wait_until(lambda: (tmp_path / "owner.log").read_text().split() or None, 20, "the owner to fork a proxy")
        server_pid, child_pid = map(int, pids[:2])
        wait_until(lambda: (tmp_path / "ratings.ports").exists(), 20, "the forked proxy to listen")
        os.kill(owner.pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(server_pid) and not pid_alive(child_pid), 10,
                   "the fork server and its child to die with their owner")
    finally:
        stop_groups([owner], grace=1)
