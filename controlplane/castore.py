"""The CA's persistent keys in ``<state>/ca`` (0700 directory, 0600 files).

Loaded at start if present, created otherwise, so restarting the control plane keeps every
issued certificate valid. A CA of the learner's own (``meshdojo up --identity-*-file``, as
``linkerd install`` takes one, or Istio's "plug in CA certificates") is checked by
:func:`check_own_ca` and put there by :func:`use_own_ca`: its trust anchor's key is never given,
so that directory then holds no ``trust-anchor.key``.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from controlplane import ca
from controlplane.statefiles import private_dir, write_private


@dataclass(frozen=True)
class CaMaterial:
    anchor: ca.KeyPair
    issuer: ca.KeyPair
    token_secret: bytes

    @property
    def anchor_pem(self) -> str:
        return ca.cert_pem(self.anchor.certificate)

    @property
    def issuer_pem(self) -> str:
        return ca.cert_pem(self.issuer.certificate)


class StartupError(RuntimeError):
    """The control plane cannot start, for a reason the operator can fix (the message says how)."""


class CaStoreError(StartupError):
    pass


OWN_CA_FILES = ("trust-anchor.crt", "issuer.crt", "issuer.key", "token-secret")  # a learner's CA: no anchor key


def load_or_create(state_dir: Path, now: dt.datetime) -> CaMaterial:
    directory = private_dir(state_dir / "ca")
    files = {name: directory / name for name in ("trust-anchor.crt", "trust-anchor.key", "issuer.crt", "issuer.key", "token-secret")}
    present = {name for name, path in files.items() if path.exists()}
    if present in (set(files), set(OWN_CA_FILES)):
        anchor_key = files["trust-anchor.key"]
        try:
            return CaMaterial(
                anchor=ca.KeyPair(_load_cert(files["trust-anchor.crt"]),
                                  ca.load_key(anchor_key.read_bytes()) if anchor_key.exists() else None),  # type: ignore[arg-type]
                issuer=ca.KeyPair(_load_cert(files["issuer.crt"]), ca.load_key(files["issuer.key"].read_bytes())),
                token_secret=bytes.fromhex(files["token-secret"].read_text().strip()),
            )
        except (ValueError, OSError) as exc:
            raise CaStoreError(f"the CA files in {directory} are unreadable ({exc}); remove that directory to start a new CA") from exc
    if present:
        missing = ", ".join(sorted(set(files) - present))
        raise CaStoreError(f"the CA in {directory} is incomplete (missing {missing}); remove that directory to start a new CA")
    anchor = ca.make_trust_anchor(now)
    issuer = ca.make_issuer(anchor, now)
    material = CaMaterial(anchor, issuer, secrets.token_bytes(32))
    write_private(files["trust-anchor.key"], ca.key_pem(anchor.key))
    write_private(files["issuer.key"], ca.key_pem(issuer.key))
    write_private(files["token-secret"], material.token_secret.hex())
    write_private(files["issuer.crt"], material.issuer_pem)
    write_private(files["trust-anchor.crt"], material.anchor_pem)
    return material


def _load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def check_own_ca(anchor_pem: str, issuer_pem: str, key_pem: str, names: tuple[str, str, str], now: dt.datetime) -> None:
    """Refuse a learner's CA that could not issue working certificates, naming the file at fault
    (``names``: the anchor's, the issuer certificate's and the key's). Pure."""
    anchor_name, issuer_name, key_name = names
    try:
        anchor = x509.load_pem_x509_certificate(anchor_pem.encode())
    except ValueError:
        raise CaStoreError(f"{anchor_name}: expected the trust anchor's certificate, in PEM") from None
    try:
        issuer = x509.load_pem_x509_certificate(issuer_pem.encode())
    except ValueError:
        raise CaStoreError(f"{issuer_name}: expected the issuer's certificate, in PEM") from None
    try:
        key = ca.load_key(key_pem.encode())
    except (ValueError, TypeError):
        raise CaStoreError(f"{key_name}: expected the issuer's private key, ECDSA P-256, in PEM without a password "
                           f"(step: --kty EC --crv P-256 --no-password --insecure)") from None
    if key.curve.name != "secp256r1":
        raise CaStoreError(f"{key_name}: an ECDSA key on {key.curve.name}; the mesh's certificates are ECDSA P-256")
    if key.public_key().public_numbers() != issuer.public_key().public_numbers():  # type: ignore[union-attr]
        raise CaStoreError(f"{key_name} is not the key of the certificate in {issuer_name}")
    for cert, name, what in ((anchor, anchor_name, "trust anchor"), (issuer, issuer_name, "issuer")):
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise CaStoreError(f"{name}: the {what} is not a CA certificate (basicConstraints CA:TRUE); "
                               f"step makes one with --profile {'root-ca' if what == 'trust anchor' else 'intermediate-ca'}")
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise CaStoreError(f"{name}: the {what} is valid from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to "
                               f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, not now; make a new one")
    try:
        issuer.verify_directly_issued_by(anchor)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CaStoreError(f"{issuer_name} was not issued by the trust anchor in {anchor_name} ({exc or 'bad signature'})") from None


def use_own_ca(state_dir: Path, anchor_pem: str, issuer_pem: str, key_pem: str) -> None:
    """Make a (checked) CA of the learner's own the one the control plane loads next, in place
    of any CA there: the trust anchor's key is not among its files."""
    directory = private_dir(state_dir / "ca")
    (directory / "trust-anchor.key").unlink(missing_ok=True)
    write_private(directory / "issuer.key", key_pem)
    write_private(directory / "token-secret", secrets.token_bytes(32).hex())
    write_private(directory / "issuer.crt", issuer_pem)
    write_private(directory / "trust-anchor.crt", anchor_pem)
