"""Istio's Secure Gateways task on a real bookinfo sandbox, as a learner runs it: openssl makes
the certificates, ``meshdojo create secret tls`` stores them, the demo's policy file adds an
HTTPS listener, and curl (``--cacert``, ``--resolve``) gets the product page over TLS; plain
HTTP is redirected to https; ``get gateway``, ``get secrets`` and ``check`` say what is there and
what is missing; a restarted gateway keeps its TLS port."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from sandbox.processes import wait_until
from tests.meshkit import Cli
from tests.test_sandbox import BOOKINFO_POLICIES

HOST = "bookinfo.example.com"


def openssl_as_istios_task(folder: Path) -> None:
    """The task's three openssl commands: an example.com CA, then a certificate it signs for the host."""
    run = lambda *argv: subprocess.run(["openssl", *argv], cwd=folder, check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-sha256", "-nodes", "-days", "365", "-newkey", "rsa:2048", "-subj", "/O=example Inc./CN=example.com",
        "-keyout", "example.com.key", "-out", "example.com.crt")
    run("req", "-out", f"{HOST}.csr", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{HOST}.key",
        "-subj", f"/CN={HOST}/O=bookinfo organization")
    run("x509", "-req", "-sha256", "-days", "365", "-CA", "example.com.crt", "-CAkey", "example.com.key", "-set_serial", "0",
        "-in", f"{HOST}.csr", "-out", f"{HOST}.crt")


def curl(folder: Path, port: int, path: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "--max-time", "10",
                           "--cacert", str(folder / "example.com.crt"), "--resolve", f"{HOST}:{port}:127.0.0.1",
                           f"https://{HOST}:{port}{path}", *extra], capture_output=True, text=True)


@pytest.mark.timeout(180)
def test_istios_secure_gateways_task_on_bookinfo(cli: Cli, tmp_path: Path):
    openssl_as_istios_task(tmp_path)
    cli.run("up", "--no-tui", "--demo", "bookinfo")
    gateway = cli.status()["gateways"][0]
    tls_port = int(gateway["https"].rsplit(":", 1)[1].strip("/"))

    said = cli.run("apply", "-f", str(BOOKINFO_POLICIES / "bookinfo-gateway-https.yaml")).stderr
    assert "listener https: Secret bookinfo/bookinfo-credential is not there" in said, said
    checked = cli.run("check", check=False).stdout
    assert "meshdojo create secret tls bookinfo-credential --cert FILE --key FILE -n bookinfo" in checked, checked
    assert curl(tmp_path, tls_port, "/productpage").returncode != 0  # no certificate yet: no handshake

    def listener_refs() -> tuple[str, str]:  # as kubectl get gateway -o yaml shows it on a cluster
        (shown,) = yaml.safe_load_all(cli.run("get", "gateway/bookinfo-gateway", "-n", "bookinfo", "-o", "yaml").stdout)
        (https,) = [item for item in shown["status"]["listeners"] if item["name"] == "https"]
        refs = next(c for c in https["conditions"] if c["type"] == "ResolvedRefs")
        return refs["status"], refs["reason"]

    assert listener_refs() == ("False", "InvalidCertificateRef")

    bad = cli.run("create", "secret", "tls", "bookinfo-credential", "-n", "bookinfo", "--cert", str(tmp_path / f"{HOST}.crt"),
                  "--key", str(tmp_path / "example.com.key"), check=False)  # the CA's key, not the certificate's
    assert bad.returncode == 1 and "tls.key: is not the key of tls.crt's first certificate" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr
    made = cli.run("create", "secret", "tls", "bookinfo-credential", "-n", "bookinfo", "--cert", str(tmp_path / f"{HOST}.crt"),
                   "--key", str(tmp_path / f"{HOST}.key"))
    assert made.stdout.strip() == "secret/bookinfo-credential created (namespace bookinfo)"
    wait_until(lambda: curl(tmp_path, tls_port, "/productpage").stdout.startswith("200"), 10, "the product page over TLS")
    assert listener_refs() == ("True", "ResolvedRefs")
    assert curl(tmp_path, tls_port, "/").stdout.startswith("404")  # only what the route matches gets in
    plain = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-H", f"Host: {HOST}",
                            gateway["url"] + "productpage"], capture_output=True, text=True).stdout
    assert plain == f"301 https://{HOST}/productpage", plain  # the task's redirect to https (port 443, as Gateway API says)

    listed = cli.run("get", "gateway").stdout.splitlines()
    assert listed[1].split()[:6] == ["bookinfo", "bookinfo-gateway", "istio", f"{gateway['url']},{gateway['https']}", "True", "2"], listed
    secrets = json.loads(cli.run("get", "secrets", "-n", "bookinfo", "-o", "json").stdout)
    assert [(s["name"], s["hosts"], s["usedBy"]) for s in secrets] == [("bookinfo-credential", [HOST], ["bookinfo/bookinfo-gateway:https"])]
    assert "PRIVATE KEY" not in cli.run("get", "secrets", "-A", "-o", "yaml").stdout
    assert "Secret bookinfo-credential" not in cli.run("check", check=False).stdout
    described = cli.run("describe", "deploy/bookinfo-ingress").stdout
    assert f"tls           port {tls_port}, by server name (SNI): {HOST} -> Secret bookinfo-credential (served)" in described, described
    assert f"HTTPRoute bookinfo/bookinfo-https on Gateway bookinfo/bookinfo-gateway ({HOST}, HTTPS)" in described
    # fortio's -cacert: the load generator through the TLS port, as the host, the CA trusted
    loaded = json.loads(cli.run("load", "svc/productpage", "/productpage", "--https", HOST, "--cacert", str(tmp_path / "example.com.crt"),
                                "-n", "5", "-c", "1", "-o", "json").stdout)
    assert loaded["codes"] == {"200": {"count": 5, "share": 1.0}}, loaded
    wrong_ca = cli.run("load", "svc/productpage", "/productpage", "--https", HOST, "--cacert", str(tmp_path / f"{HOST}.crt"),
                       "-n", "2", "-o", "json")  # not the CA that signed it: every handshake refused by the client
    assert "200" not in json.loads(wrong_ca.stdout)["codes"], wrong_ca.stdout

    # the gateway killed: it comes back on the same TLS port, with the certificate
    cli.run("kill", "bookinfo-ingress")
    wait_until(lambda: curl(tmp_path, tls_port, "/productpage").stdout.startswith("200"), 30, "the restarted gateway's TLS port")
    assert cli.status()["gateways"][0]["https"] == gateway["https"]
    relabelled = wait_until(lambda: (r := cli.run("describe", "deploy/bookinfo-ingress", check=False)).returncode == 0 and r.stdout,
                            30, "the restarted gateway registered again")  # ... with its labels (Istio's policies select them)
    assert "labels        app=bookinfo-ingress, istio=ingressgateway, meshdojo.dev/gateway=bookinfo" in relabelled, relabelled

    cli.run("delete", "secret", "bookinfo-credential", "-n", "bookinfo")
    wait_until(lambda: curl(tmp_path, tls_port, "/productpage").returncode != 0, 10, "the handshake to fail without the Secret")
    gone = cli.run("delete", "secret/bookinfo-credential", "-n", "bookinfo", check=False)
    assert gone.returncode == 1 and "no Secret 'bookinfo-credential' in namespace bookinfo" in gone.stderr


