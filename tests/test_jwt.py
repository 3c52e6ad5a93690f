"""End users' JWTs (RequestAuthentication), as pure decisions: what the sidecar's checker
accepts and refuses and why, what the app's request keeps, what the validator refuses, and how
the control plane finds an issuer's keys. (Through real proxies: tests/test_jwt_e2e.py.)"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from controlplane.jwks import JwksResolver, KeysUnavailable
from controlplane.jwtissuer import ISSUER, DemoIssuer, b64url, token_request
from controlplane.policy import PolicyError, parse
from controlplane.policystore import PolicyStore
from proxy.access import jwt_headers
from proxy.jwt import JwtChecker, Refused, Verified, without_param

NOW = 1_800_000_000.0


def ra_doc(name: str, rules: list, ns: str = "foo") -> dict:
    return {"apiVersion": "policy.meshdojo.dev/v1alpha1", "kind": "RequestAuthentication",
            "metadata": {"name": name, "namespace": ns}, "spec": {"jwtRules": rules}}


def ra(name: str, rules: list, ns: str = "foo"):
    return parse(ra_doc(name, rules, ns), "ra.yaml", 0)


def signed(header: dict, payload: dict, sign) -> str:
    data = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    return f"{data}.{b64url(sign(data.encode()))}"


def checker(resource, keys: dict | None = None) -> JwtChecker:
    return JwtChecker([(f"{resource.namespace}/{resource.name}", rule) for rule in resource.spec.rules], keys or {}, clock=lambda: NOW)


def bearer(token: str):
    return lambda name: f"Bearer {token}" if name == "authorization" else None


def test_the_sandbox_issuers_token_verifies_and_names_its_user():
    issuer = DemoIssuer(clock=lambda: NOW)
    token, payload = issuer.mint("alice", {"groups": ["group1"]}, ["bookinfo"])
    policy = ra("jwt", [{"issuer": ISSUER, "audiences": ["bookinfo"]}])
    outcome = checker(policy, {ISSUER: (json.dumps(issuer.jwks()), None)}).check(bearer(token), "/")
    assert isinstance(outcome, Verified) and outcome.policy == "foo/jwt"
    assert outcome.auth.principal == f"{ISSUER}/alice" and outcome.auth.claims["groups"] == ["group1"]
    assert payload["exp"] == NOW + 3600
    no_keys = checker(policy, {ISSUER: (None, "GET https://x: HTTP 404")}).check(bearer(token), "/")
    assert isinstance(no_keys, Refused) and "Jwks remote fetch is failed" in no_keys.reason and "HTTP 404" in no_keys.reason
    assert checker(policy, {ISSUER: (json.dumps(issuer.jwks()), None)}).check(lambda n: None, "/") is None  # no token


@pytest.mark.parametrize("alg", ["RS256", "PS384", "EdDSA", "HS512"])
def test_each_family_of_algorithms(alg: str):
    if alg == "HS512":
        secret = b"s" * 64
        jwk = {"kty": "oct", "k": b64url(secret)}
        sign = lambda data: hmac.new(secret, data, hashlib.sha512).digest()  # noqa: E731
    elif alg == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(key.public_key().public_bytes_raw())}
        sign = key.sign
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = key.public_key().public_numbers()
        jwk = {"kty": "RSA", "n": b64url(numbers.n.to_bytes(256, "big")), "e": b64url(numbers.e.to_bytes(3, "big"))}
        digest = hashes.SHA256() if alg == "RS256" else hashes.SHA384()
        pad = padding.PKCS1v15() if alg == "RS256" else padding.PSS(padding.MGF1(digest), digest.digest_size)
        sign = lambda data: key.sign(data, pad, digest)  # noqa: E731
    policy = ra("jwt", [{"issuer": "testing@secure.istio.io", "jwks": json.dumps({"keys": [jwk]})}])
    token = signed({"alg": alg}, {"iss": "testing@secure.istio.io", "sub": "testing@secure.istio.io"}, sign)
    outcome = checker(policy).check(bearer(token), "/")
    assert isinstance(outcome, Verified) and outcome.auth.principal == "testing@secure.istio.io/testing@secure.istio.io"
    head, body, sig = token.split(".")
    forged = f"{head}.{b64url(json.dumps({'iss': 'testing@secure.istio.io', 'sub': 'admin'}).encode())}.{sig}"
    assert "Jwt verification fails" in checker(policy).check(bearer(forged), "/").reason


def test_refusals_say_why_in_envoys_words():
    issuer = DemoIssuer(clock=lambda: NOW)
    keys = {ISSUER: (json.dumps(issuer.jwks()), None)}
    policy = ra("jwt", [{"issuer": ISSUER, "audiences": ["bookinfo"]}])
    check = lambda token: checker(policy, keys).check(bearer(token), "/")  # noqa: E731
    assert check(issuer.mint("alice", {}, ["bookinfo"], lifetime=-61)[0]).reason == "Jwt is expired"
    assert check(issuer.mint("alice", {}, ["bookinfo"], lifetime=-59)[0]).auth.principal.endswith("/alice")  # 60 s of skew
    assert check(issuer.mint("alice", {"nbf": NOW + 120}, ["bookinfo"])[0]).reason == "Jwt not yet valid"
    assert check(issuer.mint("alice", {}, ["other"])[0]).reason.startswith("Audiences in Jwt are not allowed")
    other = DemoIssuer(clock=lambda: NOW)  # the same issuer name, another key
    assert "Jwt verification fails" in check(other.mint("alice", {}, ["bookinfo"])[0]).reason
    unsigned = signed({"alg": "none"}, {"iss": ISSUER, "sub": "mallory", "aud": "bookinfo"}, lambda data: b"")
    assert "Jwt verification fails" in check(unsigned).reason
    stranger = signed({"alg": "HS256"}, {"iss": "someone@else", "sub": "x"}, lambda data: b"x")
    refused = check(stranger)
    assert refused.reason.startswith("Jwt issuer is not configured") and refused.policy == ""
    assert check("not-a-token").reason == "Jwt is not in the form of Header.Payload.Signature"
    assert "base64url-encoded JSON" in check("a.b.c").reason


def test_an_inline_key_that_is_no_key_is_said_so():
    off_curve = {"kty": "EC", "crv": "P-256", "x": b64url((1).to_bytes(32, "big")), "y": b64url((1).to_bytes(32, "big"))}
    policy = ra("jwt", [{"issuer": "a", "jwks": json.dumps({"keys": [off_curve]})}])  # well-formed, so the validator lets it in
    refused = checker(policy).check(bearer(signed({"alg": "ES256"}, {"iss": "a"}, lambda data: b"x" * 64)), "/")
    assert refused.reason.startswith("Jwks is not valid: the keys of a could not be had (keys[0]:"), refused.reason


def test_tokens_are_looked_for_where_the_rule_says():
    issuer = DemoIssuer(clock=lambda: NOW)
    token, _ = issuer.mint("alice")
    keys = {ISSUER: (json.dumps(issuer.jwks()), None)}
    default = checker(ra("jwt", [{"issuer": ISSUER}]), keys)
    assert isinstance(default.check(lambda n: None, f"/p?access_token={token}"), Verified)
    assert default.check(lambda n: f"Basic {token}" if n == "authorization" else None, "/") is None  # not a bearer token
    assert isinstance(default.check(lambda n: f"bearer {token}" if n == "authorization" else None, "/"), Verified)  # any case
    custom = checker(ra("jwt", [{"issuer": ISSUER, "fromHeaders": [{"name": "X-Jwt-Assertion", "prefix": "Token "}]}]), keys)
    assert isinstance(custom.check(lambda n: f"Token {token}" if n == "x-jwt-assertion" else None, "/"), Verified)
    assert custom.check(bearer(token), "/") is None  # only where the rule looks
    cookie = checker(ra("jwt", [{"issuer": ISSUER, "fromCookies": ["session"]}]), keys)  # Istio's fromCookies
    found = cookie.check(lambda n: f'theme=dark; session="{token}"; lang=en' if n == "cookie" else None, "/")
    assert isinstance(found, Verified) and found.location.cookie == "session"
    assert cookie.check(lambda n: f"sessions={token}" if n == "cookie" else None, "/") is None and cookie.check(bearer(token), "/") is None
    headers = [(b"cookie", f'theme=dark; session="{token}"; lang=en'.encode()), (b"accept", b"*/*")]
    assert jwt_headers(headers, found) == [(b"cookie", b"theme=dark; lang=en"), (b"accept", b"*/*")]  # the token's cookie leaves
    assert jwt_headers([(b"cookie", f"session={token}".encode())], found) == []


def test_a_token_in_the_query_leaves_it_and_nothing_else_does():
    assert without_param("/p?access_token=abc&q=1", "access_token") == "/p?q=1"
    assert without_param("/p?q=a%26b&access%5Ftoken=abc", "access_token") == "/p?q=a%26b"
    assert without_param("/p?access_token=abc", "access_token") == "/p" and without_param("/p", "access_token") == "/p"


def test_the_app_gets_the_request_without_the_token_and_with_the_rules_headers():
    issuer = DemoIssuer(clock=lambda: NOW)
    token, _ = issuer.mint("alice", {"groups": ["g"], "team": "blue", "admin": True})
    keys = {ISSUER: (json.dumps(issuer.jwks()), None)}
    rules = [{"issuer": ISSUER, "outputPayloadToHeader": "x-jwt-payload",
              "outputClaimToHeaders": [{"header": "x-team", "claim": "team"}, {"header": "x-admin", "claim": "admin"}]}]
    headers = [(b"authorization", f"Bearer {token}".encode()), (b"x-team", b"forged"), (b"accept", b"*/*")]
    verified = checker(ra("jwt", rules), keys).check(bearer(token), "/")
    out = dict(jwt_headers(headers, verified))
    assert b"authorization" not in out and out[b"x-team"] == b"blue" and out[b"x-admin"] == b"true" and out[b"accept"] == b"*/*"
    assert json.loads(base64.urlsafe_b64decode(out[b"x-jwt-payload"] + b"=="))["sub"] == "alice"
    forwarded = checker(ra("jwt", [{**rules[0], "forwardOriginalToken": True}]), keys).check(bearer(token), "/")
    assert dict(jwt_headers(headers, forwarded))[b"authorization"] == f"Bearer {token}".encode()


@pytest.mark.parametrize("rule, field, says", [
    ({"issuer": "a", "jwks": "{}", "jwksUri": "https://x/jwks"}, "spec.jwtRules[0].jwksUri", "one way"),
    ({"issuer": "a", "jwks": "not json"}, "spec.jwtRules[0].jwks", "expected a JWKS as JSON text"),
    ({"issuer": "a", "jwks": '{"keys": [{"kty": "RSA", "n": "AQAB"}]}'}, "spec.jwtRules[0].jwks", "keys[0].e: a RSA key needs it"),
    ({"issuer": "a", "jwks": '{"keys": [{"kty": "EC", "crv": "P-255", "x": "AA", "y": "AA"}]}'}, "spec.jwtRules[0].jwks",
     "keys[0].crv: expected one of P-256"),
    ({"issuer": "a", "jwks": '{"keys": [{"kty": "oct", "k": "no+pad="}]}'}, "spec.jwtRules[0].jwks", "expected base64url"),
    ({"issuer": "testing@secure.istio.io"}, "spec.jwtRules[0].issuer", "not a URL to discover keys from"),
    ({"issuer": "a", "jwksUri": "file:///etc/passwd"}, "spec.jwtRules[0].jwksUri", "expected an http:// or https:// URL"),
    ({"jwksUri": "https://x/jwks"}, "spec.jwtRules[0].issuer", "required"),
    ({"issuer": "a", "jwksUri": "https://x/jwks", "timeout": "2m"}, "spec.jwtRules[0].timeout", "up to 60s"),
    ({"issuer": "a", "jwks": '{"keys": [{"kty": "oct", "k": "AA"}]}', "timeout": "1s"}, "spec.jwtRules[0].timeout", "inline"),
    ({"issuer": "a", "jwksUri": "https://x/jwks", "fromCookies": ["a b"]}, "spec.jwtRules[0].fromCookies[0]", "cookie's name"),
])
def test_the_validator_refuses_by_field(rule: dict, field: str, says: str):
    with pytest.raises(PolicyError) as refused:
        ra("bad", [rule])
    assert refused.value.field == field and says in refused.value.message
    with pytest.raises(PolicyError) as twice:
        ra("bad", [{"issuer": ISSUER}, {"issuer": ISSUER}])
    assert twice.value.field == "spec.jwtRules[1].issuer"


def test_token_requests_are_checked_by_field():
    assert token_request({"subject": "alice", "claims": {"groups": ["a"]}}) == ("alice", {"groups": ["a"]}, [], 3600.0)
    for body, says in (({}, "subject:"), ({"subject": "a", "claims": {"iss": "x"}}, "claims: iss is set by the issuer"),
                       ({"subject": "a", "audiences": "x"}, "audiences:"), ({"subject": "a", "lifetimeSeconds": 1e9}, "lifetimeSeconds:"),
                       (None, "expected a JSON object")):
        with pytest.raises(ValueError, match=says):
            token_request(body)


async def test_the_control_plane_finds_each_issuers_keys():
    store = PolicyStore()
    fetched = []
    issuer = DemoIssuer()
    other = json.dumps(DemoIssuer().jwks())
    pages = {"https://idp.example/.well-known/openid-configuration": json.dumps({"jwks_uri": "https://idp.example/keys"}),
             "https://idp.example/keys": other, "http://127.0.0.1:1/jwks": other}

    async def fetch(url: str) -> str:
        fetched.append(url)
        if url not in pages:
            raise KeysUnavailable(f"GET {url}: HTTP 404")
        return pages[url]

    clock = [0.0]
    resolver = JwksResolver(store, issuer, fetch, refresh_every=300, retry_after=5, clock=lambda: clock[0])
    store.keys = resolver.snapshot
    store.apply([("ra.yaml", 0, ra_doc("jwt", [{"issuer": ISSUER}, {"issuer": "https://idp.example"}, {"issuer": "x", "jwksUri": "http://127.0.0.1:1/jwks"},
                            {"issuer": "gone", "jwksUri": "https://nowhere.example/jwks"}]))])
    assert await resolver.resolve_once()
    got = {e["source"]: e for e in resolver.snapshot()}
    assert json.loads(got[ISSUER]["jwks"]) == issuer.jwks()  # the sandbox's own issuer: from memory, no fetch
    assert got["https://idp.example"]["jwks"] == other and got["http://127.0.0.1:1/jwks"]["jwks"] == other
    assert got["https://nowhere.example/jwks"] == {"source": "https://nowhere.example/jwks", "jwks": None,
                                                   "error": "GET https://nowhere.example/jwks: HTTP 404"}
    assert ISSUER not in fetched and store.snapshot(None)["jwks"] == resolver.snapshot()
    fetched.clear()
    assert not await resolver.resolve_once() and fetched == []  # nothing due
    clock[0] = 6  # the failed one is retried sooner than the others are refreshed
    pages["https://nowhere.example/jwks"] = other
    assert await resolver.resolve_once() and fetched == ["https://nowhere.example/jwks"]
    store.apply([("ra.yaml", 0, ra_doc("jwt", [{"issuer": ISSUER}]))])  # the others are no longer named
    assert await resolver.resolve_once() and [e["source"] for e in resolver.snapshot()] == [ISSUER]


async def test_a_keys_server_that_does_not_answer_in_the_rules_timeout_is_said_so():
    store = PolicyStore()

    async def never(url: str) -> str:
        await asyncio.Event().wait()  # a server that accepted and never answered
        raise AssertionError

    resolver = JwksResolver(store, DemoIssuer(), never)
    store.apply([("ra.yaml", 0, ra_doc("jwt", [{"issuer": "slow", "jwksUri": "https://slow.example/keys", "timeout": "50ms"}]))])
    assert await resolver.resolve_once()
    [entry] = resolver.snapshot()
    assert entry["jwks"] is None and entry["error"] == "GET https://slow.example/keys: no answer within 0.05s (the rule's timeout)"


def test_a_token_rule_where_no_request_authentication_applies_is_named():
    from controlplane.selection import Workload, unverified_tokens

    def authz(name: str, rule: dict):
        return parse({"apiVersion": "policy.meshdojo.dev/v1alpha1", "kind": "AuthorizationPolicy",
                      "metadata": {"name": name, "namespace": "foo"},
                      "spec": {"selector": {"matchLabels": {"app": "httpbin"}}, "rules": [rule]}}, "a.yaml", 0)

    needs_token = authz("require-jwt", {"from": [{"source": {"requestPrincipals": ["*"]}}]})
    by_claim = authz("by-claim", {"when": [{"key": "request.auth.claims[groups]", "values": ["g"]}]})
    by_identity = authz("by-identity", {"from": [{"source": {"principals": ["cluster.local/ns/foo/sa/sleep"]}}]})
    httpbin, sleep = Workload("foo", "httpbin", "httpbin", "httpbin-0", {"app": "httpbin"}), Workload("foo", "sleep", "sleep", "sleep-0", {"app": "sleep"})
    found = unverified_tokens([needs_token, by_claim, by_identity], [httpbin, sleep], {})
    assert [(p.policy, p.workloads) for p in found] == [("foo/by-claim", ("foo/httpbin-0",)), ("foo/require-jwt", ("foo/httpbin-0",))]
    assert "no RequestAuthentication selects foo/httpbin-0" in found[0].describe()
    assert unverified_tokens([needs_token, by_claim, ra("jwt", [{"issuer": ISSUER}])], [httpbin], {}) == []  # the namespace's verifies


def test_a_gateway_is_selected_by_name_label_or_the_mesh_never_by_its_namespaces_access_policies():
    from controlplane.selection import Workload, applicable

    def authz(name: str, ns: str, spec: dict):
        return parse({"apiVersion": "policy.meshdojo.dev/v1alpha1", "kind": "AuthorizationPolicy",
                      "metadata": {"name": name, "namespace": ns}, "spec": {"rules": [{}], **spec}}, "a.yaml", 0)

    nothing = authz("allow-nothing", "emojivoto", {})  # lesson 7's: the namespace's workloads, not its gateway
    by_label = authz("edge", "meshdojo-system", {"selector": {"matchLabels": {"istio": "ingressgateway"}}})
    mesh_wide = authz("mesh", "meshdojo-system", {})
    gateway = Workload("emojivoto", "ingress-gateway", "emojivoto-ingress", "emojivoto-ingress",
                       {"app": "emojivoto-ingress", "istio": "ingressgateway"}, gateway=True)
    web = Workload("emojivoto", "web", "web", "web-0", {"app": "web"})
    names = lambda w: [r.name for r in applicable([nothing, by_label, mesh_wide], w, {})["AuthorizationPolicy"].resources]  # noqa: E731
    assert sorted(names(gateway)) == ["edge", "mesh"] and sorted(names(web)) == ["allow-nothing", "mesh"]
