"""TLS Secrets: what a Secret document must hold (pure), which HTTPS listener a server name
reaches (pure), and who the control plane gives the keys to (its real APIs): the gateway of the
Secret's namespace only, and only the Secrets a Gateway there names."""

from __future__ import annotations

import base64
import json
import os

import aiohttp
import pytest

from controlplane import ca
from controlplane.config import ControlPlaneConfig
from controlplane.gatewayapi import TlsListener, attached, listener_for, secrets_named, tls_listeners
from controlplane.policy import parse
from controlplane.server import SECRETS_FILE, ControlPlane
from controlplane.spiffe import SpiffeId
from controlplane.sslcontext import client_context
from controlplane.tlssecrets import SecretError, read_secret
from tests.examplecerts import ca_pem, example_ca, server_cert
from tests.test_gateway_tls_e2e import https_listener, secret

GW = "gateway.networking.k8s.io/v1"


def test_a_tls_secret_is_checked_as_a_server_would_load_it():
    example = example_ca()
    cert, key = server_cert(example, "httpbin.example.com")
    good = read_secret(secret("httpbin-credential", (cert, key)), "s.yaml", "default")
    assert (good.namespace, good.name, good.hosts) == ("foo", "httpbin-credential", ("httpbin.example.com",))
    assert "tls.key" not in json.dumps(good.summary()) and key not in json.dumps(good.summary())
    as_strings = {"kind": "Secret", "type": "kubernetes.io/tls", "metadata": {"name": "c"}, "stringData": {"tls.crt": cert, "tls.key": key}}
    assert read_secret(as_strings, "s.yaml", "bookinfo").namespace == "bookinfo"  # stringData, and the default namespace
    other_key = server_cert(example, "other.example.com")[1]
    for doc, words in (
            ({**secret("c", (cert, key)), "type": "kubernetes.io/dockerconfigjson"}, "Secret foo/c: type: expected kubernetes.io/tls"),
            ({**secret("c", (cert, key)), "data": {**secret("c", (cert, key))["data"], "ca.crt": _b64("junk")}},
             "ca.crt: expected PEM certificates"),
            ({**secret("c", (cert, key)), "data": {"cert": _b64(cert), "key": _b64(key)}}, "data.tls.crt: missing"),  # generic names: Opaque only
            ({**secret("c", (cert, key)), "metadata": {"name": "Bad_Name"}}, "metadata.name: expected a lower-case name"),
            ({**secret("c", (cert, key)), "data": {"tls.crt": base64.b64encode(cert.encode()).decode()}}, "data.tls.key: missing"),
            ({**secret("c", (cert, key)), "data": {"tls.crt": "not base64!", "tls.key": "x"}}, "data.tls.crt: expected base64"),
            (secret("c", ("-----BEGIN NOTHING-----", key)), "tls.crt: expected PEM certificates"),
            (secret("c", (cert, "junk")), "tls.key: expected a PEM private key"),
            (secret("c", (cert, other_key)), "tls.key: is not the key of tls.crt's first certificate"),
            ({"kind": "ConfigMap"}, "expected a document of kind: Secret")):
        with pytest.raises(SecretError) as refused:
            read_secret(doc, "s.yaml", "default")
        assert refused.value.args[0].startswith("s.yaml: ") and words in str(refused.value), (words, refused.value)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_secret_for_mutual_tls_holds_the_clients_ca_in_the_forms_istio_reads():
    example = example_ca()
    cert, key = server_cert(example, "httpbin.example.com")
    ca = ca_pem(example)
    forms = ({"type": "kubernetes.io/tls", "data": {"tls.crt": _b64(cert), "tls.key": _b64(key), "ca.crt": _b64(ca)}},
             {"type": "Opaque", "data": {"tls.crt": _b64(cert), "tls.key": _b64(key), "ca.crt": _b64(ca)}},  # Istio's task's
             {"data": {"cert": _b64(cert), "key": _b64(key), "cacert": _b64(ca)}})  # generic, Opaque by default
    for form in forms:
        read = read_secret({"kind": "Secret", "metadata": {"name": "c", "namespace": "bar"}, **form}, "s.yaml", "default")
        assert (read.ca_pem, read.client_ca) == (ca, "CN=example.com,O=example Inc."), form
        assert read.summary()["clientCA"] == "CN=example.com,O=example Inc." and "ca.crt" not in read.summary()
    plain = read_secret(secret("c", (cert, key)), "s.yaml", "default")
    assert plain.ca_pem is None and "clientCA" not in plain.summary()
    # a Listener's refs: MUTUAL needs the ca.crt, SIMPLE does not
    from controlplane.gatewayapi import Listener, unresolved

    mutual = Listener("https", 443, None, "Same", "HTTPS", ("c",), "MUTUAL")
    assert unresolved(mutual, "foo", lambda ns, name: read) is None
    assert "has no ca.crt, which gateway.istio.io/tls-terminate-mode: MUTUAL checks" in unresolved(mutual, "foo", lambda ns, n: plain)
    assert unresolved(Listener("https", 443, None, "Same", "HTTPS", ("c",)), "foo", lambda ns, n: plain) is None
    assert "Secret foo/c is not there" in unresolved(mutual, "foo", lambda ns, n: None)


