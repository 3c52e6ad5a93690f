"""End users' JWTs, checked by the inbound sidecar as Envoy's ``jwt_authn`` filter checks them
for Istio's ``RequestAuthentication`` (controlplane/requestauthn.py says what a rule holds).

Per policy snapshot, the rules that apply to this workload and their issuers' keys become one
:class:`JwtChecker` (keys parsed once). Per request, :meth:`JwtChecker.check`:

1. finds the token where a rule looks for it (``Authorization: Bearer`` and ``?access_token``
   unless a rule says otherwise); none: the request passes as it is, with no principal;
2. reads its header and payload, and the rule of its issuer (``iss``): none is a refusal;
3. verifies its signature with one of that issuer's keys (the ``kid`` it names, else each key
   of the algorithm's kind): RFC 7518's RS*, PS*, ES*, HS* and RFC 8037's EdDSA, never
   ``none``;
4. checks ``exp`` and ``nbf`` with Envoy's 60 s of clock skew, and ``aud`` against the rule's
   audiences.

A refusal says why in Envoy's words ("Jwt is expired"). ``cryptography`` is imported only when
public keys are parsed, so a sidecar that never checks a JWT does not carry it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from controlplane.authzrules import JwtAuth
from controlplane.matching import cookie_value, query_param
from controlplane.requestauthn import JwtRule, TokenLocation

CLOCK_SKEW = 60.0  # seconds, as Envoy's jwt_authn
HASHES = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}
EC_CURVES = {"ES256": ("P-256", 32), "ES384": ("P-384", 48), "ES512": ("P-521", 66)}
KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "HS": "oct", "Ed": "OKP"}


@dataclass(frozen=True, slots=True)
class Verified:
    auth: JwtAuth
    rule: JwtRule
    policy: str  # the RequestAuthentication (namespace/name) whose rule accepted it
    location: TokenLocation
    payload: str  # the token's payload, base64url (outputPayloadToHeader)


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str  # Envoy's words, then ours
    policy: str  # the RequestAuthentication whose rule refused it ("" when no rule names the issuer)


@dataclass(frozen=True, slots=True)
class Key:
    kty: str
    kid: str | None
    crv: str | None
    material: Any  # a cryptography public key, or the secret bytes of an oct key


@dataclass(frozen=True, slots=True)
class IssuerKeys:
    rule: JwtRule
    policy: str
    keys: tuple[Key, ...]
    problem: str | None  # why there are no keys (the control plane could not fetch them)


class JwtChecker:
    def __init__(self, rules: Sequence[tuple[str, JwtRule]], resolved: Mapping[str, tuple[str | None, str | None]],
                 clock: Callable[[], float] = time.time) -> None:
        """``rules``: (policy, rule) of each RequestAuthentication that applies, most specific first;
        ``resolved``: a rule's keys source -> (JWKS text, or why there is none), from the control plane."""
        self._clock = clock
        self._issuers: dict[str, IssuerKeys] = {}
        locations: list[TokenLocation] = []
        for policy, rule in rules:
            if rule.issuer in self._issuers:
                continue  # the most specific policy's rule for an issuer wins
            text, problem = (rule.jwks, None) if rule.jwks is not None else resolved.get(rule.keys_source, (None, "not fetched yet"))
            keys, bad = parse_jwks(text) if text is not None else ((), None)
            self._issuers[rule.issuer] = IssuerKeys(rule, policy, keys, problem or bad)
            locations += [loc for loc in rule.locations if loc not in locations]
        self.locations = tuple(locations)

    def check(self, header: Callable[[str], str | None], path: str) -> Verified | Refused | None:
        found = self._token(header, path)
        if found is None:
            return None
        token, location = found
        parts = token.split(".")
        if len(parts) != 3:
            return Refused("Jwt is not in the form of Header.Payload.Signature", "")
        try:
            head, payload = _json(parts[0]), _json(parts[1])
            signature = _b64(parts[2])
        except ValueError:
            return Refused("Jwt header or payload is not base64url-encoded JSON", "")
        issuer = self._issuers.get(payload.get("iss")) if isinstance(payload.get("iss"), str) else None
        if issuer is None:
            return Refused(f"Jwt issuer is not configured: no RequestAuthentication here names {payload.get('iss')!r}", "")
        if issuer.problem is not None and not issuer.keys:
            what = "Jwks is not valid" if issuer.rule.jwks is not None else "Jwks remote fetch is failed"
            return Refused(f"{what}: the keys of {issuer.rule.issuer} could not be had ({issuer.problem})", issuer.policy)
        alg = head.get("alg")
        if not isinstance(alg, str) or not _verify(alg, head.get("kid"), issuer.keys, f"{parts[0]}.{parts[1]}".encode(), signature):
            return Refused(f"Jwt verification fails: no key of {issuer.rule.issuer} verifies its signature (alg {alg})",
                           issuer.policy)
        now = self._clock()
        if isinstance(payload.get("exp"), int | float) and now > payload["exp"] + CLOCK_SKEW:
            return Refused("Jwt is expired", issuer.policy)
        if isinstance(payload.get("nbf"), int | float) and now < payload["nbf"] - CLOCK_SKEW:
            return Refused("Jwt not yet valid", issuer.policy)
        if issuer.rule.audiences:
            aud = payload.get("aud")
            given = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
            if not set(issuer.rule.audiences) & set(given):
                return Refused(f"Audiences in Jwt are not allowed: expected one of {', '.join(issuer.rule.audiences)}", issuer.policy)
        sub = payload.get("sub") if isinstance(payload.get("sub"), str) else ""
        return Verified(JwtAuth(f"{payload['iss']}/{sub}", payload), issuer.rule, issuer.policy, location, parts[1])

    def _token(self, header: Callable[[str], str | None], path: str) -> tuple[str, TokenLocation] | None:
        for location in self.locations:
            if location.param:
                value = query_param(path, location.param)
            elif location.cookie:
                value = cookie_value(header("cookie"), location.cookie)
            else:
                value = header(location.header)
                if value is not None:
                    if value[:len(location.prefix)].lower() != location.prefix.lower():  # "bearer" too (RFC 7235)
                        continue
                    value = value[len(location.prefix):].strip()
            if value:
                return value, location
        return None


