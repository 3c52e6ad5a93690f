"""`meshdojo install`'s manifests as data (no cluster): least privilege, everything labelled
ours, the webhook trusting the mesh's anchor, a user's own CA checked before anything is
applied. tests/test_kube_controlplane.py applies them to a real API server."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
import yaml

from controlplane import ca
from sandbox.cli import main
from sandbox.kube import cluster
from sandbox.kube.install import control_plane_manifests


@pytest.fixture(scope="module")
def pki():
    return cluster.new_pki()


def test_every_object_is_labelled_ours_and_rbac_is_least_privilege(pki):
    objects = control_plane_manifests("meshdojo/meshdojo:0.1.0-abc", pki, "tok")
    assert all(o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "meshdojo" for o in objects)
    rules = [r for o in objects if o["kind"] in ("ClusterRole", "Role") for r in o["rules"]]
    assert not any("*" in r["verbs"] or "*" in r["resources"] or "*" in r["apiGroups"] for r in rules)
    writes = {(g, res) for r in rules for g in r["apiGroups"] for res in r["resources"]
              if set(r["verbs"]) & {"create", "update", "patch", "delete"}}
    assert {res for _, res in writes} <= {"faultinjections", "retrybudgets", "circuitbreakers", "authorizationpolicies",
                                         "meshtlses", "ratelimits", "serviceentries", "sidecars", "telemetries", "requestauthentications", "extensionproviders", "httproutes", "backendtlspolicies", "gateways", "gateways/status", "httproutes/status", "ingresses",
                                             "servers", "serverauthorizations", "meshtlsauthentications", "networkauthentications", "httplocalratelimitpolicies",
                                         "virtualservices", "destinationrules", "peerauthentications",
                                         "tokenreviews", "configmaps"}
    (secrets,) = [r for r in rules if "secrets" in r["resources"]]
    assert secrets["verbs"] == ["get"] and secrets["resourceNames"] == ["meshdojo-identity-issuer", "meshdojo-operator-token"]
    (update_cm,) = [r for r in rules if "configmaps" in r["resources"] and "update" in r["verbs"]]
    assert update_cm["resourceNames"] == ["meshdojo-trust-anchor"]


def test_the_webhook_trusts_the_anchor_and_never_blocks_the_cluster(pki):
    (hook,) = [o for o in control_plane_manifests("x:1", pki, "tok") if o["kind"] == "MutatingWebhookConfiguration"]
    webhook = hook["webhooks"][0]
    assert base64.b64decode(webhook["clientConfig"]["caBundle"]).decode() == pki.anchor_pem
    assert webhook["failurePolicy"] == "Ignore" and webhook["sideEffects"] == "None"
    excluded = webhook["namespaceSelector"]["matchExpressions"][0]["values"]
    assert {"kube-system", "meshdojo-system"} <= set(excluded)
    (secret,) = [o for o in control_plane_manifests("x:1", pki, "tok") if o["kind"] == "Secret"
                 and o["metadata"]["name"] == "meshdojo-identity-issuer"]
    assert "BEGIN" not in yaml.safe_dump(secret)  # base64 in data, as Kubernetes wants
    assert set(secret["data"]) == {"ca.crt", "tls.crt", "tls.key"}


def test_dry_run_prints_everything_in_apply_order(capsys):
    assert main(["install", "--dry-run", "--image", "meshdojo/meshdojo:0.1.0-abc"]) == 0
    kinds = [d["kind"] for d in yaml.safe_load_all(capsys.readouterr().out)]
    assert kinds[:30] == ["CustomResourceDefinition"] * 30 and kinds[30] == "Namespace" and kinds[-1] == "MutatingWebhookConfiguration"


def test_the_certificates_lifetime_reaches_the_control_plane(capsys):
    """`install --cert-lifetime 2m` (and `up --backend ... --cert-lifetime 2m`): short certificates
    on a cluster too, to watch rotations; below a minute is refused before anything is made."""
    assert main(["install", "--dry-run", "--image", "x:1", "--cert-lifetime", "2m"]) == 0
    (dep,) = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d["kind"] == "Deployment"]
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--cert-lifetime") + 1] == "2m"
    with pytest.raises(SystemExit):
        main(["install", "--dry-run", "--cert-lifetime", "30s"])
    assert "shorter than the minimum of 60s" in capsys.readouterr().err


def _write(path, text):
    path.write_text(text)
    return path


def test_a_users_own_ca_is_checked_before_anything_is_applied(tmp_path, capsys):
    now = dt.datetime.now(dt.UTC)
    anchor = ca.make_trust_anchor(now)
    issuer = ca.make_issuer(anchor, now)
    files = {"anchor": _write(tmp_path / "anchor.crt", ca.cert_pem(anchor.certificate)),
             "cert": _write(tmp_path / "issuer.crt", ca.cert_pem(issuer.certificate)),
             "key": _write(tmp_path / "issuer.key", ca.key_pem(issuer.key))}
    args = ["install", "--dry-run", "--image", "x:1", "--identity-trust-anchor-file", str(files["anchor"]),
            "--identity-issuer-certificate-file", str(files["cert"]), "--identity-issuer-key-file", str(files["key"])]
    assert main(args) == 0
    (secret,) = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d["kind"] == "Secret"
                 and d["metadata"]["name"] == "meshdojo-identity-issuer"]
    assert base64.b64decode(secret["data"]["tls.crt"]).decode() == ca.cert_pem(issuer.certificate)

    other = ca.make_trust_anchor(now)
    _write(tmp_path / "other.crt", ca.cert_pem(other.certificate))
    assert main([*args[:5], str(tmp_path / "other.crt"), *args[6:]]) == 1
    assert "was not issued by the trust anchor" in capsys.readouterr().err
    _write(tmp_path / "wrong.key", ca.key_pem(ca.new_key()))
    assert main([*args[:-1], str(tmp_path / "wrong.key")]) == 1
    assert "is not the key of the certificate" in capsys.readouterr().err
    assert main(args[:6]) == 1
    assert "give all three" in capsys.readouterr().err


def test_a_gateways_tls_port_and_the_one_secret_right_it_needs():
    """Each demo's gateway: a TLS port (Service 443 -> the pod's --https-port), and a Role in its own namespace that
    lets the control plane get a Secret by name there — no list, no watch, no other namespace."""
    from controlplane.injector import GATEWAY_HTTPS_PORT
    from sandbox.kube.gateways import SECRET_READER, SERVICE_WRITER, manifests

    made = manifests("bookinfo", "meshdojo/meshdojo:x", published=False)
    docs = {d["kind"]: d for d in made}
    roles = {d["metadata"]["name"]: d for d in made if d["kind"] == "Role"}
    assert {(name, role["metadata"]["namespace"]) for name, role in roles.items()} == {(SECRET_READER, "bookinfo"), (SERVICE_WRITER, "bookinfo")}
    assert roles[SECRET_READER]["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    # each Gateway's Service (bookinfo-gateway-istio): made and applied, never listed, read or deleted (its Gateway owns it)
    assert roles[SERVICE_WRITER]["rules"] == [{"apiGroups": [""], "resources": ["services"], "verbs": ["create", "patch"]}]
    for binding in (d for d in made if d["kind"] == "RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "meshdojo-controlplane", "namespace": "meshdojo-system"}]
    assert {"name": "https", "port": 443, "targetPort": GATEWAY_HTTPS_PORT} in docs["Service"]["spec"]["ports"]
    (proxy,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert proxy["args"][proxy["args"].index("--https-port") + 1] == str(GATEWAY_HTTPS_PORT)


def test_on_kind_and_minikube_the_tls_port_is_published_on_the_host_as_the_http_one():
    from sandbox.kube.gateways import entries, manifests
    from sandbox.kube.providers import kind_config

    service = next(d for d in manifests("bookinfo", "x:1", published=True) if d["kind"] == "Service")
    assert {p["name"]: p.get("nodePort") for p in service["spec"]["ports"]} == {"http": 30980, "https": 30943}
    mapped = {(m["containerPort"], m["hostPort"]) for m in kind_config("c")["nodes"][0]["extraPortMappings"]}
    assert {(30980, 9080), (30943, 9443)} <= mapped
    (kind,) = entries(["bookinfo"], published=True)
    assert (kind["url"], kind["https"], kind["httpsReach"]) == ("http://127.0.0.1:9080/", "https://127.0.0.1:9443/", None)
    (own,) = entries(["bookinfo"], published=False)  # a cluster of the user's own: a port-forward, as for HTTP
    assert own["https"] is None and own["httpsReach"] == "kubectl -n bookinfo port-forward svc/bookinfo-ingress 9443:443"
