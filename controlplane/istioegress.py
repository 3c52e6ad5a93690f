"""A ``DestinationRule`` for a host outside the mesh: Istio's *Egress TLS Origination* task as it
writes it. The app calls ``http://edition.cnn.com`` in plain HTTP; a ServiceEntry names the host
(port 80 sent to ``targetPort: 443``), and the DestinationRule has the sidecar speak TLS there:

    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: edition-cnn-com, namespace: emojivoto}
    spec:
      host: edition.cnn.com
      trafficPolicy:
        portLevelSettings:
        - port: {number: 80}
          tls: {mode: SIMPLE}   # initiates HTTPS when accessing edition.cnn.com

It does what Gateway API's BackendTLSPolicy on the entry does (controlplane/backendtls.py): TLS
1.2 or newer, the SNI sent and the server's certificate checked against ``tls.sni`` (by default
the host asked for), with the system's CAs. A port's own ``tls`` comes before the host's, and
``mode: DISABLE`` keeps a port plain. Its ``connectionPool`` and ``outlierDetection`` act on the
requests to the host as a CircuitBreaker on the entry does; subsets and ``loadBalancer`` are
refused here. It acts on the entries of its own namespace. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controlplane.egress import covers_host
from controlplane.fields import FieldReader

SIMPLE, DISABLE = "SIMPLE", "DISABLE"


@dataclass(frozen=True, slots=True)
class ClientTls:
    mode: str  # SIMPLE (TLS the sidecar originates) or DISABLE (plain)
    sni: str | None = None  # SIMPLE: the name sent and checked; None: the host asked for


@dataclass(frozen=True, slots=True)
class Origination:
    """The TLS a DestinationRule for a host outside the mesh has the sidecars originate."""

    host: ClientTls | None  # trafficPolicy.tls: every port's, unless the port says
    ports: tuple[tuple[int, ClientTls], ...] = ()  # portLevelSettings: (the entry's port number, its tls)

    def at(self, port: int) -> ClientTls | None:
        """The TLS for ``port``: its own, else the host's; None: neither says."""
        return next((tls for number, tls in self.ports if number == port), self.host)

    def describe(self) -> str:
        said = ([f"TLS {_words(self.host)}"] if self.host else []) + [f"port {n}: TLS {_words(t)}" for n, t in self.ports]
        return "; ".join(said)


def _words(tls: ClientTls) -> str:
    return "originated" + (f" to {tls.sni}" if tls.sni else "") if tls.mode == SIMPLE else "off"


def outside_the_mesh(host: str, namespace: str) -> bool:
    """Whether a DestinationRule's ``host`` is a host outside the mesh (a ServiceEntry's) rather
    than a Service: a dotted name that is not a Service's cluster-local form (``reviews.NS``
    of its own namespace, ``….svc``, ``….svc.cluster.local``). ``reviews.default`` written in
    another namespace is such a host: ``meshdojo check`` says when no ServiceEntry names it."""
    parts = host.split(".")
    if len(parts) == 1 or host.endswith((".svc", ".svc.cluster.local")):
        return False
    return not (len(parts) == 2 and parts[1] == namespace)


def read_origination(r: FieldReader, spec: Mapping[str, Any]) -> Origination | None:
    """The TLS of a rule for a host outside the mesh (checked against istioschema's fields)."""
    policy = spec.get("trafficPolicy", {})
    for field in ("loadBalancer",):
        if field in policy:
            raise r.fail(f"spec.trafficPolicy.{field}", "not here for a host outside the mesh: its endpoints are taken in turn")
    if spec.get("subsets"):
        raise r.fail("spec.subsets", "a host outside the mesh has no pods to group here: write subsets for a Service of the mesh")
    host = _tls(r, policy["tls"], "spec.trafficPolicy.tls") if "tls" in policy else None
    ports, seen = [], set()
    for i, item in enumerate(policy.get("portLevelSettings", [])):
        number = item["port"]["number"]
        if number in seen:
            raise r.fail(f"spec.trafficPolicy.portLevelSettings[{i}].port.number", f"port {number} has settings above already")
        seen.add(number)
        if "tls" in item:
            ports.append((number, _tls(r, item["tls"], f"spec.trafficPolicy.portLevelSettings[{i}].tls")))
    return Origination(host, tuple(ports)) if host is not None or ports else None


