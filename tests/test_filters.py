"""HTTPRoute filters: what the validator refuses (naming the field), the pure URL and header
arithmetic the proxy applies (tests/test_filters_e2e.py sends traffic through them), and how a
body buffered for a mirror (or a retry) can break."""

from __future__ import annotations

import copy

import pytest

from controlplane.policy import PolicyError, parse
from controlplane.routefilters import HeaderEdits, Mirror, PathEdit, Redirect
from proxy.errors import ClientError
from proxy.exchange import ConnectionBody
from proxy.filters import matched_prefix, redirect_location, rewrite_path, shadow_authority
from proxy.http1 import ConnectionClosed, ProtocolViolation, ReadTimeout
from proxy.traffic import buffer_body


def route(*filters: dict, matches: list | None = None, backends: list | None = None) -> dict:
    rule: dict = {"filters": list(filters)}
    if matches is not None:
        rule["matches"] = matches
    if backends is not None:
        rule["backendRefs"] = backends
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r", "namespace": "bookinfo"},
            "spec": {"parentRefs": [{"kind": "Service", "name": "reviews"}], "rules": [rule]}}


PREFIX = [{"path": {"type": "PathPrefix", "value": "/api"}}]
HEADERS = {"type": "RequestHeaderModifier",
           "requestHeaderModifier": {"set": [{"name": "X-Canary", "value": "1"}], "add": [{"name": "x-tag", "value": "a"}],
                                     "remove": ["X-Drop"]}}
MIRROR = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "reviews-v2", "port": 9080}, "percent": 25}}
REWRITE = {"type": "URLRewrite", "urlRewrite": {"hostname": "reviews.internal",
                                                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2/api"}}}
REDIRECT = {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}


def test_every_filter_type_parses_into_what_the_proxy_applies():
    spec = parse(route(HEADERS, MIRROR, REWRITE, {"type": "ResponseHeaderModifier",
                                                  "responseHeaderModifier": {"remove": ["server"]}}, matches=PREFIX), "r.yaml", 0).spec
    filters = spec.rules[0].filters
    assert filters.request_headers == HeaderEdits(((b"x-canary", b"1"),), ((b"x-tag", b"a"),), frozenset({b"x-drop"}))
    assert filters.mirrors == (Mirror("reviews-v2", 0.25),)
    assert filters.rewrite.hostname == "reviews.internal" and filters.rewrite.path == PathEdit("ReplacePrefixMatch", "/v2/api")
    assert filters.response_headers.remove == frozenset({b"server"})
    assert spec.rules[0].describe() == ("prefix /api [request headers: set x-canary: 1, add x-tag: a, remove x-drop; "
                                        "rewrite host reviews.internal, path (ReplacePrefixMatch) /v2/api; mirror 25% to reviews-v2; "
                                        "response headers: remove server]")
    assert parse(route(REDIRECT), "r.yaml", 0).spec.rules[0].filters.redirect == Redirect(301, "https")
    fraction = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "v2"}, "fraction": {"numerator": 1, "denominator": 8}}}
    assert parse(route(fraction), "r.yaml", 0).spec.rules[0].filters.mirrors == (Mirror("v2", 0.125),)
    assert parse(route(), "r.yaml", 0).spec.rules[0].filters is None  # filters: [] is no filters


def _with(base: dict, path: str, value) -> dict:
    doc = copy.deepcopy(base)
    node = doc
    keys = path.replace("]", "").replace("[", ".").split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node[key]
    node[int(keys[-1]) if keys[-1].isdigit() else keys[-1]] = value
    return doc


