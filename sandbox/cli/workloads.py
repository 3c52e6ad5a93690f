"""``scale``, ``inject``, ``uninject``, ``kill`` and ``logs``: what runs in a sandbox."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sandbox.backends import backend_for
from sandbox.cli.common import add_name, add_namespace, fail, workload_name


def _scale(args: argparse.Namespace) -> int:
    from sandbox import local

    if args.replicas < 0 or args.replicas > 20:
        return fail("replicas must be from 0 to 20")
    try:
        backend = backend_for(args.name)
        ns, dep = backend.scale(args.deployment, args.namespace, args.replicas)
        backend.wait_until(lambda st: _settled(st, ns, dep, replicas=args.replicas))
    except (local.SandboxError, ValueError) as exc:
        return fail(str(exc))
    print(f"deployment {ns}/{dep} scaled to {args.replicas}")
    return 0


def _inject_file(args: argparse.Namespace) -> int:
    """``meshdojo inject -f FILE``: the manifests with the proxy added, printed (like ``linkerd
    inject --manual``): nothing runs, nothing is applied; pipe it into ``kubectl apply -f -``."""
    import yaml

    from controlplane.injector import InjectConfig, inject_document
    from controlplane.podannotations import AnnotationError
    from sandbox.kube.image import image_ref

    try:
        text = sys.stdin.read() if str(args.filename) == "-" else args.filename.read_text()
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except OSError as exc:
        return fail(f"cannot read {args.filename}: {exc.strerror}")
    except yaml.YAMLError as exc:
        return fail(f"{args.filename} is not YAML: {exc}")
    config = InjectConfig(image=args.image or image_ref(), native_sidecars=not args.no_native_sidecar)
    kinds = [d.get("kind") for d in docs if isinstance(d, dict)]
    try:
        injected = [inject_document(d, config) for d in docs]
    except AnnotationError as exc:
        return fail(f"{args.filename}: {exc}; nothing was printed")
    print(yaml.safe_dump_all(injected, sort_keys=False), end="")
    changed = sum(a != b for a, b in zip(docs, injected, strict=True))
    print(f"{changed} of {len(kinds)} documents injected", file=sys.stderr)
    return 0


def _inject(args: argparse.Namespace, inject: bool) -> int:
    from sandbox import local

    if inject and args.filename is not None:
        if args.deployment:
            return fail("give a deployment (the sandbox's) or -f FILE (manifests to print injected), not both")
        return _inject_file(args)
    if not args.deployment:
        return fail("which deployment? e.g. `meshdojo inject deploy/web`, or `meshdojo inject -f deploy.yaml` for manifests")

    try:
        backend = backend_for(args.name)
        ns, dep = backend.set_injected(args.deployment, args.namespace, inject)
        backend.wait_until(lambda st: _settled(st, ns, dep, meshed=inject))
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
        backend = backend_for(args.name)
        pids = backend.kill(args.target, args.namespace, proxy=args.proxy)
    except (local.SandboxError, ValueError) as exc:
        return fail(str(exc))
    if backend.kind != "local":
        print(f"deleted pod {', '.join(pids)}: its Deployment makes a new one — watch 'meshdojo status' "
              "(the RESTARTS column counts container restarts; a new pod has a new name)")
        return 0
    what = f"the sidecar (proxy) of {args.target}" if args.proxy else args.target
    print(f"killed {what} (SIGKILL to pid {', '.join(map(str, pids))}); the supervisor restarts it — "
          f"watch the RESTARTS column of 'meshdojo status'")
    return 0


def _logs(args: argparse.Namespace) -> int:
    import time

    from sandbox import local

    try:
        backend = backend_for(args.name)
        if backend.kind != "local":  # the pods' logs, from the API server (kubectl logs)
            for text in backend.logs(args.target, args.namespace, args.proxy, args.follow):
                sys.stdout.write(text)
                sys.stdout.flush()
            return 0
        path = backend.log_file(args.target, args.namespace, args.proxy)
    except (local.SandboxError, ValueError) as exc:
        return fail(str(exc))
    if not path.exists():
        return fail(f"no log yet at {path}")
    if args.proxy and not backend_for(args.name).has_sidecar(args.target, args.namespace):
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
    inject = sub.add_parser("inject", help="roll a deployment's instances with a sidecar, or print manifests injected (-f)",
                            description="Roll a sandbox deployment's instances with a sidecar; or, with -f, print Kubernetes "
                                        "manifests with the proxy added (like `linkerd inject`), e.g. "
                                        "`meshdojo inject -f deploy.yaml | kubectl apply -f -`.")
    inject.set_defaults(handler=lambda a: _inject(a, True))
    inject.add_argument("deployment", nargs="?", type=workload_name, help="the deployment, e.g. emoji")
    inject.add_argument("-f", "--filename", type=Path, help="manifests to print with the proxy added (- for stdin)")
    inject.add_argument("--image", help="with -f: the proxy's image (default: this version's meshdojo image)")
    inject.add_argument("--no-native-sidecar", action="store_true",
                        help="with -f: the proxy as an ordinary first container (API servers before 1.29)")
    uninject = sub.add_parser("uninject", help="roll a deployment's instances without a sidecar")
    uninject.set_defaults(handler=lambda a: _inject(a, False))
    uninject.add_argument("deployment", type=workload_name, help="the deployment, e.g. emoji")
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
