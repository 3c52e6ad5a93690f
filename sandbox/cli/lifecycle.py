"""``up``, ``down``, ``tui`` and ``status``: a sandbox's lifecycle."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from controlplane.durations import InvalidDuration, parse_duration
from sandbox.backends import backend_for
from sandbox.cli.common import add_name, fail
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
    if backend_for(args.name).status() is None:
        if args.fresh:
            backend_for(args.name).forget()
        elif restored := backend_for(args.name).carried_over():
            print("Restoring what the last run of this sandbox left (start clean with 'meshdojo up --fresh'):")
            for line in restored:
                print(f"  {line}")
    print(f"Starting sandbox {args.name!r} with {', '.join(demos)} ...", flush=True)
    try:
        st = backend_for(args.name).up(demos, args.cert_lifetime)
    except (local.SandboxError, ManifestError, ValueError) as exc:
        return fail(str(exc))
    _summary(st)
    if args.no_tui:
        print(f"\nThe sandbox keeps running in the background. Stop it with: meshdojo down --name {args.name}")
        return 0
    if sys.stdin.isatty() and sys.stdout.isatty():
        from tui.app import run as run_tui

        ended = run_tui(args.name, started_by_up=True)
        if ended.crash is not None:
            return _ui_crashed(ended.crash, args.name)
        if ended.choice == "stop":
            print("Stopping ...", flush=True)
            backend_for(args.name).down()
            print("Stopped; no process left behind.")
        else:
            print(f"The sandbox keeps running. Back to the UI: meshdojo tui --name {args.name}; stop it: meshdojo down --name {args.name}")
        return 0
    print("\nNo terminal for the UI here. Press Ctrl-C to stop the sandbox.", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    print("\nStopping ...", flush=True)
    backend_for(args.name).down()
    print("Stopped; no process left behind.")
    return 0


def _summary(st: dict) -> None:
    workloads = st["workloads"]
    meshed = sum(1 for w in workloads if w["meshed"])
    print(f"Ready: control plane at {st['controlplane']['api']}, {len(workloads)} workload instances ({meshed} meshed).")
    for gw in st.get("gateways", []):
        print(f"  {gw['title']:<24} {gw['url']}   (through the ingress gateway to {gw['service']})")


def _down(args: argparse.Namespace) -> int:

    try:
        stopped = backend_for(args.name).down()
    except ValueError as exc:
        return fail(str(exc))
    print(f"Sandbox {args.name!r} stopped." if stopped else f"Sandbox {args.name!r} was not running; nothing to stop.")
    return 0


def _tui(args: argparse.Namespace) -> int:

    if backend_for(args.name).status() is None:
        return fail(f"sandbox {args.name!r} is not running; start it with 'meshdojo up --name {args.name}' (it opens the UI)")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return fail("the UI needs a terminal; run it in one (or use the CLI commands: stat, tap, fault ...)")
    from tui.app import run as run_tui

    ended = run_tui(args.name)
    return _ui_crashed(ended.crash, args.name) if ended.crash is not None else 0


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
    print(f"sandbox {st['name']} (backend {st['backend']}): {'ready' if st['ready'] else 'starting'}; "
          f"control plane pid {cp['pid']} {cp['api']} {'ready' if cp['ready'] else 'DOWN'}")
    rows = [("NAMESPACE", "INSTANCE", "MESHED", "READY", "RESTARTS", "APP", "PROXY", "INBOUND")]
    for w in st["workloads"]:
        rows.append((w["namespace"], w["name"], "yes" if w["meshed"] else "no", "yes" if w["ready"] else "no",
                     str(w["restarts"]), str(w["pids"]["app"] or "-"), str(w["pids"]["proxy"] or "-"),
                     str(w["ports"]["inbound"] or "-")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    for gw in st.get("gateways", []):
        print(f"{gw['title']}: {gw['url']}")
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
    up.set_defaults(handler=_up)
    down = sub.add_parser("down", help="stop a sandbox and every process it started")
    down.set_defaults(handler=_down)
    tui = sub.add_parser("tui", help="the terminal UI of a running sandbox: dashboard, topology, tap, security, faults, policies, logs")
    tui.set_defaults(handler=_tui)
    st = sub.add_parser("status", help="the sandbox, its control plane and every workload instance")
    st.add_argument("-o", "--output", choices=["table", "json"], default="table")
    st.set_defaults(handler=_status)
    for p in (up, down, tui, st):
        add_name(p)
