"""Istio's external authorization: an ``ExtensionProvider`` with ``envoyExtAuthzHttp``
(controlplane/providers.py) names an HTTP service that decides; an ``AuthorizationPolicy`` with
``action: CUSTOM`` and ``provider: {name}`` says which requests it is asked about.

For each request a CUSTOM policy's rules match, the sidecar sends the provider a *check
request*, as Envoy's ``ext_authz`` filter does for Istio's ``envoyExtAuthzHttp``:

- the same method, the path ``pathPrefix`` + the request's path, ``Host`` the provider's
  service, no body (``Content-Length: 0``);
- the request's headers that ``includeRequestHeadersInCheck`` names (exact, ``prefix*`` or
  ``*suffix``, case-insensitive), and ``includeAdditionalHeadersInCheck``'s fixed ones.

The provider's answer decides: **200 allows** the request (then DENY and ALLOW policies are
evaluated, Istio's order CUSTOM, DENY, ALLOW), with the answer's headers that
``headersToUpstreamOnAllow`` names added to what the app gets, and those
``headersToDownstreamOnAllow`` names to what the caller gets. **Any other status denies**, and
the caller gets the provider's status, body and headers (``headersToDownstreamOnDeny``'s, or
all of them when it names none). A provider that cannot be reached, or does not answer within
``timeout``, denies with ``statusOnError`` (403), unless ``failOpen``.

Pure: building the check request, reading the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from controlplane.authzrules import Pattern
from controlplane.providers import MESH_NAMESPACE, HttpProvider

# never taken from a provider's answer: they frame that answer, not the request or response they would join
FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"host", b":authority"})
Headers = list[tuple[bytes, bytes]]


def _named(patterns: Sequence[Pattern], name: bytes) -> bool:
    text = name.decode("latin-1")
    return any(p.matches(text) for p in patterns)


def check_headers(provider: HttpProvider, headers: Headers) -> Headers:
    """The headers of the check request: the provider's Host, the request's headers it asks for,
    its fixed ones; never a body."""
    sent = [(b"host", provider.authority.encode())]
    sent += [(n, v) for n, v in headers if n not in FRAMING and _named(provider.include, n)]
    sent += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in provider.additional]
    return [*sent, (b"content-length", b"0")]


def check_target(provider: HttpProvider, path: str) -> str:
    """The check request's absolute-form target: the provider's service, its prefix, the request's path."""
    return f"http://{provider.authority}{provider.path_prefix}{path}"


@dataclass(frozen=True, slots=True)
class Allowed:
    upstream: Headers  # added to the request the app gets (replacing any of the same name)
    downstream: Headers  # added to the response the caller gets
    result: str = "allowed"  # or failure_mode_allowed: not asked, let through (failOpen) — Envoy's stat names
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Denied:
    status: int
    headers: Headers
    body: bytes
    reason: str  # for the fate and the log: the provider's status, or why it could not be asked
    result: str = "denied"  # or error: the provider could not be asked (statusOnError)


Verdict = Allowed | Denied


def _picked(headers: Headers, patterns: Sequence[Pattern] | None) -> Headers:
    return [(n, v) for n, v in headers if n not in FRAMING and (patterns is None or _named(patterns, n))]


def verdict(provider: HttpProvider, status: int, headers: Headers, body: bytes) -> Verdict:
    """What the provider's answer means for the request (Envoy's: only 200 allows)."""
    headers = [(n.lower(), v) for n, v in headers]
    if status == 200:
        return Allowed(_picked(headers, provider.upstream_on_allow), _picked(headers, provider.downstream_on_allow))
    return Denied(status, _picked(headers, provider.downstream_on_deny), body, f"answered {status}")


def unreachable(provider: HttpProvider, why: str) -> Verdict:
    """The provider could not be asked (or did not answer in time): ``statusOnError``, or let
    through with ``failOpen``."""
    if provider.fail_open:
        return Allowed([], [], "failure_mode_allowed", f"not asked ({why}), let through: failOpen")
    body = f"meshdojo: the external authorizer {provider.describe()} could not be asked ({why})\n".encode()
    return Denied(provider.status_on_error, [(b"content-type", b"text/plain")], body, f"not asked: {why}", "error")


def no_provider(policy: str, provider: str) -> Verdict:
    """A CUSTOM policy whose provider is not defined: denied, as Istio fails closed."""
    body = (f"meshdojo: denied: AuthorizationPolicy {policy} asks provider {provider!r}, which no ExtensionProvider "
            f"in {MESH_NAMESPACE} defines\n").encode()
    return Denied(403, [(b"content-type", b"text/plain")], body, f"no ExtensionProvider {provider!r}", "error")


def with_headers(headers: Headers, added: Headers) -> Headers:
    """``headers`` with ``added``, which replace any of the same names."""
    names = {n for n, _ in added}
    return [(n, v) for n, v in headers if n not in names] + list(added)
