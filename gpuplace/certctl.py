"""Self-managed webhook certificates: a CA and a serving certificate in one Secret, rotated before expiry.

What Kueue's cert-controller (open-policy-agent/cert-controller, `pkg/rotator/rotator.go`) does, for
gpuplace: every webhook replica runs `CertController.sync` periodically. The Secret is the only shared
state; every write is an update with the resourceVersion read (a compare-and-swap), so two replicas
racing to rotate produce one rotation, and the loser adopts the winner's result on its next read.

Secret keys: `tls.crt`/`tls.key` (the serving pair), `ca.crt`/`ca.key` (the CA that signs new serving
certificates) and `ca-bundle.crt`, the caBundle the MutatingWebhookConfiguration trusts: the current
CA plus, after a CA rotation, the previous one until it expires. Order of a CA rotation, so that no
admission call ever meets a certificate its caBundle does not trust:
1. a new CA is made and added to the bundle; the serving certificate (signed by the old CA) stays;
2. registration writes the two-CA bundle into the webhook configuration (gpuplace/registration.py);
3. only `ca_propagation_seconds` after step 1 is a serving certificate issued from the new CA;
4. the old CA leaves the bundle when it expires.
A serving certificate is renewed from the current CA `renew_before_days` before it expires.

With `owner_cluster_role` (the registration's owner, gpuplace/registration.py) the Secret is owned by
that ClusterRole, so `helm uninstall` lets the garbage collector remove the CA key with the release; a
Secret written before it had an owner is given one on the next sync.

Each replica writes the pair from the Secret into its own files (an in-memory emptyDir) and reloads its
TLS context at once; it never waits for the kubelet to refresh a mounted Secret.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import BaseModel, ConfigDict, Field

from gpuplace.registration import owner_reference

log = logging.getLogger("gpuplace.certctl")

CA_ROTATED_AT = "gpuplace.io/ca-rotated-at"
KEYS = ("tls.crt", "tls.key", "ca.crt", "ca.key", "ca-bundle.crt")


class CertificateSettings(BaseModel):
    """`webhook_server.certificates`: where the webhook's serving certificate comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["files", "self-managed", "cert-manager"] = Field(
        default="files",
        description="files: cert_file/key_file are given (and ca_file for registration); self-managed: "
        "gpuplace keeps them in secret_name; cert-manager: the mounted Secret has tls.crt, tls.key, ca.crt.",
    )
    secret_name: str = "gpuplace-webhook-tls"
    secret_namespace: str | None = Field(
        default=None, description="Default: $POD_NAMESPACE, else gpuplace-system."
    )
    service_name: str = "gpuplace-webhook"
    extra_sans: tuple[str, ...] = Field(default=(), description="More SANs: IP:… or DNS:… (local runs).")
    ca_validity_days: float = Field(default=3650, gt=0)
    cert_validity_days: float = Field(default=90, gt=0)
    renew_before_days: float = Field(default=30, ge=0)
    ca_propagation_seconds: float = Field(
        default=60, ge=0, description="Wait after adding a new CA to the caBundle before serving from it."
    )
    resync_seconds: float = Field(default=30, gt=0)

    def namespace(self) -> str:
        return self.secret_namespace or os.environ.get("POD_NAMESPACE") or "gpuplace-system"

    def sans(self) -> list[str]:
        ns, svc = self.namespace(), self.service_name
        return [f"DNS:{svc}.{ns}.svc", f"DNS:{svc}.{ns}.svc.cluster.local", *self.extra_sans]


# ----- certificate material (pure functions of their inputs and the clock) ---------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_ca(now: dt.datetime, days: float) -> tuple[bytes, bytes]:
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"gpuplace-webhook-ca-{int(now.timestamp())}")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _pem(cert), _pem_key(key)


def make_serving(
    ca_pem: bytes, ca_key_pem: bytes, sans: list[str], now: dt.datetime, days: float
) -> tuple[bytes, bytes]:
    from webhook.devcerts import parse_san

    ca = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _key()
    not_after = min(now + dt.timedelta(days=days), ca.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sans[0].partition(":")[2])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([parse_san(s) for s in sans]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _pem(cert), _pem_key(key)


def _certs(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem) if pem.strip() else []


def signed_by(cert_pem: bytes, ca_pem: bytes) -> bool:
    cert, ca = x509.load_pem_x509_certificate(cert_pem), x509.load_pem_x509_certificate(ca_pem)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception):
        return False
    return True


