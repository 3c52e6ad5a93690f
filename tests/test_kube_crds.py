"""The policy CRDs on a real API server: `meshdojo install --crds` applies them and waits for
Established; every demo policy is accepted; what the validator refuses the API server refuses
too, naming the same field (both come from one set of field definitions); uninstall leaves
nothing of ours."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from controlplane import policy, policyschema
from sandbox.cli import main
from sandbox.kube.install import crd_manifests

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parent.parent
POLICY_FILES = sorted([*ROOT.glob("demo-apps/*/policies/*.yaml"), *ROOT.glob("demo-apps/*/policies/istio/*.yaml"), ROOT / "demo-apps/extauthz/provider.yaml",
                       ROOT / "demo-apps/extauthz/web-ext-authz.yaml"])


@pytest.fixture(scope="module")
def installed(k8s):
    core = client.CoreV1Api(k8s.client())
    for ns in ("emojivoto", "bookinfo", "crdtest", "meshdojo-system"):
        core.create_namespace({"metadata": {"name": ns}})
    assert main(["install", "--crds", "--kubeconfig", str(k8s.kubeconfig), "--wait", "60"]) == 0
    yield k8s


def _ours(k8s) -> list[str]:
    crds = client.ApiextensionsV1Api(k8s.client()).list_custom_resource_definition(label_selector="app.kubernetes.io/part-of=meshdojo")
    return sorted(c.metadata.name for c in crds.items)


def test_dry_run_prints_the_crds_without_a_cluster(capsys):
    assert main(["install", "--crds", "--dry-run", "-o", "yaml"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs] == ["CustomResourceDefinition"] * 30
    names = {d["metadata"]["name"] for d in docs}
    assert {"faultinjections.policy.meshdojo.dev", "meshtlses.policy.meshdojo.dev", "authorizationpolicies.policy.meshdojo.dev",
            "httproutes.gateway.networking.k8s.io", "backendtlspolicies.gateway.networking.k8s.io", "gateways.gateway.networking.k8s.io",
            "httplocalratelimitpolicies.policy.linkerd.io"} <= names
    assert main(["install", "--crds", "--dry-run", "--without-httproute"]) == 0
    assert "gateway.networking.k8s.io" not in capsys.readouterr().out


def test_install_without_a_cluster_says_how_to_get_one(capsys, tmp_path):
    assert main(["install", "--crds", "--kubeconfig", str(tmp_path / "missing.kubeconfig")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no usable kubeconfig") and "--kubeconfig FILE" in err and "Traceback" not in err


def test_crds_are_established_and_every_demo_policy_is_accepted(installed):
    k8s = installed
    assert _ours(k8s) == sorted(c["metadata"]["name"] for c in crd_manifests(True))
    for path in POLICY_FILES:
        out = k8s.kubectl("apply", "-f", str(path))
        assert "created" in out.stdout or "configured" in out.stdout, (path, out.stdout, out.stderr)
    listed = k8s.kubectl("get", "meshdojo", "-A", "-o", "name").stdout.split()  # the CRDs' category
    expected = {f"{d['kind'].lower()}.{d['apiVersion'].split('/')[0]}/{d['metadata']['name']}"
                for path in POLICY_FILES for d in yaml.safe_load_all(path.read_text()) if d["apiVersion"].startswith("policy.")}
    assert expected <= set(listed)


def _base(kind: str) -> dict:
    return {
        "FaultInjection": {"targetRef": {"kind": "Service", "name": "ratings"}, "delay": {"fixedDelay": "7s"}},
        "CircuitBreaker": {"targetRef": {"name": "web"}, "consecutiveFailures": 3},
        "HTTPRoute": {"parentRefs": [{"kind": "Service", "name": "reviews"}], "rules": [{"retry": {"attempts": 2}, "filters": [
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-canary", "value": "1"}]}}]}]},
        "AuthorizationPolicy": {"action": "DENY", "rules": [{"from": [{"source": {"principals": ["spiffe://meshdojo.local/ns/a/sa/b"]}}],
                                                             "to": [{"operation": {"notPorts": ["8080"]}}],
                                                             "when": [{"key": "request.headers[x-token]", "notValues": ["admin"]}]}]},
        "MeshTLS": {"mode": "STRICT"},
        "RateLimit": {"requestsPerSecond": 5},
        "RetryBudget": {"targetRef": {"name": "voting"}, "ttl": "10s"},
        "ServiceEntry": {"hosts": ["httpbin.example"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
                         "resolution": "DNS", "endpoints": [{"address": "httpbin.internal", "ports": {"http": 8080}}]},
        "Sidecar": {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}, "workloadSelector": {"labels": {"app": "web"}}},
        "Telemetry": {"selector": {"matchLabels": {"app": "web"}}, "tracing": [{"randomSamplingPercentage": 10}]},
        "RequestAuthentication": {"selector": {"matchLabels": {"app": "web"}},
                                  "jwtRules": [{"issuer": "https://idp.example", "jwksUri": "https://idp.example/keys"}]},
        "ExtensionProvider": {"envoyExtAuthzHttp": {"service": "ext-authz.foo.svc.cluster.local", "port": "8000",
                                                    "includeRequestHeadersInCheck": ["x-ext-authz"]}},
        "BackendTLSPolicy": {"targetRefs": [{"group": "networking.istio.io", "kind": "ServiceEntry", "name": "httpbin",
                                             "sectionName": "http"}],
                             "validation": {"hostname": "httpbin.example", "wellKnownCACertificates": "System"}},
        "Gateway": {"gatewayClassName": "istio", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP",
                                                                "hostname": "*.example.com"}]},
        "Server": {"podSelector": {"matchLabels": {"app": "voting"}}, "port": "http", "proxyProtocol": "gRPC"},
        "ServerAuthorization": {"server": {"name": "voting-grpc"}, "client": {"meshTLS": {"serviceAccounts": [{"name": "web"}]}}},
        "AuthorizationPolicy.policy.linkerd.io": {
            "targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": "voting-grpc"},
            "requiredAuthenticationRefs": [{"group": "policy.linkerd.io", "kind": "MeshTLSAuthentication", "name": "voting-authn"}]},
        "MeshTLSAuthentication": {"identityRefs": [{"kind": "ServiceAccount", "name": "web"}]},
        "NetworkAuthentication": {"networks": [{"cidr": "10.0.0.0/8"}]},
        "HTTPRoute.policy.linkerd.io": {"parentRefs": [{"group": "policy.linkerd.io", "kind": "Server", "name": "voting-grpc"}],
                                        "rules": [{"matches": [{"path": {"value": "/api/list"}, "method": "GET"}]}]},
        "HTTPLocalRateLimitPolicy": {"targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": "web-http"},
                                     "identity": {"requestsPerSecond": 4},
                                     "overrides": [{"requestsPerSecond": 6, "clientRefs": [{"kind": "ServiceAccount", "name": "web"}]}]},
        "VirtualService": {"hosts": ["reviews"], "http": [{"match": [{"headers": {"end-user": {"exact": "jason"}}}],
                                                           "route": [{"destination": {"host": "reviews", "subset": "v2"}, "weight": 100}],
                                                           "retries": {"attempts": 2, "retryOn": "5xx"}}]},
        "DestinationRule": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}],
                            "trafficPolicy": {"outlierDetection": {"consecutive5xxErrors": 1, "maxEjectionPercent": 100}}},
        "PeerAuthentication": {"selector": {"matchLabels": {"app": "reviews"}}, "mtls": {"mode": "PERMISSIVE"}},
    }[kind]


# (kind, field path the change sets, value) — each must be refused by both, naming the field
INVALID = [
    ("CircuitBreaker", "spec.consecutiveFailures", 0),
    ("CircuitBreaker", "spec.connectionPool.tcp.maxConnections", 0),
    ("FaultInjection", "spec.delay.fixedDelay", "seven seconds"),
    ("FaultInjection", "spec.abort.httpStatus", 99),
    ("HTTPRoute", "spec.rules[0].retry.attempts", 11),
    ("HTTPRoute", "spec.rules[0].filters[0].type", "HeaderModifier"),
    ("HTTPRoute", "spec.rules[0].filters[0].requestHeaderModifier.set[0].value", "a\r\nb"),
    ("AuthorizationPolicy", "spec.action", "MAYBE"),
    ("AuthorizationPolicy", "spec.rules[0].from[0].source.principals[0]", "web"),
    ("AuthorizationPolicy", "spec.rules[0].to[0].operation.notPorts[0]", "http"),
    ("AuthorizationPolicy", "spec.rules[0].when[0].key", "connection.sni"),
    ("MeshTLS", "spec.mode", "strict"),
    ("RateLimit", "spec.requestsPerSecond", 0),
    ("RetryBudget", "spec.ttl", 10),
    ("ServiceEntry", "spec.resolution", "BOGUS"),
    ("ServiceEntry", "spec.hosts[0]", "Not A Host"),
    ("ServiceEntry", "spec.endpoints[0].ports.http", 0),
    ("Sidecar", "spec.outboundTrafficPolicy.mode", "DENY"),
    ("Telemetry", "spec.tracing[0].randomSamplingPercentage", 101),
    ("RequestAuthentication", "spec.jwtRules[0].jwksUri", "file:///etc/passwd"),
    ("RequestAuthentication", "spec.jwtRules", []),
    ("ExtensionProvider", "spec.envoyExtAuthzHttp.port", "http"),
    ("ExtensionProvider", "spec.envoyExtAuthzHttp.port", 0),
    ("ExtensionProvider", "spec.envoyExtAuthzHttp.includeRequestHeadersInCheck[0]", "x ext"),
    ("ExtensionProvider", "spec.envoyExtAuthzHttp.statusOnError", 99),
    ("BackendTLSPolicy", "spec.validation.hostname", "Not A Host"),
    ("BackendTLSPolicy", "spec.targetRefs[0].kind", "Gateway"),
    ("BackendTLSPolicy", "spec.validation.wellKnownCACertificates", "Mine"),
    ("Gateway", "spec.gatewayClassName", "nginx"),
    ("Gateway", "spec.listeners[0].hostname", "Not A Host"),
    ("Gateway", "spec.listeners[0].allowedRoutes.namespaces.from", "Selector"),
    ("Server", "spec.port", "GRPC"),
    ("Server", "spec.port", 0),
    ("Server", "spec.accessPolicy", "allow"),
    ("Server", "spec.podSelector.matchLabels", "app"),
    ("ServerAuthorization", "spec.client.unauthenticated", "yes"),
    ("AuthorizationPolicy.policy.linkerd.io", "spec.requiredAuthenticationRefs[0].kind", "Secret"),
    ("MeshTLSAuthentication", "spec.identityRefs[0].kind", "Pod"),
    ("NetworkAuthentication", "spec.networks", []),
    ("HTTPRoute.policy.linkerd.io", "spec.rules[0].matches[0].method", "FETCH"),
    ("HTTPRoute.policy.linkerd.io", "spec.parentRefs[0].kind", "Gateway"),
    ("HTTPRoute.policy.linkerd.io", "spec.parentRefs[0].group", "apps"),
    ("HTTPLocalRateLimitPolicy", "spec.identity.requestsPerSecond", 0),
    ("HTTPLocalRateLimitPolicy", "spec.overrides[0].clientRefs[0].kind", "Namespace"),
    ("HTTPLocalRateLimitPolicy", "spec.targetRef.kind", "Service"),
    ("VirtualService", "spec.http[0].route[0].weight", 101),
    ("VirtualService", "spec.http[0].retries.retryOn", "5xx;reset"),
    ("VirtualService", "spec.hosts", []),
    ("DestinationRule", "spec.trafficPolicy.outlierDetection.maxEjectionPercent", 101),
    ("DestinationRule", "spec.subsets[0].name", "V1"),
    ("DestinationRule", "spec.trafficPolicy.tls.mode", "MUTUAL"),
    ("PeerAuthentication", "spec.mtls.mode", "strict"),
    ("PeerAuthentication", "spec.selector.matchLabels", "app=reviews"),
]


def _set(doc: dict, path: str, value) -> None:
    keys = path.replace("]", "").replace("[", ".").split(".")
    node = doc
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    node[int(keys[-1]) if keys[-1].isdigit() else keys[-1]] = value


def test_kubectl_explain_reads_what_meshdojo_explain_prints(installed):
    """One set of descriptions: the API server publishes the CRD's, kubectl explain and meshdojo explain show them."""
    from controlplane.schema import openapi
    from sandbox.explain import explain
    from sandbox.processes import wait_until

    for kind, path, crd_path in (("FaultInjection", ["abort"], "faultinjections.spec.abort"),
                                 ("CircuitBreaker", ["connectionPool", "http"], "circuitbreakers.spec.connectionPool.http")):
        node = openapi(policyschema.KINDS[kind][1])
        for name in path:
            node = node["properties"][name]
        said = [node["description"], *(sub["description"] for sub in node["properties"].values())]
        ours = " ".join(explain(".".join([kind, "spec", *path])).split())
        assert all(text in ours for text in said), (said, ours)

        def published(crd_path: str = crd_path) -> str | None:  # the API server publishes a CRD's OpenAPI a moment after it is Established
            ran = installed.kubectl("explain", crd_path, check=False)
            return " ".join(ran.stdout.split()) if ran.returncode == 0 else None

        theirs = wait_until(published, 30, f"kubectl explain {crd_path}", interval=0.5)
        assert all(text in theirs for text in said), (said, theirs)


@pytest.mark.parametrize(("kind", "field", "value"), INVALID, ids=[f"{k}-{f}" for k, f, _ in INVALID])
def test_the_api_server_and_the_validator_refuse_the_same_field(installed, kind, field, value):
    k8s = installed
    namespace = "meshdojo-system" if kind == "ExtensionProvider" else "crdtest"  # providers are mesh-wide (Istio's meshConfig)
    doc = {"apiVersion": policy.KINDS[kind], "kind": policyschema.kube_kind(kind), "metadata": {"name": "bad", "namespace": namespace},
           "spec": copy.deepcopy(_base(kind))}
    good = copy.deepcopy(doc)
    policy.parse(good, "good.yaml", 0)  # the base is valid for both
    _set(doc, field, value)
    with pytest.raises(policy.PolicyError) as ours:
        policy.parse(doc, "bad.yaml", 0)
    assert ours.value.field == field
    refused = k8s.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc), check=False)
    assert refused.returncode != 0, refused.stdout
    assert f"{field}: " in refused.stderr, refused.stderr  # the API server names list items as spec.rules[0] too


def test_an_unknown_field_is_refused_by_name(installed):
    doc = {"apiVersion": policy.POLICY_API, "kind": "MeshTLS", "metadata": {"name": "typo", "namespace": "crdtest"},
           "spec": {"mode": "STRICT", "mdoe": "STRICT"}}
    with pytest.raises(policy.PolicyError, match="spec.mdoe: unknown field"):
        policy.parse(doc, "typo.yaml", 0)
    refused = installed.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc), check=False)
    assert refused.returncode != 0 and 'unknown field "spec.mdoe"' in refused.stderr, refused.stderr


