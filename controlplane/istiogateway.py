"""Istio's ``Gateway`` (``networking.istio.io``) and the VirtualServices bound to it: Istio's
ingress as its classic tasks write it (``samples/bookinfo/networking/bookinfo-gateway.yaml``).

An Istio Gateway is read as the listeners of a Gateway API ``Gateway`` (controlplane/gatewayapi.py):
each server's host is a listener (``*``: any host), on the gateway's HTTP or HTTPS port, with
the TLS Secret its ``credentialName`` names. As Gateway API's, it is served by the ingress
gateway of its namespace (``meshdojo up`` starts one per demo), whatever its ``selector`` says
(``istio: ingressgateway`` in Istio's docs). A VirtualService whose ``gateways`` name it is its
route, for the hosts the VirtualService names and the server accepts. An HTTP server with
``tls.httpsRedirect`` answers its requests with 301 to ``https://`` (the same host and path),
before any rule is matched, as Envoy's ``require_tls`` does. Pure.

    apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata: {name: bookinfo-gateway, namespace: bookinfo}
    spec:
      selector: {istio: ingressgateway}
      servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controlplane.fields import FieldReader
from controlplane.gatewayapi import GatewaySpec, Listener
from controlplane.routespec import ParentGateway

TLS_MODES = ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL")  # ended at the gateway, as Gateway API's terminate modes


def read_gateway(r: FieldReader, spec: Mapping[str, Any], namespace: str) -> GatewaySpec:
    """``spec`` checked against ``istioschema.ISTIO_GATEWAY_SPEC``: its servers as listeners."""
    listeners: list[Listener] = []
    for i, server in enumerate(spec["servers"]):
        where = f"spec.servers[{i}]"
        protocol, tls = server["port"]["protocol"], server.get("tls") or {}
        if protocol not in ("HTTP", "HTTPS"):
            why = ("TLS passthrough is not served here" if protocol == "TLS" else "the gateways forward HTTP/1.1 requests only")
            raise r.fail(f"{where}.port.protocol", f"{protocol!r}: {why}; use HTTP, or HTTPS with tls.credentialName")
        redirect = bool(tls.get("httpsRedirect"))
        if redirect and protocol != "HTTP":
            raise r.fail(f"{where}.tls.httpsRedirect", "is an HTTP server's (port 80): it sends that server's plain requests "
                                                       "to https://; this server is HTTPS already")
        certificates, mode = _tls(r, where, protocol, tls)
        for j, host in enumerate(server["hosts"]):
            scope, _, name = host.rpartition("/")
            if scope not in ("", "*", ".", namespace):
                raise r.fail(f"{where}.hosts[{j}]", f"{host!r}: only VirtualServices of this namespace ({namespace}) or any "
                                                     f"(*/{name}) can bind here; write ./{name} or */{name}")
            base = server.get("name") or server["port"].get("name") or f"{protocol.lower()}-{server['port']['number']}"
            listener_name = base if len(server["hosts"]) == 1 else f"{base}-{j}"
            if any(other.name == listener_name for other in listeners):
                raise r.fail(f"{where}.name", f"{listener_name!r} names another server too: each needs its own name")
            listeners.append(Listener(listener_name, server["port"]["number"], None if name == "*" else name,
                                      "Same" if scope in (".", namespace) else "All", protocol, certificates, mode, redirect))
    return GatewaySpec("istio", tuple(listeners))


def _tls(r: FieldReader, where: str, protocol: str, tls: Mapping[str, Any]) -> tuple[tuple[str, ...], str]:
    """(the Secrets, the terminate mode) of an HTTPS server; ((), SIMPLE) of an HTTP one."""
    if protocol == "HTTP":
        if tls.keys() - {"httpsRedirect"}:
            raise r.fail(f"{where}.tls", "an HTTP server has no TLS: make it protocol HTTPS to end TLS here")
        return (), "SIMPLE"
    mode = tls.get("mode", "SIMPLE")
    if mode not in TLS_MODES:
        raise r.fail(f"{where}.tls.mode", f"{mode!r}: the gateways end TLS themselves here: {', '.join(TLS_MODES)}")
    if not tls.get("credentialName"):
        raise r.fail(f"{where}.tls.credentialName", "required for HTTPS: the kubernetes.io/tls Secret with the server's "
                                                    "certificate (meshdojo create secret tls NAME --cert FILE --key FILE)")
    return (tls["credentialName"],), mode


def bound_gateway(r: FieldReader, gateways: list[str], namespace: str) -> ParentGateway | None:
    """The Istio Gateway a VirtualService's ``gateways`` name (NAME or NAMESPACE/NAME), or None:
    ``mesh`` (or nothing), the sidecars' routes."""
    named = [g for g in gateways if g != "mesh"]
    if not named:
        return None
    if len(gateways) > 1:
        raise r.fail("spec.gateways", "mesh and a Gateway at once: write one VirtualService for the sidecars and one for the gateway")
    gateway_namespace, _, name = named[0].rpartition("/")
    return ParentGateway(gateway_namespace or namespace, name, None, None)


def gateway_hosts(r: FieldReader, hosts: list[str]) -> tuple[str, ...]:
    """A gateway VirtualService's hosts as a route's hostnames (``*`` among them: any host)."""
    for i, host in enumerate(hosts):
        labels = host.removeprefix("*.").split(".")
        if host != "*" and not all(label and len(label) <= 63 and label.replace("-", "").isalnum() and label == label.lower()
                                   for label in labels):
            raise r.fail(f"spec.hosts[{i}]", f"{host!r}: on a gateway, a host clients ask for (bookinfo.example.com, "
                                             "*.example.com, or *)")
    return () if "*" in hosts else tuple(dict.fromkeys(hosts))
