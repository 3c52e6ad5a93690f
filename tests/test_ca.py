"""The CA's certificates: chain, SAN, lifetimes, constraints, tokens and persistence."""

from __future__ import annotations

import datetime as dt
import stat

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from controlplane import ca, castore, tokens
from controlplane.identity import IdentityService
from controlplane.spiffe import InvalidIdentity, SpiffeId

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
WEB = SpiffeId("emojivoto", "web")
EMOJI = SpiffeId("emojivoto", "emoji")


@pytest.fixture(scope="module")
def chain() -> tuple[ca.KeyPair, ca.KeyPair]:
    anchor = ca.make_trust_anchor(NOW)
    return anchor, ca.make_issuer(anchor, NOW)


def leaf_for(identity: SpiffeId, issuer: ca.KeyPair, lifetime: dt.timedelta = ca.DEFAULT_LEAF_LIFETIME) -> x509.Certificate:
    return ca.sign_workload(ca.make_csr(identity, ca.new_key()), identity, issuer, NOW, lifetime)


def test_chain_verifies_anchor_to_issuer_to_leaf(chain):
    anchor, issuer = chain
    leaf = leaf_for(WEB, issuer)
    issuer.certificate.verify_directly_issued_by(anchor.certificate)
    leaf.verify_directly_issued_by(issuer.certificate)
    anchor.certificate.verify_directly_issued_by(anchor.certificate)
    with pytest.raises((ValueError, Exception)):
        leaf.verify_directly_issued_by(anchor.certificate)


def test_every_key_is_ecdsa_p256(chain):
    anchor, issuer = chain
    for cert in (anchor.certificate, issuer.certificate, leaf_for(WEB, issuer)):
        assert cert.public_key().curve.name == "secp256r1"


def test_leaf_has_exactly_one_uri_san_and_leaf_constraints(chain):
    _, issuer = chain
    leaf = leaf_for(WEB, issuer)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert list(san.value) == [x509.UniformResourceIdentifier("spiffe://meshdojo.local/ns/emojivoto/sa/web")]
    basic = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest


def test_ca_constraints(chain):
    anchor, issuer = chain
    assert anchor.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 1
    assert issuer.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    for cert in (anchor.certificate, issuer.certificate):
        assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign


def test_lifetimes_default_custom_and_skew(chain):
    _, issuer = chain
    leaf = leaf_for(WEB, issuer)
    assert leaf.not_valid_after_utc - NOW == dt.timedelta(hours=24)
    assert NOW - leaf.not_valid_before_utc == ca.CLOCK_SKEW
    short = leaf_for(WEB, issuer, dt.timedelta(seconds=60))
    assert short.not_valid_after_utc - NOW == dt.timedelta(seconds=60)
    with pytest.raises(ca.CertificateRequestRejected, match="at least 60"):
        leaf_for(WEB, issuer, dt.timedelta(seconds=59))


def test_csr_for_another_identity_is_rejected(chain):
    _, issuer = chain
    csr = ca.make_csr(EMOJI, ca.new_key())
    with pytest.raises(ca.CertificateRequestRejected, match="may only obtain"):
        ca.sign_workload(csr, WEB, issuer, NOW)


def _csr(key, sans: list) -> x509.CertificateSigningRequest:
    from cryptography.hazmat.primitives import hashes

    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=True)
    return builder.sign(key, hashes.SHA256())


