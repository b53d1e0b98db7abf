"""Talking to a started control plane: kubectl, kubernetes_asyncio clients, ServiceAccounts with exact
RBAC rules, webhook registration and serving certificates from its CA.

`Access` is mixed into :class:`gpuplace.localcluster.controlplane.ControlPlane`, which provides the
attributes below once started. The API helpers are ``async`` and open a short-lived kubernetes_asyncio
client in the caller's event loop, so they work with per-test event loops.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes_asyncio import client, config

from gpuplace.localcluster import accounts
from gpuplace.localcluster.binaries import Binaries
from gpuplace.localcluster.pki import CertificateAuthority, CertPair


class Access:
    """The client-side methods of ControlPlane (which provides these attributes)."""

    binaries: Binaries
    ca: CertificateAuthority | None

    if TYPE_CHECKING:  # ControlPlane's properties

        @property
        def workdir(self) -> Path: ...

        @property
        def server(self) -> str: ...

        @property
        def ca_file(self) -> Path: ...

        @property
        def admin_kubeconfig(self) -> Path: ...

    # ----- certificates and kubectl ------------------------------------------------------------------

    def issue_serving_cert(
        self,
        name: str,
        *,
        ip_addresses: Sequence[str] = ("127.0.0.1",),
        dns_names: Sequence[str] = ("localhost",),
    ) -> CertPair:
        """A serving certificate from this control plane's CA (for gpuplace's webhook/extender).

        Pass ``cp.ca_pem`` as the webhook caBundle, and ``cp.ca_file`` to kube-scheduler's
        extender ``tlsConfig.caFile``.
        """
        if self.ca is None:
            raise RuntimeError("control plane not started")
        directory = self.workdir / "pki"
        return self.ca.write_pair(
            directory, name, ca_file=self.ca_file, ip_addresses=ip_addresses, dns_names=dns_names
        )

    def kubectl(
        self,
        *args: str,
        kubeconfig: Path | None = None,
        stdin: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this control plane (admin identity unless ``kubeconfig``)."""
        argv = [
            str(self.binaries.kubectl),
            f"--kubeconfig={kubeconfig or self.admin_kubeconfig}",
            f"--cache-dir={self.workdir / 'kubectl-cache'}",
            *args,
        ]
        result = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, argv, result.stdout, result.stderr)
        return result

    # ----- async API helpers -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def api_client(self, kubeconfig: Path | None = None) -> AsyncIterator[client.ApiClient]:
        """A kubernetes_asyncio ApiClient for the admin (or the given kubeconfig), closed on exit."""
        api = await config.new_client_from_config(
            config_file=str(kubeconfig or self.admin_kubeconfig), persist_config=False
        )
        try:
            yield api
        finally:
            await api.close()

    async def create_service_account(
        self,
        namespace: str,
        name: str,
        *,
        cluster_rules: Sequence[Mapping[str, Any]] = (),
        namespace_rules: Sequence[Mapping[str, Any]] = (),
        token_seconds: int = 24 * 3600,
    ) -> accounts.ServiceAccountCredentials:
        """ServiceAccount with exactly these RBAC rules, a TokenRequest token and a kubeconfig for it."""
        async with self.api_client() as api:
            return await accounts.create_service_account(
                api,
                namespace=namespace,
                name=name,
                server=self.server,
                ca_file=self.ca_file,
                kubeconfig_path=self.workdir / "kubeconfigs" / f"sa-{namespace}-{name}.kubeconfig",
                cluster_rules=cluster_rules,
                namespace_rules=namespace_rules,
                token_seconds=token_seconds,
            )

    async def register_webhook(
        self, manifest: Mapping[str, Any], ca_bundle: bytes | str | None = None
    ) -> str:
        """Create or replace a webhook configuration, injecting ``ca_bundle`` (PEM) into each webhook."""
        async with self.api_client() as api:
            return await accounts.register_webhook(api, manifest, ca_bundle)

    async def unregister_webhook(self, name: str, kind: str = "MutatingWebhookConfiguration") -> None:
        async with self.api_client() as api:
            await accounts.unregister_webhook(api, name, kind)
