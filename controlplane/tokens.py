"""Bootstrap tokens: proof that the holder may obtain a certificate for one identity.

A token is ``<identity>|<expiry>`` signed with HMAC-SHA256 under a secret kept 0600 in the
CA directory. Verification needs no storage (tokens survive a control-plane restart) and the
identity is inside the MAC: a token issued for X can never be turned into one for Y.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from controlplane.spiffe import InvalidIdentity, SpiffeId


class InvalidToken(ValueError):
    pass


def issue(secret: bytes, identity: SpiffeId, now: float, ttl: float) -> str:
    payload = f"{identity.uri}|{int(now + ttl)}".encode()
    mac = hmac.new(secret, payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def verify(secret: bytes, token: str, now: float) -> SpiffeId:
    """The identity the token was issued for; raises :class:`InvalidToken` otherwise."""
    try:
        payload_b64, mac_b64 = token.strip().split(".")
        payload, mac = _unb64(payload_b64), _unb64(mac_b64)
    except ValueError:
        raise InvalidToken("malformed bootstrap token") from None
    if not hmac.compare_digest(mac, hmac.new(secret, payload, hashlib.sha256).digest()):
        raise InvalidToken("bootstrap token not issued by this control plane")
    uri, _, expiry = payload.decode().rpartition("|")
    if now > int(expiry):
        raise InvalidToken("bootstrap token expired; ask the operator API for a new one")
    try:
        return SpiffeId.parse(uri)
    except InvalidIdentity as exc:
        raise InvalidToken(str(exc)) from None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
