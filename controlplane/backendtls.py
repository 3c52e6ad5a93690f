"""Gateway API's ``BackendTLSPolicy`` for a host outside the mesh: the sidecar originates TLS.

Istio's *Egress TLS Origination* task has the app call ``http://edition.cnn.com`` in plain HTTP
and the sidecar connect to the host over TLS — a DestinationRule's ``tls: {mode: SIMPLE}`` there.
Gateway API says it with a ``BackendTLSPolicy`` (``gateway.networking.k8s.io/v1``) whose target
is the ServiceEntry (as Istio's Gateway API support takes it), ``sectionName`` one of the
entry's ports:

    apiVersion: gateway.networking.k8s.io/v1
    kind: BackendTLSPolicy
    metadata: {name: edition-cnn-com, namespace: emojivoto}
    spec:
      targetRefs: [{group: networking.istio.io, kind: ServiceEntry, name: edition-cnn-com, sectionName: http-port}]
      validation: {hostname: edition.cnn.com, wellKnownCACertificates: System}

The sidecar then connects to the entry's target port over TLS 1.2 or newer, sends
``validation.hostname`` as SNI and checks the server's certificate against it with the system's
CAs (its image's, or this machine's); the app keeps speaking plain HTTP. A Service of the mesh
is refused as a target (mutual TLS reaches it already), and so are ``caCertificateRefs`` and
``subjectAltNames``, by name. Parsing here, once; :func:`for_port` is the pure lookup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controlplane.fields import FieldReader

SYSTEM = "System"


@dataclass(frozen=True, slots=True)
class BackendTlsSpec:
    entries: tuple[tuple[str, str | None], ...]  # (ServiceEntry name, its port's name or None for every port)
    hostname: str  # SNI, and the name the server's certificate must carry
    ca: str = SYSTEM  # whose CAs verify it: the system's


def read(r: FieldReader, spec: dict[str, Any]) -> BackendTlsSpec:
    """A BackendTLSPolicy whose shape the schema has checked: what a schema cannot say."""
    for i, ref in enumerate(spec["targetRefs"]):
        if ref["kind"] == "Service":
            raise r.fail(f"spec.targetRefs[{i}].kind", "a Service of the mesh is reached over mutual TLS by the sidecars "
                                                        "already: a BackendTLSPolicy here is for a host outside the mesh, "
                                                        "named by a ServiceEntry (kind: ServiceEntry)")
        if ref.get("group", "") == "":
            raise r.fail(f"spec.targetRefs[{i}].group", "a ServiceEntry's group: networking.istio.io (or policy.meshdojo.dev)")
    validation = spec["validation"]
    if "wellKnownCACertificates" not in validation:
        raise r.fail("spec.validation.wellKnownCACertificates", "required here: System (the server's certificate is checked "
                                                                "with the system's CAs)")
    return BackendTlsSpec(tuple((ref["name"], ref.get("sectionName")) for ref in spec["targetRefs"]), validation["hostname"],
                          validation["wellKnownCACertificates"])


def for_port(policies: Mapping[tuple[str, str], BackendTlsSpec], namespace: str, entry: str,
             port_name: str) -> tuple[str, BackendTlsSpec] | None:
    """(policy name, spec) of the BackendTLSPolicy of ``entry``'s port ``port_name`` in
    ``namespace`` — one naming the port before one naming the whole entry, then by name. Pure."""
    found = sorted(((section is None, name), spec) for (ns, name), spec in policies.items() if ns == namespace
                   for target, section in spec.entries if target == entry and section in (None, port_name))
    return (found[0][0][1], found[0][1]) if found else None
