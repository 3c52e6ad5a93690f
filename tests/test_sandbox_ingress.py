"""Istio's *Kubernetes Ingress* task on a real bookinfo sandbox, as a learner runs it: the
IngressClass and the Ingress applied from one file, curl with the task's ``-H Host:`` gets the
paths of its rule and 404 for the rest, TLS for its ``tls`` hosts with the task's openssl
certificates; another controller's class, or none, is refused by name and nothing is applied.
On the way, an AuthorizationPolicy's ``ports`` name productpage's declared port, as on a cluster."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from sandbox.processes import wait_until
from tests.meshkit import Cli
from tests.test_sandbox import BOOKINFO_POLICIES
from tests.test_sandbox_tls import HOST, curl, openssl_as_istios_task

INGRESS_FILE = BOOKINFO_POLICIES / "bookinfo-ingress.yaml"


def code(url: str, host: str = HOST) -> str:
    return subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "-H", f"Host:{host}", url],
                          capture_output=True, text=True).stdout


@pytest.mark.timeout(180)
def test_istios_kubernetes_ingress_task_on_bookinfo(cli: Cli, tmp_path: Path):
    cli.run("up", "--no-tui", "--demo", "bookinfo")
    gateway = cli.status()["gateways"][0]
    url, tls_port = gateway["url"], int(gateway["https"].rsplit(":", 1)[1].strip("/"))
    # no route yet: the gateway sends everything to productpage, whatever the host or path
    assert code(url + "headers") == "200" and code(url + "productpage", "anything.example.org") == "200"

    ingress_class, ingress = yaml.safe_load_all(INGRESS_FILE.read_text())
    refused = [  # each refused by name, and nothing of the file applied
        ({**ingress, "spec": {**ingress["spec"], "ingressClassName": "nginx"}}, "spec.ingressClassName: 'nginx' is another controller's class"),
        ({**ingress, "spec": {k: v for k, v in ingress["spec"].items() if k != "ingressClassName"}},
         "spec.ingressClassName: no class: which controller serves this Ingress is not said"),
        ({**ingress_class, "spec": {"controller": "k8s.io/ingress-nginx"}}, "spec.controller: 'k8s.io/ingress-nginx' is not meshdojo's gateways"),
    ]
    for i, (bad, said) in enumerate(refused):
        path = tmp_path / f"bad-{i}.yaml"
        path.write_text(yaml.safe_dump_all([bad, ingress] if bad["kind"] == "IngressClass" else [ingress_class, bad]))
        result = cli.run("apply", "-f", str(path), check=False)
        assert result.returncode == 1 and said in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert "No ingress resources found." in cli.run("get", "ingress", "-n", "bookinfo").stdout

    applied = cli.run("apply", "-f", str(INGRESS_FILE))
    assert applied.stdout.splitlines() == [
        "ingressclass/istio served by meshdojo's gateways (nothing to store: they serve this class already)",
        "ingress/ingress created (namespace bookinfo)"], applied.stdout
    # the task's curls: the rule's host and paths get in (Exact /productpage, Prefix /static), nothing else
    wait_until(lambda: code(url + "productpage") == "200", 10, "the Ingress's route at the gateway")
    assert code(url + "headers") == "404"
    said = subprocess.run(["curl", "-sS", "--max-time", "10", "-H", f"Host:{HOST}", url + "headers"], capture_output=True, text=True).stdout
    assert f"no rule of the routes attached to this gateway (Ingress bookinfo/ingress) matches GET /headers (host {HOST})" in said, said
    assert code(url + "static/bootstrap.css") != "404"  # a prefix: whole segments below it ...
    assert code(url + "staticx") == "404"  # ... not a longer name
    assert code(url + "productpage", "other.example.com") == "404"  # another host: no rule
    listed = cli.run("get", "ingress", "-n", "bookinfo").stdout.splitlines()
    assert listed[1].split()[:4] == ["bookinfo", "Ingress", "ingress", HOST] and "class istio, ports 80" in listed[1], listed
    described = cli.run("describe", "deploy/bookinfo-ingress").stdout
    assert f"Ingress bookinfo/ingress as route bookinfo/ingress ({HOST})" in described, described

    # TLS, as an Ingress writes it: the task's certificate in a Secret of the Ingress's namespace
    openssl_as_istios_task(tmp_path)
    secured = {**ingress, "spec": {**ingress["spec"], "tls": [{"hosts": [HOST], "secretName": "ingress-credential"}]}}
    (tmp_path / "tls.yaml").write_text(yaml.safe_dump(secured))
    warned = cli.run("apply", "-f", str(tmp_path / "tls.yaml")).stderr
    assert "Ingress bookinfo/ingress: spec.tls[0]: Secret bookinfo/ingress-credential is not there" in warned, warned
    assert "meshdojo create secret tls ingress-credential" in cli.run("check", check=False).stdout
    cli.run("create", "secret", "tls", "ingress-credential", "-n", "bookinfo", "--cert", str(tmp_path / f"{HOST}.crt"),
            "--key", str(tmp_path / f"{HOST}.key"))
    wait_until(lambda: curl(tmp_path, tls_port, "/productpage").stdout.startswith("200"), 10, "the product page over TLS")
    assert curl(tmp_path, tls_port, "/headers").stdout.startswith("404")
    assert code(url + "productpage") == "200"  # plain HTTP stays served: an Ingress's rules are on both ports
    secrets = json.loads(cli.run("get", "secrets", "-n", "bookinfo", "-o", "json").stdout)
    assert [(s["name"], s["usedBy"]) for s in secrets] == [("ingress-credential", ["ingress bookinfo/ingress"])]
    assert "Secret ingress-credential" not in cli.run("check", check=False).stdout
    described = cli.run("describe", "deploy/bookinfo-ingress").stdout
    assert f"{HOST} -> Secret ingress-credential (served)" in described, described

    # an AuthorizationPolicy's ports are the pod's declared port (productpage's 9080) here too, as on a cluster
    deny = tmp_path / "deny-9080.yaml"
    deny.write_text(yaml.safe_dump({"apiVersion": "policy.meshdojo.dev/v1alpha1", "kind": "AuthorizationPolicy",
                                    "metadata": {"name": "deny-9080", "namespace": "bookinfo"},
                                    "spec": {"selector": {"matchLabels": {"app": "productpage"}}, "action": "DENY",
                                             "rules": [{"to": [{"operation": {"ports": ["9080"]}}]}]}}))
    cli.run("apply", "-f", str(deny))
    wait_until(lambda: code(url + "productpage") == "403", 10, "the DENY of productpage's port 9080")
    cli.run("delete", "-f", str(deny))
    wait_until(lambda: code(url + "productpage") == "200", 10, "productpage open again")

    deleted = cli.run("delete", "-f", str(INGRESS_FILE))
    assert "Ingress bookinfo/ingress deleted" in deleted.stdout, deleted.stdout
    wait_until(lambda: code(url + "productpage", "other.example.com") == "200", 10, "the gateway open again")
