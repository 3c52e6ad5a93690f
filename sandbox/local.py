"""The local backend's public functions: ``up``, ``down`` and ``status`` of a named sandbox.

The CLI and the terminal UI use these; they talk to the running sandbox only through its
state directory and the control plane's operator API.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from controlplane.statefiles import private_dir
from sandbox.errors import SandboxError
from sandbox.instances import gateway_name
from sandbox.manifests import load_demo
from sandbox.paths import SandboxPaths, home
from sandbox.processes import pid_alive, spawn
from sandbox.supervisor import DEMO_ROOT

DEMOS = ("emojivoto", "bookinfo")
_SUPERVISORS: list = []  # supervisors this process started (the UI's start screen starts one in-process)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def running_supervisor(paths: SandboxPaths) -> int | None:
    info = _read(paths.supervisor)
    if info and pid_alive(info["pid"]):
        return info["pid"]
    return None


def cleanup_leftovers(paths: SandboxPaths) -> list[int]:
    """Kill the recorded process groups of a sandbox whose supervisor is gone."""
    info = _read(paths.supervisor)
    killed = []
    if info and not pid_alive(info["pid"]):
        for group in info.get("groups", []):
            try:
                os.killpg(group, signal.SIGKILL)
                killed.append(group)
            except (ProcessLookupError, PermissionError):
                pass
        paths.supervisor.unlink(missing_ok=True)
        paths.status.unlink(missing_ok=True)
    return killed


FRESH_FILES = ("desired.json", "controlplane/policies.json", "controlplane/netfaults.json", "controlplane/registry.json", "applied.json")


def carried_over(name: str) -> list[str]:
    """What a new ``up`` brings back from the last run of this sandbox (scale, injection,
    policies), in words for the learner; ``up --fresh`` starts without them."""
    paths = SandboxPaths.for_name(name)
    lines = []
    for key, want in sorted((_read(paths.root / "desired.json") or {}).items()):
        if "replicas" in want:
            lines.append(f"{key} scaled to {want['replicas']}")
        if "inject" in want:
            lines.append(f"{key} {'injected' if want['inject'] else 'uninjected (no sidecar)'}")
    workloads = [e["document"] for e in _read(paths.root / "applied.json") or []]
    if workloads:
        lines.append("your applied " + ", ".join(f"{d.get('kind', '?').lower()}/{(d.get('metadata') or {}).get('name', '?')}"
                                                 for d in workloads))
    policies = _read(paths.controlplane / "policies.json") or []
    if policies:
        kinds = sorted({p.get("document", {}).get("kind", "?") for p in policies})
        lines.append(f"{len(policies)} policy resource{'s' if len(policies) != 1 else ''} ({', '.join(kinds)})")
    return lines


def forget(name: str) -> None:
    """Remove what a new ``up`` would carry over (the CA and tokens stay)."""
    paths = SandboxPaths.for_name(name)
    for relative in FRESH_FILES:
        (paths.root / relative).unlink(missing_ok=True)


def up(name: str, demos: list[str], cert_lifetime: str = "24h", timeout: float = 90.0, own_ca: Any = None,
       new_ca: bool = False) -> dict[str, Any]:
    """Start the supervisor and wait until the sandbox is ready. ``own_ca``: a learner's CA
    (checked), used from now on in place of the one kept; ``new_ca``: forget the kept one."""
    paths = SandboxPaths.for_name(name)
    for demo in demos:
        if demo not in DEMOS:
            raise SandboxError(f"unknown demo {demo!r}; choose from {', '.join(DEMOS)} (e.g. --demo emojivoto,bookinfo)")
        load_demo(DEMO_ROOT / demo)  # a bad manifest fails here, before anything starts
    pid = running_supervisor(paths)
    if pid is not None:
        raise SandboxError(f"sandbox {name!r} is already running (supervisor pid {pid}). "
                           f"See it with 'meshdojo status --name {name}', or stop it with 'meshdojo down --name {name}'.")
    cleanup_leftovers(paths)
    try:
        private_dir(home())
        private_dir(paths.root)
    except OSError as exc:
        raise SandboxError(f"cannot use the state directory {paths.root} ({exc.strerror}); "
                           f"set MESHDOJO_HOME to a directory you can write to") from None
    (paths.root / "failed.json").unlink(missing_ok=True)
    if new_ca:
        shutil.rmtree(paths.controlplane / "ca", ignore_errors=True)
    if own_ca is not None:
        from controlplane import castore  # cryptography: only when a CA is given

        castore.use_own_ca(paths.controlplane, own_ca.anchor_pem, own_ca.issuer_pem, own_ca.issuer_key_pem)
    supervisor = spawn([sys.executable, "-m", "sandbox.supervisor", "--name", name, "--demo", ",".join(demos),
                        "--cert-lifetime", cert_lifetime], paths.logs / "supervisor.log", die_with_parent=False,
                       cwd=Path(__file__).resolve().parent.parent)
    _SUPERVISORS.append(supervisor)  # it outlives this call (a daemon); kept so it is never collected while running
    deadline = time.monotonic() + timeout
    while True:
        status = _read(paths.status)
        if status and status.get("ready") and status.get("supervisor") == supervisor.pid:
            return status
        if supervisor.poll() is not None:
            failed = _read(paths.root / "failed.json") or {}
            raise SandboxError(f"the sandbox did not start: {failed.get('error', 'supervisor exited')}. "
                               f"Logs: {paths.logs}/supervisor.log")
        if time.monotonic() > deadline:
            down(name)
            raise SandboxError(f"the sandbox was not ready after {timeout:g}s; everything was stopped. Logs: {paths.logs}")
        time.sleep(0.05)


def down(name: str, timeout: float = 20.0) -> bool:
    """Stop the sandbox and everything it started. True if something was running."""
    paths = SandboxPaths.for_name(name)
    pid = running_supervisor(paths)
    if pid is None:
        return bool(cleanup_leftovers(paths))
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    # the supervisor's children die with it (PDEATHSIG); anything left is killed by group
    info = _read(paths.supervisor)
    if info:
        info["pid"] = -1
        paths.supervisor.write_text(json.dumps(info))
        _kill_groups(info.get("groups", []))
    paths.supervisor.unlink(missing_ok=True)
    paths.status.unlink(missing_ok=True)
    for proc in [p for p in _SUPERVISORS if p.pid == pid]:  # started by this process: reap it
        proc.wait(5)
        _SUPERVISORS.remove(proc)
    return True


def _kill_groups(groups: list[int]) -> None:
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def status(name: str) -> dict[str, Any] | None:
    paths = SandboxPaths.for_name(name)
    if running_supervisor(paths) is None:
        return None
    return _read(paths.status)


def _running_status(name: str) -> dict[str, Any]:
    st = status(name)
    if st is None:
        raise SandboxError(f"sandbox {name!r} is not running; start it with 'meshdojo up --name {name}'")
    return st


def demos_of(name: str) -> list:
    """The demos the running sandbox was started with, as read from their manifests."""
    return [load_demo(DEMO_ROOT / demo) for demo in _running_status(name).get("demos", [])]


def find_deployment(st: dict[str, Any], deployment: str, namespace: str | None) -> tuple[str, str]:
    """(namespace, deployment), with kubectl's rule: unique across namespaces, or say which."""
    found = sorted({(w["namespace"], w["deployment"]) for w in st["workloads"]
                    if w["deployment"] == deployment and (namespace is None or w["namespace"] == namespace)}
                   | {tuple(k.split("/")) for k in _desired_keys(st) if k.split("/")[1] == deployment
                      and (namespace is None or k.split("/")[0] == namespace)})
    if not found:
        known = ", ".join(sorted({w["deployment"] for w in st["workloads"]}))
        raise SandboxError(f"no deployment {deployment!r}{f' in namespace {namespace}' if namespace else ''}; known: {known}")
    if len(found) > 1:
        raise SandboxError(f"{deployment!r} is ambiguous: {', '.join(f'{ns}/{d}' for ns, d in found)}; add -n NAMESPACE")
    return found[0]


