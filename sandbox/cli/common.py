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


CA_FILES = (("trust-anchor", "the trust anchor's certificate (PEM)"),
            ("issuer-certificate", "the issuer's certificate, signed by the trust anchor (PEM)"),
            ("issuer-key", "the issuer's private key, ECDSA P-256 (PEM)"))


def add_ca_files(parser: argparse.ArgumentParser) -> None:
    """Linkerd's ``--identity-*-file`` options: a CA of the learner's own instead of a new one."""
    from pathlib import Path

    for what, help_ in CA_FILES:
        parser.add_argument(f"--identity-{what}-file", type=Path, metavar="FILE",
                            help=f"{help_}; with the other two, your own CA instead of a new one")


def given_ca(args: argparse.Namespace):
    """The CA the three ``--identity-*-file`` options give, checked (a ``Pki``), or None if none
    is given. Raises ValueError with what to fix (one or two missing, unreadable, not a CA ...)."""
    from sandbox.kube import cluster

    files = (args.identity_trust_anchor_file, args.identity_issuer_certificate_file, args.identity_issuer_key_file)
    if not any(files):
        return None
    if not all(files):
        raise ValueError("give all three: --identity-trust-anchor-file, --identity-issuer-certificate-file, --identity-issuer-key-file")
    try:
        return cluster.pki_from_files(*files)
    except cluster.ClusterError as exc:
        raise ValueError(str(exc)) from None


def add_namespace(parser: argparse.ArgumentParser, every: bool = False) -> None:
    """``-n``; with ``every``, kubectl's ``-A`` too (every namespace: what leaving out -n does)."""
    if not every:
        parser.add_argument("-n", "--namespace", help="the namespace (needed only when a name is ambiguous)")
        return
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-n", "--namespace", help="the namespace (needed only when a name is ambiguous)")
    group.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace (the default without -n)")


def workload_name(text: str) -> str:
    """``deploy/web``, ``deployment/web``, ``pod/web-0`` (kubectl's spelling) or plain ``web``."""
    kind, slash, rest = text.partition("/")
    return rest if slash and kind in ("deploy", "deployment", "deployments", "pod", "pods", "po") and rest else text
