"""The ``meshdojo`` command: one module per group of verbs (as Linkerd's ``cli/cmd/`` has a
file per command), each registering its subcommands and their handlers."""

from __future__ import annotations

import argparse
import sys

from sandbox.cli import doctor, faults, lifecycle, load, observe, policy, workloads

GROUPS = (lifecycle, workloads, policy, faults, observe, load, doctor)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshdojo", description="A service-mesh sandbox for learning and teaching.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    sub.add_parser("controlplane", help="run the control plane in the foreground (see: meshdojo controlplane --help)")
    sub.add_parser("proxy", help="run a sidecar proxy in the foreground (see: meshdojo proxy --help)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "controlplane":
        from controlplane.config import parse_args
        from controlplane.run import main_with

        return main_with(parse_args(argv[1:]))
    if argv and argv[0] == "proxy":
        from proxy.__main__ import main as proxy_main

        return proxy_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        return handler(args)
    except BrokenPipeError:  # e.g. `meshdojo stat | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0
