"""Sidecar injection as a pure function, checked against golden files (the way Linkerd's and
Istio's injector tests are): inputs under tests/golden/inject/, each with its expected output
beside it. After an intended change, regenerate them and read the diff:

    MESHDOJO_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_injector.py
"""

from __future__ import annotations

import base64
import copy
import json
import os
from pathlib import Path

import pytest
import yaml

from controlplane import injector
from controlplane.injector import InjectConfig

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "inject"
IMAGE = "meshdojo/meshdojo:0.1.0-0123456789ab"
CASES = {
    # input file, native sidecars (API server >= 1.29)?, golden file
    "emojivoto": (ROOT / "demo-apps/emojivoto/manifests.yaml", True, "emojivoto.golden.yaml"),
    "bookinfo": (ROOT / "demo-apps/bookinfo/manifests.yaml", True, "bookinfo.golden.yaml"),
    "pod-before-1.29": (GOLDEN / "pod-and-service.yaml", False, "pod-and-service.legacy.golden.yaml"),
    "pod": (GOLDEN / "pod-and-service.yaml", True, "pod-and-service.golden.yaml"),
}


def _inject_file(path: Path, native: bool) -> list:
    config = InjectConfig(image=IMAGE, native_sidecars=native)
    return [injector.inject_document(doc, config) for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@pytest.mark.parametrize("case", sorted(CASES))
def test_injection_matches_the_golden_file(case):
    source, native, golden_name = CASES[case]
    got = yaml.safe_dump_all(_inject_file(source, native), sort_keys=False)
    golden = GOLDEN / golden_name
    if os.environ.get("MESHDOJO_UPDATE_GOLDEN"):
        golden.write_text(got)
    assert golden.exists(), f"no golden file {golden}: run with MESHDOJO_UPDATE_GOLDEN=1 and review it"
    assert got == golden.read_text(), f"injection of {source.name} changed: regenerate with MESHDOJO_UPDATE_GOLDEN=1 and review the diff"


@pytest.mark.parametrize("case", sorted(CASES))
def test_injecting_twice_changes_nothing(case):
    source, native, _ = CASES[case]
    once = _inject_file(source, native)
    config = InjectConfig(image=IMAGE, native_sidecars=native)
    assert [injector.inject_document(copy.deepcopy(d), config) for d in once] == once


def test_what_injection_does_to_a_pod():
    docs = _inject_file(GOLDEN / "pod-and-service.yaml", True)
    pod, service = docs
    assert service == list(yaml.safe_load_all((GOLDEN / "pod-and-service.yaml").read_text()))[1]
    proxy = pod["spec"]["initContainers"][0]
    assert proxy["name"] == "meshdojo-proxy" and proxy["restartPolicy"] == "Always" and proxy["image"] == IMAGE
    args = proxy["args"]
    assert args[args.index("--inbound-port") + 1] == "8080"  # the port the Service targets is the proxy's now
    assert args[args.index("--app-port") + 1] == "14080"
    app = pod["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in app["env"]}
    assert env == {"GREETING": "hi", "PORT": "14080", "BIND_HOST": "127.0.0.1", "HTTP_PROXY": "http://127.0.0.1:4140",
                   "http_proxy": "http://127.0.0.1:4140", "NO_PROXY": "127.0.0.1,localhost"}
    token = next(v for v in pod["spec"]["volumes"] if v["name"] == "meshdojo-token")["projected"]["sources"][0]["serviceAccountToken"]
    assert token["audience"] == "meshdojo" and token["expirationSeconds"] <= 3600
    sc = proxy["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and sc["capabilities"] == {"drop": ["ALL"]}
    legacy = _inject_file(GOLDEN / "pod-and-service.yaml", False)[0]
    assert "initContainers" not in legacy["spec"] and legacy["spec"]["containers"][0]["name"] == "meshdojo-proxy"


def test_an_app_already_on_the_private_port_gets_another():
    meta, spec = injector.inject_pod({}, {"containers": [{"name": "a", "ports": [{"containerPort": 14080}]}]}, InjectConfig(IMAGE))
    args = spec["initContainers"][0]["args"]
    assert args[args.index("--app-port") + 1] == "14081"


def test_the_deployment_is_read_from_the_replicaset_owner():
    meta = {"labels": {"pod-template-hash": "5d8f7c9b4"}, "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d8f7c9b4"}]}
    assert injector.deployment_of(meta) == "web"
    assert injector.deployment_of({"ownerReferences": [{"kind": "StatefulSet", "name": "db"}]}) == ""


@pytest.mark.parametrize(("pod", "namespace", "wanted"), [
    ({"annotations": {"meshdojo.dev/inject": "enabled"}}, None, True),
    ({"annotations": {"meshdojo.dev/inject": "disabled"}}, {"annotations": {"meshdojo.dev/inject": "enabled"}}, False),
    ({}, {"annotations": {"meshdojo.dev/inject": "enabled"}}, True),
    ({}, {"labels": {"meshdojo.dev/inject": "enabled"}}, True),
    ({}, {}, False),
])
def test_the_pods_annotation_wins_over_the_namespaces(pod, namespace, wanted):
    assert injector.wants_injection(pod, namespace) is wanted


def _review(pod: dict, namespace: str = "emojivoto", operation: str = "CREATE") -> dict:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "7f0b2e4c", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": operation,
                        "namespace": namespace, "object": pod}}


