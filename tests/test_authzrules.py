"""Istio's AuthorizationPolicy fields, as pure decisions: not- fields, hosts, ports, addresses,
``when`` conditions, Istio's principal form; and what the validator refuses, by field.
(The rules through real proxies: tests/test_authz_e2e.py.)"""

from __future__ import annotations

import pytest

from controlplane.authzrules import JwtAuth, RequestFacts
from controlplane.policy import PolicyError, parse
from proxy.decisions import authorize

WEB = "spiffe://meshdojo.local/ns/foo/sa/web"
SLEEP = "spiffe://meshdojo.local/ns/foo/sa/sleep"
OTHER = "spiffe://meshdojo.local/ns/bar/sa/sleep"


def policy(name: str, spec: dict, annotations: dict | None = None):
    meta = {"name": name, "namespace": "foo", **({"annotations": annotations} if annotations else {})}
    return parse({"apiVersion": "policy.meshdojo.dev/v1alpha1", "kind": "AuthorizationPolicy", "metadata": meta, "spec": spec},
                 "authz.yaml", 0)


DRY_RUN = {"istio.io/dry-run": "true"}


def facts(identity: str | None = SLEEP, method: str = "GET", path: str = "/", headers: dict | None = None, **kw) -> RequestFacts:
    return RequestFacts(identity, "foo", method, path, header=lambda n: (headers or {}).get(n), **kw)


def allowed(policies: list, **kw) -> bool:
    return authorize(policies, facts(**kw)).allowed


def test_istios_explicit_deny_task_step_by_step():
    deny_get = policy("deny-method-get", {"selector": {"matchLabels": {"app": "httpbin"}}, "action": "DENY",
                                          "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]})
    assert not allowed([deny_get], path="/get") and allowed([deny_get], method="POST", path="/post")
    deny_get = policy("deny-method-get", {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["GET"]}}],
                                                                      "when": [{"key": "request.headers[x-token]", "notValues": ["admin"]}]}]})
    assert allowed([deny_get], path="/get", headers={"x-token": "admin"})
    assert not allowed([deny_get], path="/get", headers={"x-token": "guest"})
    assert not allowed([deny_get], path="/get")  # no header at all: not "admin", so denied (as Envoy's inverted match)
    allow_ip = policy("allow-path-ip", {"action": "ALLOW", "rules": [{"to": [{"operation": {"paths": ["/ip"]}}]}]})
    both = [deny_get, allow_ip]
    assert not allowed(both, path="/ip", headers={"x-token": "guest"})  # the DENY still wins
    assert allowed(both, path="/ip", headers={"x-token": "admin"})
    assert not allowed(both, path="/get", headers={"x-token": "admin"})  # no ALLOW rule matches /get


def test_not_fields_match_when_none_of_their_values_do():
    not_sleep = policy("not-sleep", {"action": "DENY", "rules": [{"from": [{"source": {"notPrincipals": ["cluster.local/ns/foo/sa/sleep"]}}]}]})
    assert allowed([not_sleep]) and not allowed([not_sleep], identity=WEB)
    assert not allowed([not_sleep], identity=None)  # a plaintext caller has no principal, so it is not sleep
    not_admin_paths = policy("ops", {"rules": [{"to": [{"operation": {"notPaths": ["/admin*"], "notMethods": ["DELETE"]}}]}]})
    assert allowed([not_admin_paths], path="/status")
    assert not allowed([not_admin_paths], path="/admins")  # Istio's prefix is a plain string prefix
    assert not allowed([not_admin_paths], method="DELETE", path="/status")
    other_ns = policy("not-foo", {"action": "DENY", "rules": [{"from": [{"source": {"notNamespaces": ["foo"]}}]}]})
    assert allowed([other_ns]) and not allowed([other_ns], identity=OTHER)
    not_sa = policy("not-web", {"action": "DENY", "rules": [{"from": [{"source": {"notServiceAccounts": ["web", "bar/sleep"]}}]}]})
    assert allowed([not_sa], identity=WEB) and allowed([not_sa], identity=OTHER) and not allowed([not_sa], identity=SLEEP)


