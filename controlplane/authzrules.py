"""An AuthorizationPolicy's rules as Istio reads them: who (``from``), what (``to``) and when.

A rule matches a request when one of its sources, one of its operations and every one of its
conditions match; a rule's empty list matches anything. Inside a source, an operation or a
condition every field that is set must match: a field matches when one of its values matches
the request, its ``not`` twin when none does. So ``notPrincipals`` matches a plaintext caller,
which has no principal, as Envoy's does.

Values are Istio's string forms: exact, ``prefix*``, ``*suffix``, or ``*`` (any value at all).
Principals are written Istio's way (``cluster.local/ns/foo/sa/sleep``: ``cluster.local`` is
this mesh's trust domain, as it is a default Istio mesh's) or as SPIFFE IDs. Addresses are an
IP or a CIDR block. Every check is one :class:`Check` of a fact the proxy knows about the
request (:class:`RequestFacts`), so sources, operations and conditions are one mechanism.

Pure: reading a document (:func:`read_rules`) and matching a request.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controlplane.fields import FieldReader
from controlplane.matching import PathMatch

TRUST_DOMAIN = "meshdojo.local"
ISTIO_TRUST_DOMAIN = "cluster.local"  # Istio's default, which its docs' policies name

# request facts a check can read (see RequestFacts.values)
SOURCE_FIELDS = {  # a source's field -> the fact it reads
    "principals": "principal", "namespaces": "namespace", "serviceAccounts": "service_account",
    "requestPrincipals": "request_principal", "ipBlocks": "source_ip", "remoteIpBlocks": "remote_ip",
}
OPERATION_FIELDS = {"hosts": "host", "ports": "destination_port", "methods": "method", "paths": "path"}
CONDITION_KEYS = {
    "source.ip": "source_ip", "remote.ip": "remote_ip", "source.namespace": "namespace", "source.principal": "principal",
    "request.auth.principal": "request_principal", "request.auth.audiences": "audience",
    "request.auth.presenter": "presenter", "destination.ip": "destination_ip", "destination.port": "destination_port",
}
IP_FACTS = ("source_ip", "remote_ip", "destination_ip")
BRACKETED = re.compile(r"^(request\.headers|request\.auth\.claims)((?:\[[^\[\]]+\])+)$")
# the keys a condition may name, as a pattern the API server checks too (Istio ignores others silently)
CONDITION_KEY_PATTERN = (r"^(request\.headers\[[^\[\]]+\]|request\.auth\.claims(\[[^\[\]]+\])+|"
                         + "|".join(re.escape(k) for k in CONDITION_KEYS) + ")$")
CONDITION_KEY_HINT = ("expected one of request.headers[NAME], request.auth.claims[NAME], " + ", ".join(CONDITION_KEYS)
                      + " (meshdojo's sidecars do not read connection.sni: mutual TLS already names the caller, source.principal)")
# a principal: Istio's form or a SPIFFE ID, in this mesh's trust domain (or Istio's default); or a * at one end
PRINCIPAL_PATTERN = r"^(\*|\*[^*]+|[^*]+\*|(spiffe://)?(meshdojo\.local|cluster\.local)/ns/[^/*]+/sa/[^/*]+)$"
PRINCIPAL_HINT = "expected a principal like cluster.local/ns/NS/sa/SA (Istio's form) or spiffe://meshdojo.local/ns/NS/sa/SA, a * at one end"
JWT_FACTS = ("request_principal", "audience", "presenter", "claim")


def _no_header(name: str) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class JwtAuth:
    """An end user's verified JWT (a RequestAuthentication's): ``iss/sub`` and its claims."""

    principal: str
    claims: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the rules may read of one request, as the inbound sidecar knows it."""

    identity: str | None  # the caller's SPIFFE ID, verified over mutual TLS; None: plaintext
    own_namespace: str  # the workload's (and so the policy's) namespace
    method: str
    path: str
    host: str = ""  # the Host header
    header: Callable[[str], str | None] = _no_header  # a request header by (lower-case) name
    source_ip: str = ""
    destination_ip: str = ""
    destination_port: int = 0  # the port the request arrived on (the sidecar's inbound port)
    auth: JwtAuth | None = None  # the end user's JWT, when a RequestAuthentication verified one

    def values(self, fact: str, arg: tuple[str, ...] = ()) -> tuple[str, ...]:
        """The request's values of ``fact``: none when it has none (a plaintext caller's principal)."""
        if fact == "method":
            return (self.method,)
        if fact == "path":
            return (self.path.partition("?")[0],)
        if fact == "header":
            value = self.header(arg[0])
            return () if value is None else (value,)
        if fact in ("principal", "namespace", "service_account"):
            if self.identity is None:
                return ()
            principal = self.identity.removeprefix("spiffe://")
            ns, _, sa = principal.removeprefix(f"{TRUST_DOMAIN}/ns/").partition("/sa/")
            if fact == "principal":
                return (principal,)
            if fact == "namespace":
                return (ns,)
            return (f"{ns}/{sa}", sa) if ns == self.own_namespace else (f"{ns}/{sa}",)
        if fact == "unauthenticated":
            return ("true",) if self.identity is None else ()
        if fact in ("source_ip", "remote_ip"):  # no proxy in front of a sidecar is trusted: remote is the source
            return (self.source_ip,) if self.source_ip else ()
        if fact == "destination_ip":
            return (self.destination_ip,) if self.destination_ip else ()
        if fact == "destination_port":
            return (str(self.destination_port),) if self.destination_port else ()
        if fact == "host":
            host = self.host.lower()
            bare = host.rpartition(":")[0] if re.search(r":\d+$", host) else host
            return (host, bare) if bare != host else (host,) if host else ()
        return self._jwt(fact, arg)

    def _jwt(self, fact: str, arg: tuple[str, ...]) -> tuple[str, ...]:
        if self.auth is None:
            return ()
        if fact == "request_principal":
            return (self.auth.principal,)
        claim: Any = self.auth.claims
        for name in {"audience": ("aud",), "presenter": ("azp",)}.get(fact, arg):
            claim = claim.get(name) if isinstance(claim, Mapping) else None
        if isinstance(claim, str):
            return (claim,)
        if isinstance(claim, bool):
            return (str(claim).lower(),)
        if isinstance(claim, list):
            return tuple(c for c in claim if isinstance(c, str))
        return ()


