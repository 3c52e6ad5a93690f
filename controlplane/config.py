"""The control plane's settings: one frozen value, validated where it is built."""

from __future__ import annotations

import argparse
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from controlplane import ca
from controlplane.durations import InvalidDuration, parse_duration


@dataclass(frozen=True)
class KubernetesSettings:
    """``--kubernetes``: the cluster is the source of services, endpoints, policies and identities."""

    kubeconfig: Path | None = None  # None: the pod's own ServiceAccount (in-cluster)
    context: str | None = None
    namespace: str = "meshdojo-system"  # ours: the issuer Secret lives here
    webhook_port: int = 8443
    webhook_hosts: tuple[str, ...] = ()  # names or addresses (besides the Service's) in the webhook's certificate
    proxy_image: str = ""  # what the injector puts in pods


@dataclass(frozen=True)
class ControlPlaneConfig:
    state_dir: Path
    api_port: int = 0  # operator API (admin token), plain HTTP on 127.0.0.1
    mesh_port: int = 0  # identity + discovery for proxies, TLS on 127.0.0.1
    host: str = "127.0.0.1"
    relay_address: str | None = None  # where pods reach the relays (network faults, wire); None: ``host``
    leaf_lifetime: dt.timedelta = ca.DEFAULT_LEAF_LIFETIME
    kubernetes: KubernetesSettings | None = None


def parse_args(argv: list[str] | None = None) -> ControlPlaneConfig:
    parser = argparse.ArgumentParser(prog="meshdojo controlplane", description="Run the meshdojo control plane.")
    parser.add_argument("--state-dir", required=True, type=Path, help="where the CA, admin token and state live")
    parser.add_argument("--api-port", type=int, default=0, help="operator API port (default: any free port)")
    parser.add_argument("--mesh-port", type=int, default=0, help="proxy-facing identity/discovery port (default: any free port)")
    parser.add_argument("--cert-lifetime", default="24h", help="workload certificate lifetime, at least 60s (default 24h)")
    parser.add_argument("--host", default="127.0.0.1", help="address the API and mesh listeners bind (0.0.0.0 in a pod)")
    parser.add_argument("--relay-address", help="the address clients reach this control plane's relays at (network faults, "
                        "the wire view); needed with --host 0.0.0.0 (in a pod: its IP, $(POD_IP))")
    kube = parser.add_argument_group("Kubernetes mode")
    kube.add_argument("--kubernetes", action="store_true", help="take services, policies and identities from a cluster")
    kube.add_argument("--kubeconfig", type=Path, help="a kubeconfig (default: the pod's ServiceAccount, in a cluster)")
    kube.add_argument("--context", help="the kubeconfig's context")
    kube.add_argument("--webhook-port", type=int, default=8443, help="the injector's admission webhook (TLS; 0: any)")
    kube.add_argument("--webhook-host", action="append", default=[], metavar="HOST",
                      help="a name or address the API server uses to reach the webhook (repeatable; e.g. 127.0.0.1)")
    kube.add_argument("--proxy-image", default="", help="the image the injector gives the sidecar")
    args = parser.parse_args(argv)
    try:
        lifetime = parse_duration(args.cert_lifetime)
    except InvalidDuration as exc:
        parser.error(f"--cert-lifetime: {exc}")
    if lifetime < ca.MIN_LEAF_LIFETIME.total_seconds():
        parser.error(f"--cert-lifetime: {args.cert_lifetime} is shorter than the minimum of 60s")
    if not args.kubernetes and (args.kubeconfig or args.webhook_host or args.proxy_image):
        parser.error("--kubeconfig, --webhook-host and --proxy-image need --kubernetes")
    if args.kubernetes and not args.proxy_image:
        parser.error("--kubernetes needs --proxy-image (the image the injector gives the sidecar; `meshdojo install` sets it)")
    if args.host in ("0.0.0.0", "::") and not args.relay_address:
        parser.error(f"--host {args.host} needs --relay-address (the address clients are sent to for a network fault's relay)")
    for flag, port in (("--api-port", args.api_port), ("--mesh-port", args.mesh_port), ("--webhook-port", args.webhook_port)):
        if not 0 <= port < 65536:
            parser.error(f"{flag}: {port} is not a port number (0-65535; 0 picks a free one)")
    return ControlPlaneConfig(
        state_dir=args.state_dir.resolve(),
        api_port=args.api_port,
        mesh_port=args.mesh_port,
        leaf_lifetime=dt.timedelta(seconds=lifetime),
        host=args.host,
        relay_address=args.relay_address,
        kubernetes=KubernetesSettings(
            kubeconfig=args.kubeconfig.resolve() if args.kubeconfig else None, context=args.context,
            webhook_port=args.webhook_port, webhook_hosts=tuple(args.webhook_host), proxy_image=args.proxy_image,
        ) if args.kubernetes else None,
    )
