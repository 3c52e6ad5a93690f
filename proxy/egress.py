"""The outbound stack's answer for a host that is not a Service: pass it through, send it to
the ServiceEntry's endpoints, or refuse it (see :mod:`controlplane.egress` for the rules).

Egress traffic leaves in plain HTTP (the far end is outside the mesh, with no identity to
check) — or over TLS the sidecar originates, when a BackendTLSPolicy names the ServiceEntry's
port (controlplane.backendtls) — and never carries the mesh's own headers. Its metrics are labelled with bounded values
only: the ServiceEntry's host, or Istio's ``PassthroughCluster`` / ``BlackHoleCluster``,
never the name a client wrote.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

from controlplane.backendtls import for_port
from controlplane.egress import DEFAULT_PORT, Egress, NamedEntry, decide, is_ip
from controlplane.istioegress import tls_origination
from controlplane.protocol import Endpoint
from proxy.errors import BadRequest, ProxyError
from proxy.exchange import Request
from proxy.policies import PolicyWatch

LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


class EgressBlocked(ProxyError):
    status = 502  # as Istio's BlackHoleCluster
    code = "egress_blocked"


def outside_the_mesh(policies: PolicyWatch, own_ports: Callable[[], set[int]]) -> Callable[[Request, str, int | None], None]:
    """Fill ``request`` for ``host:port`` (not a Service): its endpoints and labels, or raise."""

    def route(request: Request, host: str, port: int | None) -> None:
        mode, mode_from = policies.outbound_mode()
        egress = decide(host, port, policies.service_entries, mode, mode_from)
        request.dst_service, request.dst_namespace = egress.label, egress.namespace
        request.fate.egress = egress.why
        if not egress.allowed:
            raise EgressBlocked(egress.why)
        loop = next((t for t in egress.targets if t[1] in own_ports() and _is_loopback(t[0])), None)
        if loop is not None:
            raise BadRequest(f"{host}:{port or 80} is this proxy's own listener ({loop[0]}:{loop[1]}): "
                             f"forwarding it would loop; call a service by its name")
        request.endpoints = endpoints(egress)
        if egress.verdict != "entry":
            return
        if tls := for_port(policies.backend_tls, egress.namespace, egress.entry, egress.port_name):
            name, spec = tls  # the sidecar originates TLS: the app spoke plain HTTP
            request.origin_sni = spec.hostname
            request.fate.egress = f"{egress.why}, TLS originated to {spec.hostname} (BackendTLSPolicy {egress.namespace}/{name})"
        elif said := tls_origination(policies.destination_rules(egress.namespace), host, port or DEFAULT_PORT):
            rule, sni = said  # Istio's way: a DestinationRule for the host, tls mode SIMPLE
            request.origin_sni = sni
            request.fate.egress = f"{egress.why}, TLS originated to {sni} (DestinationRule {rule.namespace}/{rule.name})"

    return route


def leaves_the_mesh(host: str) -> bool:
    """Whether ``host`` may be a host outside the mesh. A cluster-local form — one label
    (``emoj``), or ``….svc`` / ``….svc.cluster.local`` — names a Service or nothing: it is never
    looked up elsewhere, so a mistyped Service name is an unknown service, as it always was."""
    if host.lower() in LOOPBACK_NAMES or is_ip(host):
        return True
    return "." in host and not host.endswith((".svc", ".svc.cluster.local"))


def entry_targets(entries: Sequence[NamedEntry]) -> set[tuple[str, int]]:
    """Every (address, port) a ServiceEntry sends to, as its endpoints' keys: the balancer and a
    breaker keep what they know of them while discovery's own endpoints change. Pure."""
    return {target for entry in entries for port in entry.spec.ports for host in entry.spec.hosts
            if not host.startswith("*.") for target in entry.spec.targets(port, host)}


def endpoints(egress: Egress) -> list[Endpoint]:
    """Plaintext endpoints (no identity to check) for the balancer and the endpoint layer."""
    return [Endpoint(address, port, None, meshed=False, instance=f"{address}:{port}") for address, port in egress.targets]


def _is_loopback(address: str) -> bool:
    if address.lower() in LOOPBACK_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified
