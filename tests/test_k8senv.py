"""The test cluster is a real one: controllers turn Deployments into Pods, kwok makes them Ready
with IPs, EndpointSlices follow, RBAC refuses, CRD schemas validate, server-side apply works."""

from __future__ import annotations

import ipaddress
import sys

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from sandbox.processes import wait_until

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(120)]
NS = "smoke"


@pytest.fixture(scope="module")
def api(k8s):
    api_client = k8s.client()
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": NS}})
    try:
        yield api_client
    finally:
        core.delete_namespace(NS)


def _ready_pods(core: client.CoreV1Api) -> list:
    pods = core.list_namespaced_pod(NS, label_selector="app=echo").items
    return [p for p in pods if p.metadata.deletion_timestamp is None and p.status.phase == "Running" and p.status.pod_ip
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]


def _slice_pods(discovery: client.DiscoveryV1Api) -> set[str]:
    slices = discovery.list_namespaced_endpoint_slice(NS, label_selector="kubernetes.io/service-name=echo").items
    return {ep.target_ref.name for s in slices for ep in s.endpoints or [] if ep.conditions.ready and ep.target_ref}


def test_a_deployment_becomes_ready_pods_on_kwok_nodes_and_an_endpointslice(api, k8s):
    core, apps, discovery = client.CoreV1Api(api), client.AppsV1Api(api), client.DiscoveryV1Api(api)
    labels = {"app": "echo"}
    apps.create_namespaced_deployment(NS, {
        "metadata": {"name": "echo"},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "echo", "image": "meshdojo/not-pulled:0", "ports": [{"containerPort": 8080}]}]}}}})
    core.create_namespaced_service(NS, {"metadata": {"name": "echo"},
                                        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}})

    pods = wait_until(lambda: (p := _ready_pods(core)) and len(p) == 2 and p, 30, "2 Running and Ready pods")
    assert {p.spec.node_name for p in pods} <= {"kwok-node-0", "kwok-node-1"}
    assert all(ipaddress.ip_address(p.status.pod_ip) in ipaddress.ip_network(k8s.networks.pods) for p in pods)
    names = {p.metadata.name for p in pods}
    wait_until(lambda: _slice_pods(discovery) == names, 30, "the EndpointSlice to list both pods")

    victim = sorted(names)[0]
    core.delete_namespaced_pod(victim, NS)
    replaced = wait_until(lambda: (p := {x.metadata.name for x in _ready_pods(core)}) and len(p) == 2 and victim not in p and p,
                          30, "a replacement pod")
    wait_until(lambda: _slice_pods(discovery) == replaced, 30, "the EndpointSlice to follow the replacement")


def test_the_pod_runner_reports_readiness_as_a_kubelet_does(api, k8s):
    """tests/k8senv/pods.py takes kwok's instant Ready back until the probes pass: the
    EndpointSlice leaves the pod out meanwhile (uses the previous test's echo pods)."""
    from tests.k8senv import pods as podnet

    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    spec = {"initContainers": [{"name": "proxy", "restartPolicy": "Always", "ports": [{"name": "admin", "containerPort": 4191}],
                                "readinessProbe": {"httpGet": {"path": "/ready", "port": "admin"}}}],
            "containers": [{"name": "app", "readinessProbe": {"tcpSocket": {"port": 8080}}}, {"name": "plain"}]}
    assert podnet.readiness_probes({"spec": spec}) == (podnet.Probe("proxy", 4191, "/ready"), podnet.Probe("app", 8080, None))
    pod = wait_until(lambda: (p := _ready_pods(core)) and p[0], 30, "a Ready pod")
    name = pod.metadata.name
    podnet.patch_status(api, NS, name, podnet.ready_patch(("echo",), False, podnet.now_rfc3339()))
    wait_until(lambda: name not in _slice_pods(discovery), 30, "the EndpointSlice to leave the not-ready pod out")
    after = core.read_namespaced_pod(name, NS)
    assert {c.type: c.status for c in after.status.conditions}["PodScheduled"] == "True"  # merged, not replaced
    podnet.patch_status(api, NS, name, podnet.ready_patch(("echo",), True, podnet.now_rfc3339()))
    wait_until(lambda: name in _slice_pods(discovery), 30, "the pod back in the EndpointSlice")


