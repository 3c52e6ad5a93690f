"""A CA of the learner's own, as Linkerd's install takes one (``--identity-*-file``) and Istio's
"plug in CA certificates" task: checked before anything starts (pure), kept in the control
plane's state without the trust anchor's key, then a local sandbox whose workloads' certificates
chain to it, with mutual TLS between them; the next ``up`` keeps it, ``--new-ca`` forgets it."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from controlplane import ca, castore
from sandbox.processes import wait_until
from tests.meshkit import Cli

NOW = dt.datetime.now(dt.UTC)


def _cert(subject: str, key, signer, signer_name: str, path_length: int | None, ca_: bool = True,
          days: int = 365, ski: bool = True) -> x509.Certificate:
    """A certificate as `step certificate create` makes them (root-ca, intermediate-ca profiles)."""
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, signer_name)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - dt.timedelta(days=abs(days) + 1)).not_valid_after(NOW + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca_, path_length=path_length if ca_ else None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=ca_, crl_sign=ca_,
                                            encipher_only=False, decipher_only=False), critical=True))
    if ski:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    return builder.sign(signer, hashes.SHA256())


def learners_ca(directory: Path, issuer_days: int = 365, issuer_is_ca: bool = True, curve=ec.SECP256R1) -> dict[str, Path]:
    """Linkerd's docs' root.linkerd.cluster.local and identity.linkerd.cluster.local, as files;
    the issuer has no subjectKeyIdentifier, which a leaf's authorityKeyIdentifier then does without."""
    root_key, issuer_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(curve())
    root = _cert("root.linkerd.cluster.local", root_key, root_key, "root.linkerd.cluster.local", 1)
    issuer = _cert("identity.linkerd.cluster.local", issuer_key, root_key, "root.linkerd.cluster.local", 0,
                   ca_=issuer_is_ca, days=issuer_days, ski=False)
    files = {"anchor": directory / "ca.crt", "cert": directory / "issuer.crt", "key": directory / "issuer.key"}
    files["anchor"].write_text(ca.cert_pem(root))
    files["cert"].write_text(ca.cert_pem(issuer))
    files["key"].write_text(ca.key_pem(issuer_key))
    return files


def flags(files: dict[str, Path]) -> list[str]:
    return ["--identity-trust-anchor-file", str(files["anchor"]), "--identity-issuer-certificate-file", str(files["cert"]),
            "--identity-issuer-key-file", str(files["key"])]


def _check(files: dict[str, Path]) -> None:
    castore.check_own_ca(*(files[k].read_text() for k in ("anchor", "cert", "key")),
                         (str(files["anchor"]), str(files["cert"]), str(files["key"])), NOW)


@pytest.mark.parametrize("make, says", [
    (lambda d: learners_ca(d, issuer_is_ca=False), "issuer.crt: the issuer is not a CA certificate (basicConstraints CA:TRUE); "
                                                   "step makes one with --profile intermediate-ca"),
    (lambda d: learners_ca(d, issuer_days=-1), "issuer.crt: the issuer is valid from"),
    (lambda d: learners_ca(d, curve=ec.SECP384R1), "issuer.key: an ECDSA key on secp384r1; the mesh's certificates are ECDSA P-256"),
])
def test_a_ca_that_could_not_issue_working_certificates_is_refused_naming_the_file(tmp_path, make, says):
    with pytest.raises(castore.CaStoreError, match="^" + str(tmp_path).replace(".", r"\.")) as refused:
        _check(make(tmp_path))
    assert says in str(refused.value)


def test_the_pem_and_the_chain_are_checked_too(tmp_path):
    files = learners_ca(tmp_path)
    _check(files)  # as made: fine
    files["key"].write_text("not a key")
    with pytest.raises(castore.CaStoreError, match="issuer.key: expected the issuer's private key, ECDSA P-256, in PEM"):
        _check(files)
    (tmp_path / "other").mkdir()
    other = learners_ca(tmp_path / "other")
    with pytest.raises(castore.CaStoreError, match="was not issued by the trust anchor"):
        castore.check_own_ca(files["anchor"].read_text(), other["cert"].read_text(), other["key"].read_text(),
                             ("ca.crt", "issuer.crt", "issuer.key"), NOW)


