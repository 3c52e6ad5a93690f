"""The CA's persistent keys in ``<state>/ca`` (0700 directory, 0600 files).

Loaded at start if present, created otherwise, so restarting the control plane keeps every
issued certificate valid.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

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


def load_or_create(state_dir: Path, now: dt.datetime) -> CaMaterial:
    directory = private_dir(state_dir / "ca")
    files = {name: directory / name for name in ("trust-anchor.crt", "trust-anchor.key", "issuer.crt", "issuer.key", "token-secret")}
    present = {name for name, path in files.items() if path.exists()}
    if present == set(files):
        try:
            return CaMaterial(
                anchor=ca.KeyPair(_load_cert(files["trust-anchor.crt"]), ca.load_key(files["trust-anchor.key"].read_bytes())),
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