def test_the_pod_runner_retries_a_start_that_failed_once_and_gives_up_on_one_that_keeps_failing(api, k8s, tmp_path, monkeypatch):
    """A spawn can fail once (a CI run saw ``[Errno 14] Bad address: 'ip'``): the runner undoes the
    half-started pod and starts it again next round; one that fails every time becomes an error."""
    from tests.k8senv import pods as podnet

    core = client.CoreV1Api(api)
    ns = "podrunner"
    core.create_namespace({"metadata": {"name": ns}})
    sleeper = {"name": "app", "image": "meshdojo/not-pulled:0", "command": [sys.executable, "-c", "import time; time.sleep(600)"]}
    for name in ("flaky", "broken"):
        core.create_namespaced_pod(ns, {"metadata": {"name": name}, "spec": {"containers": [sleeper]}})
    failures = {"flaky": 1, "broken": 10**6}
    real_spawn = podnet.spawn

    def spawn(argv, log, **kwargs):
        pod = kwargs["env"]["HOSTNAME"]
        if failures[pod] > 0:
            failures[pod] -= 1
            raise OSError(14, "Bad address", "ip")
        return real_spawn(argv, log, **kwargs)

    monkeypatch.setattr(podnet, "spawn", spawn)
    try:
        with podnet.PodNetwork(tmp_path / "pods", api, k8s.networks.pods, {}) as net:
            net.follow({ns})
            wait_until(lambda: len(net.errors) == 1, 60, "the always-failing pod to become an error")
            wait_until(lambda: f"{ns}/flaky" in net.pods and net.pods[f"{ns}/flaky"].ready, 60, "the flaky pod to run")
            assert f"{ns}/broken" not in net.pods  # nothing half made is left running
            assert net.errors == [f"{ns}/broken: [Errno 14] Bad address: 'ip' (3 attempts)"]
            assert [h for h in net.hiccups if "flaky" in h] == [f"{ns}/flaky: [Errno 14] Bad address: 'ip' (attempt 1, retried)"]
            assert net.pods[f"{ns}/flaky"].procs["app"].poll() is None
    finally:
        core.delete_namespace(ns)


def test_a_service_account_without_a_role_is_refused(api, k8s):
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account(NS, {"metadata": {"name": "nobody"}})
    token = core.create_namespaced_service_account_token("nobody", NS, {"spec": {"audiences": [], "expirationSeconds": 600}}).status.token
    config = client.Configuration()
    config.host, config.ssl_ca_cert = k8s.server, str(k8s.root / "pki" / "ca.crt")
    config.api_key = {"authorization": f"Bearer {token}"}
    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(client.ApiClient(config)).list_namespaced_pod(NS)
    assert refused.value.status == 403
    assert "system:serviceaccount:smoke:nobody" in refused.value.body


def test_a_crd_schema_rejects_an_invalid_object_with_the_api_servers_error(api, k8s):
    extensions = client.ApiextensionsV1Api(api)
    extensions.create_custom_resource_definition({
        "metadata": {"name": "widgets.smoke.meshdojo.dev"},
        "spec": {"group": "smoke.meshdojo.dev", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                     "type": "object", "properties": {"spec": {"type": "object", "required": ["size"], "properties": {
                         "size": {"type": "integer", "minimum": 1}}}}}}}]}})

    def established():
        crd = extensions.read_custom_resource_definition("widgets.smoke.meshdojo.dev")
        return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])

    wait_until(established, 30, "the CRD to be Established")
    custom = client.CustomObjectsApi(api)
    widget = {"apiVersion": "smoke.meshdojo.dev/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 0}}
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object("smoke.meshdojo.dev", "v1", NS, "widgets", widget)
    assert refused.value.status == 422
    assert "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1" in refused.value.body
    widget["spec"]["size"] = 3
    assert custom.create_namespaced_custom_object("smoke.meshdojo.dev", "v1", NS, "widgets", widget)["spec"]["size"] == 3


def test_kubectl_apply_server_side(api, k8s):
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: smoke\ndata:\n  lesson: one\n"
    out = k8s.kubectl("apply", "--server-side", "--field-manager", "meshdojo-test", "-f", "-", input=manifest)
    assert "configmap/applied serverside-applied" in out.stdout
    again = k8s.kubectl("apply", "--server-side", "--field-manager", "meshdojo-test", "-f", "-", input=manifest.replace("one", "two"))
    assert "serverside-applied" in again.stdout
    data = client.CoreV1Api(api).read_namespaced_config_map("applied", NS).data
    assert data == {"lesson": "two"}
    assert "v1.37" in k8s.kubectl("version", "-o", "json").stdout  # built with the version stamped in
