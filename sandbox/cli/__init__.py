"""The ``meshdojo`` command: one module per group of verbs (as Linkerd's ``cli/cmd/`` has a
file per command), each registering its subcommands and their handlers."""

from __future__ import annotations

import argparse
import os
import sys

from sandbox.cli import (
    annotate,
    doctor,
    faults,
    images,
    install,
    jwt,
    lesson,
    lifecycle,
    load,
    observe,
    policy,
    report,
    room,
    secret,
    trace,
    workloads,
)
from sandbox.cli.common import fail
from sandbox.errors import SandboxError

GROUPS = (lifecycle, workloads, policy, secret, annotate, faults, observe, trace, jwt, load, report, doctor, install, images, lesson, room)


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
    args, extra = parser.parse_known_args(argv)
    tail = getattr(args, "positional_tail", None)
    if extra and tail and not any(e.startswith("-") for e in extra):  # positionals after an option, kubectl's order:
        setattr(args, tail, [*getattr(args, tail), *extra])           # annotate svc/emoji -n emojivoto KEY=VALUE
        extra = []
    if extra:  # say it with the usage of the command that was meant, not meshdojo's
        _innermost(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    if args.command not in ("lesson", "up", "down") and isinstance(getattr(args, "name", None), str):
        _remember(args.name, argv)
    try:
        return handler(args)
    except SandboxError as exc:  # e.g. a backend that cannot be reached, a bad $MESHDOJO_BACKEND: never a traceback
        return fail(str(exc))
    except BrokenPipeError:  # e.g. `meshdojo stat | head`: the reader left, nothing to report
        _quiet_stdout()
        return 0


def _remember(sandbox: str, argv: list[str]) -> None:
    """What the learner ran, for lessons whose steps are to look at something (a 'ran' check)."""
    from sandbox.lessons.checks import record

    words = []
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == "--name":
            skip = True
        elif not word.startswith("--name="):
            words.append(word)
    try:
        record(sandbox, words)
    except (OSError, ValueError):  # a read-only state directory, a bad --name (the command itself says so)
        pass


def _innermost(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser of the command that was typed: ``fault inject``'s, not ``fault``'s."""
    while True:
        subparsers = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        chosen = subparsers.choices.get(getattr(args, subparsers.dest, None)) if subparsers else None
        if chosen is None:
            return parser
        parser = chosen


def _quiet_stdout() -> None:
    """After the reader of our stdout went away, let the interpreter's last flush go nowhere
    (Python's own advice), so no 'Broken pipe' error follows."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
