"""Istio's VirtualService, DestinationRule, Gateway, PeerAuthentication, AuthorizationPolicy,
RequestAuthentication, ServiceEntry, Sidecar and Telemetry on the test cluster (tests/k8senv): the files of Istio's bookinfo tasks
(demo-apps/bookinfo/policies/istio/) applied with kubectl as Istio's docs do, in any version
they write (the subset CRDs serve v1alpha3, v1beta1 and v1); the control plane reads them,
``meshdojo check`` names a subset no DestinationRule defines, and kubectl's short names work.
(Their traffic on real pods: lesson 21 on the cluster, tests/test_kube_lessons.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from controlplane.istioschema import (
    ISTIO_AUTHORIZATION_POLICY,
    ISTIO_GATEWAY,
    ISTIO_REQUEST_AUTHENTICATION,
    ISTIO_SERVICE_ENTRY,
    ISTIO_SIDECAR,
    ISTIO_TELEMETRY,
)
from controlplane.jwtissuer import ISSUER
from sandbox.processes import wait_until
from tests.kube_plane import Plane

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parent.parent
ISTIO = ROOT / "demo-apps/bookinfo/policies/istio"
NS = "bookinfo"


@pytest.fixture(scope="module")
def plane(k8s, tmp_path_factory):
    p = Plane(k8s, tmp_path_factory.mktemp("kube-istio"))
    try:
        p.start()
        k8s.kubectl("apply", "-f", str(ROOT / "demo-apps/bookinfo/manifests.yaml"))
        yield p
    finally:
        p.stop()


def subset_problems(plane: Plane) -> list[str]:
    return [p["message"] for p in plane.mesh.call("GET", "/v1/policies")[1]["routeProblems"] if "subset" in p["message"]]


def test_istios_bookinfo_files_from_kubectl_are_routes_and_subsets_of_the_control_plane(plane):
    applied = plane.k8s.kubectl("apply", "-f", str(ISTIO / "destination-rule-all.yaml"), "-f", str(ISTIO / "virtual-service-reviews-test-v2.yaml"),
                                "-f", str(ISTIO / "peer-authentication-permissive.yaml")).stdout
    assert "destinationrule.networking.istio.io/reviews created" in applied, applied
    assert "virtualservice.networking.istio.io/reviews created" in applied, applied
    assert "peerauthentication.security.istio.io/default created" in applied, applied
    wait_until(lambda: set(plane.stored("DestinationRule", NS)) == {"productpage", "reviews", "ratings", "details"}
               and "reviews" in plane.stored("VirtualService", NS) and "default" in plane.stored("PeerAuthentication", NS), 15,
               "the rules, the route and the PeerAuthentication in the operator API")
    rules = plane.stored("VirtualService", NS)["reviews"]["spec"]["http"]
    assert rules[0]["match"][0]["headers"] == {"end-user": {"exact": "jason"}}  # a map of StringMatches, kept as written
    assert subset_problems(plane) == []
    listed = plane.k8s.kubectl("get", "vs,dr,pa", "-n", NS, "-o", "name").stdout.split()  # the CRDs' short names
    assert {"virtualservice.networking.istio.io/reviews", "destinationrule.networking.istio.io/details",
            "peerauthentication.security.istio.io/default"} <= set(listed), listed

    older = {"apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService", "metadata": {"name": "ratings", "namespace": NS},
             "spec": {"hosts": ["ratings"], "http": [{"route": [{"destination": {"host": "ratings", "subset": "v2"}}]}]}}
    plane.k8s.kubectl("apply", "-f", "-", input=yaml.safe_dump(older))
    served = json.loads(plane.k8s.kubectl("get", "virtualservices.v1.networking.istio.io", "ratings", "-n", NS, "-o", "json").stdout)
    assert served["apiVersion"] == "networking.istio.io/v1"  # the same object, in the version the CRD stores
    problems = wait_until(lambda: subset_problems(plane) or None, 15, "check to name the undefined subset")
    assert problems == ["VirtualService bookinfo/ratings: subset v2 of ratings is defined by no DestinationRule, so its "
                        "requests get 503 (no_subset): apply a DestinationRule with host ratings and that subset"], problems

    plane.k8s.kubectl("delete", "-f", str(ISTIO / "destination-rule-all.yaml"), "-f", str(ISTIO / "virtual-service-reviews-test-v2.yaml"),
                      "-f", str(ISTIO / "peer-authentication-permissive.yaml"))
    plane.k8s.kubectl("delete", "-f", "-", input=yaml.safe_dump(older))
    wait_until(lambda: not plane.stored("VirtualService", NS) and not plane.stored("DestinationRule", NS)
               and not plane.stored("PeerAuthentication", NS), 15,
               "the deleted objects to leave the operator API")


def test_istios_authorization_task_and_a_request_authentication_from_kubectl(plane):
    """Istio's security.istio.io kinds beside ours: their own CRDs (our kinds of those names
    are in policy.meshdojo.dev), stored in the control plane under kubectl's names for them."""
    applied = plane.k8s.kubectl("apply", "-f", str(ISTIO / "authorization-allow-nothing.yaml"),
                                "-f", str(ISTIO / "authorization-viewers.yaml")).stdout
    assert "authorizationpolicy.security.istio.io/allow-nothing created" in applied, applied
    authn = {"apiVersion": "security.istio.io/v1beta1", "kind": "RequestAuthentication", "metadata": {"name": "jwt", "namespace": NS},
             "spec": {"selector": {"matchLabels": {"app": "productpage"}}, "jwtRules": [{"issuer": ISSUER}]}}
    assert "requestauthentication.security.istio.io/jwt created" in plane.k8s.kubectl("apply", "-f", "-", input=yaml.safe_dump(authn)).stdout
    wait_until(lambda: set(plane.stored(ISTIO_AUTHORIZATION_POLICY, NS)) == {
        "allow-nothing", "productpage-viewer", "details-viewer", "reviews-viewer", "ratings-viewer"}
        and "jwt" in plane.stored(ISTIO_REQUEST_AUTHENTICATION, NS), 15, "Istio's policies in the operator API")
    assert plane.stored("AuthorizationPolicy", NS) == {}  # ours is another kind, in another group
    viewer = plane.stored(ISTIO_AUTHORIZATION_POLICY, NS)["ratings-viewer"]
    assert viewer["spec"]["rules"][0]["from"][0]["source"]["principals"] == ["cluster.local/ns/bookinfo/sa/reviews"]
    listed = plane.k8s.kubectl("get", "authorizationpolicies.security.istio.io,requestauthentications.security.istio.io",
                               "-n", NS, "-o", "name").stdout.split()
    assert {"authorizationpolicy.security.istio.io/allow-nothing", "requestauthentication.security.istio.io/jwt"} <= set(listed), listed
    refused = plane.k8s.kubectl("apply", "-f", "-", check=False, input=yaml.safe_dump(
        {**authn, "kind": "AuthorizationPolicy", "spec": {"rules": [{"from": [{"source": {"unauthenticated": True}}]}]}}))
    assert refused.returncode != 0 and "unauthenticated" in refused.stderr, refused  # Istio's schema: not our one more field

    plane.k8s.kubectl("delete", "-f", str(ISTIO / "authorization-allow-nothing.yaml"), "-f", str(ISTIO / "authorization-viewers.yaml"))
    plane.k8s.kubectl("delete", "requestauthentications.security.istio.io", "jwt", "-n", NS)
    wait_until(lambda: not plane.stored(ISTIO_AUTHORIZATION_POLICY, NS) and not plane.stored(ISTIO_REQUEST_AUTHENTICATION, NS), 15,
               "the deleted objects to leave the operator API")