def test_a_server_name_reaches_the_most_specific_https_listener():
    listeners = (TlsListener("*.example.com", "wild", "ns/g"), TlsListener("httpbin.example.com", "exact", "ns/g"),
                 TlsListener("*.apps.example.com", "longer", "ns/g"))
    assert listener_for("httpbin.example.com", listeners).secret == "exact"
    assert listener_for("HTTPBIN.example.com.", listeners).secret == "exact"  # as DNS compares names
    assert listener_for("a.apps.example.com", listeners).secret == "longer"
    assert listener_for("www.example.com", listeners).secret == "wild"
    assert listener_for("example.com", listeners) is None and listener_for(None, listeners) is None
    assert listener_for(None, (*listeners, TlsListener(None, "any", "ns/g"))).secret == "any"  # no SNI: a listener for any host


def test_routes_attach_per_protocol_and_secrets_are_only_those_named():
    gw = parse({"apiVersion": GW, "kind": "Gateway", "metadata": {"name": "g", "namespace": "foo"}, "spec": {
        "gatewayClassName": "istio", "listeners": [https_listener("https", "httpbin.example.com", "httpbin-credential"),
                                                   {"name": "http", "port": 80, "protocol": "HTTP"}]}}, "g.yaml", 0)
    both = parse({"apiVersion": GW, "kind": "HTTPRoute", "metadata": {"name": "r", "namespace": "foo"},
                  "spec": {"parentRefs": [{"name": "g"}], "rules": [{"backendRefs": [{"name": "httpbin"}]}]}}, "r.yaml", 0)
    assert [(r.protocol, r.hostnames) for r in attached([gw, both], "foo")] == [("HTTP", ()), ("HTTPS", ("httpbin.example.com",))]
    assert tls_listeners([gw], "foo") == (TlsListener("httpbin.example.com", "httpbin-credential", "foo/g"),)
    assert secrets_named([gw], "foo") == {"httpbin-credential"} and secrets_named([gw], "bar") == set()


async def first_snapshot(session, base: str, ctx) -> dict:
    async with session.get(f"{base}/v1/gateway/credentials", ssl=ctx) as rsp:
        if rsp.status != 200:
            return {"status": rsp.status, **(await rsp.json())}
        return json.loads(await rsp.content.readline())


