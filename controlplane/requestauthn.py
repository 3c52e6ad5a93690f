"""Istio's ``RequestAuthentication``: which end users' JWTs a workload accepts.

Each ``jwtRules`` entry names an issuer and where its keys are: inline (``jwks``, a JWKS as
text), at a URL (``jwksUri``), or — with neither — found by OpenID discovery from the issuer's
URL, as istiod does. The control plane fetches what is at a URL and hands the keys to the
sidecars (:mod:`controlplane.jwks`); the sidecar checks each token itself (``proxy/jwt.py``).

As in Istio: a request with no token passes (an ``AuthorizationPolicy`` with
``requestPrincipals`` is what requires one); a request whose token is invalid, expired, for
another audience or from an issuer no rule names is refused with 401; a valid token gives the
request a principal ``<iss>/<sub>`` and its claims, which ``AuthorizationPolicy`` reads.

Pure: reading a document; what a schema cannot say is checked here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from controlplane.durations import parse_duration
from controlplane.fields import FieldReader
from controlplane.workloadselector import WorkloadSelector

DEFAULT_HEADER = ("authorization", "Bearer ")  # where a token is looked for when a rule does not say (Istio's default)
DEFAULT_PARAM = "access_token"
FETCH_TIMEOUT = 5.0  # Istio's default for a jwksUri's answer
MAX_FETCH_TIMEOUT = 60.0
# the members each kind of key needs (RFC 7518 section 6; RFC 8037 for OKP)
KEY_MEMBERS = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x"), "oct": ("k",)}
CURVES = {"EC": ("P-256", "P-384", "P-521"), "OKP": ("Ed25519",)}


@dataclass(frozen=True, slots=True)
class TokenLocation:
    header: str = ""  # a header's (lower-case) name, or
    prefix: str = ""  # what precedes the token in that header ("Bearer ")
    param: str = ""  # a query parameter's name, or
    cookie: str = ""  # a cookie's name


@dataclass(frozen=True, slots=True)
class JwtRule:
    issuer: str
    audiences: tuple[str, ...]  # empty: any audience
    jwks: str | None  # inline JWKS (JSON text)
    jwks_uri: str | None
    locations: tuple[TokenLocation, ...]
    forward: bool  # forwardOriginalToken: keep the token in the request the app gets
    payload_header: str | None  # outputPayloadToHeader
    claim_headers: tuple[tuple[str, str], ...]  # outputClaimToHeaders: (header, claim)
    fetch_timeout: float = FETCH_TIMEOUT  # timeout: how long the control plane waits for the keys' server

    @property
    def keys_source(self) -> str:
        """Where the control plane finds this rule's keys (the key of its resolved JWKS)."""
        return self.jwks_uri or self.issuer


@dataclass(frozen=True, slots=True)
class RequestAuthnSpec:
    rules: tuple[JwtRule, ...]
    workloads: WorkloadSelector | None  # None: the whole namespace (the mesh, in meshdojo-system)
    service: str | None = None


def read(r: FieldReader, spec: dict[str, Any], workloads: WorkloadSelector | None) -> RequestAuthnSpec:
    rules, issuers = [], set()
    for i, rule in enumerate(spec.get("jwtRules", [])):
        where = f"spec.jwtRules[{i}]"
        issuer = rule["issuer"]
        if issuer in issuers:
            raise r.fail(f"{where}.issuer", f"{issuer!r} is named by an earlier rule: one rule per issuer")
        issuers.add(issuer)
        if "jwks" in rule and "jwksUri" in rule:
            raise r.fail(f"{where}.jwksUri", "give the keys one way: jwks (inline) or jwksUri, not both")
        if "jwks" in rule:
            check_jwks(r, rule["jwks"], f"{where}.jwks")
        elif "jwksUri" not in rule and not issuer.startswith(("https://", "http://")):
            raise r.fail(f"{where}.issuer", f"{issuer!r} is not a URL to discover keys from: give jwks or jwksUri")
        locations = tuple(TokenLocation(header=h["name"].lower(), prefix=h.get("prefix", "")) for h in rule.get("fromHeaders", []))
        locations += tuple(TokenLocation(param=p) for p in rule.get("fromParams", []))
        locations += tuple(TokenLocation(cookie=c) for c in rule.get("fromCookies", []))
        timeout = parse_duration(rule["timeout"]) if "timeout" in rule else FETCH_TIMEOUT
        if not 0 < timeout <= MAX_FETCH_TIMEOUT:
            raise r.fail(f"{where}.timeout", f"expected a duration above 0 and up to {MAX_FETCH_TIMEOUT:g}s, got {rule['timeout']!r}")
        if "timeout" in rule and "jwks" in rule:
            raise r.fail(f"{where}.timeout", "the keys are inline (jwks): there is nothing to wait for")
        rules.append(JwtRule(issuer, tuple(rule.get("audiences", [])), rule.get("jwks"), rule.get("jwksUri"),
                             locations or (TokenLocation(*DEFAULT_HEADER), TokenLocation(param=DEFAULT_PARAM)),
                             rule.get("forwardOriginalToken", False), rule.get("outputPayloadToHeader"),
                             tuple((c["header"], c["claim"]) for c in rule.get("outputClaimToHeaders", [])), timeout))
    return RequestAuthnSpec(tuple(rules), workloads, workloads.name if workloads and workloads.kind == "Service" else None)


def check_jwks(r: FieldReader, text: str, field: str) -> list[dict[str, Any]]:
    """A JWKS's keys, each with what its kind needs; or an error naming the key and member."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise r.fail(field, f"expected a JWKS as JSON text ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list) or not document["keys"]:
        raise r.fail(field, 'expected a JWKS: {"keys": [ ... ]} with at least one key')
    for i, key in enumerate(document["keys"]):
        kty = key.get("kty") if isinstance(key, dict) else None
        if kty not in KEY_MEMBERS:
            raise r.fail(field, f"keys[{i}].kty: expected one of {', '.join(KEY_MEMBERS)}")
        for member in KEY_MEMBERS[kty]:
            value = key.get(member)
            if not isinstance(value, str) or not value:
                raise r.fail(field, f"keys[{i}].{member}: a {kty} key needs it")
            if member == "crv":
                if value not in CURVES[kty]:
                    raise r.fail(field, f"keys[{i}].crv: expected one of {', '.join(CURVES[kty])}")
            elif not _is_base64url(value):
                raise r.fail(field, f"keys[{i}].{member}: expected base64url text")
    return document["keys"]


def _is_base64url(text: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9_-]+", text) is not None
