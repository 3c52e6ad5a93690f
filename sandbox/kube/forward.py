"""The operator API of a control plane in a cluster, reached through ``kubectl port-forward``.

One forward per sandbox, started when a command first needs it and kept for the next ones (its
pid and local port in the sandbox's folder); a forward that died (the pod restarted, the laptop
slept) is started again on the next use; ``meshdojo down`` stops it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from sandbox.errors import SandboxError
from sandbox.ports import accepting
from sandbox.processes import pid_alive

FILE = "port-forward.json"
_DETACHED: list[subprocess.Popen[bytes]] = []  # started here, outliving this command: kept so they are never collected while running
FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ->")


def kubectl_argv(kubeconfig: str | None, context: str | None, namespace: str, service: str, port: int) -> list[str]:
    argv = ["kubectl", "port-forward", "--address", "127.0.0.1", "-n", namespace, f"svc/{service}", f":{port}"]
    if kubeconfig:
        argv[1:1] = ["--kubeconfig", kubeconfig]
    if context:
        argv[1:1] = ["--context", context]
    return argv


def ensure(root: Path, argv: list[str], timeout: float = 20.0) -> int:
    """The local port of a live forward (started now if there is none)."""
    record = root / FILE
    try:
        kept = json.loads(record.read_text())
        if pid_alive(kept["pid"]) and accepting(kept["port"]):
            return int(kept["port"])
        stop(root)
    except (OSError, ValueError, KeyError):
        pass
    log = root / "port-forward.log"
    root.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        # its own session: it outlives this command, as the local backend's supervisor does
        try:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        except FileNotFoundError:
            raise SandboxError("kubectl is not installed (or not on PATH): meshdojo reaches the control plane through "
                               "`kubectl port-forward`; install kubectl (https://kubernetes.io/docs/tasks/tools/)") from None
    _DETACHED.append(proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if match := FORWARDING.search(log.read_text(errors="replace")):
            port = int(match[1])
            record.write_text(json.dumps({"pid": proc.pid, "port": port}))
            return port
        if proc.poll() is not None:
            break
        time.sleep(0.05)  # kubectl prints its port once the API server has opened the stream
    proc.kill()
    proc.wait()
    said = log.read_text(errors="replace").strip().splitlines()[-3:]
    raise SandboxError("cannot reach the control plane through `kubectl port-forward`: " + " / ".join(said)
                       + "; is it running? (kubectl -n meshdojo-system get pods)")


def stop(root: Path) -> bool:
    record = root / FILE
    try:
        pid = int(json.loads(record.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return False
    record.unlink(missing_ok=True)
    alive = pid_alive(pid)
    if alive:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            alive = False
    for proc in [p for p in _DETACHED if p.pid == pid]:  # started by this process: reap it
        proc.wait(5)
        _DETACHED.remove(proc)
    return alive