def test_uninstall_removes_the_crds_and_their_objects(installed, capsys):
    k8s = installed
    k8s.kubectl("apply", "-f", str(ROOT / "demo-apps/emojivoto/policies/strict-mtls.yaml"))
    capsys.readouterr()
    assert main(["uninstall", "--kubeconfig", str(k8s.kubeconfig)]) == 0
    out = capsys.readouterr().out
    assert "customresourcedefinition.apiextensions.k8s.io/meshtlses.policy.meshdojo.dev deleted" in out
    assert "nothing of meshdojo's remains on the cluster" in out
    assert _ours(k8s) == []
    assert main(["uninstall", "--kubeconfig", str(k8s.kubeconfig)]) == 0
    assert "nothing of meshdojo's was installed" in capsys.readouterr().out
    # and it comes back, for whatever runs after
    assert main(["install", "--crds", "--kubeconfig", str(k8s.kubeconfig)]) == 0


def _wait_storage_ready(k8s, names: list[str]) -> None:
    """A CRD just re-applied re-initializes its storage; deleted then, the API server's CRD finalizer
    fails ("storage is (re)initializing") and retries with a growing backoff — minutes, once."""
    from sandbox.processes import wait_until

    crds = {c["metadata"]["name"]: c for c in crd_manifests(True)}
    custom = client.CustomObjectsApi(k8s.client())

    def ready(name: str) -> bool:
        spec = crds[name]["spec"]
        try:
            custom.list_cluster_custom_object(spec["group"], spec["versions"][0]["name"], spec["names"]["plural"])
            return True
        except client.ApiException:
            return False

    for name in names:
        wait_until(lambda name=name: ready(name), 30, f"the {name} CRD's storage to answer")


