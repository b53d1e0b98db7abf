"""The command lines of etcd and kube-apiserver as the local control plane runs them.

etcd: one member on loopback, ``--unsafe-no-fsync`` (test data: durability is not needed, fsync is the
slow part). kube-apiserver: static bearer tokens and the client CA for authentication, RBAC, the
ServiceAccount token issuer and keys (TokenRequest works), one loopback advertise address and so no
Endpoints reconciler. Admission: the defaults in the lifecycle world (kwok and kube-controller-manager
provide what they need); the static world disables the two plugins that need missing components.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gpuplace.localcluster.lifecycle import Timers

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


def etcd_argv(
    binary: Path, *, data_dir: Path, client_url: str, peer_url: str, extra_args: Sequence[str] = ()
) -> list[str]:
    return [
        str(binary),
        "--name=gpuplace-local",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=gpuplace-local={peer_url}",
        "--unsafe-no-fsync",
        "--log-level=warn",
        *extra_args,
    ]


def admission_args(*, lifecycle: bool, timers: Timers) -> list[str]:
    """Default admission plugins; the static world disables the two that need missing components."""
    if lifecycle:
        return timers.apiserver_args()  # DefaultTolerationSeconds' bounds
    # No token controller for the ServiceAccount plugin, and nothing would remove the not-ready
    # taint TaintNodesByCondition puts on new Nodes.
    return ["--disable-admission-plugins=ServiceAccount,TaintNodesByCondition"]


def apiserver_argv(
    binary: Path,
    *,
    etcd_url: str,
    port: int,
    workdir: Path,
    ca_file: Path,
    admission: Sequence[str],
    extra_args: Sequence[str] = (),
) -> list[str]:
    """kube-apiserver on ``127.0.0.1:port``; ``workdir/pki`` holds what identities.write_pki wrote."""
    pki = workdir / "pki"
    return [
        str(binary),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={workdir / 'apiserver-certs'}",
        f"--tls-cert-file={pki / 'kube-apiserver.crt'}",
        f"--tls-private-key-file={pki / 'kube-apiserver.key'}",
        f"--client-ca-file={ca_file}",
        f"--token-auth-file={pki / 'tokens.csv'}",
        "--authorization-mode=RBAC",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        *admission,
        # The advertise address is loopback and there is one apiserver: do not manage Endpoints.
        "--endpoint-reconciler-type=none",
        "--allow-privileged=true",
        "--profiling=false",
        *extra_args,
    ]
