"""Tap tokens: what lets the control plane read a sidecar's tap stream (and its recent fates).

Each identity gets its own token, ``HMAC(key, SPIFFE ID)``, handed to the proxy with every
certificate (``tapToken`` in ``/v1/certify``'s answer, over the TLS session whose server the
proxy verified as the control plane). The key is derived from the issuer's private key, so it
needs no storage, survives a restart of the control plane (in Kubernetes the issuer comes from
its Secret) and changes with the issuer. A workload only learns its own token: it can tap
itself, never another identity. Pure: bytes in, strings out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

INFO = b"meshdojo tap tokens v1"


def tap_key(issuer_key: ec.EllipticCurvePrivateKey) -> bytes:
    secret = issuer_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(secret)


def tap_token(key: bytes, identity_uri: str) -> str:
    mac = hmac.new(key, identity_uri.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