def test_the_control_plane_loads_a_ca_without_the_anchors_key_and_signs_leaves_that_chain_to_it(tmp_path):
    files = learners_ca(tmp_path)
    state = tmp_path / "state"
    castore.load_or_create(state, NOW)  # a CA meshdojo made, then the learner's in its place
    castore.use_own_ca(state, *(files[k].read_text() for k in ("anchor", "cert", "key")))
    assert sorted(p.name for p in (state / "ca").iterdir()) == sorted(castore.OWN_CA_FILES)  # no trust-anchor.key
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in (state / "ca").iterdir())
    material = castore.load_or_create(state, NOW)
    assert material.anchor.key is None and material.anchor_pem == files["anchor"].read_text()
    from controlplane.spiffe import SpiffeId

    identity = SpiffeId.parse("spiffe://meshdojo.local/ns/emojivoto/sa/web")
    leaf = ca.sign_workload(ca.make_csr(identity, ca.new_key()), identity, material.issuer, NOW)
    leaf.verify_directly_issued_by(material.issuer.certificate)
    material.issuer.certificate.verify_directly_issued_by(material.anchor.certificate)


def _chain_subjects(workload: dict) -> list[str]:
    import urllib.request

    config = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{workload['ports']['admin']}/config", timeout=5).read())
    chain = x509.load_pem_x509_certificates(config["certificate"]["chainPEM"].encode())
    return [c.issuer.rfc4514_string() for c in chain]


@pytest.mark.timeout(180)
def test_up_with_the_learners_ca_then_kept_then_a_new_one(cli: Cli, tmp_path):
    files = learners_ca(tmp_path)
    missing = cli.run("up", "--no-tui", "--demo", "emojivoto", *flags(files)[:4], check=False)
    assert missing.returncode == 1 and "give all three" in missing.stderr
    files["bad"] = tmp_path / "bad.key"
    files["bad"].write_text(ca.key_pem(ca.new_key()))
    wrong = cli.run("up", "--no-tui", "--demo", "emojivoto", *flags({**files, "key": files["bad"]}), check=False)
    assert wrong.returncode == 1 and f"{files['bad']} is not the key of the certificate in {files['cert']}" in wrong.stderr
    assert "Traceback" not in wrong.stderr and not (cli.home / "default" / "status.json").exists()  # nothing started

    out = cli.run("up", "--no-tui", "--demo", "emojivoto", *flags(files)).stdout
    assert "Using your CA" in out
    try:
        ids = json.loads(cli.run("identity", "-o", "json").stdout)
        assert ids["trust_anchor"]["subject"] == "CN=root.linkerd.cluster.local"
        assert ids["issuer"]["subject"] == "CN=identity.linkerd.cluster.local"
        web = next(w for w in cli.status()["workloads"] if w["deployment"] == "web")
        assert _chain_subjects(web) == ["CN=identity.linkerd.cluster.local", "CN=root.linkerd.cluster.local"]
        # the workloads trust each other through it: vote-bot's votes reach web, and web's calls voting, over mutual TLS
        wait_until(lambda: any(e["src"] == "web" and e["dst"] == "voting" and e["secured"] and e["rps"] > 0
                               for e in json.loads(cli.run("edges", "-n", "emojivoto", "-o", "json").stdout)), 40,
                   "a secured web -> voting edge with traffic", interval=0.5)
    finally:
        cli.run("down")
    cli.run("up", "--no-tui", "--demo", "emojivoto")  # kept for the next run, as the CA meshdojo makes is
    try:
        assert json.loads(cli.run("identity", "-o", "json").stdout)["trust_anchor"]["subject"] == "CN=root.linkerd.cluster.local"
    finally:
        cli.run("down")
    cli.run("up", "--no-tui", "--demo", "emojivoto", "--new-ca")
    try:
        assert json.loads(cli.run("identity", "-o", "json").stdout)["trust_anchor"]["subject"] == "CN=meshdojo trust anchor"
    finally:
        cli.run("down")
