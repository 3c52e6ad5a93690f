"""Istio's kinds that meshdojo has a kind of the same name for, with Istio's fields:
AuthorizationPolicy and RequestAuthentication (security.istio.io), ServiceEntry and Sidecar
(networking.istio.io), Telemetry (telemetry.istio.io), as Istio's tasks write them
(demo-apps/bookinfo/policies/istio/authorization-*.yaml): read as ours and enforced as ours —
combined (or tied) with ours at a workload, named by kubectl's names for them beside ours,
refused by field where Istio's own schema would refuse them. Through real sidecars: Istio's
explicit deny task in its apiVersion beside an ALLOW of ours, Istio's JWT task with keys the
control plane fetches, Istio's egress tasks with its Sidecar and ServiceEntry. (The authorization
task on both backends: lesson 21, tests/test_lessons.py, tests/test_kube_lessons.py; kubectl's
side: tests/test_kube_istio.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from controlplane.crds import ISTIO_KINDS, subset_crd
from controlplane.istioschema import (
    ISTIO_AUTHORIZATION_POLICY,
    ISTIO_REQUEST_AUTHENTICATION,
    ISTIO_SERVICE_ENTRY,
    ISTIO_SIDECAR,
    ISTIO_TELEMETRY,
)
from controlplane.jwtissuer import ISSUER
from controlplane.policy import PolicyError, canonical_kind, parse
from controlplane.selection import Workload, applicable, conflicts, enforced_kind
from controlplane.telemetrypolicy import effective
from sandbox.resources import twins
from sandbox.resourcetable import table
from tests.meshkit import Mesh, spiffe
from tests.test_authz_e2e import authz, status
from tests.test_egress_e2e import DEBUG, outside_port  # noqa: F401 (a fixture)
from tests.test_faults_e2e import until
from tests.test_jwt_e2e import get, identity_provider  # noqa: F401 (a fixture)
from tests.test_traffic_e2e import apply, doc, fetch

ISTIO = Path(__file__).parent.parent / "demo-apps/bookinfo/policies/istio"
SECURITY = "security.istio.io/v1"


def istios(kind: str, name: str, spec: dict, namespace: str = "foo", version: str = SECURITY) -> dict:
    return {"apiVersion": version, "kind": kind, "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def shipped(name: str) -> list[Any]:
    return [parse(d, name, i) for i, d in enumerate(yaml.safe_load_all((ISTIO / name).read_text()))]


def test_the_shipped_authorization_task_reads_as_ours_in_istios_group():
    [nothing] = shipped("authorization-allow-nothing.yaml")
    viewers = shipped("authorization-viewers.yaml")
    assert {r.kind for r in (nothing, *viewers)} == {ISTIO_AUTHORIZATION_POLICY} == {"AuthorizationPolicy.security.istio.io"}
    assert (nothing.spec.action, nothing.spec.rules, nothing.spec.workloads) == ("ALLOW", (), None)  # spec {}: ALLOW nothing
    by_name = {r.name: r for r in viewers}
    assert sorted(by_name) == ["details-viewer", "productpage-viewer", "ratings-viewer", "reviews-viewer"]
    assert by_name["ratings-viewer"].spec.workloads.labels == (("app", "ratings"),)

    def at(app: str, sa: str) -> list[str]:  # what a bookinfo pod's sidecar enforces, most specific first
        workload = Workload("bookinfo", sa, f"{app}-v1", f"{app}-v1-0", {"app": app})
        return [r.name for r in applicable([nothing, *viewers], workload, {})["AuthorizationPolicy"].resources]

    assert at("ratings", "ratings") == ["ratings-viewer", "allow-nothing"]
    assert at("productpage", "productpage") == ["productpage-viewer", "allow-nothing"]
    gateway = Workload("bookinfo", "gateway", "gateway", "gateway-0", {"app": "gateway"}, gateway=True)
    assert applicable([nothing], gateway, {})["AuthorizationPolicy"].resources == ()  # the door in front is not the namespace's


@pytest.mark.parametrize("version", ["security.istio.io/v1beta1", "security.istio.io/v1"])
def test_both_versions_istios_docs_write_and_ours_beside_them(version):
    spec = {"selector": {"matchLabels": {"app": "httpbin"}}, "action": "DENY", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}
    theirs = parse(istios("AuthorizationPolicy", "deny-get", spec, version=version), "t.yaml", 0)
    ours = parse({**istios("AuthorizationPolicy", "allow-all", {"rules": [{}]}), "apiVersion": "policy.meshdojo.dev/v1alpha1"}, "t.yaml", 1)
    authn = parse(istios("RequestAuthentication", "jwt", {"jwtRules": [{"issuer": ISSUER}]}, version=version), "t.yaml", 2)
    assert (theirs.kind, ours.kind, authn.kind) == (ISTIO_AUTHORIZATION_POLICY, "AuthorizationPolicy", ISTIO_REQUEST_AUTHENTICATION)
    assert [enforced_kind(r.kind) for r in (theirs, ours, authn)] == ["AuthorizationPolicy", "AuthorizationPolicy", "RequestAuthentication"]
    workload = Workload("foo", "httpbin", "httpbin", "httpbin-0", {"app": "httpbin"})
    applied = applicable([ours, theirs, authn], workload, {})
    assert [r.name for r in applied["AuthorizationPolicy"].resources] == ["deny-get", "allow-all"]  # combined, as Istio's are
    assert applied["AuthorizationPolicy"].levels == ("workload", "namespace")
    assert [r.name for r in applied["RequestAuthentication"].resources] == ["jwt"]


@pytest.mark.parametrize(("doc", "field", "words"), [
    (istios("AuthorizationPolicy", "x", {"rules": [{"from": [{"source": {"unauthenticated": True}}]}]}),
     "spec.rules[0].from[0].source.unauthenticated", "unknown field (expected one of: ipBlocks, namespaces"),  # ours, not Istio's
    (istios("AuthorizationPolicy", "x", {"targetRefs": [{"kind": "Gateway", "name": "bookinfo-gateway"}]}),
     "spec.targetRefs", "Istio reads targetRefs at waypoints and gateways only"),
    (istios("RequestAuthentication", "x", {"targetRefs": [{"kind": "Service", "name": "httpbin"}], "jwtRules": [{"issuer": ISSUER}]}),
     "spec.targetRefs", "spec.selector.matchLabels"),
    (istios("AuthorizationPolicy", "x", {}, version="security.istio.io/v1alpha1"),
     "apiVersion", "AuthorizationPolicy is security.istio.io/v1beta1 or security.istio.io/v1, not 'security.istio.io/v1alpha1'"),
    (istios("AuthorizationPolicy", "x", {"action": "CUSTOM"}), "spec.provider", "a CUSTOM policy names the external authorizer"),
    (istios("AuthorizationPolicy", "x", {}, version="security.example.io/v1"), "kind",
     "AuthorizationPolicy with apiVersion security.istio.io/v1 or v1beta1 (Istio's own) or policy.meshdojo.dev/v1alpha1"),
])
def test_refusals_name_the_field(doc, field, words):
    with pytest.raises(PolicyError) as err:
        parse(doc, "task.yaml", 0)
    assert err.value.field == field and words in err.value.message, err.value


def test_names_tables_and_crds():
    assert canonical_kind("authorizationpolicies.security.istio.io") == ISTIO_AUTHORIZATION_POLICY
    assert canonical_kind("requestauthentication.security.istio.io") == ISTIO_REQUEST_AUTHENTICATION
    assert canonical_kind("authz") == canonical_kind("authorizationpolicies") == "AuthorizationPolicy"  # the bare names: ours...
    assert twins("authz", "AuthorizationPolicy") == ["AuthorizationPolicy", ISTIO_AUTHORIZATION_POLICY]  # ...and get lists Istio's too
    assert twins("ra", "RequestAuthentication") == ["RequestAuthentication", ISTIO_REQUEST_AUTHENTICATION]
    assert twins("authorizationpolicies.policy.meshdojo.dev", "AuthorizationPolicy") == ["AuthorizationPolicy"]  # a group: that one
    assert twins("faults", "FaultInjection") == ["FaultInjection"] and twins(None, None) == [None]
    rows = table([{"document": d, "expiresAt": None} for d in yaml.safe_load_all((ISTIO / "authorization-viewers.yaml").read_text())])
    assert rows[2][1:5] == (ISTIO_AUTHORIZATION_POLICY, "details-viewer", "app=details", "ALLOW")
    assert {ISTIO_AUTHORIZATION_POLICY, ISTIO_REQUEST_AUTHENTICATION} <= set(ISTIO_KINDS)
    crd = subset_crd(ISTIO_AUTHORIZATION_POLICY)
    assert crd["metadata"]["name"] == "authorizationpolicies.security.istio.io"
    assert (crd["spec"]["group"], crd["spec"]["names"]["kind"], [v["name"] for v in crd["spec"]["versions"]]) == (
        "security.istio.io", "AuthorizationPolicy", ["v1beta1", "v1"])
    source = crd["spec"]["versions"][1]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["rules"]["items"][
        "properties"]["from"]["items"]["properties"]["source"]["properties"]
    assert "principals" in source and "unauthenticated" not in source  # Istio's fields, not our one more
    assert subset_crd(ISTIO_REQUEST_AUTHENTICATION)["metadata"]["name"] == "requestauthentications.security.istio.io"


async def test_istios_deny_beside_our_allow_through_real_sidecars(mesh: Mesh, echo_port: int):
    """Istio's explicit deny task in its own apiVersion, then an ALLOW of ours for the same
    workload: both apply (a DENY first), and each denial names the policy that decided."""
    httpbin = mesh.start_proxy("foo", "httpbin", echo_port, name="httpbin")
    sleep = mesh.start_proxy("foo", "sleep", echo_port, name="sleep")
    mesh.register("foo", "httpbin", "httpbin-0", httpbin.ports["inbound"], spiffe("foo", "httpbin"))
    selector = {"selector": {"matchLabels": {"app": "httpbin"}}}
    async with aiohttp.ClientSession() as session:
        call = lambda method, path: status(session, sleep.outbound, method, path)  # noqa: E731
        assert await call("GET", "/ip") == 200
        apply(mesh, istios("AuthorizationPolicy", "deny-method-get", {**selector, "action": "DENY",
                                                                       "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}))
        await until(lambda: call("GET", "/get"), lambda s: s == 403, "Istio's DENY of GET")
        assert await call("POST", "/post") == 200
        apply(mesh, authz("allow-path-post", {"rules": [{"to": [{"operation": {"paths": ["/post"]}}]}]}))  # ours
        await until(lambda: call("POST", "/other"), lambda s: s == 403, "our ALLOW of /post alone")
        assert (await call("POST", "/post"), await call("GET", "/post")) == (200, 403)  # Istio's DENY still first
    metrics = httpbin.metrics()
    assert 'inbound_http_authz_deny_total{policy="foo/deny-method-get"}' in metrics
    assert 'inbound_http_authz_allow_total{policy="foo/allow-path-post"}' in metrics


async def test_istios_jwt_task_with_keys_the_control_plane_fetches(mesh: Mesh, echo_port: int, identity_provider):  # noqa: F811
    """Istio's RequestAuthentication with a jwksUri (the control plane fetches Istio's kind's
    keys as it does ours) and Istio's AuthorizationPolicy on its request principals."""
    idp, idp_port = identity_provider
    httpbin = mesh.start_proxy("foo", "httpbin", echo_port, name="httpbin")
    sleep = mesh.start_proxy("foo", "sleep", echo_port, name="sleep")
    mesh.register("foo", "httpbin", "httpbin-0", httpbin.ports["inbound"], spiffe("foo", "httpbin"))
    selector = {"selector": {"matchLabels": {"app": "httpbin"}}}
    apply(mesh, istios("RequestAuthentication", "jwt-example", {**selector, "jwtRules": [
        {"issuer": ISSUER, "jwksUri": f"http://127.0.0.1:{idp_port}/jwks.json"}]}, version="security.istio.io/v1beta1"))
    alice = idp.mint("alice")[0]
    async with aiohttp.ClientSession() as session:
        await until(lambda: get(session, sleep.outbound, alice), lambda r: r[0] == 200 and "authn=jwt" in r[2],
                    "the keys fetched for Istio's RequestAuthentication")
        assert (await get(session, sleep.outbound, "not.a.token"))[0] == 401
        apply(mesh, istios("AuthorizationPolicy", "require-jwt", {**selector, "rules": [
            {"from": [{"source": {"requestPrincipals": [f"{ISSUER}/alice"]}}]}]}))
        await until(lambda: get(session, sleep.outbound), lambda r: r[0] == 403, "Istio's ALLOW of alice's token only")
        assert (await get(session, sleep.outbound, alice))[0] == 200
        assert (await get(session, sleep.outbound, idp.mint("bob")[0]))[0] == 403


