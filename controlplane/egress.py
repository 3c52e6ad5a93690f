"""Egress: what a sidecar does with a host that is not a Service of the mesh.

Istio's model, which Linkerd's EgressNetwork follows too:

    ALLOW_ANY       (the default) the request is passed through, in plain HTTP, to the host it
                    names: the mesh's "PassthroughCluster"
    REGISTRY_ONLY   only the mesh's Services and the hosts of a ServiceEntry are reached; any
                    other host gets 502 (Istio's "BlackHoleCluster")

A ``Sidecar`` sets the mode for a namespace, for some labelled pods, or for the whole mesh (in
meshdojo-system); the most specific one wins. A ``ServiceEntry`` names external hosts, the
ports they are called on and where to connect, so they are reachable under REGISTRY_ONLY and
show by name in metrics. As in Istio (``exportTo: "*"``), an entry in any namespace is seen by
every workload.

    apiVersion: policy.meshdojo.dev/v1alpha1
    kind: ServiceEntry
    metadata: {name: httpbin-ext, namespace: emojivoto}
    spec:
      hosts: [httpbin.org]
      ports: [{number: 80, name: http, protocol: HTTP}]
      resolution: DNS

Parsing (once, at the boundary) and the decision (a pure function of the host, the port and
what applies) live here; the proxy's outbound stack asks :func:`decide` when discovery says
a name is not a Service.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from controlplane.fields import FieldReader
from controlplane.workloadselector import WorkloadSelector

ALLOW_ANY, REGISTRY_ONLY = "ALLOW_ANY", "REGISTRY_ONLY"
PASSTHROUGH = "PassthroughCluster"  # the dst_service label of passed-through requests (Istio's name)
BLACKHOLE = "BlackHoleCluster"  # ... and of refused ones
DEFAULT_PORT = 80  # http:// without a port


@dataclass(frozen=True, slots=True)
class EntryPort:
    number: int
    name: str
    target: int  # the port to connect to (the number unless targetPort says otherwise)
    protocol: str = "HTTP"  # or HTTPS/TLS: listed, not served (an app's https:// calls do not go through its sidecar)


@dataclass(frozen=True, slots=True)
class EntryEndpoint:
    address: str
    ports: tuple[tuple[str, int], ...] = ()  # port name -> port at this address

    def port_for(self, port: EntryPort) -> int:
        return dict(self.ports).get(port.name, port.target)


@dataclass(frozen=True, slots=True)
class ServiceEntrySpec:
    hosts: tuple[str, ...]
    ports: tuple[EntryPort, ...]
    resolution: str  # DNS, STATIC, NONE
    endpoints: tuple[EntryEndpoint, ...]

    def targets(self, port: EntryPort, host: str) -> tuple[tuple[str, int], ...]:
        """Where a request to ``host`` on ``port`` connects: each endpoint's address (on its port
        for ``port``), or without endpoints the host itself, on the port's target."""
        if self.endpoints:
            return tuple((ep.address, ep.port_for(port)) for ep in self.endpoints)
        return ((host, port.target),)

    def host_matching(self, host: str) -> str | None:
        """The entry's host that ``host`` matches (exactly, or under a ``*.`` wildcard)."""
        return next((pattern for pattern in self.hosts if covers_host(pattern, host)), None)

    def port(self, number: int) -> EntryPort | None:
        """The HTTP port ``number`` (the only ones a sidecar forwards), or None."""
        return next((p for p in self.ports if p.number == number and p.protocol == "HTTP"), None)


def covers_host(pattern: str, host: str) -> bool:
    """Whether ``pattern`` (a host, or ``*.example.com``) takes ``host``."""
    return pattern == host or (pattern.startswith("*.") and host.endswith(pattern[1:]) and len(host) > len(pattern) - 1)


@dataclass(frozen=True, slots=True)
class SidecarSpec:
    mode: str  # ALLOW_ANY or REGISTRY_ONLY
    workloads: WorkloadSelector | None  # None: the whole namespace (or mesh)