def test_principals_in_istios_form_with_wildcards():
    for principals, expect in ((["cluster.local/ns/foo/sa/sleep"], (True, False, False)),
                               ([SLEEP], (True, False, False)),
                               (["*"], (True, True, False)),  # any authenticated caller
                               (["cluster.local/ns/foo/*"], (True, True, False)),
                               (["*/sa/sleep"], (True, False, False))):
        p = policy("p", {"rules": [{"from": [{"source": {"principals": principals}}]}]})
        assert (allowed([p]), allowed([p], identity=WEB), allowed([p], identity=None)) == expect, principals
    cond = policy("c", {"rules": [{"when": [{"key": "source.principal", "values": ["cluster.local/ns/foo/sa/web"]},
                                             {"key": "source.namespace", "values": ["f*"]}]}]})
    assert allowed([cond], identity=WEB) and not allowed([cond])


def test_hosts_ports_and_addresses():
    hosts = policy("h", {"rules": [{"to": [{"operation": {"hosts": ["httpbin.foo", "*.example.com"]}}]}]})
    assert allowed([hosts], host="httpbin.foo:8000") and allowed([hosts], host="HTTPBIN.foo")  # any port, any case
    assert allowed([hosts], host="api.example.com") and not allowed([hosts], host="httpbin.bar")
    ports = policy("p", {"rules": [{"to": [{"operation": {"ports": ["9080"]}}]}]})
    assert allowed([ports], destination_port=9080) and not allowed([ports], destination_port=9081)
    blocks = policy("b", {"rules": [{"from": [{"source": {"ipBlocks": ["127.0.0.0/8"], "notIpBlocks": ["127.0.0.9"]}}]}]})
    assert allowed([blocks], source_ip="127.0.0.1") and not allowed([blocks], source_ip="127.0.0.9")
    assert not allowed([blocks], source_ip="10.1.2.3")
    remote = policy("r", {"rules": [{"when": [{"key": "remote.ip", "values": ["10.0.0.0/8"]},
                                               {"key": "destination.port", "notValues": ["15090"]}]}]})
    assert allowed([remote], source_ip="10.1.2.3", destination_port=9080)
    assert not allowed([remote], source_ip="10.1.2.3", destination_port=15090)


def test_jwt_conditions_read_the_verified_token_only():
    alice = JwtAuth("testing@secure.istio.io/alice", {"iss": "testing@secure.istio.io", "sub": "alice", "groups": ["group1", "group2"],
                                                     "aud": "bookinfo", "nested": {"key": "value"}})
    rules = policy("jwt", {"rules": [{"from": [{"source": {"requestPrincipals": ["testing@secure.istio.io/*"]}}],
                                      "when": [{"key": "request.auth.claims[groups]", "values": ["group1"]},
                                               {"key": "request.auth.claims[nested][key]", "values": ["value"]},
                                               {"key": "request.auth.audiences", "values": ["bookinfo"]}]}]})
    assert allowed([rules], auth=alice)
    assert not allowed([rules])  # no token: no request principal
    assert not allowed([rules], auth=JwtAuth(alice.principal, {**alice.claims, "groups": ["group2"]}))
    assert not allowed([rules], headers={"authorization": "Bearer forged"})  # only a verified token counts