F0 = "spec.rules[0].filters[0]"
INVALID = [
    # (document, the field named, words of the message)
    (route({"type": "Mirror"}), f"{F0}.type", "expected one of RequestHeaderModifier, ResponseHeaderModifier, RequestMirror"),
    (route({"type": "RequestMirror"}), f"{F0}.requestMirror", "required: a RequestMirror filter keeps its settings in requestMirror"),
    (route({**MIRROR, "urlRewrite": {}}), f"{F0}.urlRewrite", "only requestMirror goes with type RequestMirror"),
    (route(HEADERS, HEADERS), "spec.rules[0].filters[1].type", "a rule takes one RequestHeaderModifier filter; filters[0] is one"),
    (_with(route(HEADERS), f"{F0}.requestHeaderModifier.set[0].name", "Content-Length"), f"{F0}.requestHeaderModifier.set[0].name",
     "content-length is the proxy's to write"),
    (_with(route(HEADERS), f"{F0}.requestHeaderModifier.set[0].name", "host"), f"{F0}.requestHeaderModifier.set[0].name",
     "or use a URLRewrite filter's hostname"),
    (_with(route(HEADERS), f"{F0}.requestHeaderModifier.remove[0]", "X-TAG"), f"{F0}.requestHeaderModifier.remove[0]",
     "x-tag is already in spec.rules[0].filters[0].requestHeaderModifier.add"),
    (_with(route(HEADERS), f"{F0}.requestHeaderModifier.set[0].value", "1\r\nx-evil: 1"), f"{F0}.requestHeaderModifier.set[0].value",
     "expected a header value of printable ASCII"),
    (_with(route(HEADERS), f"{F0}.requestHeaderModifier.set[0].name", "x canary"), f"{F0}.requestHeaderModifier.set[0].name",
     "expected a header name"),
    (_with(route(MIRROR), f"{F0}.requestMirror.percent", 101), f"{F0}.requestMirror.percent", "expected a percentage from 0 to 100"),
    (_with(route(MIRROR), f"{F0}.requestMirror.fraction", {"numerator": 1}), f"{F0}.requestMirror.fraction", "percent or fraction, not both"),
    (route({"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "v2"}, "fraction": {"numerator": 3, "denominator": 2}}}),
     f"{F0}.requestMirror.fraction.numerator", "expected at most the denominator (2), got 3"),
    (route(REWRITE), f"{F0}.urlRewrite.path.type", "give every match of this rule a path of type PathPrefix"),
    (route(REWRITE, matches=[{"path": {"type": "Exact", "value": "/api"}}]), f"{F0}.urlRewrite.path.type", "PathPrefix"),
    (_with(route(REWRITE, matches=PREFIX), f"{F0}.urlRewrite.path.type", "ReplaceFullPath"), f"{F0}.urlRewrite.path.replaceFullPath",
     "required with type ReplaceFullPath"),
    (_with(route(REWRITE, matches=PREFIX), f"{F0}.urlRewrite.path.replacePrefixMatch", "/v2?x=1"),
     f"{F0}.urlRewrite.path.replacePrefixMatch", "without '?' or '#'"),
    (_with(route(REWRITE, matches=PREFIX), f"{F0}.urlRewrite.path.replacePrefixMatch", "/a b"),
     f"{F0}.urlRewrite.path.replacePrefixMatch", "of printable ASCII without spaces"),
    (_with(route(REWRITE, matches=PREFIX), f"{F0}.urlRewrite.hostname", "Reviews_1"), f"{F0}.urlRewrite.hostname", "lower-case host name"),
    (_with(route(REDIRECT), f"{F0}.requestRedirect.statusCode", 304), f"{F0}.requestRedirect.statusCode", "expected 301, 302, 303, 307 or 308"),
    (route(REDIRECT, REWRITE, matches=PREFIX), "spec.rules[0].filters[1].type", "cannot both redirect and rewrite"),
    (route(REDIRECT, backends=[{"name": "reviews-v1"}]), "spec.rules[0].backendRefs", "leave out backendRefs"),
    (_with(route(HEADERS), f"{F0}.requestHeaderModifier", {"append": []}), f"{F0}.requestHeaderModifier.append", "unknown field"),
]


@pytest.mark.parametrize(("doc", "field", "words"), INVALID, ids=[f"{i}-{f.rsplit('.', 1)[-1]}" for i, (_, f, _) in enumerate(INVALID)])
def test_an_invalid_filter_is_refused_naming_its_field(doc, field, words):
    with pytest.raises(PolicyError) as refused:
        parse(doc, "route.yaml", 0)
    assert refused.value.field == field
    assert words in str(refused.value)
    assert str(refused.value).startswith(f"route.yaml: document 0: {field}: ")


def test_header_edits_remove_then_set_then_add():
    edits = HeaderEdits(set=((b"x-a", b"new"),), add=((b"x-b", b"2"),), remove=frozenset({b"x-gone"}))
    headers = [(b"x-a", b"old"), (b"x-a", b"older"), (b"x-b", b"1"), (b"x-gone", b"1"), (b"accept", b"*/*")]
    assert edits.apply(headers) == [(b"x-b", b"1"), (b"accept", b"*/*"), (b"x-a", b"new"), (b"x-b", b"2")]
    assert headers[0] == (b"x-a", b"old")  # a new list: the request's own is not changed in place


# Gateway API's own examples (HTTPPathModifier), plus the query, which is kept
@pytest.mark.parametrize(("prefix", "replacement", "path", "expected"), [
    ("/foo", "/xyz", "/foo/bar", "/xyz/bar"),
    ("/foo", "/xyz/", "/foo/bar", "/xyz/bar"),
    ("/foo/", "/xyz", "/foo/bar", "/xyz/bar"),
    ("/foo/", "/xyz/", "/foo/bar", "/xyz/bar"),
    ("/foo", "/xyz", "/foo", "/xyz"),
    ("/foo", "/xyz", "/foo/", "/xyz/"),
    ("/foo", "/", "/foo/bar", "/bar"),
    ("/foo", "/", "/foo", "/"),
    ("/foo", "/", "/foo/", "/"),
    ("/", "/api", "/list", "/api/list"),
    ("/api", "/v2/api", "/api/list?x=1&y=2", "/v2/api/list?x=1&y=2"),
    ("/api", "/", "/api?x=1", "/?x=1"),
])
def test_replace_prefix_match_as_gateway_api_defines_it(prefix, replacement, path, expected):
    assert rewrite_path(path, PathEdit("ReplacePrefixMatch", replacement), prefix) == expected


def test_replace_full_path_keeps_the_query():
    assert rewrite_path("/anything/here?q=1", PathEdit("ReplaceFullPath", "/fixed"), None) == "/fixed?q=1"
    assert rewrite_path("/anything", PathEdit("ReplaceFullPath", "/fixed"), "/any") == "/fixed"


def test_the_prefix_is_the_one_of_the_match_the_request_matched():
    spec = parse(route(matches=[{"path": {"type": "PathPrefix", "value": "/a"}, "method": "POST"},
                                {"path": {"type": "PathPrefix", "value": "/a/b"}}]), "r.yaml", 0).spec
    matches = spec.rules[0].matches
    assert matched_prefix("/a/b/c", matches, {}.get, "POST") == "/a"
    assert matched_prefix("/a/b/c", matches, {}.get, "GET") == "/a/b"
    assert matched_prefix("/z", matches, {}.get, "GET") is None


@pytest.mark.parametrize(("redirect", "authority", "path", "prefix", "location"), [
    (Redirect(302), "reviews:9080", "/x?q=1", None, "http://reviews:9080/x?q=1"),
    (Redirect(301, scheme="https"), "reviews:9080", "/x", None, "https://reviews/x"),  # a new scheme: its well-known port
    (Redirect(301, scheme="https", port=8443), "reviews:9080", "/x", None, "https://reviews:8443/x"),
    (Redirect(302, hostname="example.org"), "reviews", "/x", None, "http://example.org/x"),
    (Redirect(302, port=80), "reviews:9080", "/x", None, "http://reviews/x"),  # the scheme's default port is left out
    (Redirect(302, path=PathEdit("ReplacePrefixMatch", "/new")), "web:80", "/old/page?a=b", "/old", "http://web/new/page?a=b"),
    (Redirect(308, path=PathEdit("ReplaceFullPath", "/moved")), "[::1]:8080", "/old", None, "http://[::1]:8080/moved"),
])
def test_the_location_of_a_redirect(redirect, authority, path, prefix, location):
    assert redirect_location(redirect, authority, path, prefix) == location


def test_a_mirrored_request_names_its_host_as_envoy_does():
    assert shadow_authority(b"reviews:9080") == b"reviews-shadow:9080"
    assert shadow_authority(b"reviews.bookinfo.svc.cluster.local") == b"reviews.bookinfo.svc.cluster.local-shadow"


class _BreakingConnection:
    """What ConnectionBody reads from: one chunk, then ``failure``."""

    def __init__(self, failure: Exception) -> None:
        self.failure, self.reads = failure, 0

    async def read_chunk(self, _timeout):
        self.reads += 1
        if self.reads == 1:
            return b"hello"
        raise self.failure


@pytest.mark.parametrize(("failure", "status", "code"), [
    (ProtocolViolation("Invalid character in chunk size"), 400, "bad_request_body"),
    (ReadTimeout("30 s without a byte"), 408, "request_body_timeout"),
    (ConnectionClosed("peer closed"), 400, "client_closed"),
])
async def test_a_body_that_breaks_while_buffered_for_a_retry_or_a_mirror_is_the_clients_fault(failure, status, code):
    """Retries and mirrors buffer a body before anything is forwarded; a break there is the
    client's, as it is while forwarding (tests/test_hardening.py sends one over sockets)."""
    body = ConnectionBody(_BreakingConnection(failure), None)  # type: ignore[arg-type]
    with pytest.raises(ClientError) as refused:
        await buffer_body(body, 64 * 1024)
    assert (refused.value.status, refused.value.code, refused.value.client_fault) == (status, code, True)
    assert body.finished and not body.complete  # the connection's framing is lost: it is not reused
