"""The ``meshdojo`` command."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="meshdojo", description="A service-mesh sandbox for learning and teaching.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("controlplane", help="run the control plane in the foreground (see --help)", add_help=False)
    sub.add_parser("proxy", help="run a sidecar proxy in the foreground (see --help)", add_help=False)
    if argv and argv[0] == "controlplane":
        from controlplane.config import parse_args
        from controlplane.run import main_with

        return main_with(parse_args(argv[1:]))
    if argv and argv[0] == "proxy":
        from proxy.__main__ import main as proxy_main

        return proxy_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