def test_a_dry_run_policy_is_evaluated_and_reported_but_never_enforced():
    """Istio's Dry Run task: a DENY of /headers in dry-run lets the request through and reports
    that it would have denied it; ALLOW and DENY policies each have their own result."""
    deny_headers = policy("deny-path-headers", {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/headers"]}}]}]}, DRY_RUN)
    d = authorize([deny_headers], facts(path="/headers"))
    assert d.allowed and d.policy is None and d.dry_run == (("deny", "denied", "foo/deny-path-headers"),)
    assert "dry-run deny: denied by foo/deny-path-headers" in d.describe()
    assert authorize([deny_headers], facts(path="/ip")).dry_run == (("deny", "allowed", ""),)
    only_web = policy("only-web", {"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/foo/sa/web"]}}]}]}, DRY_RUN)
    d = authorize([only_web, deny_headers], facts())  # sleep: no ALLOW enforced, so allowed; the dry-run ALLOW would refuse it
    assert d.allowed and d.dry_run == (("allow", "denied", ""), ("deny", "allowed", ""))
    assert authorize([only_web], facts(identity=WEB)).dry_run == (("allow", "allowed", "foo/only-web"),)
    enforced = policy("deny-get", {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]})
    d = authorize([enforced, deny_headers], facts(path="/headers"))  # the enforced one decides; the dry-run one still reports
    assert not d.allowed and d.policy == "foo/deny-get" and d.dry_run == (("deny", "denied", "foo/deny-path-headers"),)
    from sandbox.resourcetable import table

    assert table([{"document": deny_headers.document, "expiresAt": None}])[1][4] == "DENY (dry-run)"  # meshdojo get
    off = policy("deny-path-headers", {"action": "DENY", "rules": [{}]}, {"istio.io/dry-run": "false"})
    assert not authorize([off], facts()).allowed  # "false": enforced
    for value, field, says in (("yes", "metadata.annotations.istio.io/dry-run", 'expected "true" or "false"'),):
        with pytest.raises(PolicyError) as refused:
            policy("bad", {"rules": [{}]}, {"istio.io/dry-run": value})
        assert refused.value.field == field and says in refused.value.message
    with pytest.raises(PolicyError) as audit:
        policy("bad", {"action": "AUDIT", "rules": [{}]}, DRY_RUN)
    assert audit.value.field == "metadata.annotations.istio.io/dry-run" and "ALLOW and DENY" in audit.value.message


@pytest.mark.parametrize("rule, field, says", [
    ({"when": [{"key": "connection.sni", "values": ["x"]}]}, "spec.rules[0].when[0].key", "do not read connection.sni"),
    ({"when": [{"key": "request.header[x]", "values": ["x"]}]}, "spec.rules[0].when[0].key", "expected one of request.headers[NAME]"),
    ({"when": [{"key": "request.headers[a][b]", "values": ["x"]}]}, "spec.rules[0].when[0].key", "expected one of request.headers[NAME]"),
    ({"when": [{"key": "request.headers[x]"}]}, "spec.rules[0].when[0]", "expected values or notValues"),
    ({"when": [{"key": "source.ip", "values": ["10.0.0.300"]}]}, "spec.rules[0].when[0].values[0]", "expected an IP address"),
    ({"when": [{"key": "destination.port", "values": ["0"]}]}, "spec.rules[0].when[0].values[0]", "expected a port number"),
    ({"from": [{"source": {"principals": ["example.org/ns/foo/sa/x"]}}]}, "spec.rules[0].from[0].source.principals[0]",
     "expected a principal like cluster.local/ns/NS/sa/SA"),
    ({"from": [{"source": {"namespaces": ["f*o"]}}]}, "spec.rules[0].from[0].source.namespaces[0]", "a * goes at the start"),
    ({"from": [{"source": {"unauthenticated": True, "namespaces": ["foo"]}}]}, "spec.rules[0].from[0].source.unauthenticated",
     "a plaintext caller has no namespaces"),
    ({"to": [{"operation": {"ports": ["http"]}}]}, "spec.rules[0].to[0].operation.ports[0]", "expected a port number"),
    ({"to": [{"operation": {"notPaths": ["api"]}}]}, "spec.rules[0].to[0].operation.notPaths[0]", "expected an exact path"),
    ({"when": [{"key": "source.ip", "value": ["1.2.3.4"]}]}, "spec.rules[0].when[0].value", ""),
])
def test_refusals_name_the_field(rule: dict, field: str, says: str):
    with pytest.raises(PolicyError) as refused:
        policy("bad", {"rules": [rule]})
    assert refused.value.field == field and says in refused.value.message