@pytest.mark.timeout(120)
def test_a_secret_in_a_file_applies_with_its_gateway_or_not_at_all(cli: Cli, tmp_path: Path):
    openssl_as_istios_task(tmp_path)
    cli.run("up", "--no-tui", "--demo", "bookinfo")
    cert, key = ((tmp_path / f"{HOST}.{ext}").read_text() for ext in ("crt", "key"))
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
              "metadata": {"name": "bookinfo-credential"}, "stringData": {"tls.crt": cert, "tls.key": key}}
    gateway = (BOOKINFO_POLICIES / "bookinfo-gateway-https.yaml").read_text()
    broken = tmp_path / "broken.yaml"  # the Secret, and a route the validator refuses: nothing of it is applied
    broken.write_text(yaml.safe_dump(secret) + "---\n" + gateway.replace("statusCode: 301", "statusCode: 399"))
    refused = cli.run("apply", "-n", "bookinfo", "-f", str(broken), check=False)
    assert refused.returncode == 1 and "statusCode" in refused.stderr, refused.stderr
    assert json.loads(cli.run("get", "secrets", "-A", "-o", "json").stdout) == []
    whole = tmp_path / "whole.yaml"
    whole.write_text(yaml.safe_dump(secret) + "---\n" + gateway)
    applied = cli.run("apply", "-n", "bookinfo", "-f", str(whole))
    assert "secret/bookinfo-credential created (namespace bookinfo)" in applied.stdout, applied.stdout
    assert "Secret bookinfo/bookinfo-credential is not there" not in applied.stderr, applied.stderr  # it came in the same file
    port = int(cli.status()["gateways"][0]["https"].rsplit(":", 1)[1].strip("/"))
    wait_until(lambda: curl(tmp_path, port, "/productpage").stdout.startswith("200"), 10, "the product page over TLS")