def test_istios_egress_and_telemetry_kinds_from_kubectl(plane):
    """Istio's ServiceEntry and Sidecar (networking.istio.io, beside its VirtualService) and its
    Telemetry (telemetry.istio.io: a group of its own, which the control plane may watch)."""
    docs = [{"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "httpbin-ext", "namespace": NS},
             "spec": {"hosts": ["httpbin.org"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}], "resolution": "DNS",
                      "location": "MESH_EXTERNAL"}},
            {"apiVersion": "networking.istio.io/v1beta1", "kind": "Sidecar", "metadata": {"name": "default", "namespace": NS},
             "spec": {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}},
            {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry", "metadata": {"name": "mesh-default", "namespace": NS},
             "spec": {"accessLogging": [{"providers": [{"name": "envoy"}]}]}}]
    applied = plane.k8s.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs)).stdout
    assert {"serviceentry.networking.istio.io/httpbin-ext created", "sidecar.networking.istio.io/default created",
            "telemetry.telemetry.istio.io/mesh-default created"} <= set(applied.splitlines()), applied
    kinds = (ISTIO_SERVICE_ENTRY, ISTIO_SIDECAR, ISTIO_TELEMETRY)
    wait_until(lambda: all(plane.stored(kind, NS) for kind in kinds), 15, "Istio's egress and telemetry kinds in the operator API")
    assert [list(plane.stored(kind, NS)) for kind in kinds] == [["httpbin-ext"], ["default"], ["mesh-default"]]
    assert not plane.stored("ServiceEntry", NS) and not plane.stored("Telemetry", NS)  # ours are other kinds, in our group
    plane.k8s.kubectl("delete", "-f", "-", input=yaml.safe_dump_all(docs))
    wait_until(lambda: not any(plane.stored(kind, NS) for kind in kinds), 15, "the deleted objects to leave the operator API")


