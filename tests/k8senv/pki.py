"""The test cluster's certificates: one small CA, a serving certificate for the API server,
client certificates for each component and the admin, and the service-account signing key.
Pure functions over ``cryptography`` objects; files are written 0600 by :func:`write_pki`."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LIFETIME = dt.timedelta(days=2)


@dataclass(frozen=True)
class Pair:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(parts)


def make_ca(now: dt.datetime) -> Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("meshdojo test cluster CA")).issuer_name(_name("meshdojo test cluster CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return Pair(cert, key)


def issue(ca: Pair, now: dt.datetime, common_name: str, organization: str | None = None, *, server: bool = False,
          dns: tuple[str, ...] = (), ips: tuple[str, ...] = ()) -> Pair:
    """A leaf signed by ``ca``: a client certificate (user = CN, group = O), or a serving one."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder().subject_name(_name(common_name, organization)).issuer_name(ca.cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + LIFETIME)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False))
    if dns or ips:
        names = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return Pair(builder.sign(ca.key, hashes.SHA256()), key)


# the identities each component authenticates as (RBAC has bindings for the system: users)
CLIENTS = {
    "admin": ("meshdojo-test-admin", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", None),
    "scheduler": ("system:kube-scheduler", None),
    "kwok": ("kwok-controller", "system:masters"),
}


def write_pki(folder: Path, now: dt.datetime | None = None) -> dict[str, Path]:
    """Every file the components need, 0600 in ``folder``; returns their paths by name."""
    now = now or dt.datetime.now(dt.UTC)
    folder.mkdir(parents=True, exist_ok=True)
    ca = make_ca(now)
    files: dict[str, bytes] = {"ca.crt": ca.cert_pem}
    serving = issue(ca, now, "kube-apiserver", server=True,
                    dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                         "kubernetes.default.svc.cluster.local"), ips=("127.0.0.1", "10.0.0.1"))
    files |= {"apiserver.crt": serving.cert_pem, "apiserver.key": serving.key_pem}
    # the nodes' kubelet API (tests/k8senv/nodelogs.py) and the API server's certificate to call it
    kubelet = issue(ca, now, "kwok-node", server=True, dns=("localhost",), ips=("127.0.0.1",))
    kubelet_client = issue(ca, now, "kube-apiserver-kubelet-client", "system:masters")
    files |= {"kubelet.crt": kubelet.cert_pem, "kubelet.key": kubelet.key_pem,
              "apiserver-kubelet-client.crt": kubelet_client.cert_pem, "apiserver-kubelet-client.key": kubelet_client.key_pem}
    for component, (user, group) in CLIENTS.items():
        pair = issue(ca, now, user, group)
        files |= {f"{component}.crt": pair.cert_pem, f"{component}.key": pair.key_pem}
    signing = ec.generate_private_key(ec.SECP256R1())
    files["sa.key"] = signing.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    files["sa.pub"] = signing.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    paths = {}
    for name, data in files.items():
        path = folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        paths[name] = path
    return paths