@dataclass(frozen=True, slots=True)
class Pattern:
    """Istio's string match: exact, ``prefix*``, ``*suffix``, or ``*`` for any value."""

    text: str
    fold: bool = False  # case-insensitive (hosts)

    def matches(self, value: str) -> bool:
        text, value = (self.text.lower(), value.lower()) if self.fold else (self.text, value)
        if text == "*":
            return True
        if text.startswith("*"):
            return value.endswith(text[1:])
        if text.endswith("*"):
            return value.startswith(text[:-1])
        return value == text


@dataclass(frozen=True, slots=True)
class IpBlock:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network

    def matches(self, value: str) -> bool:
        try:
            return ipaddress.ip_address(value) in self.network
        except ValueError:
            return False


@dataclass(frozen=True, slots=True)
class PathPattern:
    path: PathMatch

    def matches(self, value: str) -> bool:
        return self.path.matches(value)


Matcher = Pattern | IpBlock | PathPattern


@dataclass(frozen=True, slots=True)
class Check:
    """One field of a source or an operation, or one condition: the fact it reads, the values
    one of which must match (``any_of``; empty: no such demand) and those none of which may."""

    fact: str
    arg: tuple[str, ...] = ()  # a header's name, a claim's path
    any_of: tuple[Matcher, ...] = ()
    none_of: tuple[Matcher, ...] = ()

    def matches(self, facts: RequestFacts) -> bool:
        actual = facts.values(self.fact, self.arg)
        if self.any_of and not any(m.matches(v) for v in actual for m in self.any_of):
            return False
        return not any(m.matches(v) for v in actual for m in self.none_of)