async def test_only_the_gateway_of_the_namespace_gets_the_keys_a_gateway_names(plane, tmp_path):
    admin = {"Authorization": f"Bearer {(tmp_path / 'state' / 'admin-token').read_text().strip()}"}
    anchor = (tmp_path / "state" / "ca" / "trust-anchor.crt").read_text()
    base, api = f"https://127.0.0.1:{plane.mesh_port}", f"http://127.0.0.1:{plane.api_port}"
    example = example_ca()
    httpbin, unnamed = server_cert(example, "httpbin.example.com"), server_cert(example, "other.example.com")

    def as_workload(ns: str, sa: str):
        me, key = SpiffeId(ns, sa), ca.new_key()
        issued = plane.identity.certify_with_token(ca.csr_pem(ca.make_csr(me, key)), plane.identity.bootstrap_token(me))
        return client_context(anchor, issued.chain_pem, ca.key_pem(key))

    async with aiohttp.ClientSession() as session:
        for doc in (secret("httpbin-credential", httpbin), secret("unnamed", unnamed), secret("httpbin-credential", httpbin, "bar")):
            async with session.post(f"{api}/v1/secrets", json={"document": doc}, headers=admin) as rsp:
                assert rsp.status == 200, await rsp.text()
        async with session.post(f"{api}/v1/secrets", json={"document": {"kind": "Secret", "metadata": {"name": "x"}}}, headers=admin) as rsp:
            assert rsp.status == 400 and "data.tls.crt: missing" in (await rsp.json())["error"]
        async with session.post(f"{api}/v1/policies", headers=admin, json={"documents": [{"source": "g.yaml", "index": 0, "document": {
                "apiVersion": GW, "kind": "Gateway", "metadata": {"name": "g", "namespace": "foo"},
                "spec": {"gatewayClassName": "istio", "listeners": [https_listener("https", "httpbin.example.com", "httpbin-credential")]}}}]}) as rsp:
            assert rsp.status == 200, await rsp.text()

        assert (await first_snapshot(session, base, client_context(anchor)))["status"] == 401
        refused = await first_snapshot(session, base, as_workload("foo", "httpbin"))  # a sidecar of the namespace
        assert refused["status"] == 403 and "only ingress-gateway is given TLS keys" in refused["error"], refused
        given = await first_snapshot(session, base, as_workload("foo", "ingress-gateway"))
        assert given["type"] == "snapshot" and list(given["certificates"]) == ["httpbin-credential"], given  # not "unnamed"
        assert given["certificates"]["httpbin-credential"]["privateKeyPEM"] == httpbin[1]
        assert (await first_snapshot(session, base, as_workload("bar", "ingress-gateway")))["certificates"] == {}  # no Gateway names it

        async with session.get(f"{api}/v1/policies?kind=-", headers=admin) as rsp:  # what meshdojo check reads
            problems = (await rsp.json())["gatewayProblems"]
        assert [p.split(",")[0] for p in problems] == ["Secret foo/httpbin-credential"], problems  # a one-day certificate
        assert "expires on" in problems[0] and "meshdojo create secret tls httpbin-credential" in problems[0], problems
        async with session.delete(f"{api}/v1/secrets/foo/httpbin-credential", headers=admin) as rsp:
            assert rsp.status == 200
        async with session.get(f"{api}/v1/policies?kind=-", headers=admin) as rsp:  # gone: its listener's Secret is missing
            problems = (await rsp.json())["gatewayProblems"]
        assert len(problems) == 1 and "listener https: Secret foo/httpbin-credential is not there" in problems[0], problems
        async with session.delete(f"{api}/v1/secrets/foo/httpbin-credential", headers=admin) as rsp:
            assert rsp.status == 404 and "meshdojo get secrets" in (await rsp.json())["error"]
    saved = tmp_path / "state" / SECRETS_FILE
    assert os.stat(saved).st_mode & 0o777 == 0o600
    assert {(s["namespace"], s["name"]) for s in json.loads(saved.read_text())} == {("foo", "unnamed"), ("bar", "httpbin-credential")}
    again = ControlPlane(ControlPlaneConfig(state_dir=tmp_path / "state"))  # a restarted control plane still has them
    await again.start()
    try:
        assert set(again.secrets.secrets) == {("foo", "unnamed"), ("bar", "httpbin-credential")}
    finally:
        await again.stop()


def test_a_clusters_secret_is_read_as_the_api_server_returns_it():
    from controlplane.kube.secretreader import from_object

    cert, key = server_cert(example_ca(), "web.example.com")
    obj = {**secret("web-credential", (cert, key)), "metadata": {"name": "web-credential", "namespace": "emojivoto", "uid": "x"}}
    assert from_object(obj).hosts == ("web.example.com",)
    with pytest.raises(SecretError, match="cluster: Secret emojivoto/web-credential: type: expected kubernetes.io/tls"):
        from_object({**obj, "type": "kubernetes.io/basic-auth"})
    with pytest.raises(SecretError, match="data.tls.key: missing"):
        from_object({**obj, "data": {"tls.crt": obj["data"]["tls.crt"]}})
    generic = from_object({**obj, "type": "Opaque", "data": {**obj["data"], "ca.crt": obj["data"]["tls.crt"]}})
    assert (generic.type, generic.client_ca) == ("Opaque", "CN=web.example.com")  # Istio's task's mutual TLS Secret