NETWORKING, TELEMETRY = "networking.istio.io/v1", "telemetry.istio.io/v1"
ENTRY = {"hosts": ["outside.example"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}], "resolution": "STATIC",
         "location": "MESH_EXTERNAL"}


@pytest.mark.parametrize(("kind", "versions", "spec", "twin"), [
    ("ServiceEntry", ("v1alpha3", "v1beta1", "v1"), {**ENTRY, "endpoints": [{"address": "127.0.0.1"}]}, ISTIO_SERVICE_ENTRY),
    ("Sidecar", ("v1alpha3", "v1beta1", "v1"), {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}, ISTIO_SIDECAR),
    ("Telemetry", ("v1alpha1", "v1"), {"tracing": [{"randomSamplingPercentage": 100}]}, ISTIO_TELEMETRY),
])
def test_istios_egress_and_telemetry_kinds_in_every_version_its_docs_write(kind, versions, spec, twin):
    group = twin.partition(".")[2]
    for version in versions:
        read = parse(istios(kind, "x", spec, version=f"{group}/{version}"), "t.yaml", 0)
        assert (read.kind, enforced_kind(read.kind)) == (twin, kind)
    assert twins(kind.lower(), kind) == [kind, twin]
    crd = subset_crd(twin)
    plural = {"ServiceEntry": "serviceentries", "Sidecar": "sidecars", "Telemetry": "telemetries"}[kind]
    assert (crd["metadata"]["name"], crd["spec"]["names"]["shortNames"]) == (f"{plural}.{group}", [])  # "se" is ours


