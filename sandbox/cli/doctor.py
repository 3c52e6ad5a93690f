"""``check``: the doctor."""

from __future__ import annotations

import argparse
import json

from sandbox.cli.common import add_name, fail


def _check(args: argparse.Namespace) -> int:
    from sandbox.check import run

    try:
        if args.output == "json":
            from sandbox.check import results, to_json

            report = to_json(results(args.name, args.pre, args.backend))
            print(json.dumps(report, indent=2))
            return 0 if report["ok"] else 1
        return 0 if run(args.name, args.pre, backend=args.backend) else 1
    except ValueError as exc:
        return fail(str(exc))


def register(sub) -> None:
    check = sub.add_parser("check", help="check the machine and the sandbox, Linkerd-style")
    check.add_argument("--pre", action="store_true", help="only what must hold before 'meshdojo up'")
    check.add_argument("-o", "--output", choices=["text", "json"], default="text")
    check.add_argument("--backend", choices=["local", "kind", "minikube"], default="local",
                       help="with --pre: also what making a kind or minikube cluster needs (Docker, the tools, ports)")
    check.set_defaults(handler=_check)
    add_name(check)
