"""The proxy's settings: one frozen value, parsed and validated from the command line."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

from controlplane import accesslogannotation, inboundpolicy
from controlplane.durations import InvalidDuration, parse_duration
from controlplane.spiffe import InvalidIdentity, SpiffeId
from proxy.inbound import TlsMode

TOKEN_ENV = "MESHDOJO_BOOTSTRAP_TOKEN"


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ProxyConfig:
    identity: SpiffeId
    controlplane_url: str
    controlplane_identity: str
    trust_anchor_pem: str
    bootstrap_token: str | None
    app_port: int
    inbound_port: int = 0
    outbound_port: int = 0
    admin_port: int = 0
    mode: TlsMode = TlsMode.STRICT
    ports_file: Path | None = None
    rotate_every: float | None = None
    drain_timeout: float = 10.0
    bootstrap_timeout: float = 30.0
    workload: str = ""
    gateway: str | None = None  # ingress gateway mode: send every request to this service (name[:port])
    https_port: int | None = None  # a gateway's TLS port, for its Gateways' HTTPS listeners (0: the OS picks)
    tap_token: str | None = None  # enables /tap on the admin port for holders of this token
    handshake_timeout: float = 10.0  # a client's first byte, then its TLS handshake, must arrive within this
    deployment: str = ""  # the Deployment this instance belongs to (for workload-selected policies)
    labels: tuple[tuple[str, str], ...] = ()  # the pod's labels (for Service- and label-selected policies)
    inbound_address: str = "127.0.0.1"  # 0.0.0.0 in a pod: the inbound listener takes the port Services target
    outbound_address: str = "127.0.0.1"  # only a gateway's is reachable from elsewhere (0.0.0.0 in its pod)
    admin_address: str = "127.0.0.1"  # 0.0.0.0 in a pod: the control plane scrapes it
    default_inbound_policy: str = inboundpolicy.DEFAULT  # Linkerd's: who may call when no ALLOW AuthorizationPolicy applies
    access_log: str | None = None  # Linkerd's config.linkerd.io/access-log: apache or json, inbound requests
    # the port the pod declares for its app (containerPort: what its Services target), which AuthorizationPolicy's ports
    # and destination.port read, so a policy means the same in both backends; None: the port a request arrived on
    pod_port: int | None = None
    pod_port_name: str = ""  # that containerPort's name, which a Linkerd Server may name instead of the number


def parse_args(argv: list[str] | None = None) -> ProxyConfig:
    parser = argparse.ArgumentParser(prog="python -m proxy", description="Run a meshdojo sidecar proxy for one workload instance.")
    parser.add_argument("--controlplane", required=True, help="control plane mesh API, e.g. https://127.0.0.1:8086")
    parser.add_argument("--controlplane-identity", default="spiffe://meshdojo.local/ns/meshdojo/sa/controlplane")
    parser.add_argument("--trust-anchor", required=True, type=Path, help="PEM file of the mesh's trust anchor")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--service-account", required=True)
    parser.add_argument("--token-file", type=Path, help=f"bootstrap token file (or set ${TOKEN_ENV})")
    parser.add_argument("--app-port", required=True, type=int, help="the app's port on 127.0.0.1")
    parser.add_argument("--pod-port", type=int, help="the port the pod declares for the app (its containerPort), which "
                                                     "AuthorizationPolicy's ports read (default: the port a request arrived on)")
    parser.add_argument("--pod-port-name", default="", help="the name of that containerPort, which a Linkerd Server's "
                                                            "port may give instead of the number")
    parser.add_argument("--inbound-port", type=int, default=0)
    parser.add_argument("--outbound-port", type=int, default=0)
    parser.add_argument("--inbound-address", default="127.0.0.1", help="where the inbound listener binds (0.0.0.0 in a pod)")
    parser.add_argument("--outbound-address", default="127.0.0.1",
                        help="where the outbound listener binds; other than loopback only with --gateway (a gateway's pod)")
    parser.add_argument("--admin-address", default="127.0.0.1", help="where the admin listener binds (0.0.0.0 in a pod)")
    parser.add_argument("--admin-port", type=int, default=0)
    parser.add_argument("--mode", choices=[m.value for m in TlsMode], default=TlsMode.STRICT.value)
    parser.add_argument("--ports-file", type=Path, help="write the ports actually bound here (JSON) once listening")
    parser.add_argument("--rotate-every", help="renew the certificate at least this often (e.g. 5s), for lessons and tests")
    parser.add_argument("--drain-timeout", default="10s", help="on SIGTERM, wait this long for requests in flight")
    parser.add_argument("--workload", default="", help="instance name, for logs")
    parser.add_argument("--tap-token-file", type=Path, help="a 0600 file with the token that /tap on the admin port requires")
    parser.add_argument("--gateway", help="ingress gateway mode: send every request to this service, e.g. web.emojivoto:80")
    parser.add_argument("--https-port", type=int, help="with --gateway: the TLS port of the Gateways' HTTPS listeners (0: any free)")
    parser.add_argument("--handshake-timeout", default="10s", help="drop inbound clients silent (or mid-handshake) this long")
    parser.add_argument("--deployment", default="", help="the Deployment this instance belongs to")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="a label of the pod (repeatable)")
    parser.add_argument("--labels-file", type=Path, help="the pod's labels, one KEY=\"VALUE\" per line (Kubernetes' downward API format)")
    parser.add_argument("--default-inbound-policy", choices=inboundpolicy.POLICIES, default=inboundpolicy.DEFAULT,
                        help="who may call when no ALLOW AuthorizationPolicy applies (Linkerd's "
                             f"{inboundpolicy.ANNOTATION}; default {inboundpolicy.DEFAULT})")
    parser.add_argument("--access-log", choices=accesslogannotation.FORMATS,
                        help=f"a line per inbound request in this log, in Linkerd's format ({accesslogannotation.ANNOTATION})")
    args = parser.parse_args(argv)
    try:
        return _build(args)
    except ConfigError as exc:
        parser.error(str(exc))
        raise  # unreachable


def _build(args: argparse.Namespace) -> ProxyConfig:
    try:
        identity = SpiffeId(args.namespace, args.service_account)
    except InvalidIdentity as exc:
        raise ConfigError(f"--namespace/--service-account: {exc}") from None
    try:
        anchor = args.trust_anchor.read_text()
    except OSError as exc:
        raise ConfigError(f"--trust-anchor: cannot read {args.trust_anchor}: {exc.strerror}") from None
    if "BEGIN CERTIFICATE" not in anchor:
        raise ConfigError(f"--trust-anchor: {args.trust_anchor} holds no PEM certificate")
    token = os.environ.get(TOKEN_ENV)
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"--token-file: cannot read {args.token_file}: {exc.strerror}") from None
    if args.outbound_address not in ("127.0.0.1", "::1", "localhost") and not args.gateway:
        raise ConfigError(f"--outbound-address {args.outbound_address}: only a gateway (--gateway) listens beyond loopback; "
                          "a sidecar's outbound listener open to the network would let anyone send requests as its identity")
    if args.https_port is not None and not args.gateway:
        raise ConfigError("--https-port: only a gateway (--gateway) terminates TLS for clients outside the mesh")
    for flag in ("app_port", "inbound_port", "outbound_port", "admin_port", "https_port", "pod_port"):
        value = getattr(args, flag)
        if value is None:
            continue
        if not 0 <= value < 65536 or (flag in ("app_port", "pod_port") and value == 0):
            raise ConfigError(f"--{flag.replace('_', '-')}: {value} is not a valid port")
    if args.pod_port_name and not re.match(r"^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$", args.pod_port_name):
        raise ConfigError(f"--pod-port-name: {args.pod_port_name!r} is not a port name (lower-case letters, digits and '-', up to 15)")
    try:
        rotate_every = parse_duration(args.rotate_every) if args.rotate_every else None
        drain = parse_duration(args.drain_timeout)
        handshake = parse_duration(args.handshake_timeout)
    except InvalidDuration as exc:
        raise ConfigError(str(exc)) from None
    labels = dict(_labels(args.label, "--label"))
    if args.labels_file is not None:
        try:
            lines = args.labels_file.read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"--labels-file: cannot read {args.labels_file}: {exc.strerror}") from None
        labels.update(_labels([line.replace('"', "") for line in lines if line.strip()], "--labels-file"))
    return ProxyConfig(
        identity=identity,
        controlplane_url=args.controlplane,
        controlplane_identity=args.controlplane_identity,
        trust_anchor_pem=anchor,
        bootstrap_token=token,
        app_port=args.app_port,
        inbound_port=args.inbound_port,
        outbound_port=args.outbound_port,
        admin_port=args.admin_port,
        mode=TlsMode(args.mode),
        ports_file=args.ports_file,
        rotate_every=rotate_every,
        drain_timeout=drain,
        workload=args.workload,
        gateway=args.gateway,
        https_port=args.https_port,
        tap_token=_read_secret(args.tap_token_file, "--tap-token-file") if args.tap_token_file else None,
        handshake_timeout=handshake,
        deployment=args.deployment,
        labels=tuple(sorted(labels.items())),
        inbound_address=args.inbound_address,
        outbound_address=args.outbound_address,
        admin_address=args.admin_address,
        default_inbound_policy=args.default_inbound_policy,
        access_log=args.access_log,
        pod_port=args.pod_port,
        pod_port_name=args.pod_port_name,
    )


def _labels(items: list[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag}: {item!r} is not KEY=VALUE")
        out.append((key.strip(), value.strip()))
    return out


def _read_secret(path: Path, flag: str) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{flag}: cannot read {path}: {exc.strerror}") from None
