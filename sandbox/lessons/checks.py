"""A step's check: a query of the sandbox (its status, the control plane's metrics, edges,
routes, policies and Services' Linkerd annotations, the sidecars' trace spans, or the commands
the learner ran), a condition on the rows, a deadline.

:func:`satisfied` is the decision (pure: rows in, yes or no); :func:`rows` is the I/O;
:func:`wait` polls until the deadline.
"""

from __future__ import annotations

import json
import operator
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from controlplane.durations import parse_duration
from sandbox.lessons.model import Check
from sandbox.paths import SandboxPaths

HISTORY_FILE = "history.json"  # the meshdojo commands run against this sandbox, for 'ran' checks
HISTORY_KEEP = 200
_OPS: dict[str, Callable[[Any, Any], bool]] = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
                                               ">": operator.gt, ">=": operator.ge}


def field(row: dict[str, Any], path: str) -> Any:
    """``latency_ms.p50`` reads nested fields."""
    value: Any = row
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def matches(row: dict[str, Any], check: Check) -> bool:
    if any(field(row, k) != v for k, v in check.where):
        return False
    for name, op, want in check.expect:
        got = field(row, name)
        try:
            if got is None or not _OPS[op](got, want):
                return False
        except TypeError:  # a number compared with a string: not met
            return False
    return True


def deployment_rows(st: dict[str, Any]) -> list[dict[str, Any]]:
    """A row per deployment from a status document: instances counted (the same on every
    backend: a pod's name on a cluster is not emoji-1, but a deployment's count is its count)."""
    out = []
    for key, want in sorted(st.get("deployments", {}).items()):
        namespace, name = key.split("/", 1)
        mine = [w for w in st["workloads"] if w["namespace"] == namespace and w["deployment"] == name]
        out.append({"name": name, "namespace": namespace, "replicas": want["replicas"], "instances": len(mine),
                    "ready": sum(1 for w in mine if w["ready"]), "meshed": sum(1 for w in mine if w["meshed"])})
    return out


def satisfied(rows: list[dict[str, Any]], check: Check) -> bool:
    found = any(matches(r, check) for r in rows)
    return not found if check.absent else found


METRIC_QUERIES = frozenset({"stat", "edges", "routes", "authz"})
DEFAULT_WINDOW = "30s"  # a metrics query's window when its check names none
SPANS_READ = 200  # a spans query reads each sidecar's latest spans


def window_seconds(check: Check) -> float:
    return parse_duration(str(dict(check.params).get("window", DEFAULT_WINDOW)))


def window_since_step(check: Check, since: float, now: float) -> bool:
    """Whether an ``absent`` check of the metrics can be judged yet: its whole window must lie
    after the step began (``since``, ``now``: wall clock). Before that, the window still holds
    traffic from before the learner acted, or a quiet spell by chance: "no traffic to v2 in the
    last 10 s" means 10 s of it since the change."""
    return not check.absent or check.query not in METRIC_QUERIES or now - since >= window_seconds(check)


def record(sandbox: str, argv: list[str], clock: Callable[[], float] = time.time) -> None:
    """Remember a command run against a running sandbox (the verb and its arguments, no secrets:
    meshdojo takes none on its command line)."""
    from controlplane.statefiles import write_json

    path = SandboxPaths.for_name(sandbox).root / HISTORY_FILE
    if not path.parent.exists():
        return
    try:
        history = json.loads(path.read_text())
    except (OSError, ValueError):
        history = []
    history.append({"at": clock(), "argv": argv})
    write_json(path, history[-HISTORY_KEEP:])


def history(sandbox: str) -> list[dict[str, Any]]:
    try:
        return json.loads((SandboxPaths.for_name(sandbox).root / HISTORY_FILE).read_text())
    except (OSError, ValueError):
        return []


def rows(sandbox: str, check: Check, since: float) -> list[dict[str, Any]]:
    """The rows the check's query returns now (``since``: when the step began, for 'ran')."""
    from sandbox import observe
    from sandbox.backends import backend_for
    from sandbox.resources import api_for
    from sandbox.resourcetable import detail

    params = dict(check.params)
    if check.query == "ran":
        return [{"command": h["argv"][0] if h["argv"] else "", "args": " ".join(h["argv"][1:])}
                for h in history(sandbox) if h["at"] >= since and h["argv"][:1] == [params["command"]]]
    if check.query == "status":
        st = backend_for(sandbox).status() or {"workloads": [], "deployments": {}}
        return st["workloads"]
    if check.query == "deployments":
        return deployment_rows(backend_for(sandbox).status() or {"workloads": [], "deployments": {}})
    if check.query == "annotations":  # a row per Linkerd annotation on a Service
        return [{"name": s["name"], "namespace": s["namespace"], "annotation": key, "value": value}
                for s in api_for(sandbox).call("GET", "/v1/services")["services"] for key, value in sorted(s.get("annotations", {}).items())
                if "namespace" not in params or s["namespace"] == params["namespace"]]
    if check.query == "spans":  # a row per span recorded since the step began, with how many spans its trace has
        from sandbox.tracecli import gather

        spans = [s for s in gather(sandbox, params.get("namespace"), None, SPANS_READ)["spans"] if s["start"] >= since]
        sizes = Counter(s["traceId"] for s in spans)
        return [{**s, "traceSpans": sizes[s["traceId"]]} for s in spans]
    if check.query == "secrets":  # a row per TLS Secret the control plane holds (meshdojo get secrets): never a key
        return [{**s, "hosts": ",".join(s["hosts"]), "usedBy": ",".join(s["usedBy"])}
                for s in api_for(sandbox).call("GET", "/v1/secrets" + (f"?namespace={params['namespace']}" if "namespace" in params else ""))["items"]]
    window = params.get("window", DEFAULT_WINDOW)
    if check.query == "stat":
        return observe.stat(sandbox, params.get("target"), params.get("namespace"), window)
    if check.query == "edges":
        return observe.edges(sandbox, params.get("namespace"), window)
    if check.query == "routes":
        return observe.routes(sandbox, f"svc/{params['service']}", params.get("namespace"), None, window)
    if check.query == "authz":  # a row per policy at the deployment: allowed, denied (meshdojo authz)
        return observe.authz(sandbox, params["target"], params.get("namespace"), window)["rows"]
    query = "&".join(f"{k}={params[k]}" for k in ("kind", "namespace") if k in params)
    items = api_for(sandbox).call("GET", "/v1/policies" + (f"?{query}" if query else ""))["items"]
    return [{"kind": i["kind"], "name": i["document"]["metadata"]["name"], "detail": detail(i["document"]),  # as get's DETAIL
             "namespace": i["document"]["metadata"].get("namespace", "default")} for i in items]


def wait(sandbox: str, check: Check, since: float, deadline: float | None = None,
         clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> tuple[bool, float]:
    """Poll until the check passes or its deadline passes: (passed, seconds it took)."""
    began = clock()
    end = began + (check.deadline if deadline is None else deadline)
    while True:
        try:
            ok = window_since_step(check, since, wall()) and satisfied(rows(sandbox, check, since), check)
        except (ValueError, OSError, RuntimeError):  # the control plane restarting, a name not there yet: not met
            ok = False
        if ok or clock() >= end:
            return ok, clock() - began
        time.sleep(0.25)  # polling the sandbox: metrics move once a second