def without_cookie(cookies: bytes, name: str) -> bytes:
    """A ``Cookie`` header without cookie ``name`` (the others kept as written)."""
    kept = [pair for pair in cookies.split(b";") if pair.strip().partition(b"=")[0] != name.encode("latin-1")]
    return b";".join(kept).strip()


def without_param(path: str, name: str) -> str:
    """``path`` without query parameter ``name`` (every other parameter kept as it was written)."""
    base, question, query = path.partition("?")
    if not question:
        return path
    kept = [part for part in query.split("&") if unquote_plus(part.partition("=")[0]) != name]
    return f"{base}?{'&'.join(kept)}" if kept else base


def _b64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(str(exc)) from None


def _json(text: str) -> dict[str, Any]:
    value = json.loads(_b64(text))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _verify(alg: str, kid: Any, keys: Sequence[Key], data: bytes, signature: bytes) -> bool:
    kty = KEY_TYPES.get(alg[:2]) if alg == "EdDSA" or alg[2:] in HASHES else None
    if kty is None:  # "none", or an algorithm RFC 7518 does not name
        return False
    candidates = [k for k in keys if k.kty == kty and (kid is None or k.kid is None or k.kid == kid)]
    return any(_signed_by(alg, key, data, signature) for key in candidates)


def _signed_by(alg: str, key: Key, data: bytes, signature: bytes) -> bool:
    if key.kty == "oct":
        return hmac.compare_digest(hmac.new(key.material, data, HASHES[alg[2:]]).digest(), signature)
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

    digest = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}.get(alg[2:], hashes.SHA256)()
    try:
        if alg.startswith("RS"):
            key.material.verify(signature, data, padding.PKCS1v15(), digest)
        elif alg.startswith("PS"):
            key.material.verify(signature, data, padding.PSS(padding.MGF1(digest), digest.digest_size), digest)
        elif alg.startswith("ES"):
            curve, size = EC_CURVES.get(alg, ("", 0))
            if key.crv != curve or len(signature) != 2 * size:
                return False
            r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
            key.material.verify(utils.encode_dss_signature(r, s), data, ec.ECDSA(digest))
        else:  # EdDSA
            if key.crv != "Ed25519":
                return False
            key.material.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def parse_jwks(text: str) -> tuple[tuple[Key, ...], str | None]:
    """The keys of a JWKS (a key that cannot be read is left out and said why), imported once."""
    try:
        document = json.loads(text)
        entries = document["keys"]
        assert isinstance(entries, list)
    except (ValueError, KeyError, TypeError, AssertionError):
        return (), "the JWKS is not {\"keys\": [...]}"
    keys, problems = [], []
    for i, entry in enumerate(entries):
        try:
            keys.append(_key(entry))
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"keys[{i}]: {exc}")
    return tuple(keys), "; ".join(problems) or None


def _key(jwk: dict[str, Any]) -> Key:
    kty, kid, crv = jwk["kty"], jwk.get("kid"), jwk.get("crv")
    if kty == "oct":
        return Key(kty, kid, None, _b64(jwk["k"]))
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    number = lambda member: int.from_bytes(_b64(jwk[member]), "big")  # noqa: E731
    if kty == "RSA":
        material: Any = rsa.RSAPublicNumbers(number("e"), number("n")).public_key()
    elif kty == "EC":
        curve = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}[crv]()
        material = ec.EllipticCurvePublicNumbers(number("x"), number("y"), curve).public_key()
    elif kty == "OKP" and crv == "Ed25519":
        material = ed25519.Ed25519PublicKey.from_public_bytes(_b64(jwk["x"]))
    else:
        raise ValueError(f"a {kty} key this sidecar cannot use")
    return Key(kty, kid, crv, material)
