"""``meshdojo tap deploy/X``: every instance's live request stream, merged, printed the way
``linkerd viz tap`` prints it — plus each request's fate."""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

from controlplane.protocol import FATE_KEYS
from sandbox.cpapi import ApiError, OperatorApi
from sandbox.instances import gateway_rows
from sandbox.paths import SandboxPaths


def streams(name: str, deployment: str, namespace: str | None, to: str | None, path: str | None,
            method: str | None, stop: threading.Event | None = None) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """The merged stream of a deployment's instances; it ends once ``stop`` is set."""
    from sandbox import local
    from sandbox.backends import backend_for

    backend = backend_for(name)
    st = backend.status()
    if st is None:
        raise local.SandboxError(f"sandbox {name!r} is not running; start it with 'meshdojo up --name {name}'")
    gateway = next((g for g in gateway_rows(st) if g["name"] == deployment and namespace in (None, g["namespace"])), None)
    if gateway is not None:  # a demo's ingress gateway (local): what it let in, where each request went, what it refused
        admin = [(deployment, gateway["ports"]["admin"])]
    else:
        ns, dep = local.find_deployment(st, deployment, namespace)
        if backend.kind != "local":  # only the control plane's pod reaches the sidecars: it reads and merges them
            return _through_controlplane(backend.operator_api(), ns, dep, to, path, method, stop)
        instances = [w for w in st["workloads"] if w["namespace"] == ns and w["deployment"] == dep]
        admin = [(w["name"], w["ports"]["admin"]) for w in instances if w["meshed"] and w["ports"]["admin"]]
    if not admin:
        raise local.SandboxError(f"deployment {ns}/{dep} has no sidecar to tap: 'meshdojo inject {dep}' first")
    token = (SandboxPaths.for_name(name).secrets / "tap-token").read_text().strip()
    query = urlencode({k: v for k, v in (("to", to), ("path", path), ("method", method)) if v})
    events: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=10_000)

    def follow(instance: str, port: int) -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/tap?{query}", headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=None) as stream:
                for line in stream:
                    if stop is not None and stop.is_set():
                        return
                    try:
                        events.put_nowait(json.loads(line))
                    except queue.Full:  # nobody is reading: drop, as the proxy does
                        pass
        except OSError as exc:
            events.put({"type": "lost", "workload": instance, "error": str(exc)})

    for instance, port in admin:
        threading.Thread(target=follow, args=(instance, port), daemon=True, name=f"tap:{instance}").start()

    return [i for i, _ in admin], _iterate(events, stop)


def _iterate(events: queue.Queue[dict[str, Any]], stop: threading.Event | None) -> Iterator[dict[str, Any]]:
    while stop is None or not stop.is_set():
        try:
            yield events.get(timeout=0.5)
        except queue.Empty:
            yield {"type": "tick"}  # nothing happened: lets a reader keep time


def _through_controlplane(api: OperatorApi, namespace: str, deployment: str, to: str | None, path: str | None,
                          method: str | None, stop: threading.Event | None) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """The control plane's merged stream of the deployment's sidecars (``GET /v1/tap``)."""
    from sandbox import local

    query = urlencode({"namespace": namespace, "deployment": deployment,
                       **{k: v for k, v in (("to", to), ("path", path), ("method", method)) if v}})
    try:
        stream = api.stream(f"/v1/tap?{query}")
        hello = json.loads(stream.readline() or b"{}")
    except ApiError as exc:
        raise local.SandboxError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise local.SandboxError(f"the control plane's tap stream broke at once: {exc}") from None
    events: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=10_000)

    def follow() -> None:
        try:
            with stream:
                for line in stream:
                    if stop is not None and stop.is_set():
                        return
                    event = json.loads(line)
                    if event.get("type") != "tick":
                        with contextlib.suppress(queue.Full):
                            events.put_nowait(event)
        except (OSError, ValueError) as exc:
            events.put({"type": "lost", "workload": "the control plane", "error": str(exc)})

    threading.Thread(target=follow, daemon=True, name=f"tap:{deployment}").start()
    return list(hello.get("instances", [])), _iterate(events, stop)


def render(event: dict[str, Any]) -> str | None:
    kind = event.get("type")
    if kind in ("hello", "tick"):
        return None
    if kind == "dropped":
        return (f"# {event['count']} events ({event.get('requests', '?')} requests) dropped: "
                "this terminal did not keep up (the proxy never waits for it)")
    if kind == "lost":
        return f"# lost the stream from {event['workload']}: {event['error']}"
    proxy = "out" if event["direction"] == "outbound" else "in"
    head = (f"{kind} id={event['id']} proxy={proxy} src={event['src']} dst={event['dst']} tls={str(event['tls']).lower()}")
    if kind == "req":
        return f"{head} :method={event['method']} :authority={event['authority']} :path={event['path']}"
    if kind == "rsp":
        return f"{head} :status={event['status']} latency={event['latency_ms'] * 1000:.0f}µs"
    fate = event.get("fate") or {}
    parts = [f"{k}={fate[k]}" for k in FATE_KEYS if fate.get(k)]
    if fate.get("attempts"):
        parts.append(f"attempts={len(fate['attempts'])}[{'; '.join(fate['attempts'])}]")
    if fate.get("retry"):
        parts.append(f"retry={'; '.join(fate['retry'])}")
    ids = " ".join(f"{k}={event[k]}" for k in ("client_id", "server_id") if event.get(k))
    return f"{head} :status={event['status']} duration={event['latency_ms'] * 1000:.0f}µs {ids} fate: {', '.join(parts) or 'no policy applied'}"


def run(name: str, target: str, namespace: str | None, to: str | None, path: str | None, method: str | None,
        as_json: bool, emit: Callable[[str], None] = print, note: Callable[[str], None] | None = None) -> None:
    """Print the tap's lines with ``emit``; what is about the tap itself goes to ``note`` (stderr),
    so ``-o json`` is JSON lines only."""
    kind, _, deployment = target.partition("/")
    if kind not in ("deploy", "deployment") or not deployment:
        raise ValueError(f"{target!r}: expected deploy/NAME, e.g. 'meshdojo tap deploy/web'")
    to_name = to.partition("/")[2] if to and "/" in to else to
    instances, events = streams(name, deployment, namespace, to_name, path, method)
    (note or emit)(f"# tapping {', '.join(instances)} (Ctrl-C to stop)")
    for event in events:
        line = json.dumps(event) if as_json else render(event)
        if line:
            emit(line)
