"""The identity service: bootstrap tokens in, workload certificates out.

Decisions only; the HTTP handlers in :mod:`controlplane.meshapi` and :mod:`controlplane.api`
call it. The clock is injected.
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509

from controlplane import ca, tokens
from controlplane.castore import CaMaterial
from controlplane.spiffe import SpiffeId
from controlplane.sslcontext import client_context
from controlplane.taptokens import tap_key, tap_token

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class IssuedCertificate:
    identity: str
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    chain_pem: str  # leaf followed by the issuer


@dataclass
class IdentityService:
    material: CaMaterial
    leaf_lifetime: dt.timedelta = ca.DEFAULT_LEAF_LIFETIME
    clock: Clock = utcnow
    issued: dict[str, IssuedCertificate] = field(default_factory=dict)  # latest per identity
    issued_count: int = 0
    # token -> identity, raising tokens.InvalidToken; None: our own bootstrap tokens. In Kubernetes
    # mode a TokenReview of the pod's projected ServiceAccount token (blocking: callers use a thread)
    authenticate: Callable[[str], SpiffeId] | None = None
    _tap_key: bytes | None = field(default=None, repr=False)

    def tap_token(self, identity_uri: str) -> str:
        """The token with which the control plane reads this identity's tap (see controlplane.taptokens)."""
        if self._tap_key is None:
            self._tap_key = tap_key(self.material.issuer.key)
        return tap_token(self._tap_key, identity_uri)

    def client_context(self, identity: SpiffeId, lifetime: dt.timedelta = dt.timedelta(hours=1)) -> ssl.SSLContext:
        """Mutual TLS as ``identity`` (the control plane's own), to read a sidecar's admin port:
        a fresh leaf each time, short-lived (it only has to outlive a handshake)."""
        key = ca.new_key()
        leaf = ca.sign_workload(ca.make_csr(identity, key), identity, self.material.issuer, self.clock(), lifetime)
        return client_context(self.material.anchor_pem, ca.cert_pem(leaf) + self.material.issuer_pem, ca.key_pem(key))

    def bootstrap_token(self, identity: SpiffeId, ttl: dt.timedelta = dt.timedelta(hours=1)) -> str:
        return tokens.issue(self.material.token_secret, identity, self.clock().timestamp(), ttl.total_seconds())

    def certify_with_token(self, csr_pem: str, token: str) -> IssuedCertificate:
        """Raises ``tokens.InvalidToken`` or ``ca.CertificateRequestRejected``."""
        if self.authenticate is not None:
            return self._sign(csr_pem, self.authenticate(token))
        identity = tokens.verify(self.material.token_secret, token, self.clock().timestamp())
        return self._sign(csr_pem, identity)

    def renew(self, csr_pem: str, current_identity: str) -> IssuedCertificate:
        """For a caller that proved ``current_identity`` with a valid client certificate."""
        return self._sign(csr_pem, SpiffeId.parse(current_identity))

    def _sign(self, csr_pem: str, identity: SpiffeId) -> IssuedCertificate:
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode())
        except ValueError:
            raise ca.CertificateRequestRejected("csr is not a PEM certificate signing request") from None
        leaf = ca.sign_workload(csr, identity, self.material.issuer, self.clock(), self.leaf_lifetime)
        issued = IssuedCertificate(
            identity=identity.uri,
            serial=leaf.serial_number,
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
            chain_pem=ca.cert_pem(leaf) + self.material.issuer_pem,
        )
        self.issued[identity.uri] = issued
        self.issued_count += 1
        return issued