@dataclass(frozen=True, slots=True)
class AuthzRule:
    sources: tuple[tuple[Check, ...], ...] = ()  # any of; empty: anyone
    operations: tuple[tuple[Check, ...], ...] = ()  # any of; empty: anything
    conditions: tuple[Check, ...] = ()  # all of

    def matches(self, facts: RequestFacts) -> bool:
        return ((not self.sources or any(all(c.matches(facts) for c in s) for s in self.sources))
                and (not self.operations or any(all(c.matches(facts) for c in o) for o in self.operations))
                and all(c.matches(facts) for c in self.conditions))

    @property
    def reads_jwt(self) -> bool:
        return any(c.fact in JWT_FACTS for group in (*self.sources, *self.operations, self.conditions) for c in group)


# -- reading a document --------------------------------------------------------------------------

DRY_RUN_ANNOTATION = "istio.io/dry-run"


def dry_run(r: FieldReader, annotations: Mapping[str, Any], spec: Mapping[str, Any]) -> bool:
    """Istio's ``istio.io/dry-run`` annotation: "true" (evaluated and reported, not enforced) or "false"."""
    field = f"metadata.annotations.{DRY_RUN_ANNOTATION}"
    value = annotations.get(DRY_RUN_ANNOTATION)
    if value is None:
        return False
    if value not in ("true", "false"):
        raise r.fail(field, f'expected "true" or "false", got {value!r}')
    if value == "true" and spec.get("action", "ALLOW") not in ("ALLOW", "DENY"):
        raise r.fail(field, "only ALLOW and DENY policies can be dry-run (as in Istio): an AUDIT policy already only reports, "
                            "and a CUSTOM one asks its provider")
    return value == "true"


def read_rules(r: FieldReader, rules: Sequence[dict[str, Any]]) -> tuple[AuthzRule, ...]:
    """``spec.rules``, already checked against the schema; what a schema cannot say is checked here."""
    read = []
    for i, rule in enumerate(rules):
        where = f"spec.rules[{i}]"
        sources = tuple(_source(r, f["source"], f"{where}.from[{j}].source") for j, f in enumerate(rule.get("from", [])))
        operations = tuple(_operation(r, t["operation"], f"{where}.to[{j}].operation") for j, t in enumerate(rule.get("to", [])))
        conditions = tuple(_condition(r, c, f"{where}.when[{j}]") for j, c in enumerate(rule.get("when", [])))
        read.append(AuthzRule(sources, operations, conditions))
    return tuple(read)


def _source(r: FieldReader, source: dict[str, Any], where: str) -> tuple[Check, ...]:
    checks = []
    if source.get("unauthenticated"):
        named = [f for f in ("principals", "namespaces", "serviceAccounts") if f in source]
        if named:
            raise r.fail(f"{where}.unauthenticated", f"a plaintext caller has no {named[0]}: leave {named[0]} out, "
                                                     "or put it in a source of its own (sources are alternatives)")
        checks.append(Check("unauthenticated", any_of=(Pattern("true"),)))
    for field, fact in SOURCE_FIELDS.items():
        checks += _field_check(r, source, field, fact, where)
    return tuple(checks)


def _operation(r: FieldReader, operation: dict[str, Any], where: str) -> tuple[Check, ...]:
    checks = []
    for field, fact in OPERATION_FIELDS.items():
        checks += _field_check(r, operation, field, fact, where)
    return tuple(checks)


def _field_check(r: FieldReader, obj: dict[str, Any], field: str, fact: str, where: str) -> list[Check]:
    negated = "not" + field[0].upper() + field[1:]
    if field not in obj and negated not in obj:
        return []
    any_of = tuple(_matcher(r, fact, v, f"{where}.{field}[{k}]") for k, v in enumerate(obj.get(field, [])))
    none_of = tuple(_matcher(r, fact, v, f"{where}.{negated}[{k}]") for k, v in enumerate(obj.get(negated, [])))
    return [Check(fact, (), any_of, none_of)]