def test_istios_sidecar_ties_with_ours_and_telemetries_merge_field_by_field():
    sidecars = [parse(d, "t.yaml", i) for i, d in enumerate([
        istios("Sidecar", "istios", {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}, version=NETWORKING),
        {**istios("Sidecar", "ours", {"outboundTrafficPolicy": {"mode": "ALLOW_ANY"}}), "apiVersion": "policy.meshdojo.dev/v1alpha1"}])]
    workload = Workload("foo", "web", "web", "web-0", {"app": "web"})
    [tie] = conflicts(sidecars, [workload], {})
    assert (tie.kind, tie.policies) == ("Sidecar", ("foo/istios", "foo/ours"))  # one level, two Sidecars: the first by name is used
    telemetries = [parse(istios("Telemetry", "logs", {"accessLogging": [{"providers": [{"name": "envoy"}]}]}, version=TELEMETRY), "t", 0),
                   parse({**istios("Telemetry", "traces", {"selector": {"matchLabels": {"app": "web"}},
                                                           "tracing": [{"randomSamplingPercentage": 100}]}),
                          "apiVersion": "policy.meshdojo.dev/v1alpha1"}, "t", 1)]
    merged = effective(applicable(telemetries, workload, {})["Telemetry"].resources)
    assert (merged.sampling_percent, merged.access_log) == (100, True)  # ours for the workload, Istio's for the namespace