def _desired_keys(st: dict[str, Any]) -> list[str]:
    return list(st.get("deployments", {}))


def set_desired(name: str, deployment: str, namespace: str | None, **changes: Any) -> tuple[str, str]:
    from controlplane.statefiles import write_json
    from sandbox.supervisor import DESIRED_FILE

    st = _running_status(name)
    ns, dep = find_deployment(st, deployment, namespace)
    paths = SandboxPaths.for_name(name)
    desired = _read(paths.root / DESIRED_FILE) or {}
    desired.setdefault(f"{ns}/{dep}", {}).update(changes)
    write_json(paths.root / DESIRED_FILE, desired)
    return ns, dep


def wait_ready(name: str, predicate, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        st = _running_status(name)
        if predicate(st):
            return st
        if time.monotonic() > deadline:
            raise SandboxError(f"not done after {timeout:g}s; see 'meshdojo status --name {name}'")
        time.sleep(0.1)


def kill(name: str, target: str, namespace: str | None, proxy: bool = False) -> list[int]:
    """SIGKILL a workload's app (or its sidecar with ``proxy``), or the control plane: a fault
    the supervisor repairs by restarting it."""
    st = _running_status(name)
    gateways = dict(zip(gateway_names(st), (g["pid"] for g in st.get("gateways", [])), strict=True))
    if target == "controlplane":
        pids = [st["controlplane"]["pid"]]
        if not pids[0]:
            waiting = st["controlplane"].get("restarting_in")
            raise SandboxError("the control plane is not running right now: it exited and the supervisor restarts it"
                               + (f" in {waiting:g}s" if waiting is not None else " shortly")
                               + " — see 'meshdojo status'; the proxies keep serving meanwhile")
    elif target in gateways:
        pids = [gateways[target]]
    else:
        instances = [w for w in st["workloads"] if w["name"] == target and (namespace is None or w["namespace"] == namespace)]
        if not instances:
            ns, dep = find_deployment(st, target, namespace)
            instances = [w for w in st["workloads"] if w["deployment"] == dep and w["namespace"] == ns]
        pids = [w["pids"]["proxy" if proxy else "app"] for w in instances]
    pids = [p for p in pids if p]
    if not pids:
        raise SandboxError(f"nothing to kill for {target!r} (is it meshed, if you asked for --proxy?)")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids


def gateway_names(st: dict[str, Any]) -> list[str]:
    """The demos' ingress gateways by the name the verbs take (``bookinfo-ingress``), in status order."""
    return [gateway_name(g["demo"]) for g in st.get("gateways", [])]


def has_sidecar(name: str, instance_or_deployment: str, namespace: str | None) -> bool:
    """Does the instance (or any instance of the deployment) run a sidecar right now? (A demo's
    gateway is a proxy itself.)"""
    st = _running_status(name)
    if instance_or_deployment in gateway_names(st):
        return True
    mine = [w for w in st["workloads"] if w["name"] == instance_or_deployment and namespace in (None, w["namespace"])]
    if not mine:
        ns, dep = find_deployment(st, instance_or_deployment, namespace)
        mine = [w for w in st["workloads"] if w["deployment"] == dep and w["namespace"] == ns]
    return any(w["meshed"] and w["pids"]["proxy"] for w in mine)


def log_file(name: str, instance_or_deployment: str, namespace: str | None, proxy: bool) -> Path:
    st = _running_status(name)
    paths = SandboxPaths.for_name(name)
    if instance_or_deployment == "controlplane":
        return paths.logs / "controlplane.log"
    if instance_or_deployment in gateway_names(st):  # a demo's ingress gateway: a proxy, its log is the proxy's
        return paths.logs / f"{instance_or_deployment}.proxy.log"
    names = [w["name"] for w in st["workloads"] if w["name"] == instance_or_deployment]
    if not names:
        ns, dep = find_deployment(st, instance_or_deployment, namespace)
        names = sorted(w["name"] for w in st["workloads"] if w["deployment"] == dep and w["namespace"] == ns)
    return paths.logs / f"{names[0]}{'.proxy' if proxy else ''}.log"
