"""TLS material for the lab's API server: a private CA, a server certificate for 127.0.0.1, and a bearer token.

kubectl only sends a bearer token over HTTPS (FACTS §8), so the lab must serve TLS with a CA the kubeconfig
carries. Keys use ECDSA P-256: generating them takes milliseconds, which keeps `kalab lab up` fast, and every
client involved (Go's crypto/tls, Python's ssl) accepts them. Private files are written 0600 in a 0700 directory.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)
CLOCK_SKEW = datetime.timedelta(minutes=5)  # a certificate valid "from now" fails on a client a little behind


@dataclass(frozen=True)
class TlsMaterial:
    ca_file: Path
    cert_file: Path
    key_file: Path
    ca_pem: bytes


def new_token() -> str:
    """A bearer token with 256 bits of randomness, safe in a header and a kubeconfig."""
    return secrets.token_urlsafe(32)


def write_private(path: Path, data: bytes) -> Path:
    """Write `data` to `path` readable by the owner only; atomic, so a reader never sees half a key."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp creates files 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    encoding, private = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    return key.private_bytes(encoding, private, serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kalab"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def _ca(now: datetime.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("kalab-lab-ca"))
        .issuer_name(_name("kalab-lab-ca"))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _server(
    now: datetime.datetime, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, ip: str
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    # Go ignores the common name: the addresses clients dial must be in the subjectAltName.
    addresses = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address(ip)}
    names: list[x509.GeneralName] = [x509.IPAddress(a) for a in sorted(addresses)]
    names.append(x509.DNSName("localhost"))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("kalab-lab-apiserver"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def make_tls(directory: Path, ip: str = "127.0.0.1") -> TlsMaterial:
    """A fresh CA and a server certificate for `ip` (and 127.0.0.1, localhost) under `directory` (created 0700):
    ca.crt, ca.key, apiserver.crt and apiserver.key."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    now = datetime.datetime.now(datetime.UTC)
    ca_key, ca_cert = _ca(now)
    key, cert = _server(now, ca_key, ca_cert, ip)
    ca_pem = _cert_pem(ca_cert)
    ca_file = write_private(directory / "ca.crt", ca_pem)
    write_private(directory / "ca.key", _key_pem(ca_key))
    # The chain file holds the server certificate only: clients trust the CA from their kubeconfig.
    cert_file = write_private(directory / "apiserver.crt", _cert_pem(cert))
    key_file = write_private(directory / "apiserver.key", _key_pem(key))
    return TlsMaterial(ca_file=ca_file, cert_file=cert_file, key_file=key_file, ca_pem=ca_pem)
