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


def openssl_client_as_istios_task(folder: Path) -> None:
    """The task's client certificate, for mutual TLS: signed by the same example.com CA."""
    run = lambda *argv: subprocess.run(["openssl", *argv], cwd=folder, check=True, capture_output=True)  # noqa: E731
    run("req", "-out", "client.example.com.csr", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.example.com.key",
        "-subj", "/CN=client.example.com/O=client organization")
    run("x509", "-req", "-days", "365", "-CA", "example.com.crt", "-CAkey", "example.com.key", "-set_serial", "1",
        "-in", "client.example.com.csr", "-out", "client.example.com.crt")


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
    assert "200" not in json.loads(wrong_ca.stdout)["codes"] and "tls_server_not_trusted" in json.loads(wrong_ca.stdout)["errors"], wrong_ca.stdout

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


@pytest.mark.timeout(180)
def test_istios_mutual_tls_ingress_gateway_on_bookinfo(cli: Cli, tmp_path: Path):
    """The task's last part: the Secret made again with ca.crt (kubectl create secret generic),
    the listener's option MUTUAL; curl without a client certificate is refused, with one gets the
    page; stat counts the refusals; load sends a client certificate as fortio does."""
    openssl_as_istios_task(tmp_path)
    openssl_client_as_istios_task(tmp_path)
    cli.run("up", "--no-tui", "--demo", "bookinfo")
    tls_port = int(cli.status()["gateways"][0]["https"].rsplit(":", 1)[1].strip("/"))
    server = [f"--from-file=tls.crt={tmp_path / f'{HOST}.crt'}", f"--from-file=tls.key={tmp_path / f'{HOST}.key'}"]
    client = ["--cert", str(tmp_path / "client.example.com.crt"), "--key", str(tmp_path / "client.example.com.key")]

    # a generic Secret without ca.crt: the MUTUAL listener has nothing to check clients against
    cli.run("create", "secret", "generic", "bookinfo-credential", "-n", "bookinfo", *server)
    said = cli.run("apply", "-f", str(BOOKINFO_POLICIES / "bookinfo-gateway-mtls.yaml")).stderr
    assert "Secret bookinfo/bookinfo-credential has no ca.crt, which gateway.istio.io/tls-terminate-mode: MUTUAL" in said, said
    assert "meshdojo create secret generic bookinfo-credential" in cli.run("check", check=False).stdout
    refused = wait_until(lambda: (r := curl(tmp_path, tls_port, "/productpage", *client)).returncode != 0 and "unrecognized name" in r.stderr
                         and r, 10, "the handshake refused with TLS's unrecognized_name alert")
    assert "Traceback" not in refused.stderr
    unserved = json.loads(cli.run("load", "svc/productpage", "/productpage", "--https", HOST, "--cacert", str(tmp_path / "example.com.crt"),
                                  *client, "-n", "2", "-o", "json").stdout)
    assert set(unserved["errors"]) == {"tls_unrecognized_name"}, unserved
    missing = cli.run("create", "secret", "generic", "x", "-n", "bookinfo", f"--from-file=ca.crt={tmp_path / 'nope.crt'}", check=False)
    assert missing.returncode == 1 and "--from-file=ca.crt=" in missing.stderr and "No such file" in missing.stderr, missing.stderr

    # the task: delete the Secret, make it again with the CA the clients' certificates are checked against
    cli.run("delete", "secret", "bookinfo-credential", "-n", "bookinfo")
    cli.run("create", "secret", "generic", "bookinfo-credential", "-n", "bookinfo", *server,
            f"--from-file=ca.crt={tmp_path / 'example.com.crt'}")
    table = cli.run("get", "secrets", "-n", "bookinfo").stdout.splitlines()
    assert "CLIENT CA" in table[0] and "Opaque" in table[1] and "CN=example.com,O=example Inc." in table[1], table
    wait_until(lambda: curl(tmp_path, tls_port, "/productpage", *client).stdout.startswith("200"), 10, "the page for a client with a certificate")
    without = curl(tmp_path, tls_port, "/productpage")
    assert without.returncode != 0 and not without.stdout.startswith("200"), without  # the task's "see how it fails"
    def refused_in_stat() -> str | None:  # one more refusal each time, so stat's window always holds one
        curl(tmp_path, tls_port, "/productpage")
        out = cli.run("stat", "deploy", "-n", "bookinfo").stdout
        return out if "no_client_certificate" in out else None

    stat = wait_until(refused_in_stat, 15, "stat to count the refused handshake")
    assert "TLS_REFUSED" in stat.splitlines()[0], stat
    described = cli.run("describe", "deploy/bookinfo-ingress").stdout
    assert f"{HOST} -> Secret bookinfo-credential (served; MUTUAL: clients need a certificate its ca.crt signed)" in described, described
    assert "the client presented no certificate, which this MUTUAL listener requires" in cli.run("logs", "bookinfo-ingress").stdout

    # fortio's -cert/-key: the load generator with the client's certificate, and without it
    ca = ["--https", HOST, "--cacert", str(tmp_path / "example.com.crt"), "-n", "4", "-c", "1", "-o", "json"]
    assert json.loads(cli.run("load", "svc/productpage", "/productpage", *ca, *client).stdout)["codes"] == {"200": {"count": 4, "share": 1.0}}
    refused = json.loads(cli.run("load", "svc/productpage", "/productpage", *ca).stdout)
    assert "200" not in refused["codes"] and set(refused["errors"]) == {"tls_closed_after_handshake"}, refused
    said = cli.run("load", "svc/productpage", "/productpage", *ca[:-2]).stdout  # as text: what the error means
    assert "tls_closed_after_handshake: the gateway ended the connection after the handshake: a MUTUAL listener wants" in said, said