async def test_istios_egress_task_with_its_sidecar_and_service_entry(emoji_mesh, outside_port):  # noqa: F811
    """REGISTRY_ONLY by Istio's Sidecar, the outside host reached again through Istio's
    ServiceEntry, and a route whose parent is that entry (networking.istio.io) timing it out."""
    mesh, _server, client = emoji_mesh
    outside = f"http://127.0.0.1:{outside_port}/get"
    async with aiohttp.ClientSession() as session:
        assert (await fetch(session, client.outbound, outside))[0] == 200  # ALLOW_ANY, the default
        registry_only = istios("Sidecar", "default", {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}, "emojivoto", NETWORKING)
        apply(mesh, registry_only)
        _status, headers, body = await until(lambda: fetch(session, client.outbound, outside), lambda r: r[0] == 502,
                                             "Istio's Sidecar to refuse the outside host")
        assert headers["x-meshdojo-error"] == "egress_blocked" and "(Sidecar emojivoto/default)" in body
        entry = istios("ServiceEntry", "outside", {**ENTRY, "endpoints": [{"address": "127.0.0.1", "ports": {"http": outside_port}}]},
                       "emojivoto", "networking.istio.io/v1beta1")
        apply(mesh, registry_only, entry)
        _status, headers, _body = await until(lambda: fetch(session, client.outbound, "http://outside.example/x", headers=DEBUG),
                                              lambda r: r[0] == 200, "Istio's ServiceEntry's host to answer")
        assert "egress=ServiceEntry emojivoto/outside" in headers["x-meshdojo-fate"]
        route = doc("HTTPRoute", "outside-timeout", {"parentRefs": [{"kind": "ServiceEntry", "group": "networking.istio.io", "name": "outside"}],
                                                     "rules": [{"timeouts": {"request": "300ms"}}]})
        apply(mesh, registry_only, entry, route)
        await until(lambda: fetch(session, client.outbound, "http://outside.example/delay/2000"), lambda r: r[0] == 504,
                    "the route on Istio's ServiceEntry to time the call out")
    assert mesh.call("GET", "/v1/policies")[1]["routeProblems"] == []  # its parent exists: the entry is Istio's kind