@pytest.mark.parametrize("case, message", [
    ("extra URI SAN", "exactly one URI SAN"),
    ("extra DNS SAN", "exactly one URI SAN"),
    ("no SAN", "no subjectAltName"),
    ("P-384 key", "ECDSA P-256"),
    ("RSA key", "ECDSA P-256"),
    ("bad signature", "signature does not verify"),
])
def test_the_ca_refuses_csrs_that_ask_for_more_or_are_not_what_they_say(chain, case, message):
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    _, issuer = chain
    web = x509.UniformResourceIdentifier(WEB.uri)
    if case == "extra URI SAN":
        csr = _csr(ca.new_key(), [web, x509.UniformResourceIdentifier(EMOJI.uri)])
    elif case == "extra DNS SAN":
        csr = _csr(ca.new_key(), [web, x509.DNSName("web.emojivoto.svc")])
    elif case == "no SAN":
        csr = _csr(ca.new_key(), [])
    elif case == "P-384 key":
        csr = _csr(ec.generate_private_key(ec.SECP384R1()), [web])
    elif case == "RSA key":
        csr = _csr(rsa.generate_private_key(public_exponent=65537, key_size=2048), [web])
    else:  # the CSR of one key with another key's public key in it: its signature no longer verifies
        from cryptography.hazmat.primitives.serialization import Encoding

        genuine, other = ca.make_csr(WEB, ca.new_key()), ca.make_csr(WEB, ca.new_key())
        der = genuine.public_bytes(Encoding.DER)
        swapped = der.replace(_spki(genuine), _spki(other))
        assert swapped != der
        csr = x509.load_der_x509_csr(swapped)
    with pytest.raises(ca.CertificateRequestRejected, match=message):
        ca.sign_workload(csr, WEB, issuer, NOW)


def _spki(csr: x509.CertificateSigningRequest) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return csr.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def test_token_for_x_never_yields_y(tmp_path):
    material = castore.load_or_create(tmp_path, NOW)
    service = IdentityService(material, clock=lambda: NOW)
    token = service.bootstrap_token(WEB)
    issued = service.certify_with_token(ca.csr_pem(ca.make_csr(WEB, ca.new_key())), token)
    assert issued.identity == WEB.uri
    with pytest.raises(ca.CertificateRequestRejected):
        service.certify_with_token(ca.csr_pem(ca.make_csr(EMOJI, ca.new_key())), token)
    # nor by editing the identity inside the token
    payload, mac = token.split(".")
    forged = tokens._b64(tokens._unb64(payload).replace(b"/sa/web", b"/sa/emoji")) + "." + mac
    with pytest.raises(tokens.InvalidToken, match="not issued"):
        service.certify_with_token(ca.csr_pem(ca.make_csr(EMOJI, ca.new_key())), forged)


def test_expired_and_malformed_tokens(tmp_path):
    material = castore.load_or_create(tmp_path, NOW)
    token = tokens.issue(material.token_secret, WEB, NOW.timestamp(), 60)
    assert tokens.verify(material.token_secret, token, NOW.timestamp() + 59) == WEB
    with pytest.raises(tokens.InvalidToken, match="expired"):
        tokens.verify(material.token_secret, token, NOW.timestamp() + 61)
    with pytest.raises(tokens.InvalidToken, match="malformed"):
        tokens.verify(material.token_secret, "nonsense", NOW.timestamp())


def test_ca_persists_with_private_modes(tmp_path):
    first = castore.load_or_create(tmp_path, NOW)
    second = castore.load_or_create(tmp_path, NOW + dt.timedelta(days=1))
    assert first.anchor.certificate == second.anchor.certificate
    assert first.issuer.certificate == second.issuer.certificate
    assert first.token_secret == second.token_secret
    assert stat.S_IMODE((tmp_path / "ca").stat().st_mode) == 0o700
    for path in (tmp_path / "ca").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_incomplete_ca_directory_is_a_clear_error(tmp_path):
    castore.load_or_create(tmp_path, NOW)
    (tmp_path / "ca" / "issuer.key").unlink()
    with pytest.raises(castore.CaStoreError, match="missing issuer.key"):
        castore.load_or_create(tmp_path, NOW)


@pytest.mark.parametrize("uri", [
    "spiffe://other.domain/ns/a/sa/b", "spiffe://meshdojo.local/ns/A/sa/b", "http://meshdojo.local/ns/a/sa/b",
    "spiffe://meshdojo.local/ns/a/sa/b/c",
])
def test_invalid_spiffe_ids(uri):
    with pytest.raises(InvalidIdentity):
        SpiffeId.parse(uri)
