"""``up``, ``down``, ``tui`` and ``status``: a sandbox's lifecycle."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from controlplane.durations import InvalidDuration, parse_duration
from sandbox.backends import backend_for
from sandbox.cli.common import add_ca_files, add_name, fail, given_ca
from sandbox.errors import SandboxError
from sandbox.manifests import ManifestError


def _up(args: argparse.Namespace) -> int:
    from sandbox import local

    try:
        lifetime = parse_duration(args.cert_lifetime)
    except InvalidDuration as exc:
        return fail(f"--cert-lifetime: {exc}")
    if lifetime < 60:
        return fail("--cert-lifetime: must be at least 60s (try --cert-lifetime 2m to watch rotations)")
    demos = [d.strip() for d in args.demo.split(",") if d.strip()]
    try:
        choice = _choice(args)
        own_ca = given_ca(args)  # checked before anything starts
    except (SandboxError, ValueError) as exc:
        return fail(str(exc))
    if own_ca is not None and args.new_ca:
        return fail("--new-ca makes a new CA; leave it out to use yours (--identity-*-file)")
    if choice.is_kubernetes:
        if args.new_ca:
            return fail("--new-ca is for the local backend; on a cluster the issuer lives in a Secret: "
                        "`meshdojo uninstall`, then `meshdojo up` makes a new one")
        return _up_on_cluster(args, choice, demos, own_ca)
    if backend_for(args.name, choice).status() is None:
        if args.fresh:
            backend_for(args.name).forget()
        elif restored := backend_for(args.name).carried_over():
            print("Restoring what the last run of this sandbox left (start clean with 'meshdojo up --fresh'):")
            for line in restored:
                print(f"  {line}")
    print(f"Starting sandbox {args.name!r} with {', '.join(demos)} ...", flush=True)
    if own_ca is not None:
        print("Using your CA: the workloads' certificates will chain to your trust anchor", flush=True)
    try:
        st = backend_for(args.name).up(demos, args.cert_lifetime, own_ca=own_ca, new_ca=args.new_ca)
    except (local.SandboxError, ManifestError, ValueError) as exc:
        return fail(str(exc))
    _summary(st)
    if args.no_tui:
        print(f"\nThe sandbox keeps running in the background. Stop it with: meshdojo down --name {args.name}")
        return 0
    if sys.stdin.isatty() and sys.stdout.isatty():
        return _run_ui(args.name, started_by_up=True, stopped="Stopped; no process left behind.",
                       left=f"The sandbox keeps running. Back to the UI: meshdojo tui --name {args.name}; "
                            f"stop it: meshdojo down --name {args.name}")
    print("\nNo terminal for the UI here. Press Ctrl-C to stop the sandbox.", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    print("\nStopping ...", flush=True)
    backend_for(args.name).down()
    print("Stopped; no process left behind.")
    return 0


def _choice(args: argparse.Namespace):
    """The backend asked for (flags, or what the sandbox remembers), with the cluster options given."""
    import dataclasses

    from sandbox.backends.choice import remembered, resolve
    from sandbox.paths import SandboxPaths

    root = SandboxPaths.for_name(args.name).root
    choice = resolve(root, args.backend)
    kept = remembered(root)
    if kept is not None and args.backend and kept.kind != choice.kind and backend_for(args.name, kept).status() is not None:
        raise SandboxError(f"sandbox {args.name!r} is up on {kept.describe()}; stop it first (meshdojo down --name {args.name}) "
                           f"or use another --name")
    given = {k: v for k, v in (("image", args.image), ("image_archive", args.image_archive), ("kubeconfig", args.kubeconfig),
                                ("controlplane_url", args.controlplane_url), ("webhook_url", args.webhook_url)) if v}
    if given and not choice.is_kubernetes:
        raise SandboxError(f"--{next(iter(given)).replace('_', '-')} is for the Kubernetes backends (--backend kind|minikube|context)")
    if args.image_archive and choice.kind == "context":
        raise SandboxError("--image-archive is for kind and minikube (meshdojo loads it into the cluster it made); "
                           "for your own cluster, push the image to a registry it reaches and pass --image")
    return dataclasses.replace(choice, **given)


def _up_on_cluster(args: argparse.Namespace, choice, demos: list[str], own_ca) -> int:
    from sandbox.backends.choice import remember
    from sandbox.paths import SandboxPaths

    if choice.kind in ("kind", "minikube"):
        from sandbox.kube.preflight import checks, failures

        failed = failures(list(checks(choice.kind, args.name)))
        if failed:
            return fail("the cluster cannot be made here:\n" + "\n".join(f"  × {r.message}\n      fix: {r.hint}" for r in failed)
                        + f"\n(`meshdojo check --pre --backend {choice.kind}` shows every check)")
    remember(SandboxPaths.for_name(args.name).root, choice)
    print(f"Starting sandbox {args.name!r} on {choice.describe()} with {', '.join(demos)} ...", flush=True)
    try:
        st = backend_for(args.name, choice).up(demos, args.cert_lifetime, say=lambda line: print(line, flush=True), own_ca=own_ca)
    except (SandboxError, ValueError) as exc:
        return fail(f"{exc}\n(what was made stays; `meshdojo down --name {args.name}` removes it, `meshdojo up` tries again)")
    _summary(st)
    if args.no_tui or not (sys.stdin.isatty() and sys.stdout.isatty()):
        print(f"\nThe sandbox keeps running on the cluster. Stop it with: meshdojo down --name {args.name}")
        return 0
    return _run_ui(args.name, started_by_up=True)


def _run_ui(name: str, started_by_up: bool, stopped: str = "Stopped.", left: str | None = None) -> int:
    """The terminal UI until the learner quits: a crash is one line; 'stop' takes the sandbox down."""
    from tui.app import run as run_tui

    ended = run_tui(name, started_by_up=started_by_up)
    if ended.crash is not None:
        return _ui_crashed(ended.crash, name)
    if ended.choice == "stop":
        print("Stopping ...", flush=True)
        backend_for(name).down()
        print(stopped)
    elif left:
        print(left)
    return 0


def _summary(st: dict) -> None:
    workloads = st["workloads"]
    meshed = sum(1 for w in workloads if w["meshed"])
    print(f"Ready: control plane at {st['controlplane']['api']}, {len(workloads)} workload instances ({meshed} meshed).")
    for gw in st.get("gateways", []):
        where = gw["url"] or f"after `{gw['reach']}`: http://127.0.0.1:{gw['reach'].rsplit(' ', 1)[1].split(':')[0]}/"
        print(f"  {gw['title']:<24} {where}   (through the ingress gateway to {gw['service']})")


def _down(args: argparse.Namespace) -> int:

    from sandbox.backends.choice import forget
    from sandbox.paths import SandboxPaths

    try:
        backend = backend_for(args.name)
        stopped = backend.down()
    except (SandboxError, ValueError) as exc:
        return fail(str(exc))
    if backend.kind != "local":
        forget(SandboxPaths.for_name(args.name).root)
        print(f"Sandbox {args.name!r} removed from the cluster: nothing of meshdojo's remains there" if stopped
              else f"Sandbox {args.name!r} was not up; nothing to remove.")
        return 0
    print(f"Sandbox {args.name!r} stopped." if stopped else f"Sandbox {args.name!r} was not running; nothing to stop.")
    return 0


def _tui(args: argparse.Namespace) -> int:
    served = os.environ.get("TEXTUAL_DRIVER", "").startswith("textual.drivers.web_driver")  # a browser session (meshdojo serve)
    if not served and not (sys.stdin.isatty() and sys.stdout.isatty()):
        return fail("the UI needs a terminal; run it in one (or use the CLI commands: stat, tap, fault ...)")
    if served:
        from sandbox.processes import die_with_parent

        die_with_parent()  # the session's UI ends with the server, even a killed one
    started_here = False
    if backend_for(args.name).status() is None:  # nothing running: the start screen, then the dashboard
        from tui.launcher import run as run_launcher

        if run_launcher(args.name) != "started":
            return 0
        started_here = True
    return _run_ui(args.name, started_by_up=started_here)


def _ui_crashed(crash: tuple, name: str) -> int:
    line, log = crash
    print(f"error: the terminal UI crashed ({line}); the details are in {log}\n"
          f"The sandbox is still running. Reopen the UI: meshdojo tui --name {name}; "
          f"the CLI works too (meshdojo status --name {name}). Please report the crash log.", file=sys.stderr)
    return 1


def _status(args: argparse.Namespace) -> int:

    try:
        st = backend_for(args.name).status()
    except ValueError as exc:
        return fail(str(exc))
    if st is None:
        return fail(f"sandbox {args.name!r} is not running; start it with 'meshdojo up --name {args.name}'")
    from sandbox import netcli

    faults = netcli.active(args.name)
    if args.output == "json":
        print(json.dumps({**st, "netfaults": faults}, indent=2))
        return 0
    cp = st["controlplane"]
    on_cluster = st["backend"] != "local"
    where = f"control plane {cp['api']}" if on_cluster else f"control plane pid {cp['pid']} {cp['api']}"
    forked = f"; sidecars forked from pid {st['forkserver']} (the fork server)" if st.get("forkserver") else ""
    print(f"sandbox {st['name']} (backend {st['backend']}): {'ready' if st['ready'] else 'starting'}; "
          f"{where} {'ready' if cp['ready'] else 'DOWN'}{forked}")
    if on_cluster:  # pods have addresses and nodes, not pids
        rows = [("NAMESPACE", "POD", "MESHED", "READY", "RESTARTS", "IP", "NODE", "INBOUND")]
        for w in st["workloads"]:
            rows.append((w["namespace"], w["name"], "yes" if w["meshed"] else "no", "yes" if w["ready"] else "no",
                         str(w["restarts"]), w.get("pod_ip") or "-", w.get("node") or "-", str(w["ports"]["inbound"] or "-")))
    else:
        rows = [("NAMESPACE", "INSTANCE", "MESHED", "READY", "RESTARTS", "APP", "PROXY", "INBOUND")]
    for w in ([] if on_cluster else st["workloads"]):
        rows.append((w["namespace"], w["name"], "yes" if w["meshed"] else "no", "yes" if w["ready"] else "no",
                     str(w["restarts"]), str(w["pids"]["app"] or "-"), str(w["pids"]["proxy"] or "-"),
                     str(w["ports"]["inbound"] or "-")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    for gw in st.get("gateways", []):
        tls = gw.get("https") or (f"run: {gw['httpsReach']}" if gw.get("httpsReach") else None)
        print(f"{gw['title']}: {gw['url'] or 'run: ' + gw['reach']}" + (f"   (its Gateways' HTTPS listeners: {tls})" if tls else ""))
    faults = [f for f in faults if f["kind"] != "wire"]
    if faults:
        print("network faults (meshdojo fault clear removes them):")
        for fault in faults:
            print(f"  {netcli.describe(fault)}")
    return 0


def register(sub) -> None:
    up = sub.add_parser("up", help="start a sandbox: control plane, demo apps and their sidecars")
    up.add_argument("--demo", default="emojivoto,bookinfo", help="comma-separated: emojivoto, bookinfo (default both)")
    up.add_argument("--no-tui", action="store_true", help="return once ready and leave the sandbox running (default: open the UI)")
    up.add_argument("--cert-lifetime", default="24h", help="workload certificate lifetime (at least 60s)")
    up.add_argument("--fresh", action="store_true", help="start clean: forget the last run's scaling, injection and policies")
    ca = up.add_argument_group("Identity", "the mesh's CA (by default a new one, kept for the next runs)")
    add_ca_files(ca)
    ca.add_argument("--new-ca", action="store_true", help="forget the CA the last runs used (yours or one meshdojo made) and make a new one")
    k8s = up.add_argument_group("Kubernetes", "run the sandbox on a cluster (docs/kubernetes.md)")
    k8s.add_argument("--backend", metavar="BACKEND",
                     help="local (default: processes on this machine), kind, minikube (a cluster meshdojo makes), or "
                          "context[=NAME] (a cluster you have; never deleted); remembered for the sandbox; $MESHDOJO_BACKEND")
    k8s.add_argument("--image", help="the meshdojo image the cluster runs (default: this checkout's, `meshdojo images ref`)")
    k8s.add_argument("--image-archive", metavar="FILE", help="kind/minikube: load this `meshdojo images save` archive (no registry needed)")
    k8s.add_argument("--kubeconfig", help="the kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
    k8s.add_argument("--controlplane-url", metavar="URL",
                     help="a control plane running outside the cluster (developing meshdojo): its operator API, used instead "
                          "of a port-forward")
    k8s.add_argument("--webhook-url", metavar="URL", help="with --controlplane-url: where the API server reaches its injector")
    up.set_defaults(handler=_up)
    down = sub.add_parser("down", help="stop a sandbox and every process it started")
    down.set_defaults(handler=_down)
    tui = sub.add_parser("tui", help="the terminal UI: a start screen when no sandbox runs (local, kind, minikube or your cluster), "
                                     "then dashboard, topology, tap, security, faults, policies, logs, lessons, traces")
    tui.set_defaults(handler=_tui)
    st = sub.add_parser("status", help="the sandbox, its control plane and every workload instance")
    st.add_argument("-o", "--output", choices=["table", "json"], default="table")
    st.set_defaults(handler=_status)
    for p in (up, down, tui, st):
        add_name(p)