def _apply_patch(doc: dict, ops: list[dict]) -> dict:
    """Just enough RFC 6902 for the injector's patches: add/replace of /metadata/x and /spec/x."""
    out = copy.deepcopy(doc)
    for op in ops:
        assert op["op"] in ("add", "replace")
        _, top, key = op["path"].split("/")
        out.setdefault(top, {})[key] = op["value"]
    return out


def _web_pod() -> dict:
    demo = list(yaml.safe_load_all((ROOT / "demo-apps/emojivoto/manifests.yaml").read_text()))
    web = next(d for d in demo if d and d["kind"] == "Deployment" and d["metadata"]["name"] == "web")
    meta = {**web["spec"]["template"]["metadata"], "namespace": "emojivoto", "labels": {"app": "web", "pod-template-hash": "abc12"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-abc12"}], "generateName": "web-abc12-"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": web["spec"]["template"]["spec"]}


def test_the_webhook_answers_with_a_patch_that_makes_the_injected_pod():
    pod = _web_pod()
    answer = injector.review(_review(pod), InjectConfig(IMAGE), namespace_meta={})
    response = answer["response"]
    assert answer["kind"] == "AdmissionReview" and response["uid"] == "7f0b2e4c" and response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    patched = _apply_patch(pod, json.loads(base64.b64decode(response["patch"])))
    meta, spec = injector.inject_pod(pod["metadata"], pod["spec"], InjectConfig(IMAGE))
    assert patched == {**pod, "metadata": meta, "spec": spec}
    args = spec["initContainers"][0]["args"]
    assert args[args.index("--deployment") + 1] == "web"
    # an injected pod coming back (a re-invocation) is admitted unchanged
    again = injector.review(_review(patched), InjectConfig(IMAGE), namespace_meta={})["response"]
    assert "patch" not in again and again["allowed"] is True


def test_linkerds_default_inbound_policy_reaches_the_proxy_from_the_pod_or_its_namespace():
    def policy_arg(pod: dict, namespace_meta: dict) -> tuple[str | None, list]:
        response = injector.review(_review(pod), InjectConfig(IMAGE), namespace_meta=namespace_meta)["response"]
        spec = _apply_patch(pod, json.loads(base64.b64decode(response["patch"])))["spec"]
        args = spec["initContainers"][0]["args"]
        return (args[args.index("--default-inbound-policy") + 1] if "--default-inbound-policy" in args else None,
                response.get("warnings", []))

    key = "config.linkerd.io/default-inbound-policy"
    assert policy_arg(_web_pod(), {}) == (None, [])  # the proxy's own default: all-unauthenticated
    assert policy_arg(_web_pod(), {"annotations": {key: "deny"}}) == ("deny", [])
    pod = _web_pod()
    pod["metadata"]["annotations"][key] = "all-authenticated"
    assert policy_arg(pod, {"annotations": {key: "deny"}}) == ("all-authenticated", [])  # the pod's wins
    pod["metadata"]["annotations"][key] = "closed"
    arg, warnings = policy_arg(pod, {})  # injected all the same, and kubectl shows why the value was not used
    assert arg is None and warnings[0].startswith(f"meshdojo: metadata.annotations.{key}: expected one of all-unauthenticated")
    manual = {"apiVersion": "v1", "kind": "Pod", **copy.deepcopy(pod)}
    with pytest.raises(ValueError, match="expected one of"):  # `meshdojo inject -f`: an error, nothing printed
        injector.inject_document(manual, InjectConfig(IMAGE))


def test_linkerds_access_log_annotation_reaches_the_proxy_and_a_wrong_one_is_warned():
    key = "config.linkerd.io/access-log"
    pod = _web_pod()
    pod["metadata"]["annotations"][key] = "json"
    response = injector.review(_review(pod), InjectConfig(IMAGE), namespace_meta={"annotations": {key: "apache"}})["response"]
    args = _apply_patch(pod, json.loads(base64.b64decode(response["patch"])))["spec"]["initContainers"][0]["args"]
    assert args[args.index("--access-log") + 1] == "json" and "warnings" not in response  # the pod's wins
    pod["metadata"]["annotations"][key] = "syslog"
    response = injector.review(_review(pod), InjectConfig(IMAGE), namespace_meta={})["response"]
    args = _apply_patch(pod, json.loads(base64.b64decode(response["patch"])))["spec"]["initContainers"][0]["args"]
    assert "--access-log" not in args
    assert response["warnings"] == [f"meshdojo: metadata.annotations.{key}: expected one of apache, json, got 'syslog' "
                                    f"(Linkerd's access logging: https://linkerd.io/2/features/access-logging/); left out: the proxy uses Linkerd's default"]


@pytest.mark.parametrize("change", ["excluded-namespace", "host-network", "not-annotated", "update"])
def test_the_webhook_admits_unchanged_what_it_must_not_inject(change):
    pod = _web_pod()
    namespace, operation = "emojivoto", "CREATE"
    if change == "excluded-namespace":
        namespace = "kube-system"
    elif change == "host-network":
        pod["spec"]["hostNetwork"] = True
    elif change == "not-annotated":
        pod["metadata"]["annotations"] = {}
    else:
        operation = "UPDATE"
    response = injector.review(_review(pod, namespace, operation), InjectConfig(IMAGE), namespace_meta={})["response"]
    assert response == {"uid": "7f0b2e4c", "allowed": True}


def test_native_sidecars_from_the_servers_version():
    assert injector.native_sidecars_supported("1", "29")
    assert injector.native_sidecars_supported("1", "37+")
    assert not injector.native_sidecars_supported("1", "28")
