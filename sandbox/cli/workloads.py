"""``scale``, ``inject``, ``uninject``, ``kill`` and ``logs``: what runs in a sandbox."""

from __future__ import annotations

import argparse
import sys

from sandbox.cli.common import add_name, add_namespace, fail, workload_name


def _scale(args: argparse.Namespace) -> int:
    from sandbox import local

    if args.replicas < 0 or args.replicas > 20:
        return fail("replicas must be from 0 to 20")
    try:
        ns, dep = local.set_desired(args.name, args.deployment, args.namespace, replicas=args.replicas)
        local.wait_ready(args.name, lambda st: _settled(st, ns, dep, replicas=args.replicas))
    except (local.SandboxError, ValueError) as exc:
        return fail(str(exc))
    print(f"deployment {ns}/{dep} scaled to {args.replicas}")
    return 0


def _inject(args: argparse.Namespace, inject: bool) -> int:
    from sandbox import local

    try:
        ns, dep = local.set_desired(args.name, args.deployment, args.namespace, inject=inject)
        local.wait_ready(args.name, lambda st: _settled(st, ns, dep, meshed=inject))
    except (local.SandboxError, ValueError) as exc:
        return fail(str(exc))
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
        return fail(str(exc))
    what = f"the sidecar (proxy) of {args.target}" if args.proxy else args.target
    print(f"killed {what} (SIGKILL to pid {', '.join(map(str, pids))}); the supervisor restarts it — "
          f"watch the RESTARTS column of 'meshdojo status'")
    return 0


def _logs(args: argparse.Namespace) -> int:
    import time

    from sandbox import local

    try:
        path = local.log_file(args.name, args.target, args.namespace, args.proxy)
    except (local.SandboxError, ValueError) as exc:
        return fail(str(exc))
    if not path.exists():
        return fail(f"no log yet at {path}")
    if args.proxy and not local.has_sidecar(args.name, args.target, args.namespace):
        print(f"note: {args.target} has no sidecar now (uninjected, or gone): this log is from when it had one "
              f"(last written {time.strftime('%H:%M:%S', time.localtime(path.stat().st_mtime))})", file=sys.stderr)
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


def register(sub) -> None:
    scale = sub.add_parser("scale", help="set a deployment's number of instances")
    scale.add_argument("deployment", type=workload_name, help="the deployment, e.g. web")
    scale.add_argument("replicas", type=int, help="how many instances, 0 to 20")
    scale.set_defaults(handler=_scale)
    inject = sub.add_parser("inject", help="roll a deployment's instances with a sidecar (like linkerd inject)")
    inject.set_defaults(handler=lambda a: _inject(a, True))
    uninject = sub.add_parser("uninject", help="roll a deployment's instances without a sidecar")
    uninject.set_defaults(handler=lambda a: _inject(a, False))
    for p in (inject, uninject):
        p.add_argument("deployment", type=workload_name, help="the deployment, e.g. emoji")
    kill = sub.add_parser("kill", help="SIGKILL a deployment's, or one instance's, app (a fault: it is restarted)")
    kill.add_argument("target", type=workload_name, help="a deployment, an instance (e.g. web-0), a gateway (emojivoto-ingress) or 'controlplane'")
    kill.add_argument("--proxy", action="store_true", help="kill the sidecar instead of the app")
    kill.set_defaults(handler=_kill)
    logs = sub.add_parser("logs", help="show a workload's log (the app's, or its sidecar's with --proxy)")
    logs.add_argument("target", type=workload_name, help="a deployment, an instance (e.g. web-0) or 'controlplane'")
    logs.add_argument("--proxy", action="store_true", help="the sidecar's log")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing what is written")
    logs.set_defaults(handler=_logs)
    for p in (scale, inject, uninject, kill, logs):
        add_namespace(p)
        add_name(p)
