"""Steps of the cluster traffic test (tests/test_kube_traffic.py) that stand on their own:
Istio's Secure Gateways task, its mutual TLS part included, at the namespace's gateway pod."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from controlplane.injector import GATEWAY_HTTPS_PORT
from sandbox.processes import wait_until
from tests.test_kube_backend import Learner

NS = "emojivoto"


def stat_rows(learner: Learner) -> dict[str, dict]:
    """``meshdojo stat`` over the last 10 s, by deployment."""
    return {r["name"]: r for r in json.loads(learner.run("stat", "-o", "json", "-t", "10s").stdout)}


def secure_gateway(k8s, learner: Learner, net, tmp_path: Path) -> None:
    from tests.examplecerts import ca_pem, example_ca, https_get, server_cert

    example = example_ca()
    for name, text in zip(("web.crt", "web.key"), server_cert(example, "web.example.com"), strict=True):
        (tmp_path / name).write_text(text)
    secure = tmp_path / "secure.yaml"
    secure.write_text(f"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: web-gateway, namespace: {NS}}}\n"
                      "spec:\n  gatewayClassName: istio\n  listeners:\n  - {name: https, port: 443, protocol: HTTPS, hostname: web.example.com,"
                      " tls: {mode: Terminate, certificateRefs: [{name: web-credential}]}}\n---\n"
                      f"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: web, namespace: {NS}}}\n"
                      "spec:\n  parentRefs: [{name: web-gateway, sectionName: https}]\n  hostnames: [web.example.com]\n"
                      "  rules: [{backendRefs: [{name: web, port: 80}]}]\n")
    learner.run("apply", "-f", str(secure))

    def listener_refs() -> tuple[str, str] | None:
        status = json.loads(k8s.kubectl("get", "gateway/web-gateway", "-n", NS, "-o", "json").stdout).get("status", {})
        conditions = {c["type"]: c for item in status.get("listeners", []) for c in item["conditions"]}
        return (conditions["ResolvedRefs"]["status"], conditions["ResolvedRefs"]["reason"]) if conditions else None

    wait_until(lambda: listener_refs() == ("False", "InvalidCertificateRef"), 30, "the listener to say its Secret is missing", interval=0.5)
    k8s.kubectl("create", "secret", "tls", "web-credential", "-n", NS, "--cert", str(tmp_path / "web.crt"), "--key", str(tmp_path / "web.key"))
    gateway_ip = next(p.ip for p in net.pods.values() if p.name.startswith(f"{NS}-ingress-"))

    def over_tls(cadata: str, client: tuple[str, str] | None = None) -> tuple | None:
        try:
            return asyncio.run(https_get(GATEWAY_HTTPS_PORT, "web.example.com", "/api/list", cadata, address=gateway_ip, client=client))
        except (TimeoutError, OSError):  # no certificate yet (or, for mutual TLS, none from the client): refused
            return None

    answer = wait_until(lambda: (r := over_tls(ca_pem(example))) and r[0] == 200 and r, 30, "web's page over TLS at the gateway pod",
                        interval=0.5)
    assert answer[3] == "web.example.com" and "route=emojivoto/web#0" in answer[1]["x-meshdojo-fate"], answer
    wait_until(lambda: listener_refs() == ("True", "ResolvedRefs"), 30, "the listener's ResolvedRefs once the Secret is read", interval=0.5)
    listed = json.loads(learner.run("get", "secrets", "-n", NS, "-o", "json").stdout)
    assert [(s["name"], s["usedBy"]) for s in listed] == [("web-credential", [f"{NS}/web-gateway:https"])], listed
    # rotated with meshdojo's own verb (on a cluster it applies the Secret to the cluster): the next client gets the new one
    renewed = example_ca("example Inc. 2")
    for name, text in zip(("web.crt", "web.key"), server_cert(renewed, "web.example.com"), strict=True):
        (tmp_path / name).write_text(text)
    made = learner.run("create", "secret", "tls", "web-credential", "-n", NS, "--cert", str(tmp_path / "web.crt"),
                       "--key", str(tmp_path / "web.key")).stdout
    assert made.strip() == f"secret/web-credential serverside-applied (namespace {NS})", made
    wait_until(lambda: (r := over_tls(ca_pem(renewed))) and r[0] == 200, 30, "the rotated certificate at the gateway pod", interval=0.5)

    # the task's mutual TLS part: the Secret made again as a generic one with ca.crt, the listener's option MUTUAL
    (tmp_path / "ca.crt").write_text(ca_pem(renewed))
    client = server_cert(renewed, "client.example.com")
    k8s.kubectl("delete", "secret", "web-credential", "-n", NS)
    k8s.kubectl("create", "secret", "generic", "web-credential", "-n", NS, f"--from-file=tls.crt={tmp_path / 'web.crt'}",
                f"--from-file=tls.key={tmp_path / 'web.key'}", f"--from-file=ca.crt={tmp_path / 'ca.crt'}")
    secure.write_text(secure.read_text().replace("certificateRefs: [{name: web-credential}]}",
                                                 "certificateRefs: [{name: web-credential}], "
                                                 "options: {gateway.istio.io/tls-terminate-mode: MUTUAL}}"))
    learner.run("apply", "-f", str(secure))
    wait_until(lambda: (r := over_tls(ca_pem(renewed), client)) and r[0] == 200, 30, "the page for a client with a certificate",
               interval=0.5)
    assert over_tls(ca_pem(renewed)) is None  # no client certificate: refused
    listed = json.loads(learner.run("get", "secrets", "-n", NS, "-o", "json").stdout)
    assert [(s["type"], s.get("clientCA")) for s in listed] == [("Opaque", "CN=example.com,O=example Inc. 2")], listed
    def refusals() -> dict | None:  # one more refusal each time, so stat's window always holds one; the window may
        over_tls(ca_pem(renewed))     # hold the earlier steps' refusals too (another CA, the Secret made again)
        refused = (stat_rows(learner).get(f"{NS}-ingress") or {}).get("tls_refused") or {}
        return refused if refused.get("no_client_certificate", 0) >= 1 else None

    wait_until(refusals, 30, "the gateway pod's refusal of a client without a certificate counted in stat", interval=0.5)
    learner.run("delete", "-f", str(secure))
    learner.run("delete", "secret", "web-credential", "-n", NS)
    assert k8s.kubectl("get", "secret", "web-credential", "-n", NS, check=False).returncode != 0
