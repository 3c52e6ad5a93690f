"""The control plane's settings: one frozen value, validated where it is built."""

from __future__ import annotations

import argparse
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from controlplane import ca
from controlplane.durations import InvalidDuration, parse_duration


@dataclass(frozen=True)
class ControlPlaneConfig:
    state_dir: Path
    api_port: int = 0  # operator API (admin token), plain HTTP on 127.0.0.1
    mesh_port: int = 0  # identity + discovery for proxies, TLS on 127.0.0.1
    host: str = "127.0.0.1"
    leaf_lifetime: dt.timedelta = ca.DEFAULT_LEAF_LIFETIME


def parse_args(argv: list[str] | None = None) -> ControlPlaneConfig:
    parser = argparse.ArgumentParser(prog="meshdojo controlplane", description="Run the meshdojo control plane.")
    parser.add_argument("--state-dir", required=True, type=Path, help="where the CA, admin token and state live")
    parser.add_argument("--api-port", type=int, default=0, help="operator API port (default: any free port)")
    parser.add_argument("--mesh-port", type=int, default=0, help="proxy-facing identity/discovery port (default: any free port)")
    parser.add_argument("--cert-lifetime", default="24h", help="workload certificate lifetime, at least 60s (default 24h)")
    args = parser.parse_args(argv)
    try:
        lifetime = parse_duration(args.cert_lifetime)
    except InvalidDuration as exc:
        parser.error(f"--cert-lifetime: {exc}")
    if lifetime < ca.MIN_LEAF_LIFETIME.total_seconds():
        parser.error(f"--cert-lifetime: {args.cert_lifetime} is shorter than the minimum of 60s")
    for flag, port in (("--api-port", args.api_port), ("--mesh-port", args.mesh_port)):
        if not 0 <= port < 65536:
            parser.error(f"{flag}: {port} is not a port number (0-65535; 0 picks a free one)")
    return ControlPlaneConfig(
        state_dir=args.state_dir.resolve(),
        api_port=args.api_port,
        mesh_port=args.mesh_port,
        leaf_lifetime=dt.timedelta(seconds=lifetime),
    )
