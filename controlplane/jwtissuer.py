"""The sandbox's own token issuer, for learning RequestAuthentication without an identity provider.

Istio's JWT tasks use a sample issuer whose keys and tokens live in Istio's repository; nothing
can be fetched here, so the control plane is the issuer instead: an ES256 (ECDSA P-256) key made
when the control plane starts and kept only in its memory — tokens it issued stop verifying
when it restarts, as they would after a key rotation. ``meshdojo jwt`` asks it for a token
(``POST /v1/jwt``, with the operator token). A ``RequestAuthentication`` names it by its
issuer URL alone (:data:`ISSUER`): the control plane answers that URL's OpenID discovery
itself (controlplane/jwks.py), with no network.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

ISSUER = "https://issuer.meshdojo.local"
RESERVED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "nbf")
MAX_LIFETIME = 7 * 24 * 3600.0


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class DemoIssuer:
    def __init__(self, key: ec.EllipticCurvePrivateKey | None = None, clock: Callable[[], float] = time.time) -> None:
        self._key = key or ec.generate_private_key(ec.SECP256R1())
        self._clock = clock
        self.kid = secrets.token_hex(8)

    def jwks(self) -> dict[str, Any]:
        numbers = self._key.public_key().public_numbers()
        return {"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid,
                          "x": b64url(numbers.x.to_bytes(32, "big")), "y": b64url(numbers.y.to_bytes(32, "big"))}]}

    def mint(self, subject: str, claims: Mapping[str, Any] | None = None, audiences: Sequence[str] = (),
             lifetime: float = 3600.0) -> tuple[str, dict[str, Any]]:
        """A signed token and its payload. ``claims`` may not set the registered ones this sets."""
        now = int(self._clock())
        payload: dict[str, Any] = {**(claims or {}), "iss": ISSUER, "sub": subject, "iat": now, "exp": now + int(lifetime)}
        if audiences:
            payload["aud"] = audiences[0] if len(audiences) == 1 else list(audiences)
        header = {"alg": "ES256", "typ": "JWT", "kid": self.kid}
        signing_input = f"{b64url(json.dumps(header, separators=(',', ':')).encode())}." \
                        f"{b64url(json.dumps(payload, separators=(',', ':')).encode())}"
        r, s = utils.decode_dss_signature(self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}", payload


def token_request(body: Any) -> tuple[str, dict[str, Any], list[str], float]:
    """(subject, claims, audiences, lifetime) from ``POST /v1/jwt``'s body; ValueError names the field."""
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object: {subject, claims, audiences, lifetimeSeconds}")
    subject = body.get("subject")
    if not isinstance(subject, str) or not subject:
        raise ValueError("subject: expected the user's name, e.g. alice")
    claims = body.get("claims", {})
    if not isinstance(claims, dict) or not all(isinstance(k, str) for k in claims):
        raise ValueError("claims: expected a JSON object of claim names to values")
    if reserved := [k for k in claims if k in RESERVED_CLAIMS]:
        raise ValueError(f"claims: {reserved[0]} is set by the issuer (use subject, audiences or lifetimeSeconds)")
    audiences = body.get("audiences", [])
    if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
        raise ValueError("audiences: expected a list of names")
    lifetime = body.get("lifetimeSeconds", 3600)
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or not -MAX_LIFETIME <= lifetime <= MAX_LIFETIME:
        raise ValueError(f"lifetimeSeconds: expected a number of seconds up to {MAX_LIFETIME:.0f} (negative: already expired)")
    return subject, claims, audiences, float(lifetime)
