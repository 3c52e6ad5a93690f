"""SPIFFE identities of meshed workloads: ``spiffe://meshdojo.local/ns/<ns>/sa/<sa>``.

Pure parsing and formatting, shared by the control plane and the proxy (which imports
only this module, :mod:`controlplane.protocol` and :mod:`controlplane.durations`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TRUST_DOMAIN = "meshdojo.local"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SPIFFE = re.compile(r"^spiffe://(?P<td>[^/]+)/ns/(?P<ns>[^/]+)/sa/(?P<sa>[^/]+)$")


class InvalidIdentity(ValueError):
    """A string that is not a workload SPIFFE ID of this trust domain."""


def is_dns_label(value: str) -> bool:
    return bool(_DNS_LABEL.match(value))


@dataclass(frozen=True, slots=True)
class SpiffeId:
    namespace: str
    service_account: str
    trust_domain: str = TRUST_DOMAIN

    def __post_init__(self) -> None:
        for field, value in (("namespace", self.namespace), ("service account", self.service_account)):
            if not is_dns_label(value):
                raise InvalidIdentity(
                    f"{field} {value!r} is not a DNS label (lowercase letters, digits and '-', at most 63)"
                )

    @property
    def uri(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    def __str__(self) -> str:
        return self.uri

    @classmethod
    def parse(cls, uri: str) -> SpiffeId:
        match = _SPIFFE.match(uri)
        if not match:
            raise InvalidIdentity(f"{uri!r} is not of the form spiffe://{TRUST_DOMAIN}/ns/<namespace>/sa/<service-account>")
        if match["td"] != TRUST_DOMAIN:
            raise InvalidIdentity(f"{uri!r} belongs to trust domain {match['td']!r}, expected {TRUST_DOMAIN!r}")
        return cls(namespace=match["ns"], service_account=match["sa"])


LOCAL_CONTROLPLANE = SpiffeId("meshdojo", "controlplane")  # the local backend's control plane (a cluster's is its ServiceAccount's)
