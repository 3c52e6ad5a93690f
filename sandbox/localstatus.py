"""``status.json`` of a local sandbox, as a pure function of what the supervisor holds: the
control plane, the gateways, the desired replicas and every instance — the document
``meshdojo status -o json`` prints (the Kubernetes backend writes the same shape from pods)."""

from __future__ import annotations

from typing import Any

from sandbox.instances import GATEWAYS, Instance, Proc


def status_document(name: str, ready: bool, supervisor_pid: int, demos: list[str], cp: Proc | None, cp_info: dict[str, Any],
                    cp_answers: bool, gateways: dict[str, tuple[Proc, dict[str, int], str]], desired: dict[str, dict[str, Any]],
                    instances: list[Instance], now: float, forkserver_pid: int | None = None) -> dict[str, Any]:
    """``cp_answers``: the control plane's API accepts connections (a process still starting
    does not); ``now``: the monotonic clock, for a pending restart's countdown;
    ``forkserver_pid``: the process the sidecars are forked from, while it runs."""
    return {
        "name": name,
        "backend": "local",
        "ready": ready,
        "supervisor": supervisor_pid,
        "forkserver": forkserver_pid,
        "demos": demos,
        "controlplane": {"pid": cp.pid if cp else None, "api": cp_info["api"], "mesh": cp_info["mesh"],
                         "ready": cp is not None and cp.pid is not None and cp_answers,
                         "restarting_in": (round(max(cp.next_start - now, 0.0), 1) if cp is not None and cp.popen is None else None),
                         "restarts": cp.restarts if cp else 0},
        "gateways": [{"demo": demo, "namespace": proc.argv[proc.argv.index("--namespace") + 1], "service": GATEWAYS[demo][0], "title": title,
                      "url": f"http://127.0.0.1:{ports['outbound']}/" if ports else None, "pid": proc.pid,
                      "https": f"https://127.0.0.1:{ports['https']}/" if ports and ports.get("https") else None,
                      "admin": ports.get("admin") if ports else None}
                     for demo, (proc, ports, title) in gateways.items()],
        "deployments": {key: {"replicas": want["replicas"], "inject": want["inject"]} for key, want in desired.items()},
        "workloads": [{
            "name": i.name, "deployment": i.deployment.name, "namespace": i.deployment.namespace,
            "identity": i.identity if i.meshed else None, "meshed": i.meshed, "ready": i.ready,
            "restarts": i.earlier_restarts + (i.app.restarts if i.app else 0) + (i.proxy.restarts if i.proxy else 0),
            "pids": {"app": i.app.pid if i.app else None, "proxy": i.proxy.pid if i.proxy else None},
            "ports": {"app": i.app_port or None, "inbound": i.ports.get("inbound"), "outbound": i.ports.get("outbound"),
                      "admin": i.ports.get("admin")},
            "services": i.services,
        } for i in instances],
    }
