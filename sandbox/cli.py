"""The ``meshdojo`` command."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from controlplane.durations import InvalidDuration, parse_duration
from sandbox.manifests import ManifestError


def _up(args: argparse.Namespace) -> int:
    from sandbox import local

    try:
        lifetime = parse_duration(args.cert_lifetime)
    except InvalidDuration as exc:
        return _fail(f"--cert-lifetime: {exc}")
    if lifetime < 60:
        return _fail("--cert-lifetime: must be at least 60s (try --cert-lifetime 2m to watch rotations)")
    demos = [d.strip() for d in args.demo.split(",") if d.strip()]
    print(f"Starting sandbox {args.name!r} with {', '.join(demos)} ...", flush=True)
    try:
        st = local.up(args.name, demos, args.cert_lifetime)
    except (local.SandboxError, ManifestError, ValueError) as exc:
        return _fail(str(exc))
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
            local.down(args.name)
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
    local.down(args.name)
    print("Stopped; no process left behind.")
    return 0


def _summary(st: dict) -> None:
    workloads = st["workloads"]
    meshed = sum(1 for w in workloads if w["meshed"])
    print(f"Ready: control plane at {st['controlplane']['api']}, {len(workloads)} workload instances ({meshed} meshed).")
    for gw in st.get("gateways", []):
        print(f"  {gw['title']:<24} {gw['url']}   (through the ingress gateway to {gw['service']})")


def _down(args: argparse.Namespace) -> int:
    from sandbox import local

    try:
        stopped = local.down(args.name)
    except ValueError as exc:
        return _fail(str(exc))
    print(f"Sandbox {args.name!r} stopped." if stopped else f"Sandbox {args.name!r} was not running; nothing to stop.")
    return 0


def _tui(args: argparse.Namespace) -> int:
    from sandbox import local

    if local.status(args.name) is None:
        return _fail(f"sandbox {args.name!r} is not running; start it with 'meshdojo up --name {args.name}' (it opens the UI)")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return _fail("the UI needs a terminal; run it in one (or use the CLI commands: stat, tap, fault ...)")
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
    from sandbox import local

    try:
        st = local.status(args.name)
    except ValueError as exc:
        return _fail(str(exc))
    if st is None:
        return _fail(f"sandbox {args.name!r} is not running; start it with 'meshdojo up --name {args.name}'")
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


def _scale(args: argparse.Namespace) -> int:
    from sandbox import local

    if args.replicas < 0 or args.replicas > 20:
        return _fail("replicas must be from 0 to 20")
    try:
        ns, dep = local.set_desired(args.name, args.deployment, args.namespace, replicas=args.replicas)
        local.wait_ready(args.name, lambda st: _settled(st, ns, dep, replicas=args.replicas))
    except (local.SandboxError, ValueError) as exc:
        return _fail(str(exc))
    print(f"deployment {ns}/{dep} scaled to {args.replicas}")
    return 0


def _inject(args: argparse.Namespace, inject: bool) -> int:
    from sandbox import local

    try:
        ns, dep = local.set_desired(args.name, args.deployment, args.namespace, inject=inject)
        local.wait_ready(args.name, lambda st: _settled(st, ns, dep, meshed=inject))
    except (local.SandboxError, ValueError) as exc:
        return _fail(str(exc))
    print(f"deployment {ns}/{dep} {'injected: every instance has a sidecar' if inject else 'uninjected: no sidecars'} (rolled)")
    return 0


def _settled(st: dict, ns: str, dep: str, replicas: int | None = None, meshed: bool | None = None) -> bool:
    mine = [w for w in st["workloads"] if w["namespace"] == ns and w["deployment"] == dep]
    if replicas is not None and len(mine) != replicas:
        return False
    return all(w["ready"] and (meshed is None or w["meshed"] == meshed) for w in mine)


def _kill(args: argparse.Namespace) -> int:
    from sandbox import local

    try:
        pids = local.kill(args.name, args.target, args.namespace, proxy=args.proxy)
    except (local.SandboxError, ValueError) as exc:
        return _fail(str(exc))
    print(f"killed {args.target} (SIGKILL to pid {', '.join(map(str, pids))}); the supervisor restarts it — "
          f"watch the RESTARTS column of 'meshdojo status'")
    return 0


def _logs(args: argparse.Namespace) -> int:
    import time

    from sandbox import local

    try:
        path = local.log_file(args.name, args.target, args.namespace, args.proxy)
    except (local.SandboxError, ValueError) as exc:
        return _fail(str(exc))
    if not path.exists():
        return _fail(f"no log yet at {path}")
    with open(path, errors="replace") as f:
        sys.stdout.write(f.read())
        sys.stdout.flush()
        while args.follow:
            line = f.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.2)
    return 0


def _check(args: argparse.Namespace) -> int:
    from sandbox.check import run

    try:
        return 0 if run(args.name, args.pre) else 1
    except ValueError as exc:
        return _fail(str(exc))


def _apply(args: argparse.Namespace) -> int:
    from sandbox import resources
    from sandbox.cpapi import ApiError

    try:
        result = resources.apply(args.name, args.filename, args.namespace)
    except ApiError as exc:
        lines = [f"{e['source']}: document {e['index']}: {e['field']}: {e['message']}" for e in exc.body.get("errors", [])]
        return _fail("\n".join([str(exc), *lines]))
    except (resources.ResourceError, ValueError) as exc:
        return _fail(str(exc))
    for item in result["applied"]:
        print(f"{item['kind'].lower()}/{item['name']} {item['action']} (namespace {item['namespace']})")
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _get(args: argparse.Namespace) -> int:
    import yaml

    from sandbox import resources
    from sandbox.cpapi import ApiError

    try:
        items = resources.get(args.name, args.kind, args.resource, args.namespace)
    except (resources.ResourceError, ApiError, ValueError) as exc:
        return _fail(str(exc))
    if args.output == "json":
        print(json.dumps([i["document"] for i in items], indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump_all([i["document"] for i in items], sort_keys=False), end="")
    elif not items:
        print(f"No {args.kind} resources found.")
    else:
        _print_table(resources.table(items))
    return 0


def _delete(args: argparse.Namespace) -> int:
    from sandbox import resources
    from sandbox.cpapi import ApiError

    try:
        if args.filename:
            lines = resources.delete_files(args.name, args.filename)
        elif args.kind and args.resource:
            lines = resources.delete(args.name, args.kind, args.resource, args.namespace)
        else:
            return _fail("say what to delete: 'meshdojo delete -f FILE' or 'meshdojo delete KIND NAME'")
    except (resources.ResourceError, ApiError, ValueError) as exc:
        return _fail(str(exc))
    print("\n".join(lines))
    return 0


def _fault(args: argparse.Namespace) -> int:
    import yaml

    from sandbox import local, netcli, resources
    from sandbox.cpapi import ApiError

    try:
        if args.action == "clear":
            print("\n".join(netcli.clear(args.name, args.service, args.namespace)))
            return 0
        if args.action == "net":
            fault = netcli.net_fault(args.name, args.kind, args.targets, args.source, args.namespace, args.latency, args.jitter,
                                     args.rate, args.duration)
            print(f"network fault {netcli.describe(fault)}")
            print(f"watch for: {fault['watch_for']}")
            print("undo it: meshdojo fault clear   (or wait: it reverts by itself); see it: meshdojo status")
            return 0
        ns = resources.service_namespace(args.name, args.service, args.namespace)
        if args.abort is None and args.delay is None:
            return _fail("say which fault: --abort STATUS [--percent P] and/or --delay DURATION [--delay-percent P]")
        document = resources.fault_document(args.service, ns, args.abort, args.percent, args.delay, args.delay_percent, args.duration)
        api = resources.api_for(args.name)
        api.call("POST", "/v1/policies", {"documents": [{"source": "meshdojo fault inject", "index": 0, "document": document}]})
    except ApiError as exc:
        lines = [f"{e['field']}: {e['message']}" for e in exc.body.get("errors", [])]
        return _fail("\n".join([str(exc), *lines]))
    except (resources.ResourceError, local.SandboxError, ValueError) as exc:
        return _fail(str(exc))
    print(f"faultinjection/{args.service}-fault applied; this is the resource (save it and use 'meshdojo apply -f'):\n---")
    print(yaml.safe_dump(document, sort_keys=False), end="")
    print(f"---\nWatch it: meshdojo status; undo it: meshdojo fault clear {args.service}")
    return 0


def _wire(args: argparse.Namespace) -> int:
    from sandbox import local, netcli, resources
    from sandbox.cpapi import ApiError

    try:
        seen = netcli.wire(args.name, args.source, args.target, args.namespace, args.timeout)
    except (ApiError, resources.ResourceError, local.SandboxError, ValueError) as exc:
        return _fail(str(exc))
    if args.output == "json":
        print(json.dumps(seen, indent=2))
    else:
        print("\n".join(netcli.render_wire(seen)))
    return 0 if seen["connections"] else 1


def _observe(args: argparse.Namespace) -> int:
    from sandbox import observe, resources
    from sandbox.cpapi import ApiError

    try:
        if args.command == "stat":
            rows = observe.stat(args.name, args.target, args.namespace, args.window)
            table = observe.stat_table(rows, args.output == "wide")
        elif args.command == "routes":
            rows = observe.routes(args.name, args.target, args.namespace, args.source, args.window)
            table = observe.routes_table(rows, args.output == "wide")
        elif args.command == "edges":
            rows = observe.edges(args.name, args.namespace, args.window)
            table = observe.edges_table(rows, args.output == "wide")
        else:
            data = observe.identities(args.name)
            if args.output == "json":
                print(json.dumps(data, indent=2))
                return 0
            print(f"trust anchor: {data['trust_anchor']['subject']}, valid until {data['trust_anchor']['notAfter']}")
            print(f"issuer:       {data['issuer']['subject']}, valid until {data['issuer']['notAfter']}")
            table = [("WORKLOAD", "IDENTITY", "SERIAL", "NOT_AFTER", "ROTATES_IN", "ROTATIONS", "MODE")]
            for w in data["workloads"]:
                table.append((w["workload"], w["identity"], (w.get("serial") or "-")[:12], (w.get("not_after") or "-")[:19],
                              f"{w['rotation_in_seconds']:.0f}s" if w.get("rotation_in_seconds") is not None else "-",
                              str(w.get("rotations", "-")), w.get("mode") or w.get("error", "-")))
            _print_table(table)
            return 0
    except (resources.ResourceError, ApiError, ValueError) as exc:
        return _fail(str(exc))
    if args.output == "json":
        print(json.dumps(rows, indent=2))
    elif len(table) == 1:
        print("No traffic yet in this window (try a longer --window, or wait for the load generators).")
    else:
        _print_table(table)
    return 0


def _attack(args: argparse.Namespace) -> int:
    from sandbox import attack, resources
    from sandbox.cpapi import ApiError

    kind, _, service = args.target.partition("/")
    if kind not in ("svc", "service") or not service:
        return _fail(f"{args.target!r}: expected svc/NAME, e.g. 'meshdojo attack svc/web'")
    try:
        results = attack.attack_service(args.name, service, args.namespace)
    except (resources.ResourceError, ApiError, ValueError, OSError) as exc:
        return _fail(str(exc))
    for endpoint_id, port, meshed, outcomes in results:
        where = "its sidecar's inbound port" if meshed else "the app itself (no sidecar)"
        print(f"intruder -> {service} endpoint {endpoint_id} at 127.0.0.1:{port} ({where})")
        for outcome in outcomes:
            mark = {"refused": "√", "denied": "√", "let through": "‼"}[outcome.verdict]
            label = "plaintext, no certificate" if outcome.attempt == "plaintext" else "TLS with a foreign CA's certificate"
            print(f"  {mark} {label}: {outcome.verdict.upper()} — {outcome.detail}")
            print(f"      {outcome.lesson}")
    return 0


def _tap(args: argparse.Namespace) -> int:
    from sandbox import local, tapcli

    try:
        tapcli.run(args.name, args.target, args.namespace, args.to, args.path, args.method, args.output == "json",
                   emit=lambda line: print(line, flush=True))
    except (local.SandboxError, ValueError, OSError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 0
    return 0


def _top(args: argparse.Namespace) -> int:
    from sandbox import local, top

    try:
        result = top.run(args.name, args.target, args.namespace, args.duration, emit=lambda text: print(text, flush=True))
    except (local.SandboxError, ValueError, OSError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 0
    print(top.render(result))
    return 0


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "controlplane":
        from controlplane.config import parse_args
        from controlplane.run import main_with

        return main_with(parse_args(argv[1:]))
    if argv and argv[0] == "proxy":
        from proxy.__main__ import main as proxy_main

        return proxy_main(argv[1:])
    parser = argparse.ArgumentParser(prog="meshdojo", description="A service-mesh sandbox for learning and teaching.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    up = sub.add_parser("up", help="start a sandbox: control plane, demo apps and their sidecars")
    up.add_argument("--demo", default="emojivoto,bookinfo", help="comma-separated: emojivoto, bookinfo (default both)")
    up.add_argument("--no-tui", action="store_true", help="return once ready and leave the sandbox running (default: open the UI)")
    up.add_argument("--cert-lifetime", default="24h", help="workload certificate lifetime (at least 60s)")
    down = sub.add_parser("down", help="stop a sandbox and every process it started")
    tui = sub.add_parser("tui", help="the terminal UI of a running sandbox: dashboard, topology, tap, security, faults, policies, logs")
    st = sub.add_parser("status", help="the sandbox, its control plane and every workload instance")
    st.add_argument("-o", "--output", choices=["table", "json"], default="table")
    scale = sub.add_parser("scale", help="set a deployment's number of instances")
    scale.add_argument("deployment")
    scale.add_argument("replicas", type=int)
    inject = sub.add_parser("inject", help="roll a deployment's instances with a sidecar (like linkerd inject)")
    uninject = sub.add_parser("uninject", help="roll a deployment's instances without a sidecar")
    for p in (inject, uninject):
        p.add_argument("deployment")
    kill = sub.add_parser("kill", help="SIGKILL a deployment's, or one instance's, app (a fault: it is restarted)")
    kill.add_argument("target", help="a deployment, an instance (e.g. web-0), a gateway (emojivoto-ingress) or 'controlplane'")
    kill.add_argument("--proxy", action="store_true", help="kill the sidecar instead of the app")
    logs = sub.add_parser("logs", help="show a workload's log (the app's, or its sidecar's with --proxy)")
    logs.add_argument("target", help="a deployment, an instance (e.g. web-0) or 'controlplane'")
    logs.add_argument("--proxy", action="store_true", help="the sidecar's log")
    logs.add_argument("-f", "--follow", action="store_true")
    apply = sub.add_parser("apply", help="apply policy resources from YAML files or directories (all or nothing)")
    apply.add_argument("-f", "--filename", action="append", required=True, help="a file or directory (repeatable)")
    get = sub.add_parser("get", help="list policy resources, e.g. 'meshdojo get faultinjection'")
    get.add_argument("kind")
    get.add_argument("resource", nargs="?")
    get.add_argument("-o", "--output", choices=["table", "yaml", "json"], default="table")
    delete = sub.add_parser("delete", help="delete policy resources: -f FILE, or KIND NAME")
    delete.add_argument("kind", nargs="?")
    delete.add_argument("resource", nargs="?")
    delete.add_argument("-f", "--filename", action="append")
    fault = sub.add_parser("fault", help="faults: 'fault inject SERVICE' (HTTP), 'fault net KIND TARGET' (network), 'fault clear'")
    fault_sub = fault.add_subparsers(dest="action", metavar="ACTION", required=True)
    finject = fault_sub.add_parser("inject", help="HTTP delay and/or abort on a service (a FaultInjection resource)")
    finject.add_argument("service")
    finject.add_argument("--abort", type=int, metavar="STATUS", help="answer this HTTP status instead of the service")
    finject.add_argument("--percent", type=float, default=100.0, help="share of requests aborted (default 100)")
    finject.add_argument("--delay", metavar="DURATION", help="delay requests by this long, e.g. 2s")
    finject.add_argument("--delay-percent", type=float, default=100.0, help="share of requests delayed (default 100)")
    fclear = fault_sub.add_parser("clear", help="remove every fault (HTTP and network), or only those on one service")
    fclear.add_argument("service", nargs="?")
    fnet = fault_sub.add_parser("net", help="a network fault on an edge: latency, bandwidth, reset, blackhole or partition")
    fnet.add_argument("kind", choices=["latency", "bandwidth", "reset", "blackhole", "partition"])
    fnet.add_argument("targets", nargs="+", metavar="TARGET", help="svc/NAME or deploy/NAME (a partition: deploy/A deploy/B)")
    fnet.add_argument("--from", dest="source", metavar="deploy/NAME", help="only this client's connections (default: every client)")
    fnet.add_argument("--latency", metavar="DURATION", help="latency: added to each response, e.g. 300ms")
    fnet.add_argument("--jitter", metavar="DURATION", help="latency: ± this much at random, e.g. 50ms")
    fnet.add_argument("--rate", metavar="RATE", help="bandwidth: e.g. 10KB/s, 1MiB/s")
    finject.add_argument("--for", dest="duration", metavar="DURATION", help="remove the fault by itself after this long, e.g. 2m")
    fnet.add_argument("--for", dest="duration", metavar="DURATION", help="remove it by itself after this long (default 5m)")
    wire = sub.add_parser("wire", help="what an eavesdropper between two workloads sees: TLS records, or readable HTTP")
    wire.add_argument("source", metavar="deploy/A")
    wire.add_argument("target", metavar="deploy/B")
    wire.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a connection on the edge (default 10)")
    wire.add_argument("-o", "--output", choices=["text", "json"], default="text")
    stat = sub.add_parser("stat", help="golden metrics per deployment or service, like 'linkerd viz stat'")
    stat.add_argument("target", nargs="?", help="deploy, deploy/NAME, svc or svc/NAME (default: deploy)")
    routes = sub.add_parser("routes", help="per route of a service: EFFECTIVE (what callers saw) vs ACTUAL (every attempt)")
    routes.add_argument("target", help="svc/NAME")
    routes.add_argument("--from", dest="source", metavar="deploy/NAME", help="only this client's requests")
    edges = sub.add_parser("edges", help="who talks to whom, and whether it is mutual TLS, like 'linkerd viz edges'")
    ident = sub.add_parser("identity", aliases=["certs"], help="every workload's SPIFFE ID and certificate, with rotation countdowns")
    for p in (stat, edges, routes):
        p.add_argument("-o", "--output", choices=["table", "wide", "json"], default="table")
        p.add_argument("-t", "--window", default="1m", help="time window (default 1m; 10s for 'live')")
    ident.add_argument("-o", "--output", choices=["table", "json"], default="table")
    tap = sub.add_parser("tap", help="live requests of a deployment and each one's fate, like 'linkerd viz tap'")
    tap.add_argument("target", help="deploy/NAME")
    tap.add_argument("--to", help="only requests to this destination (e.g. deploy/emoji or svc/emoji)")
    tap.add_argument("--path", help="only paths starting with this")
    tap.add_argument("--method", help="only this method")
    tap.add_argument("-o", "--output", choices=["text", "json"], default="text")
    top = sub.add_parser("top", help="a live table of a deployment's traffic by source, destination, method and path")
    top.add_argument("target", help="deploy/NAME")
    top.add_argument("--duration", type=float, help="stop after this many seconds and print the table (default: run until Ctrl-C)")
    attack = sub.add_parser("attack", help="an intruder tries a service in plaintext and with a foreign CA: what gets through?")
    attack.add_argument("target", help="svc/NAME")
    check = sub.add_parser("check", help="check the machine and the sandbox, Linkerd-style")
    check.add_argument("--pre", action="store_true", help="only what must hold before 'meshdojo up'")
    for p in (scale, inject, uninject, kill, logs, apply, get, delete, finject, fclear, fnet, wire, stat, edges, routes, attack, tap, top):
        p.add_argument("-n", "--namespace", help="the namespace (needed only when a name is ambiguous)")
    for p in (up, down, tui, st, scale, inject, uninject, kill, logs, check, apply, get, delete, finject, fclear, fnet, wire, stat, edges,
              routes, ident, attack, tap, top):
        p.add_argument("--name", default="default", help="which sandbox (default: default)")
    sub.add_parser("controlplane", help="run the control plane in the foreground (see: meshdojo controlplane --help)")
    sub.add_parser("proxy", help="run a sidecar proxy in the foreground (see: meshdojo proxy --help)")
    args = parser.parse_args(argv)
    handlers = {"up": _up, "down": _down, "tui": _tui, "status": _status, "scale": _scale, "kill": _kill, "logs": _logs,
                "check": _check, "attack": _attack, "tap": _tap, "top": _top, "stat": _observe, "edges": _observe, "routes": _observe, "identity": _observe, "certs": _observe, "apply": _apply, "get": _get, "delete": _delete, "fault": _fault, "wire": _wire, "inject": lambda a: _inject(a, True), "uninject": lambda a: _inject(a, False)}
    if args.command not in handlers:
        parser.print_help()
        return 0
    try:
        return handlers[args.command](args)
    except BrokenPipeError:  # e.g. `meshdojo stat | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
