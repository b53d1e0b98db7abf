"""Development certificates: a CA and a serving certificate for the webhook, made with `cryptography`.

Why: kube-apiserver calls webhooks over HTTPS only and checks the serving certificate against the
configuration's caBundle, by subject alternative name (the CN is ignored). For kind, a local control
plane or tests, this writes what a Secret would hold: `ca.crt` (for caBundle), `tls.crt`, `tls.key`.
Production should use cert-manager or the cluster's own PKI; these certificates are for development.

Default SANs: IP:127.0.0.1 and DNS:localhost (a local apiserver calling `clientConfig.url`), and
DNS:gpuplace.<namespace>.svc (the in-cluster Service the apiserver calls via `clientConfig.service`).
Keys are ECDSA P-256: small, fast handshakes, accepted by kube-apiserver. Files are replaced atomically
so a running webhook (which polls them, see webhook.tls) never reads a half-written pair.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_NAMESPACE = "gpuplace-system"
DEFAULT_SERVICE = "gpuplace"


@dataclass(frozen=True, slots=True)
class DevCertificates:
    """Where the files were written."""

    ca_cert: Path
    cert: Path
    key: Path

    def ca_bundle(self) -> str:
        """ca.crt base64-encoded, the form `clientConfig.caBundle` takes."""
        return base64.b64encode(self.ca_cert.read_bytes()).decode("ascii")


def default_sans(*, namespace: str = DEFAULT_NAMESPACE, service: str = DEFAULT_SERVICE) -> list[str]:
    return ["IP:127.0.0.1", "DNS:localhost", f"DNS:{service}.{namespace}.svc"]


def parse_san(text: str) -> x509.GeneralName:
    """`IP:10.0.0.1` or `DNS:name` (a bare value is taken as DNS, or IP if it parses as one)."""
    kind, sep, value = text.partition(":")
    if not sep:
        kind, value = ("IP", text) if _is_ip(text) else ("DNS", text)
    kind = kind.upper()
    if kind == "IP":
        return x509.IPAddress(ipaddress.ip_address(value))
    if kind == "DNS" and value:
        return x509.DNSName(value)
    raise ValueError(f"subject alternative name must be IP:<address> or DNS:<name>, got {text!r}")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def make_dev_certs(
    out_dir: Path | str,
    *,
    sans: Sequence[str] | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    service: str = DEFAULT_SERVICE,
    days: int = 365,
) -> DevCertificates:
    """Write ca.crt, tls.crt and tls.key (mode 0600) into `out_dir`, replacing existing files."""
    names = [
        parse_san(san)
        for san in (sans if sans is not None else default_sans(namespace=namespace, service=service))
    ]
    if not names:
        raise ValueError("at least one subject alternative name is needed")
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)  # tolerate clock skew
    until = now + dt.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gpuplace development CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    dns = [name.value for name in names if isinstance(name, x509.DNSName)]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[-1] if dns else "gpuplace")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = DevCertificates(ca_cert=out / "ca.crt", cert=out / "tls.crt", key=out / "tls.key")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write(paths.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    _write(paths.key, key_pem, mode=0o600)
    _write(paths.cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return paths


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write(path: Path, data: bytes, *, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.chmod(mode)
    tmp.replace(path)