@dataclass(frozen=True)
class Material:
    """The Secret's five values (PEM) and the time the current CA was introduced."""

    tls_crt: bytes
    tls_key: bytes
    ca_crt: bytes
    ca_key: bytes
    bundle: bytes
    ca_rotated_at: dt.datetime | None = None

    @classmethod
    def fresh(cls, s: CertificateSettings, now: dt.datetime) -> Material:
        ca, ca_key = make_ca(now, s.ca_validity_days)
        crt, key = make_serving(ca, ca_key, s.sans(), now, s.cert_validity_days)
        return cls(crt, key, ca, ca_key, ca)

    def next(self, s: CertificateSettings, now: dt.datetime) -> Material | None:
        """The material one rotation step later, or None when nothing is due (see module docstring)."""
        renew = dt.timedelta(days=s.renew_before_days)
        ca = x509.load_pem_x509_certificate(self.ca_crt)
        if ca.not_valid_after_utc - now <= renew:  # step 1: a new CA joins the bundle
            new_ca, new_ca_key = make_ca(now, s.ca_validity_days)
            bundle = new_ca + b"".join(_pem(c) for c in _certs(self.bundle) if c.not_valid_after_utc > now)
            return Material(self.tls_crt, self.tls_key, new_ca, new_ca_key, bundle, now)
        kept = b"".join(_pem(c) for c in _certs(self.bundle) if c.not_valid_after_utc > now)
        if kept != self.bundle and self.ca_crt in kept:  # step 4: expired CAs leave the bundle
            return Material(self.tls_crt, self.tls_key, self.ca_crt, self.ca_key, kept, self.ca_rotated_at)
        serving = x509.load_pem_x509_certificate(self.tls_crt)
        stale = not signed_by(self.tls_crt, self.ca_crt) or serving.not_valid_after_utc - now <= renew
        settled = self.ca_rotated_at is None or now - self.ca_rotated_at >= dt.timedelta(
            seconds=s.ca_propagation_seconds
        )
        if stale and settled:  # step 3 (or a plain renewal)
            crt, key = make_serving(self.ca_crt, self.ca_key, s.sans(), now, s.cert_validity_days)
            return Material(crt, key, self.ca_crt, self.ca_key, self.bundle, self.ca_rotated_at)
        return None

    def to_secret_data(self) -> dict[str, str]:
        values = (self.tls_crt, self.tls_key, self.ca_crt, self.ca_key, self.bundle)
        return {k: base64.b64encode(v).decode() for k, v in zip(KEYS, values, strict=True)}

    @classmethod
    def from_secret(cls, secret: client.V1Secret) -> Material | None:
        data = secret.data or {}
        if not all(data.get(k) for k in KEYS):
            return None
        raw = [base64.b64decode(data[k]) for k in KEYS]
        stamp = ((secret.metadata.annotations if secret.metadata else None) or {}).get(CA_ROTATED_AT)
        at = dt.datetime.fromisoformat(stamp) if stamp else None
        return cls(raw[0], raw[1], raw[2], raw[3], raw[4], ca_rotated_at=at)


def _write_atomic(path: Path, data: bytes) -> bool:
    """Replace `path` with `data` unless it already holds exactly that; True when it changed."""
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    Path(tmp).replace(path)
    return True


class CertController:
    """Keeps the Secret rotated and this replica's files equal to it. `bundle` is the current caBundle."""

    def __init__(
        self,
        api: client.ApiClient,
        settings: CertificateSettings,
        *,
        cert_file: Path,
        key_file: Path,
        on_files_changed: Callable[[], Any] = lambda: None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        owner_cluster_role: str | None = None,
    ) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.s = settings
        self.owner_cluster_role = owner_cluster_role
        self.cert_file, self.key_file = cert_file, key_file
        self.on_files_changed = on_files_changed
        self.clock = clock
        self.material: Material | None = None

    @property
    def bundle(self) -> bytes | None:
        return self.material.bundle if self.material else None

    async def sync(self) -> Material:
        """One pass: read, create or rotate (compare-and-swap), then write the local files."""
        ns, name = self.s.namespace(), self.s.secret_name
        try:
            secret = await self.core.read_namespaced_secret(name, ns)
        except ApiException as e:
            if e.status != 404:
                raise
            secret = None
        owners = await self._owners()
        now = self.clock()
        current = Material.from_secret(secret) if secret is not None else None
        if current is None:
            current = Material.fresh(self.s, now)
            await self._write(secret, current, owners)
        else:
            nxt = current.next(self.s, now)
            if nxt is not None:
                await self._write(secret, nxt, owners)
                current = nxt
            elif owners and secret is not None and _owner_keys(secret) != _owner_keys(owners):
                await self._write(secret, current, owners, adopt=True)
        self.material = current
        changed = _write_atomic(self.key_file, current.tls_key) | _write_atomic(
            self.cert_file, current.tls_crt
        )
        if changed:
            self.on_files_changed()
        return current

    async def _owners(self) -> list[dict[str, Any]]:
        """The Secret's ownerReferences; [] (and a warning) while the owner cannot be read, so a replica
        still starts and serves; a later sync gives the Secret its owner."""
        if not self.owner_cluster_role:
            return []
        try:
            return [await owner_reference(self.api, self.owner_cluster_role)]
        except ApiException as e:
            log.warning("cannot read ClusterRole %s (the Secret's owner): %s", self.owner_cluster_role, e.reason)
            return []

    async def _write(
        self, secret: client.V1Secret | None, m: Material, owners: list[dict[str, Any]], adopt: bool = False
    ) -> None:
        """Create or update with the read resourceVersion; a lost race raises (the next sync adopts)."""
        ns, name = self.s.namespace(), self.s.secret_name
        annotations = {CA_ROTATED_AT: m.ca_rotated_at.isoformat()} if m.ca_rotated_at else {}
        meta: dict[str, Any] = {
            "name": name,
            "namespace": ns,
            "labels": {"app.kubernetes.io/name": "gpuplace", "app.kubernetes.io/component": "webhook"},
            "annotations": annotations,
        }
        if owners:
            meta["ownerReferences"] = owners
        body: Any = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": meta,
            "data": m.to_secret_data(),
        }
        if secret is None:
            await self.core.create_namespaced_secret(ns, body)
            log.info("created the webhook CA and serving certificate in Secret %s/%s", ns, name)
        else:
            meta["resourceVersion"] = secret.metadata.resource_version
            await self.core.replace_namespaced_secret(name, ns, body)
            if adopt:
                log.info("set the owner of Secret %s/%s to %s", ns, name, owners[0]["name"])
            else:
                log.info("rotated the webhook certificates in Secret %s/%s", ns, name)


def _owner_keys(obj: client.V1Secret | list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    refs: list[Any] = obj if isinstance(obj, list) else (obj.metadata.owner_references or [])
    return [
        (r["kind"], r["name"], r["uid"]) if isinstance(r, dict) else (r.kind, r.name, r.uid) for r in refs
    ]