def _tls(r: FieldReader, tls: Mapping[str, Any], where: str) -> ClientTls:
    mode = tls.get("mode", DISABLE)
    if mode == "ISTIO_MUTUAL":
        raise r.fail(f"{where}.mode", "ISTIO_MUTUAL is the mesh's own mutual TLS, and a host outside the mesh has no mesh "
                                      "identity: SIMPLE has the sidecar originate TLS to it")
    if "sni" in tls and mode != SIMPLE:
        raise r.fail(f"{where}.sni", "is the name of TLS the sidecar originates: set mode: SIMPLE")
    return ClientTls(mode, tls.get("sni"))


def refuse_outside_fields(r: FieldReader, spec: Mapping[str, Any]) -> None:
    """A rule for a Service of the mesh: what only a host outside it takes is refused by field."""
    places = [("spec.trafficPolicy", spec.get("trafficPolicy", {}))] + [
        (f"spec.subsets[{i}].trafficPolicy", s.get("trafficPolicy", {})) for i, s in enumerate(spec.get("subsets", []))]
    for where, policy in places:
        if "portLevelSettings" in policy:
            raise r.fail(f"{where}.portLevelSettings", "a Service of the mesh has one port here: write its settings in trafficPolicy "
                                                       "(portLevelSettings is read for a host outside the mesh's tls)")
        mode = policy.get("tls", {}).get("mode", "ISTIO_MUTUAL")
        if mode != "ISTIO_MUTUAL" or "sni" in policy.get("tls", {}):
            raise r.fail(f"{where}.tls.{'mode' if mode != 'ISTIO_MUTUAL' else 'sni'}",
                         "a Service of the mesh is reached over the mesh's mutual TLS (ISTIO_MUTUAL), always; SIMPLE and "
                         "sni are TLS the sidecar originates to a host outside the mesh (a ServiceEntry's)")


def tls_origination(rules: Sequence[Any], host: str, port: int) -> tuple[Any, str] | None:
    """(the DestinationRule, the name to send and check) that has the sidecar originate TLS to
    ``host:port``, or None: none says SIMPLE for it (a rule for the exact host before one for a
    wildcard, then by name; the first that says anything for the port decides). ``rules``: the
    DestinationRules of the entry's namespace."""
    fitting = sorted((r for r in rules if getattr(r.spec, "origination", None) is not None and covers_host(r.spec.service, host)),
                     key=lambda r: (r.spec.service.startswith("*"), r.name))
    for rule in fitting:
        tls = rule.spec.origination.at(port)
        if tls is not None:
            return (rule, tls.sni or host) if tls.mode == SIMPLE else None
    return None


def outside_host(resource: Any) -> str | None:
    """The host outside the mesh a DestinationRule or VirtualService is for, or None."""
    if resource.kind == "DestinationRule":
        return resource.spec.service if resource.spec.outside else None
    return getattr(resource.spec, "outside_host", None) if resource.kind == "VirtualService" else None


def unused_rules(resources: Iterable[Any]) -> list[dict[str, str]]:
    """``check``'s and ``apply``'s findings: a DestinationRule or VirtualService for a host
    outside the mesh that no ServiceEntry of its namespace names, which therefore does nothing."""
    resources = list(resources)
    hosts = {(r.namespace, h) for r in resources if getattr(r.spec, "hosts", None) is not None and r.kind.startswith("ServiceEntry")
             for h in r.spec.hosts}
    found = []
    for rule in sorted((r for r in resources if outside_host(r) is not None), key=lambda r: r.key):
        host = outside_host(rule)
        if not any(ns == rule.namespace and (h == host or covers_host(str(host), h)) for ns, h in hosts):
            found.append({"namespace": rule.namespace, "name": rule.name, "kind": rule.kind.lower(),
                          "message": f"{rule.kind} {rule.namespace}/{rule.name}: host {host} is no ServiceEntry's "
                                     f"host in {rule.namespace}, so it does nothing: apply a ServiceEntry with hosts "
                                     f"[{host}] there first (a Service of another namespace? a {rule.kind} is "
                                     f"for a Service of its own namespace: set metadata.namespace)"})
    return found
