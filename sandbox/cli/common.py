"""What every verb group shares: how errors and tables are printed, and the common options."""

from __future__ import annotations

import argparse
import sys


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def fail(message: str) -> int:
    """An error for the learner: one line (or a few) on stderr, exit status 1."""
    print(f"error: {message}", file=sys.stderr)
    return 1


def add_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="default", help="which sandbox (default: default)")


def add_namespace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", help="the namespace (needed only when a name is ambiguous)")


def workload_name(text: str) -> str:
    """``deploy/web``, ``deployment/web``, ``pod/web-0`` (kubectl's spelling) or plain ``web``."""
    kind, slash, rest = text.partition("/")
    return rest if slash and kind in ("deploy", "deployment", "deployments", "pod", "pods", "po") and rest else text
