"""Who talks to the local kube-apiserver, and the files that say so: the CA and serving certificates,
the static bearer tokens (``--token-auth-file``) and one kubeconfig per identity.

Identities: ``admin`` in ``system:masters``; ``system:kube-scheduler`` and
``system:kube-controller-manager``, which the apiserver's bootstrap RBAC already grants what they need;
``kwok`` (in ``system:masters``: it writes node and pod status, leases, events and deletes pods, as every
kubelet together would). gpuplace itself runs as a ServiceAccount (``ControlPlane.create_service_account``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from gpuplace.localcluster.kubeconfig import write_kubeconfig
from gpuplace.localcluster.pki import CertificateAuthority, generate_service_account_key, write_private

# The apiserver's serving certificate names (the in-cluster Service names and the service IP).
APISERVER_IPS = ("127.0.0.1", "10.96.0.1")
APISERVER_DNS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


def _token() -> str:
    return secrets.token_hex(24)


@dataclass(frozen=True)
class Identities:
    """One bearer token per identity (fresh random ones by default)."""

    admin: str = field(default_factory=_token)
    scheduler: str = field(default_factory=_token)
    controller_manager: str = field(default_factory=_token)
    kwok: str = field(default_factory=_token)

    def users(self) -> dict[str, tuple[str, str]]:
        """kubeconfig name → (user, token)."""
        return {
            "admin": ("admin", self.admin),
            "scheduler": ("system:kube-scheduler", self.scheduler),
            "controller-manager": ("system:kube-controller-manager", self.controller_manager),
            "kwok": ("kwok", self.kwok),
        }

    def token_file(self) -> bytes:
        """``--token-auth-file`` CSV: token,user,uid,"groups"."""
        return (
            f'{self.admin},admin,admin,"system:masters"\n'
            f"{self.scheduler},system:kube-scheduler,system:kube-scheduler\n"
            f"{self.controller_manager},system:kube-controller-manager,system:kube-controller-manager\n"
            f'{self.kwok},kwok,kwok,"system:masters"\n'
        ).encode()


def write_pki(pki: Path, ca_file: Path, identities: Identities) -> CertificateAuthority:
    """A fresh CA (written to ``ca_file``), serving pairs for kube-apiserver, kube-scheduler and
    kube-controller-manager, the ServiceAccount signing key pair and the token file, all in ``pki``."""
    pki.mkdir()
    ca = CertificateAuthority.generate()
    ca_file.write_bytes(ca.cert_pem)
    ca.write_pair(pki, "kube-apiserver", ca_file=ca_file, ip_addresses=APISERVER_IPS, dns_names=APISERVER_DNS)
    ca.write_pair(pki, "kube-scheduler", ca_file=ca_file)
    ca.write_pair(pki, "kube-controller-manager", ca_file=ca_file)
    private, public = generate_service_account_key()
    write_private(pki / "sa.key", private)
    (pki / "sa.pub").write_bytes(public)
    write_private(pki / "tokens.csv", identities.token_file())
    return ca


def write_kubeconfigs(directory: Path, *, server: str, ca_file: Path, identities: Identities) -> None:
    """``<name>.kubeconfig`` in ``directory`` for every identity (:meth:`Identities.users`)."""
    for name, (user, token) in identities.users().items():
        write_kubeconfig(
            directory / f"{name}.kubeconfig", server=server, ca_file=ca_file, token=token, user=user
        )
