"""TLS Secrets, as Kubernetes holds them: the certificate and key an HTTPS listener of a Gateway
serves (controlplane/gatewayapi.py) and, for mutual TLS, the CA its clients' certificates are
checked against. The forms Istio's gateways read: ``type: kubernetes.io/tls`` with ``tls.crt``,
``tls.key`` and optionally ``ca.crt`` (``kubectl create secret tls``, or ``generic`` with those
names, as Istio's Secure Gateways task makes its mutual TLS one), or a generic (``Opaque``)
Secret with ``cert``, ``key`` and optionally ``cacert``.

Locally ``meshdojo create secret tls`` (or ``apply -f`` of a Secret) hands one to the control
plane, which keeps it in a 0600 file of its state directory; on a cluster they are the
cluster's Secrets. Either way a Secret's key goes to one place only: the ingress gateway of the
Secret's namespace, and only while a Gateway there names it (controlplane/meshapi.py). What the
operator API lists of a Secret is its name, hosts and expiry — never the key.

:func:`read_secret` is pure: a document in, a checked :class:`TlsSecret` (or a
:class:`SecretError` naming the field) out.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID

TLS_TYPE = "kubernetes.io/tls"
OPAQUE_TYPE = "Opaque"  # kubectl create secret generic: Istio's gateways read its tls.* or cert/key/cacert too
# the names each part goes by: Kubernetes' TLS Secret's first, then Istio's generic form's
PARTS = {"tls.crt": ("tls.crt", "cert"), "tls.key": ("tls.key", "key"), "ca.crt": ("ca.crt", "cacert")}
Key = tuple[str, str]
RENEW_WITHIN = timedelta(days=7)  # a served certificate this close to its end is worth a warning
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")  # a DNS subdomain, as Kubernetes names Secrets


class SecretError(ValueError):
    """A Secret that cannot be served: the message names the field and what was expected."""


@dataclass(frozen=True, slots=True)
class TlsSecret:
    namespace: str
    name: str
    chain_pem: str  # the leaf first, then any intermediates
    key_pem: str
    hosts: tuple[str, ...]  # the leaf's DNS names (its common name when it has none)
    not_after: datetime
    ca_pem: str | None = None  # ca.crt: the CA(s) a MUTUAL listener checks its clients' certificates against
    client_ca: str | None = None  # that CA's subject, for what the learner is told
    type: str = TLS_TYPE

    def summary(self) -> dict[str, Any]:
        """What may be shown of it: everything but the key."""
        return {"namespace": self.namespace, "name": self.name, "type": self.type, "hosts": list(self.hosts),
                "notAfter": self.not_after.isoformat(), **({"clientCA": self.client_ca} if self.client_ca else {})}

    def to_json(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "name": self.name, "type": self.type, "tls.crt": self.chain_pem,
                "tls.key": self.key_pem, **({"ca.crt": self.ca_pem} if self.ca_pem else {})}


def read_secret(document: Any, source: str, default_namespace: str) -> TlsSecret:
    """A ``kind: Secret`` document (``data`` base64, or ``stringData``), checked: a PEM
    certificate chain, an unencrypted PEM key that belongs to its first certificate and, if
    given, the PEM CA certificates client certificates are checked against."""
    where = f"{source}: Secret"
    if not isinstance(document, dict) or document.get("kind") != "Secret":
        raise SecretError(f"{source}: expected a document of kind: Secret")
    meta = document.get("metadata") or {}
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not NAME.match(name) or len(name) > 253:
        raise SecretError(f"{where}: metadata.name: expected a lower-case name, e.g. bookinfo-credential")
    namespace = meta.get("namespace") or default_namespace
    where = f"{source}: Secret {namespace}/{name}"
    kind = document.get("type", OPAQUE_TYPE)  # Kubernetes' default
    if kind not in (TLS_TYPE, OPAQUE_TYPE):
        raise SecretError(f"{where}: type: expected {TLS_TYPE} (kubectl create secret tls) or {OPAQUE_TYPE} with tls.crt "
                          f"and tls.key (kubectl create secret generic), got {kind!r}")
    fields: dict[str, str] = {}
    for section, decode in (("data", _base64), ("stringData", str)):
        values = document.get(section) or {}
        if not isinstance(values, dict):
            raise SecretError(f"{where}: {section}: expected a mapping with tls.crt and tls.key")
        for part, names in PARTS.items():
            for item in names[:1] if kind == TLS_TYPE else names:  # a kubernetes.io/tls Secret's keys have their fixed names
                if item in values:
                    try:
                        fields[part] = decode(values[item])
                    except ValueError:
                        raise SecretError(f"{where}: {section}.{item}: expected base64 of a PEM file") from None
    missing = [part for part in ("tls.crt", "tls.key") if part not in fields]
    if missing:
        also = "" if kind == TLS_TYPE else f" (or {PARTS[missing[0]][1]}, Istio's generic name)"
        raise SecretError(f"{where}: data.{missing[0]}: missing{also}: the gateway's certificate and key are tls.crt and "
                          "tls.key, and for mutual TLS the clients' CA is ca.crt")
    return tls_secret(namespace, name, fields["tls.crt"], fields["tls.key"], where, fields.get("ca.crt"), kind)


def tls_secret(namespace: str, name: str, chain_pem: str, key_pem: str, where: str, ca_pem: str | None = None,
               kind: str = TLS_TYPE, names: tuple[str, str] = ("tls.crt", "tls.key")) -> TlsSecret:
    """A certificate chain and its key (and the clients' CA), checked as a TLS server would load
    them. ``names``: what the errors call the certificate and the key (a Secret's keys; a client
    certificate's flags or fields elsewhere)."""
    cert_name, key_name = names
    chain = _certificates(chain_pem, f"{where}: {cert_name}")
    client_ca = None
    if ca_pem is not None:
        client_ca = _certificates(ca_pem, f"{where}: ca.crt")[0].subject.rfc4514_string()
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except TypeError:
        raise SecretError(f"{where}: {key_name}: the key is encrypted; give it unencrypted (openssl's -nodes)") from None
    except ValueError:
        raise SecretError(f"{where}: {key_name}: expected a PEM private key (-----BEGIN PRIVATE KEY-----)") from None
    leaf = chain[0]
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise SecretError(f"{where}: {key_name}: is not the key of {cert_name}'s first certificate; give the pair that belongs together")
    try:
        hosts = tuple(leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        hosts = tuple(str(a.value) for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME))
    return TlsSecret(namespace, name, chain_pem, key_pem, hosts, leaf.not_valid_after_utc, ca_pem, client_ca, kind)


def _certificates(pem: str, where: str) -> list[x509.Certificate]:
    try:
        with warnings.catch_warnings():  # Istio's task signs with -set_serial 0, which RFC 5280 frowns on and servers take
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise SecretError(f"{where}: expected PEM certificates (-----BEGIN CERTIFICATE-----)") from None


def expiry_problems(secrets: dict[Key, TlsSecret], served: set[Key], now: datetime,
                    within: timedelta = RENEW_WITHIN) -> list[str]:
    """``meshdojo check``'s word on each served Secret (a Gateway names it) whose certificate has
    ended, or ends within ``within``: clients refuse an expired one. Pure."""
    out = []
    for key in sorted(served):
        secret = secrets.get(key)
        if secret is None or secret.not_after - now > within:
            continue
        when = f"{secret.not_after:%Y-%m-%d %H:%M} UTC"
        said = f"expired on {when}: clients refuse it" if secret.not_after <= now else f"expires on {when}"
        out.append(f"Secret {key[0]}/{key[1]}, which a Gateway's HTTPS listener serves, {said}; give it a new certificate "
                   f"(meshdojo create secret tls {key[1]} --cert FILE --key FILE -n {key[0]}: served without a restart)")
    return out


def _base64(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(value)
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError(value) from None


class SecretStore:
    """The TLS Secrets the gateways may be given, with a change signal for their watches."""

    def __init__(self, on_change: Callable[[SecretStore], None] | None = None) -> None:
        self.secrets: dict[Key, TlsSecret] = {}
        self.version = 0
        self._on_change = on_change
        self._wakes: set[asyncio.Queue] = set()

    def put(self, secret: TlsSecret) -> str:
        """``created``, ``configured`` or ``unchanged``, as kubectl says it."""
        key = (secret.namespace, secret.name)
        before = self.secrets.get(key)
        if before == secret:
            return "unchanged"
        self.secrets[key] = secret
        self._bump()
        return "created" if before is None else "configured"

    def delete(self, namespace: str, name: str) -> bool:
        if self.secrets.pop((namespace, name), None) is None:
            return False
        self._bump()
        return True

    def replace(self, secrets: dict[Key, TlsSecret]) -> None:
        """All of them at once (a cluster's, as last read)."""
        if secrets != self.secrets:
            self.secrets = dict(secrets)
            self._bump(persist=False)

    def has(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self.secrets

    def get(self, namespace: str, name: str) -> TlsSecret | None:
        return self.secrets.get((namespace, name))

    def listed(self, namespace: str | None) -> list[dict[str, Any]]:
        return [s.summary() for key, s in sorted(self.secrets.items()) if namespace in (None, key[0])]

    def restore(self, saved: list[dict[str, Any]]) -> None:
        for item in saved:
            secret = tls_secret(item["namespace"], item["name"], item["tls.crt"], item["tls.key"], "saved Secret",
                                item.get("ca.crt"), item.get("type", TLS_TYPE))
            self.secrets[(secret.namespace, secret.name)] = secret

    def to_json(self) -> list[dict[str, Any]]:
        return [s.to_json() for _, s in sorted(self.secrets.items())]

    def wake(self, queue: asyncio.Queue) -> None:
        """Have ``queue`` (a watch's, which other stores fill too) woken by every change."""
        self._wakes.add(queue)

    def unwake(self, queue: asyncio.Queue) -> None:
        self._wakes.discard(queue)

    def _bump(self, persist: bool = True) -> None:
        self.version += 1
        for queue in self._wakes:
            if queue.empty():  # a queue with something in it wakes its reader already (and may hold the closing None)
                queue.put_nowait({"type": "secrets"})
        if persist and self._on_change is not None:
            self._on_change(self)