def test_istios_own_gateway_and_its_virtual_service_from_kubectl(plane):
    """Istio's bookinfo-gateway.yaml as its docs apply it: an Istio Gateway beside Gateway API's
    kind of that name, and a VirtualService bound to it; check says when no server takes it."""
    applied = plane.k8s.kubectl("apply", "-f", str(ISTIO / "bookinfo-gateway.yaml")).stdout
    assert {"gateway.networking.istio.io/bookinfo-gateway created", "virtualservice.networking.istio.io/bookinfo created"} <= set(
        applied.splitlines()), applied
    wait_until(lambda: "bookinfo-gateway" in plane.stored(ISTIO_GATEWAY, NS) and "bookinfo" in plane.stored("VirtualService", NS), 15,
               "Istio's Gateway and its VirtualService in the operator API")
    assert plane.stored("Gateway", NS) == {}  # Gateway API's is another kind
    assert not [p for p in plane.mesh.call("GET", "/v1/policies")[1]["gatewayProblems"] if "bookinfo/bookinfo:" in p]
    gateway, service = yaml.safe_load_all((ISTIO / "bookinfo-gateway.yaml").read_text())
    gateway["spec"]["servers"][0]["hosts"] = ["bookinfo.example.com"]
    service["spec"]["hosts"] = ["reviews.example.com"]  # not a host the server takes (its * would have been)
    plane.k8s.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([gateway, service]))
    problems = wait_until(lambda: [p for p in plane.mesh.call("GET", "/v1/policies")[1]["gatewayProblems"]
                                   if "bookinfo/bookinfo:" in p] or None, 15, "check to say no server takes it")
    assert problems[0].startswith("VirtualService bookinfo/bookinfo: no server of Istio Gateway bookinfo/bookinfo-gateway takes it"), problems
    plane.k8s.kubectl("delete", "-f", str(ISTIO / "bookinfo-gateway.yaml"))
    wait_until(lambda: not plane.stored(ISTIO_GATEWAY, NS) and "bookinfo" not in plane.stored("VirtualService", NS), 15,
               "the deleted objects to leave the operator API")
