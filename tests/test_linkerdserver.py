"""Linkerd's Server and ServerAuthorization (controlplane/linkerdserver.py): what they mean at a
workload, as the AuthorizationPolicies the sidecar enforces — the Server that covers its port
by number or name, nobody until a ServerAuthorization names a caller, audit mode, Linkerd's
identities as this mesh's principals — every refusal naming the field, and what apply warns."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controlplane import linkerdserver
from controlplane.authzrules import RequestFacts
from controlplane.crds import subset_crd
from controlplane.policy import PolicyError, Resource, parse
from controlplane.selection import Workload, applicable, conflicts
from proxy.decisions import authorize
from sandbox.resourcetable import table

SERVER = {  # Linkerd's task, with the demo's labels and port name
    "apiVersion": "policy.linkerd.io/v1beta1", "kind": "Server",
    "metadata": {"namespace": "emojivoto", "name": "voting-grpc", "labels": {"app": "voting-svc"}},
    "spec": {"podSelector": {"matchLabels": {"app": "voting"}}, "port": "http", "proxyProtocol": "gRPC"},
}
AUTHORIZATION = {
    "apiVersion": "policy.linkerd.io/v1beta1", "kind": "ServerAuthorization",
    "metadata": {"namespace": "emojivoto", "name": "voting-grpc"},
    "spec": {"server": {"name": "voting-grpc"}, "client": {"meshTLS": {"serviceAccounts": [{"name": "web"}]}}},
}
VOTING = Workload("emojivoto", "voting", "voting", "voting-0", {"app": "voting"}, port=8080, port_name="http")
WEB, EMOJI = "spiffe://meshdojo.local/ns/emojivoto/sa/web", "spiffe://meshdojo.local/ns/emojivoto/sa/emoji"


def read(*docs: dict[str, Any]) -> list[Resource]:
    return [parse(doc, "task.yaml", i) for i, doc in enumerate(docs)]


def with_spec(doc: dict[str, Any], **spec: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out["spec"].update(spec)
    return out


def allowed(resources: list[Resource], identity: str | None, workload: Workload = VOTING, source_ip: str = "10.0.0.5") -> bool:
    policies = applicable(resources, workload, {})["AuthorizationPolicy"].resources
    return authorize(policies, RequestFacts(identity, workload.namespace, "GET", "/api/results", source_ip=source_ip)).allowed


def test_the_task_a_server_lets_nobody_in_then_its_authorization_lets_web_in():
    assert allowed([], EMOJI) and allowed([], None)  # no Server: Linkerd's default, all-unauthenticated
    server = read(SERVER)
    assert not allowed(server, WEB) and not allowed(server, None)
    applied = applicable(server, VOTING, {})
    assert [r.name for r in applied["AuthorizationPolicy"].resources] == ["voting-grpc.server"]
    assert [r.name for r in applied["Server"].resources] == ["voting-grpc"]
    both = read(SERVER, AUTHORIZATION)
    assert allowed(both, WEB) and not allowed(both, EMOJI) and not allowed(both, None)
    policy = applicable(both, VOTING, {})["AuthorizationPolicy"].resources[0]
    assert policy.name == "voting-grpc.serverauthorization"
    assert policy.document["metadata"]["annotations"][linkerdserver.DERIVED_FROM] == "ServerAuthorization emojivoto/voting-grpc"
    assert linkerdserver.guarding_server([policy]) == "emojivoto/voting-grpc"
    # the policies it means, in Istio's words (what `describe` and `authz` name)
    assert policy.document["spec"] == {"selector": {"matchLabels": {"app": "voting"}}, "action": "ALLOW",
                                       "rules": [{"from": [{"source": {"principals": ["meshdojo.local/ns/emojivoto/sa/web"]}}]}]}


@pytest.mark.parametrize(("port", "covers"), [("http", True), (8080, True), ("grpc", False), (9090, False)])
def test_a_server_covers_the_port_it_names_by_number_or_name(port, covers):
    resources = read(with_spec(SERVER, port=port))
    assert allowed(resources, WEB) is not covers
    assert bool(applicable(resources, VOTING, {})["Server"].resources) is covers
    # the control plane's views may not know a pod's port: its one port is assumed
    assert bool(applicable(resources, Workload("emojivoto", "voting", "voting", "voting-0", {"app": "voting"}), {})["Server"].resources)


def test_pod_selector_expressions_and_other_pods():
    expr = with_spec(SERVER, podSelector={"matchExpressions": [{"key": "app", "operator": "In", "values": ["voting", "emoji"]},
                                                               {"key": "canary", "operator": "DoesNotExist"}]})
    assert not allowed(read(expr), WEB)
    policy = applicable(read(expr), VOTING, {})["AuthorizationPolicy"].resources[0]
    assert policy.document["spec"]["targetRef"] == {"kind": "Pod", "name": "voting-0"}  # Istio's selector has no expressions
    canary = Workload("emojivoto", "voting", "voting", "voting-1", {"app": "voting", "canary": "yes"}, port=8080, port_name="http")
    web = Workload("emojivoto", "web", "web", "web-0", {"app": "web"}, port=8080, port_name="http")
    other_ns = Workload("default", "voting", "voting", "voting-0", {"app": "voting"}, port=8080, port_name="http")
    assert allowed(read(expr), None, canary) and allowed(read(expr), None, web) and allowed(read(SERVER), None, other_ns)
    gateway = Workload("emojivoto", "gateway", "gateway", "gw-0", {"app": "voting"}, gateway=True)
    assert allowed(read(SERVER), None, gateway)  # the door in front is not the pod behind it


def test_access_policies_audit_and_linkerds_default_policies():
    audit = read(with_spec(SERVER, accessPolicy="audit"))
    assert allowed(audit, None) and allowed(audit, EMOJI)  # audit: let in ...
    policies = applicable(audit, VOTING, {})["AuthorizationPolicy"].resources
    decision = authorize(policies, RequestFacts(EMOJI, "emojivoto", "GET", "/"))
    assert decision.dry_run == (("allow", "denied", ""),)  # ... but reported as one deny would refuse
    authenticated = read(with_spec(SERVER, accessPolicy="all-authenticated"))
    assert allowed(authenticated, EMOJI) and not allowed(authenticated, None)
    anybody = read(with_spec(SERVER, accessPolicy="cluster-unauthenticated"))
    assert allowed(anybody, None)


@pytest.mark.parametrize(("client", "web", "emoji", "plaintext"), [
    ({"meshTLS": {"identities": ["web.emojivoto.serviceaccount.identity.linkerd.cluster.local"]}}, True, False, False),
    ({"meshTLS": {"identities": ["*.emojivoto.serviceaccount.identity.linkerd.cluster.local"]}}, True, True, False),
    ({"meshTLS": {"identities": ["spiffe://meshdojo.local/ns/emojivoto/sa/emoji"]}}, False, True, False),
    ({"meshTLS": {"identities": ["*"]}}, True, True, False),
    ({"meshTLS": {"unauthenticatedTLS": True}}, True, True, False),
    ({"meshTLS": {"serviceAccounts": [{"name": "web", "namespace": "other"}]}}, False, False, False),
    ({"unauthenticated": True}, True, True, True),
])
def test_who_a_server_authorization_lets_in(client, web, emoji, plaintext):
    resources = read(SERVER, with_spec(AUTHORIZATION, client=client))
    assert (allowed(resources, WEB), allowed(resources, EMOJI), allowed(resources, None)) == (web, emoji, plaintext)


def test_networks_narrow_the_callers_and_except_cuts_holes():
    client = {"unauthenticated": True, "networks": [{"cidr": "10.0.0.0/8", "except": ["10.9.0.0/16"]}]}
    resources = read(SERVER, with_spec(AUTHORIZATION, client=client))
    assert allowed(resources, None, source_ip="10.1.2.3") and not allowed(resources, None, source_ip="10.9.1.1")
    assert not allowed(resources, None, source_ip="192.168.1.1")
    mesh = read(SERVER, with_spec(AUTHORIZATION, client={"meshTLS": {"serviceAccounts": [{"name": "web"}]},
                                                          "networks": [{"cidr": "127.0.0.0/8"}]}))
    assert allowed(mesh, WEB, source_ip="127.0.0.1") and not allowed(mesh, WEB) and not allowed(mesh, None, source_ip="127.0.0.1")


def test_an_authorization_may_name_servers_by_label_and_two_servers_on_one_port_are_a_conflict():
    by_label = with_spec(AUTHORIZATION, server={"selector": {"matchLabels": {"app": "voting-svc"}}})
    assert allowed(read(SERVER, by_label), WEB) and not allowed(read(SERVER, by_label), EMOJI)
    elsewhere = with_spec(AUTHORIZATION, server={"selector": {"matchLabels": {"app": "emoji-svc"}}})
    assert not allowed(read(SERVER, elsewhere), WEB)
    second = copy.deepcopy(SERVER)
    second["metadata"]["name"] = "voting-http"
    second["spec"]["port"] = 8080
    found = conflicts(read(SERVER, second), [VOTING], {})
    assert [(c.kind, c.policies) for c in found] == [("Server", ("emojivoto/voting-grpc", "emojivoto/voting-http"))]
    assert "Linkerd refuses overlapping Servers" in found[0].describe()


BAD = [
    (with_spec(SERVER, port="GRPC"), "spec.port", "expected a port number or a container port's name"),
    (with_spec(SERVER, port=70000), "spec.port", "a port number or name from 1 to 65535"),
    (with_spec(SERVER, podSelector={}), "spec.podSelector", "an empty selector would select every pod"),
    (with_spec(SERVER, podSelector={"matchExpressions": [{"key": "app", "operator": "In"}]}),
     "spec.podSelector.matchExpressions[0].values", "operator In needs values"),
    (with_spec(SERVER, proxyProtocol="HTTP/3"), "spec.proxyProtocol", "expected one of unknown, HTTP/1"),
    (with_spec(SERVER, accessPolicy="allow"), "spec.accessPolicy", "expected one of all-unauthenticated"),
    (with_spec(AUTHORIZATION, server={"name": "a", "selector": {"matchLabels": {"a": "b"}}}), "spec.server", "exactly one of name"),
    (with_spec(AUTHORIZATION, client={"unauthenticated": True, "meshTLS": {"identities": ["*"]}}), "spec.client", "exactly one of meshTLS"),
    (with_spec(AUTHORIZATION, client={"meshTLS": {}}), "spec.client.meshTLS", "exactly one of serviceAccounts, identities"),
    (with_spec(AUTHORIZATION, client={"meshTLS": {"identities": ["web.emojivoto.svc"]}}),
     "spec.client.meshTLS.identities[0]", "SA.NS.serviceaccount.identity.linkerd.cluster.local"),
    (with_spec(AUTHORIZATION, client={"unauthenticated": True, "networks": [{"cidr": "10.0.0.0/33"}]}),
     "spec.client.networks[0].cidr", "expected an IP address (10.1.2.3) or a CIDR block"),
    (with_spec(AUTHORIZATION, client={"unauthenticated": True, "networks": [{"cidr": "10.0.0.0/8", "except": ["x"]}]}),
     "spec.client.networks[0].except[0]", "'x': expected an IP address"),
    ({**SERVER, "apiVersion": "policy.linkerd.io/v2"}, "apiVersion", "policy.linkerd.io/v1alpha1 or policy.linkerd.io/v1beta1"),
]


@pytest.mark.parametrize(("doc", "field", "words"), BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)])
def test_a_bad_server_or_authorization_names_the_field(doc, field, words):
    with pytest.raises(PolicyError) as err:
        read(doc)
    assert err.value.field == field and words in err.value.message, err.value


def test_every_version_linkerds_docs_write_is_read_and_its_crd_serves_them():
    for version in ("v1alpha1", "v1beta1", "v1beta2", "v1beta3"):
        assert read({**SERVER, "apiVersion": f"policy.linkerd.io/{version}"})[0].kind == "Server"
    crd = subset_crd("Server")
    assert crd["metadata"]["name"] == "servers.policy.linkerd.io" and crd["spec"]["names"]["shortNames"] == ["srv"]  # Linkerd's
    assert [(v["name"], v["served"], v["storage"]) for v in crd["spec"]["versions"]] == [
        ("v1alpha1", True, False), ("v1beta1", True, False), ("v1beta2", True, False), ("v1beta3", True, True)]
    port = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["port"]
    assert port["x-kubernetes-int-or-string"] is True


def test_apply_warns_of_a_server_that_covers_nothing_and_an_authorization_of_no_server():
    pods = [VOTING, Workload("emojivoto", "web", "web", "web-0", {"app": "web"}, port=8080, port_name="http")]
    verbatim = copy.deepcopy(SERVER)  # Linkerd's file as written: its emojivoto's labels and port name
    verbatim["spec"].update(podSelector={"matchLabels": {"app": "voting-svc"}}, port="grpc")
    [server] = read(verbatim)
    [said] = linkerdserver.warnings(server, [server], pods)
    assert "selects no pod in emojivoto (its pods are labelled app=voting, app=web)" in said
    [server] = read(with_spec(SERVER, port="grpc"))
    [said] = linkerdserver.warnings(server, [server], pods)
    assert "spec.port grpc is not a port its pods declare (8080 (http))" in said
    assert linkerdserver.warnings(read(SERVER)[0], [], pods) == []
    [authorization] = read(AUTHORIZATION)
    assert "there is no Server voting-grpc in emojivoto" in linkerdserver.warnings(authorization, [authorization], pods)[0]
    assert linkerdserver.warnings(authorization, read(SERVER, AUTHORIZATION), pods) == []


def test_get_shows_what_each_is_about():
    rows = table([{"document": doc, "expiresAt": None} for doc in (SERVER, AUTHORIZATION)])
    assert rows[1][1:5] == ("Server", "voting-grpc", "app=voting:http", "accessPolicy deny, proxyProtocol gRPC (served as HTTP/1.1)")
    assert rows[2][1:5] == ("ServerAuthorization", "voting-grpc", "server/voting-grpc", "meshed sa/web")


def test_three_groups_authorization_policies_are_three_kinds():
    linkerds = {"apiVersion": "policy.linkerd.io/v1alpha1", "kind": "AuthorizationPolicy", "metadata": {"name": "x"},
                "spec": {"targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": "voting-grpc"},
                         "requiredAuthenticationRefs": []}}
    assert read(linkerds)[0].kind == "AuthorizationPolicy.policy.linkerd.io"  # controlplane/linkerdauthn.py
    istios = {**linkerds, "apiVersion": "security.istio.io/v1"}  # Istio's is read as ours (tests/test_istio_security.py)
    with pytest.raises(PolicyError) as err:
        read(istios)
    assert (err.value.field, err.value.message) == (
        "spec.requiredAuthenticationRefs", "unknown field (expected one of: action, provider, rules, selector, targetRef)")
    ours = {**linkerds, "apiVersion": "policy.meshdojo.dev/v1alpha1", "spec": {}}
    assert [read(d)[0].kind for d in (ours, {**ours, "apiVersion": "security.istio.io/v1beta1"})] == [
        "AuthorizationPolicy", "AuthorizationPolicy.security.istio.io"]
