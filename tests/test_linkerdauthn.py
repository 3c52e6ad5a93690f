"""Linkerd's AuthorizationPolicy, MeshTLSAuthentication and NetworkAuthentication
(controlplane/linkerdauthn.py): who they let through a Server at a workload — every required
authentication at once, a ServiceAccount, a namespace, networks with exceptions, nobody while a
ref names nothing — beside our own AuthorizationPolicy of the same kind name; every refusal
naming its field; what apply warns and what get shows."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane import linkerdserver
from controlplane.authzrules import RequestFacts
from controlplane.crds import plural, subset_crd
from controlplane.linkerdschema import LINKERD_AUTHORIZATION_POLICY
from controlplane.policy import POLICY_API, PolicyError, Resource, canonical_kind
from controlplane.policystore import PolicyStore
from controlplane.selection import Workload, applicable
from proxy.decisions import authorize
from sandbox.resourcetable import table
from tests.test_linkerdserver import EMOJI, VOTING, WEB, read, with_spec

SERVER = {
    "apiVersion": "policy.linkerd.io/v1beta3", "kind": "Server",
    "metadata": {"namespace": "emojivoto", "name": "voting-grpc"},
    "spec": {"podSelector": {"matchLabels": {"app": "voting"}}, "port": "http"},
}
POLICY = {  # Linkerd's reference, for the Restricting Access task's Server
    "apiVersion": "policy.linkerd.io/v1alpha1", "kind": "AuthorizationPolicy",
    "metadata": {"namespace": "emojivoto", "name": "voting-policy"},
    "spec": {"targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": "voting-grpc"},
             "requiredAuthenticationRefs": [{"group": "policy.linkerd.io", "kind": "MeshTLSAuthentication", "name": "voting-authn"}]},
}
MESH = {
    "apiVersion": "policy.linkerd.io/v1alpha1", "kind": "MeshTLSAuthentication",
    "metadata": {"namespace": "emojivoto", "name": "voting-authn"},
    "spec": {"identities": ["web.emojivoto.serviceaccount.identity.linkerd.cluster.local"]},
}
NETWORK = {
    "apiVersion": "policy.linkerd.io/v1alpha1", "kind": "NetworkAuthentication",
    "metadata": {"namespace": "emojivoto", "name": "cluster-network"},
    "spec": {"networks": [{"cidr": "10.0.0.0/8", "except": ["10.9.0.0/16"]}, {"cidr": "192.168.0.0/16"}]},
}
OURS = {  # ours, of the same kind name and the same name: a DENY of nobody in particular
    "apiVersion": POLICY_API, "kind": "AuthorizationPolicy", "metadata": {"namespace": "emojivoto", "name": "voting-policy"},
    "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]},
}


def allowed(resources: list[Resource], identity: str | None, source_ip: str = "10.1.2.3", workload: Workload = VOTING) -> bool:
    policies = applicable(resources, workload, {})["AuthorizationPolicy"].resources
    return authorize(policies, RequestFacts(identity, workload.namespace, "GET", "/api/vote", source_ip=source_ip)).allowed


def refused(doc: dict[str, Any]) -> PolicyError:
    with pytest.raises(PolicyError) as err:
        read(doc)
    return err.value


def test_an_authorization_policy_lets_in_the_identities_its_mesh_tls_authentication_names():
    assert not allowed(read(SERVER), WEB)
    resources = read(SERVER, POLICY, MESH)
    assert allowed(resources, WEB) and not allowed(resources, EMOJI) and not allowed(resources, None)
    (policy,) = applicable(resources, VOTING, {})["AuthorizationPolicy"].resources
    assert policy.name == "voting-policy.authorizationpolicy"  # the sidecar's metrics and `authz` name it so
    annotations = policy.document["metadata"]["annotations"]
    assert annotations[linkerdserver.DERIVED_FROM] == "Linkerd's AuthorizationPolicy emojivoto/voting-policy"
    assert linkerdserver.guarding_server([policy]) == "emojivoto/voting-grpc"  # the 403 speaks of the Server
    assert policy.document["spec"]["rules"] == [{"from": [{"source": {"principals": ["meshdojo.local/ns/emojivoto/sa/web"]}}]}]


def test_linkerds_authorization_policy_is_a_kind_of_its_own_beside_ours_of_the_same_name():
    (linkerds, ours) = read(POLICY, OURS)
    assert (linkerds.kind, ours.kind) == (LINKERD_AUTHORIZATION_POLICY, "AuthorizationPolicy")
    store = PolicyStore()
    store.apply([("a.yaml", 0, POLICY), ("a.yaml", 1, OURS), ("a.yaml", 2, MESH)])
    assert {r.kind for r, _ in store.list(name="voting-policy")} == {LINKERD_AUTHORIZATION_POLICY, "AuthorizationPolicy"}
    assert store.delete(LINKERD_AUTHORIZATION_POLICY, "emojivoto", "voting-policy")
    assert [r.kind for r, _ in store.list(name="voting-policy")] == ["AuthorizationPolicy"]
    # the names a learner types: kubectl's resource.group, and Linkerd's short names
    assert canonical_kind("authorizationpolicies.policy.linkerd.io") == LINKERD_AUTHORIZATION_POLICY
    assert canonical_kind("authzpolicy") == LINKERD_AUTHORIZATION_POLICY and canonical_kind("authz") == "AuthorizationPolicy"
    assert (canonical_kind("meshtlsauthn"), canonical_kind("netauthn")) == ("MeshTLSAuthentication", "NetworkAuthentication")


@pytest.mark.parametrize(("authn", "lets_in", "keeps_out"), [
    ({"identityRefs": [{"kind": "ServiceAccount", "name": "web"}]}, [WEB], [EMOJI, None]),
    ({"identityRefs": [{"kind": "ServiceAccount", "name": "web", "namespace": "other"}]},
     ["spiffe://meshdojo.local/ns/other/sa/web"], [WEB]),
    ({"identityRefs": [{"kind": "Namespace", "name": "emojivoto"}]}, [WEB, EMOJI], ["spiffe://meshdojo.local/ns/other/sa/web", None]),
    ({"identityRefs": [{"kind": "ServiceAccount", "name": "*"}]}, [WEB, EMOJI], [None]),
    ({"identities": ["*"]}, [WEB, "spiffe://meshdojo.local/ns/other/sa/x"], [None]),
    ({"identities": ["*.emojivoto.serviceaccount.identity.linkerd.cluster.local"]}, [WEB, EMOJI],
     ["spiffe://meshdojo.local/ns/other/sa/web"]),
    ({"identities": ["spiffe://meshdojo.local/ns/emojivoto/sa/emoji"]}, [EMOJI], [WEB]),
])
def test_mesh_tls_authentications_identities_and_identity_refs(authn, lets_in, keeps_out):
    resources = read(SERVER, POLICY, {**MESH, "spec": authn})
    assert all(allowed(resources, who) for who in lets_in)
    assert not any(allowed(resources, who) for who in keeps_out)


def test_a_service_account_ref_needs_no_authentication_resource():
    policy = with_spec(POLICY, requiredAuthenticationRefs=[{"kind": "ServiceAccount", "name": "web"}])
    resources = read(SERVER, policy)
    assert allowed(resources, WEB) and not allowed(resources, EMOJI)


def test_every_required_authentication_must_let_the_caller_in():
    refs = [*POLICY["spec"]["requiredAuthenticationRefs"],
            {"group": "policy.linkerd.io", "kind": "NetworkAuthentication", "name": "cluster-network"}]
    resources = read(SERVER, with_spec(POLICY, requiredAuthenticationRefs=refs), MESH, NETWORK)
    assert allowed(resources, WEB, "10.1.2.3") and allowed(resources, WEB, "192.168.4.5")
    assert not allowed(resources, WEB, "10.9.1.1")  # the first network's exception
    assert not allowed(resources, WEB, "172.16.0.1") and not allowed(resources, EMOJI, "10.1.2.3")
    # the second ref is the rule's when: an AND that Istio's sources (alternatives) cannot say
    (policy,) = applicable(resources, VOTING, {})["AuthorizationPolicy"].resources
    assert policy.document["spec"]["rules"] == [
        {"from": [{"source": {"principals": ["meshdojo.local/ns/emojivoto/sa/web"]}}],
         "when": [{"key": "source.ip", "values": ["10.0.0.0/8"], "notValues": ["10.9.0.0/16"]}]},
        {"from": [{"source": {"principals": ["meshdojo.local/ns/emojivoto/sa/web"]}}],
         "when": [{"key": "source.ip", "values": ["192.168.0.0/16"]}]}]


def test_a_network_authentication_alone_lets_in_unmeshed_callers_from_its_networks():
    policy = with_spec(POLICY, requiredAuthenticationRefs=[{"group": "policy.linkerd.io", "kind": "NetworkAuthentication",
                                                            "name": "cluster-network"}])
    resources = read(SERVER, policy, NETWORK)
    assert allowed(resources, None, "10.1.2.3") and allowed(resources, WEB, "192.168.0.9")
    assert not allowed(resources, None, "10.9.0.1") and not allowed(resources, WEB, "127.0.0.1")


def test_no_required_authentication_lets_anyone_in():
    resources = read(SERVER, with_spec(POLICY, requiredAuthenticationRefs=[]))
    assert allowed(resources, None) and allowed(resources, EMOJI)


def test_a_ref_to_nothing_lets_nobody_in_and_apply_says_which():
    resources = read(SERVER, POLICY)
    assert not allowed(resources, WEB)
    (policy,) = applicable(resources, VOTING, {})["AuthorizationPolicy"].resources
    assert policy.name == "voting-policy.authorizationpolicy" and policy.document["spec"]["rules"] == []
    said = linkerdserver.warnings(resources[1], resources, [VOTING])
    assert said == ["AuthorizationPolicy.policy.linkerd.io emojivoto/voting-policy: spec.requiredAuthenticationRefs names "
                    "MeshTLSAuthentication voting-authn, which does not exist (yet): until it does, this policy lets nobody in"]
    assert linkerdserver.warnings(resources[1], [*resources, *read(MESH)], [VOTING]) == []


def test_a_policy_of_a_server_that_is_not_there_is_warned_about():
    (policy, mesh) = read(POLICY, MESH)
    said = linkerdserver.warnings(policy, [policy, mesh], [VOTING])
    assert said == ["AuthorizationPolicy.policy.linkerd.io emojivoto/voting-policy: there is no Server voting-grpc in emojivoto "
                    "(yet); it authorizes callers once there is (a port no Server covers keeps the default inbound policy)"]
    assert allowed([policy, mesh], EMOJI)  # no Server: the default inbound policy decides


def test_an_authentication_of_another_namespace_by_its_ref():
    mesh = {**MESH, "metadata": {"namespace": "shared", "name": "voting-authn"}}
    ref = {**POLICY["spec"]["requiredAuthenticationRefs"][0], "namespace": "shared"}
    resources = read(SERVER, with_spec(POLICY, requiredAuthenticationRefs=[ref]), mesh)
    assert allowed(resources, WEB) and not allowed(resources, EMOJI)
    assert not allowed(read(SERVER, POLICY, mesh), WEB)  # left out, the ref is of the policy's namespace


def test_a_namespace_target_authorizes_callers_of_every_server_there():
    emoji_server = {**SERVER, "metadata": {"namespace": "emojivoto", "name": "emoji-grpc"},
                    "spec": {"podSelector": {"matchLabels": {"app": "emoji"}}, "port": 8080}}
    everywhere = with_spec(POLICY, targetRef={"kind": "Namespace", "name": "emojivoto"})
    resources = read(SERVER, emoji_server, everywhere, MESH)
    emoji = Workload("emojivoto", "emoji", "emoji", "emoji-0", {"app": "emoji"}, port=8080, port_name="http")
    assert allowed(resources, WEB) and allowed(resources, WEB, workload=emoji)
    assert not allowed(resources, EMOJI, workload=emoji)
    web = Workload("emojivoto", "web", "web", "web-0", {"app": "web"}, port=8080, port_name="http")
    assert allowed(resources, EMOJI, workload=web)  # no Server covers web's port: the default policy


def test_audit_mode_on_the_server_makes_its_policies_dry_run():
    resources = read(with_spec(SERVER, accessPolicy="audit"), POLICY, MESH)
    assert allowed(resources, EMOJI)
    (policy,) = applicable(resources, VOTING, {})["AuthorizationPolicy"].resources
    assert policy.spec.dry_run


@pytest.mark.parametrize(("doc", "field", "says"), [
    (with_spec(POLICY, targetRef={"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "authors-get-route"}),
     "spec.targetRef.group", "write the route as Linkerd's HTTPRoute (apiVersion policy.linkerd.io/v1beta3)"),
    (with_spec(POLICY, targetRef={"group": "policy.linkerd.io", "kind": "GRPCRoute", "name": "x"}),
     "spec.targetRef.kind", "there is no gRPC route"),
    (with_spec(POLICY, targetRef={"group": "apps", "kind": "Server", "name": "x"}), "spec.targetRef.group",
     "a Server's group is policy.linkerd.io"),
    (with_spec(POLICY, targetRef={"kind": "Deployment", "name": "voting"}), "spec.targetRef.kind",
     "expected Server (one Server's port), HTTPRoute (one of a Server's routes) or Namespace"),
    (with_spec(POLICY, targetRef={"kind": "Namespace", "name": "other"}), "spec.targetRef.name",
     "a policy may target only its own namespace, emojivoto"),
    (with_spec(POLICY, requiredAuthenticationRefs=[{"kind": "Secret", "name": "x"}]),
     "spec.requiredAuthenticationRefs[0].kind", "expected one of MeshTLSAuthentication, NetworkAuthentication, ServiceAccount"),
    (with_spec(POLICY, requiredAuthenticationRefs=[{"group": "policy.linkerd.io", "kind": "ServiceAccount", "name": "web"}]),
     "spec.requiredAuthenticationRefs[0].group", "a ServiceAccount's group is the core group"),
    ({**POLICY, "spec": {"targetRef": POLICY["spec"]["targetRef"]}}, "spec.requiredAuthenticationRefs", "required"),
    ({**MESH, "spec": {}}, "spec", "expected exactly one of identities"),
    (with_spec(MESH, identityRefs=[{"kind": "ServiceAccount", "name": "web"}]), "spec", "expected exactly one of identities"),
    (with_spec(MESH, identities=["web.emojivoto"]), "spec.identities[0]", "expected Linkerd's form"),
    ({**MESH, "spec": {"identityRefs": [{"kind": "Namespace", "name": "a", "namespace": "b"}]}}, "spec.identityRefs[0].namespace",
     "a Namespace is not in a namespace"),
    ({**NETWORK, "spec": {"networks": []}}, "spec.networks", "expected a non-empty list of networks"),
    ({**NETWORK, "spec": {"networks": [{"cidr": "10.0.0.0/8", "except": ["10.300.0.0/16"]}]}}, "spec.networks[0].except[0]",
     "'10.300.0.0/16': expected an IP address"),
    ({**POLICY, "apiVersion": "policy.linkerd.io/v1beta1"}, "apiVersion", "is policy.linkerd.io/v1alpha1"),
])
def test_refusals_name_the_field(doc, field, says):
    err = refused(doc)
    assert err.field == field and says in err.message, err


def test_get_shows_each_and_the_crd_is_linkerds_kind_and_group():
    rows = table([{"document": doc, "expiresAt": None} for doc in (POLICY, MESH, NETWORK, OURS)])
    assert [r[1:5] for r in rows[1:]] == [
        (LINKERD_AUTHORIZATION_POLICY, "voting-policy", "server/voting-grpc", "requires MeshTLSAuthentication voting-authn"),
        ("MeshTLSAuthentication", "voting-authn", "-", "meshed web.emojivoto.serviceaccount.identity.linkerd.cluster.local"),
        ("NetworkAuthentication", "cluster-network", "-", "from 10.0.0.0/8,192.168.0.0/16"),
        ("AuthorizationPolicy", "voting-policy", "(namespace)", "DENY")]
    crd = subset_crd(LINKERD_AUTHORIZATION_POLICY)
    assert crd["metadata"]["name"] == "authorizationpolicies.policy.linkerd.io" == f"{plural(LINKERD_AUTHORIZATION_POLICY)}.policy.linkerd.io"
    assert crd["spec"]["names"]["kind"] == "AuthorizationPolicy" and crd["spec"]["names"]["shortNames"] == ["authzpolicy"]
    assert [v["name"] for v in crd["spec"]["versions"]] == ["v1alpha1"]
    assert "Linkerd's AuthorizationPolicy" in crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"]