def test_a_cluster_with_gateway_apis_httproute_keeps_it(installed, capsys):
    k8s = installed
    ext = client.ApiextensionsV1Api(k8s.client())
    from sandbox.processes import wait_until

    _wait_storage_ready(k8s, ["httproutes.gateway.networking.k8s.io"])
    ext.delete_custom_resource_definition("httproutes.gateway.networking.k8s.io")

    # the CRD goes once its finalizer has emptied it: a busy API server (the end of a full run) took over 30 s once
    try:
        wait_until(lambda: "httproutes.gateway.networking.k8s.io" not in _ours(k8s), 120, "our HTTPRoute CRD to go")
    except Exception:  # say what holds it: the CRD's conditions (InstanceDeletionFailed ...) and what is left
        crd = ext.read_custom_resource_definition("httproutes.gateway.networking.k8s.io")
        left = client.CustomObjectsApi(k8s.client()).list_cluster_custom_object("gateway.networking.k8s.io", "v1", "httproutes")
        print([(c.type, c.status, c.message) for c in crd.status.conditions or []], crd.metadata.finalizers,
              [(o["metadata"]["namespace"], o["metadata"]["name"], o["metadata"].get("finalizers")) for o in left["items"]])
        raise
    foreign = next(c for c in crd_manifests(True) if c["metadata"]["name"] == "httproutes.gateway.networking.k8s.io")
    foreign["metadata"] = {"name": foreign["metadata"]["name"],  # someone else's: not labelled as ours
                           "annotations": {"api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/3328"}}
    foreign["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] = {
        "type": "object", "x-kubernetes-preserve-unknown-fields": True}

    def create():
        try:
            ext.create_custom_resource_definition(foreign)
            return True
        except client.ApiException as exc:  # the old one may still be terminating
            if exc.status == 409:
                return False
            raise

    wait_until(create, 30, "Gateway API's HTTPRoute CRD to be created")
    capsys.readouterr()
    assert main(["install", "--crds", "--kubeconfig", str(k8s.kubeconfig)]) == 0
    captured = capsys.readouterr()
    assert "Gateway API's HTTPRoute CRD: meshdojo uses it as is" in captured.err
    assert "httproutes.gateway.networking.k8s.io" not in captured.out
    crd = ext.read_custom_resource_definition("httproutes.gateway.networking.k8s.io")
    assert not (crd.metadata.labels or {}).get("app.kubernetes.io/part-of")
    ext.delete_custom_resource_definition("httproutes.gateway.networking.k8s.io")  # not ours: the tests' to remove