def test_a_load_over_tls_names_the_server_and_its_ca_or_is_refused_naming_the_field():
    from controlplane.loadspec import LoadRequestError, parse

    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    body = {"namespace": "bookinfo", "service": "bookinfo-ingress", "path": "/productpage"}
    assert parse(body)["https"] is None
    assert parse({**body, "https": {"serverName": "bookinfo.example.com", "caPEM": ca}})["https"] == {
        "serverName": "bookinfo.example.com", "caPEM": ca}
    for bad in ({"serverName": "", "caPEM": ca}, {"serverName": "h"}, {"serverName": "h", "caPEM": "not a certificate"}, "h"):
        with pytest.raises(LoadRequestError, match="^https: expected"):
            parse({**body, "https": bad})
    example = example_ca()
    cert, key = server_cert(example, "client.example.com")
    with_client = {"serverName": "h", "caPEM": ca, "certPEM": cert, "keyPEM": key}  # for a MUTUAL listener
    assert parse({**body, "https": with_client})["https"] == with_client
    for bad, words in (({"certPEM": cert}, "certPEM and keyPEM go together"),
                       ({"certPEM": cert, "keyPEM": server_cert(example, "x")[1]}, "keyPEM: is not the key of certPEM")):
        with pytest.raises(LoadRequestError, match=words):
            parse({**body, "https": {"serverName": "h", "caPEM": ca, **bad}})


def test_load_over_tls_without_its_ca_is_a_clear_error(tmp_path, capsys):
    from sandbox.cli import main

    (tmp_path / "not-a-ca.txt").write_text("hello")
    example = example_ca()
    (tmp_path / "ca.crt").write_text(ca_pem(example))
    cert, _ = server_cert(example, "client.example.com")
    (tmp_path / "c.crt").write_text(cert)
    (tmp_path / "other.key").write_text(server_cert(example, "x")[1])
    for extra, words in ((["--https", "bookinfo.example.com"], "--https and --cacert go together"),
                         (["--https", "h", "--cacert", str(tmp_path / "not-a-ca.txt")], "no PEM certificate in it"),
                         (["--https", "h", "--cacert", str(tmp_path / "missing.crt")], "cannot read it"),
                         (["--https", "h", "--cacert", str(tmp_path / "not-a-ca.txt"), "--from", "deploy/web"], "leave out --from"),
                         (["--cert", str(tmp_path / "c.crt"), "--key", str(tmp_path / "c.key")], "use them with --https and --cacert"),
                         (["--https", "h", "--cacert", str(tmp_path / "ca.crt"), "--cert", str(tmp_path / "c.crt")], "--cert and --key go together"),
                         (["--https", "h", "--cacert", str(tmp_path / "ca.crt"), "--cert", str(tmp_path / "c.crt"), "--key",
                           str(tmp_path / "other.key")], f"--key {tmp_path / 'other.key'}: is not the key of --cert {tmp_path / 'c.crt'}'s first")):
        assert main(["load", "svc/productpage", *extra, "--name", "nope"]) == 1
        said = capsys.readouterr().err
        assert words in said and "Traceback" not in said, (extra, said)


def test_check_warns_of_a_served_certificate_that_ends_soon_or_has_ended():
    import datetime as dt

    from controlplane.tlssecrets import expiry_problems, tls_secret

    secret = tls_secret("foo", "c", *server_cert(example_ca(), "h.example.com"), "test")  # valid for one day
    secrets = {("foo", "c"): secret}
    assert expiry_problems(secrets, {("foo", "c")}, secret.not_after - dt.timedelta(days=8)) == []  # more than a week left: quiet
    assert expiry_problems(secrets, {("foo", "c")}, secret.not_after - dt.timedelta(days=2))[0].startswith(
        "Secret foo/c, which a Gateway's HTTPS listener serves, expires on ")
    assert "expired on" in expiry_problems(secrets, {("foo", "c")}, secret.not_after + dt.timedelta(seconds=1))[0]
    assert expiry_problems(secrets, set(), secret.not_after) == []  # not served: not a concern of the gateway's