def read_service_entry(r: FieldReader, spec: dict[str, Any]) -> ServiceEntrySpec:
    """A ServiceEntry whose shape the schema has checked: what a schema cannot say."""
    names = [p["name"] for p in spec["ports"]]
    numbers = [p["number"] for p in spec["ports"]]
    for field, values in (("name", names), ("number", numbers)):
        dupes = sorted({str(v) for v in values if values.count(v) > 1})
        if dupes:
            raise r.fail("spec.ports", f"two ports with the {field} {', '.join(dupes)}: each port needs its own")
    ports = tuple(EntryPort(p["number"], p["name"], p.get("targetPort", p["number"]), p.get("protocol", "HTTP")) for p in spec["ports"])
    resolution = spec.get("resolution", "NONE")
    endpoints = []
    for i, raw in enumerate(spec.get("endpoints", [])):
        where = f"spec.endpoints[{i}]"
        for name in raw.get("ports", {}):
            if name not in names:
                raise r.fail(f"{where}.ports.{name}", f"no port named {name!r} in spec.ports (names: {', '.join(names)})")
        if resolution == "STATIC" and not is_ip(raw["address"]):
            raise r.fail(f"{where}.address", f"{raw['address']!r} is not an IP address: resolution STATIC connects to "
                                              f"addresses; use resolution DNS for host names")
        endpoints.append(EntryEndpoint(raw["address"], tuple(sorted(raw.get("ports", {}).items()))))
    for i, host in enumerate(spec["hosts"]):  # these name a cluster's Services: the proxy never looks them up outside
        if "." not in host or host.endswith((".svc", ".svc.cluster.local")):
            raise r.fail(f"spec.hosts[{i}]", f"{host!r} is a cluster-local name (a Service's): a ServiceEntry names hosts "
                                             f"outside the mesh, like httpbin.org")
    wildcard = next((h for h in spec["hosts"] if h.startswith("*.")), None)
    if resolution == "STATIC" and not endpoints:
        raise r.fail("spec.endpoints", "resolution STATIC needs endpoints: the addresses to connect to")
    if resolution == "NONE" and endpoints:
        raise r.fail("spec.endpoints", "resolution NONE connects to the host asked for: leave endpoints out, or use DNS or STATIC")
    if wildcard and endpoints:
        raise r.fail("spec.hosts", f"{wildcard!r} is a wildcard: it cannot share endpoints; leave endpoints out "
                                   f"(each matching host is reached by its own name)")
    if wildcard and resolution == "DNS":
        raise r.fail("spec.resolution", f"a wildcard host ({wildcard!r}) has no one name to look up: use resolution NONE")
    return ServiceEntrySpec(tuple(spec["hosts"]), ports, resolution, tuple(endpoints))


def read_sidecar(r: FieldReader, spec: dict[str, Any]) -> SidecarSpec:
    selector = spec.get("workloadSelector")
    workloads = WorkloadSelector("Labels", labels=tuple(sorted(selector["labels"].items()))) if selector else None
    return SidecarSpec(spec["outboundTrafficPolicy"]["mode"], workloads)


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# -- the decision --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Egress:
    """What becomes of a request to a host outside the mesh's Services."""

    verdict: str  # "entry", "passthrough" or "blocked"
    label: str  # dst_service: the entry's host, PassthroughCluster or BlackHoleCluster
    namespace: str  # dst_namespace: the entry's namespace ("" otherwise)
    targets: tuple[tuple[str, int], ...]  # (address, port) to connect to; none when blocked
    why: str  # for the fate and the 502's message
    entry: str = ""  # the ServiceEntry's name and the name of its port asked for (verdict "entry"), for a BackendTLSPolicy
    port_name: str = ""

    @property
    def allowed(self) -> bool:
        return self.verdict != "blocked"


@dataclass(frozen=True, slots=True)
class NamedEntry:
    namespace: str
    name: str
    spec: ServiceEntrySpec


def decide(host: str, port: int | None, entries: Sequence[NamedEntry], mode: str, mode_from: str) -> Egress:
    """``host:port`` is not a Service: the ServiceEntry that names it (the first by namespace
    and name), else the mode (``mode_from`` says which Sidecar set it, or "the default")."""
    number = port or DEFAULT_PORT
    for entry in sorted(entries, key=lambda e: (e.namespace, e.name)):
        pattern, entry_port = entry.spec.host_matching(host), entry.spec.port(number)
        if pattern is None or entry_port is None:
            continue
        return Egress("entry", pattern, entry.namespace, entry.spec.targets(entry_port, host), f"ServiceEntry {entry.namespace}/{entry.name}", entry.name,
                      entry_port.name)
    if mode == REGISTRY_ONLY:
        known = [e for e in entries if e.spec.host_matching(host)]
        secure = [e for e in known if any(p.number == number for p in e.spec.ports)]  # the port, but not an HTTP one
        hint = (f"ServiceEntry {secure[0].namespace}/{secure[0].name}'s port {number} is not HTTP: an app calls https:// "
                f"hosts directly, not through its sidecar (HTTP_PROXY carries http:// only); call http://{host}:{number} "
                f"only on an HTTP port" if secure else
                f"ServiceEntry {known[0].namespace}/{known[0].name} names {host} but not port {number}: add it to spec.ports"
                if known else f"add a ServiceEntry for {host} (port {number}), or set outboundTrafficPolicy.mode: ALLOW_ANY")
        return Egress("blocked", BLACKHOLE, "", (), f"{host}:{number} is not in the mesh's registry and the outbound "
                                                     f"traffic policy is REGISTRY_ONLY ({mode_from}): {hint}")
    return Egress("passthrough", PASSTHROUGH, "", ((host, number),),
                  f"passthrough: {host} is not a Service of the mesh (outbound traffic policy ALLOW_ANY, {mode_from})")
