"""A throw-away certificate authority for the local control plane.

kube-apiserver, kube-scheduler and gpuplace's own webhook/extender servers all serve TLS on
127.0.0.1. Clients (kubectl, kubernetes_asyncio, kube-apiserver calling a webhook) verify the
serving certificate against one CA, so every serving certificate here is issued by the same
:class:`CertificateAuthority` and carries ``IP:127.0.0.1`` and ``DNS:localhost`` as subject
alternative names (Go's TLS ignores the CN).

ECDSA P-256 keys are used for TLS because they are generated in microseconds; the
service-account signing key is RSA because every Kubernetes token verifier accepts RS256.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=365)
_BACKDATE = dt.timedelta(hours=1)  # tolerate small clock differences between processes


@dataclass(frozen=True)
class CertPair:
    """Paths of a PEM certificate, its private key and the CA that issued it."""

    cert_file: Path
    key_file: Path
    ca_file: Path


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_private(path: Path, data: bytes) -> None:
    """Write secret material readable by the owner only."""
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)


@dataclass(frozen=True)
class CertificateAuthority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls, common_name: str = "gpuplace-local-ca") -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert=cert, key=key)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        common_name: str,
        *,
        ip_addresses: Iterable[str] = ("127.0.0.1",),
        dns_names: Iterable[str] = ("localhost",),
        client_auth: bool = False,
    ) -> tuple[bytes, bytes]:
        """Issue a serving (and optionally client) certificate; returns (cert PEM, key PEM)."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        usages = [ExtendedKeyUsageOID.SERVER_AUTH]
        if client_auth:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)

    def write_pair(
        self,
        directory: Path,
        name: str,
        *,
        ca_file: Path,
        ip_addresses: Iterable[str] = ("127.0.0.1",),
        dns_names: Iterable[str] = ("localhost",),
    ) -> CertPair:
        cert_pem, key_pem = self.issue(name, ip_addresses=ip_addresses, dns_names=dns_names)
        cert_file = directory / f"{name}.crt"
        key_file = directory / f"{name}.key"
        cert_file.write_bytes(cert_pem)
        write_private(key_file, key_pem)
        return CertPair(cert_file=cert_file, key_file=key_file, ca_file=ca_file)


def generate_service_account_key() -> tuple[bytes, bytes]:
    """RSA key pair for signing service-account tokens: (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _key_pem(key), public