def _condition(r: FieldReader, condition: dict[str, Any], where: str) -> Check:
    key = condition["key"]
    if "values" not in condition and "notValues" not in condition:
        raise r.fail(where, "expected values or notValues (or both): what the key must, or must not, be")
    if (bracketed := BRACKETED.match(key)) is not None:  # the schema checked the key (CONDITION_KEY_PATTERN)
        arg = tuple(bracketed.group(2)[1:-1].split("]["))
        fact, arg = ("header", (arg[0].lower(),)) if bracketed.group(1) == "request.headers" else ("claim", arg)
    else:
        fact, arg = CONDITION_KEYS[key], ()
    return Check(fact, arg,
                 tuple(_matcher(r, fact, v, f"{where}.values[{k}]") for k, v in enumerate(condition.get("values", []))),
                 tuple(_matcher(r, fact, v, f"{where}.notValues[{k}]") for k, v in enumerate(condition.get("notValues", []))))


def _matcher(r: FieldReader, fact: str, value: str, field: str) -> Matcher:
    if fact in IP_FACTS:
        try:
            return IpBlock(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise r.fail(field, f"{value!r}: expected an IP address (10.1.2.3) or a CIDR block (10.1.0.0/16)") from None
    if fact == "destination_port":
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise r.fail(field, f"{value!r}: expected a port number, 1 to 65535, as a string (\"8080\")")
        return Pattern(str(int(value)))
    if fact == "path":
        return PathPattern(authz_path(r, value, field))
    if fact == "principal":
        return Pattern(_principal(value))
    if "*" in value[1:-1]:
        raise r.fail(field, f"{value!r}: a * goes at the start (*suffix) or the end (prefix*), or alone (any value)")
    return Pattern(value, fold=fact == "host")


def _principal(value: str) -> str:
    """A principal as the proxy compares it (the schema checked its form: PRINCIPAL_PATTERN): a
    SPIFFE ID without ``spiffe://``, Istio's ``cluster.local`` read as this mesh's trust domain."""
    principal = value.removeprefix("spiffe://")
    if principal.startswith(f"{ISTIO_TRUST_DOMAIN}/"):
        principal = TRUST_DOMAIN + principal[len(ISTIO_TRUST_DOMAIN):]
    return principal


def authz_path(r: FieldReader, path: str, field: str) -> PathMatch:
    """Istio's forms: exact ``/api/list``, prefix ``/api/*``, suffix ``*/info``, any ``*``, and
    path templates: ``{*}`` is one whole segment, ``{**}`` the rest of the path (last only)."""
    if path == "*":
        return PathMatch("PathPrefix", "/")
    if "{*}" in path or "{**}" in path:
        return PathMatch("RegularExpression", _path_template(r, path, field))
    if path.startswith("*"):
        return PathMatch("RegularExpression", ".*" + re.escape(path[1:]))
    if not path.startswith("/") or "*" in path[:-1] or "{" in path:
        raise r.fail(field, "expected an exact path (/api/list), a prefix (/api/*), a suffix (*/info), * for any, "
                            "or a template (/api/{*}/vote, /static/{**})")
    if path.endswith("*"):  # a plain string prefix, as Istio's: /api* matches /apis too
        return PathMatch("RegularExpression", re.escape(path[:-1]) + ".*")
    return PathMatch("Exact", path)


def _path_template(r: FieldReader, path: str, field: str) -> str:
    segments = path.split("/")
    if segments[0] != "" or any(s != "{*}" and s != "{**}" and ("{" in s or "}" in s or "*" in s) for s in segments):
        raise r.fail(field, f"{path!r}: a template's {{*}} and {{**}} must each be a whole segment, e.g. /api/{{*}}/vote")
    if "{**}" in segments[:-1]:
        raise r.fail(field, f"{path!r}: {{**}} matches the rest of the path, so it must be the last segment")
    return "/".join("[^/]+" if s == "{*}" else ".*" if s == "{**}" else re.escape(s) for s in segments)