def test_uninstall_goes_on_when_an_object_goes_meanwhile(installed, capsys):
    """`down` deletes the sandbox's namespaces, then uninstalls: the namespace controller may delete a
    trust-anchor ConfigMap between uninstall listing it and deleting it. Here that race is made to happen
    every time: the listing is taken, then the ConfigMap is deleted by someone else, then uninstall deletes."""
    from sandbox.kube import cluster

    k8s = installed
    core = client.CoreV1Api(k8s.client())
    core.create_namespaced_config_map("crdtest", {"metadata": {"name": "meshdojo-trust-anchor",
                                                               "labels": {"app.kubernetes.io/part-of": "meshdojo"}}})
    admin = cluster.connect(k8s.kubeconfig, None)
    listings = []

    class RacingConfigMaps:  # the real resource; its second listing (uninstall's delete pass) is followed by another's delete
        def __init__(self, real):
            self.real = real

        def get(self, **kw):
            listing = self.real.get(**kw)
            listings.append(listing)
            if len(listings) == 2:
                assert any(i["metadata"]["namespace"] == "crdtest" for i in listing.to_dict()["items"])
                core.delete_namespaced_config_map("meshdojo-trust-anchor", "crdtest")
            return listing

        def delete(self, **kw):
            return self.real.delete(**kw)

    class Resources:
        def get(self, api_version, kind):
            real = admin.resources.get(api_version=api_version, kind=kind)
            return RacingConfigMaps(real) if kind == "ConfigMap" else real

    racing = type("Client", (), {"resources": Resources()})()
    _wait_storage_ready(k8s, _ours(k8s))
    deleted = cluster.uninstall(racing, 120)
    assert len(listings) >= 3 and "configmap/meshdojo-trust-anchor" in deleted and _ours(k8s) == []
    assert main(["install", "--crds", "--kubeconfig", str(k8s.kubeconfig)]) == 0  # back, for whatever runs after
