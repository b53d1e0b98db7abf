"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager, kwok,
and kube-scheduler on demand.

Fake Nodes are created through the API (see :mod:`gpuplace.localcluster.fake_nodes`); kwok plays
their kubelets and kube-controller-manager runs the controllers (:mod:`gpuplace.localcluster.lifecycle`):
bound pods become Running and finish when they say so, Jobs and Deployments make pods, graceful
deletion completes, namespaces finish terminating, NotReady nodes are tainted and emptied. The
apiserver runs with its default admission plugins (none disabled).

``ControlPlane(lifecycle=False)`` is the static world instead (for benchmarks that want nothing but
the scheduler moving): no controller manager, no kwok, so bound pods stay Pending, namespaces never
finish terminating, pods must be deleted with grace period 0, and the admission plugins that need
those (ServiceAccount: the token controller; TaintNodesByCondition: nothing would remove the
not-ready taint) are disabled.

:class:`ControlPlane` is a *synchronous* context manager: starting processes and waiting for
them is blocking work that pytest session fixtures and a CLI demo both call from plain code.
From async code, use ``await asyncio.to_thread(cp.start)`` / ``cp.stop``. The API helpers
(:meth:`ControlPlane.api_client`, :meth:`~ControlPlane.create_service_account`,
:meth:`~ControlPlane.register_webhook`) are ``async`` and open a short-lived kubernetes_asyncio
client in the caller's event loop, so they work with per-test event loops.

Identities (static bearer tokens, ``--token-auth-file``): ``admin`` in ``system:masters``,
``system:kube-scheduler`` and ``system:kube-controller-manager``, which the apiserver's bootstrap RBAC
already grants what they need, and ``kwok`` (in ``system:masters``: it writes node and pod status,
leases, events and deletes pods, as every kubelet together would). gpuplace itself should run as a ServiceAccount made by
:meth:`ControlPlane.create_service_account` with the least rules it documents.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml
from kubernetes_asyncio import client, config

from gpuplace.localcluster import accounts
from gpuplace.localcluster import lifecycle as lc
from gpuplace.localcluster.binaries import Binaries
from gpuplace.localcluster.kubeconfig import write_kubeconfig
from gpuplace.localcluster.pki import (
    CertificateAuthority,
    CertPair,
    generate_service_account_key,
    write_private,
)
from gpuplace.localcluster.processes import (
    ManagedProcess,
    ProcessStartError,
    free_port,
    spawn,
    wait_ready,
)

ENV_KEEP_WORKDIR = "GPUPLACE_KEEP_WORKDIR"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
_APISERVER_DNS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
_PORT_ATTEMPTS = 3


class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager and kwok unless ``lifecycle=False``) on free
    loopback ports, with kube-scheduler and other processes on demand.

    Use ``with ControlPlane() as cp:`` (or ``start()``/``stop()``). Everything lives in a fresh
    temporary directory (``cp.workdir``), removed on stop unless ``keep_workdir`` or the
    environment variable ``GPUPLACE_KEEP_WORKDIR=1``. Process logs are in ``cp.workdir/logs``.
    """

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        tmp_parent: Path | None = None,
        keep_workdir: bool | None = None,
        apiserver_args: Sequence[str] = (),
        etcd_args: Sequence[str] = (),
        startup_timeout: float = 90.0,
        lifecycle: bool = True,
        timers: lc.Timers | None = None,
        controller_manager_args: Sequence[str] = (),
    ) -> None:
        self.binaries = Binaries.locate(bin_dir)
        self._tmp_parent = tmp_parent
        self.keep_workdir = (
            keep_workdir if keep_workdir is not None else os.environ.get(ENV_KEEP_WORKDIR) == "1"
        )
        self._apiserver_args = list(apiserver_args)
        self._etcd_args = list(etcd_args)
        self.lifecycle = lifecycle
        self.timers = timers or lc.Timers()
        self._controller_manager_args = list(controller_manager_args)
        self.startup_timeout = startup_timeout
        self.processes: dict[str, ManagedProcess] = {}
        self._workdir: Path | None = None
        self._server: str | None = None
        self.etcd_url: str | None = None
        self.admin_token = secrets.token_hex(24)
        self.scheduler_token = secrets.token_hex(24)
        self._controller_manager_token = secrets.token_hex(24)
        self._kwok_token = secrets.token_hex(24)
        self.ca: CertificateAuthority | None = None

    # ----- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._workdir = Path(tempfile.mkdtemp(prefix="gpuplace-cp-", dir=self._tmp_parent))
        atexit.register(self.stop)
        try:
            self._write_pki()
            for attempt in range(_PORT_ATTEMPTS):
                try:
                    self._start_etcd_and_apiserver()
                    break
                except ProcessStartError as exc:
                    self._stop_processes()
                    if not exc.port_clash or attempt == _PORT_ATTEMPTS - 1:
                        raise
            if self.lifecycle:
                self._start_lifecycle()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process started here (newest first) and remove the work directory."""
        atexit.unregister(self.stop)
        self._stop_processes()
        self._server = None
        if self._workdir is not None and not self.keep_workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
        self._workdir = None

    def _stop_processes(self) -> None:
        for name in reversed(list(self.processes)):
            self.processes.pop(name).stop()

    # ----- paths and endpoints ---------------------------------------------------------------------

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("control plane not started")
        return self._workdir

    @property
    def server(self) -> str:
        """The apiserver URL, ``https://127.0.0.1:<port>``."""
        if self._server is None:
            raise RuntimeError("control plane not started")
        return self._server

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    @property
    def ca_pem(self) -> bytes:
        return self.ca_file.read_bytes()

    @property
    def admin_kubeconfig(self) -> Path:
        return self.workdir / "kubeconfigs" / "admin.kubeconfig"

    @property
    def scheduler_kubeconfig(self) -> Path:
        return self.workdir / "kubeconfigs" / "scheduler.kubeconfig"

    @property
    def controller_manager_kubeconfig(self) -> Path:
        return self.workdir / "kubeconfigs" / "controller-manager.kubeconfig"

    @property
    def kwok_kubeconfig(self) -> Path:
        return self.workdir / "kubeconfigs" / "kwok.kubeconfig"

    def log_file(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    # ----- startup ----------------------------------------------------------------------------------

    def _write_pki(self) -> None:
        pki = self.workdir / "pki"
        pki.mkdir()
        (self.workdir / "kubeconfigs").mkdir()
        self.ca = CertificateAuthority.generate()
        self.ca_file.write_bytes(self.ca.cert_pem)
        self.ca.write_pair(
            pki,
            "kube-apiserver",
            ca_file=self.ca_file,
            ip_addresses=("127.0.0.1", "10.96.0.1"),
            dns_names=_APISERVER_DNS,
        )
        self.ca.write_pair(pki, "kube-scheduler", ca_file=self.ca_file)
        self.ca.write_pair(pki, "kube-controller-manager", ca_file=self.ca_file)
        private, public = generate_service_account_key()
        write_private(pki / "sa.key", private)
        (pki / "sa.pub").write_bytes(public)
        tokens = (
            f'{self.admin_token},admin,admin,"system:masters"\n'
            f"{self.scheduler_token},system:kube-scheduler,system:kube-scheduler\n"
            f"{self._controller_manager_token},system:kube-controller-manager,system:kube-controller-manager\n"
            f'{self._kwok_token},kwok,kwok,"system:masters"\n'
        )
        write_private(pki / "tokens.csv", tokens.encode())

    def _start_etcd_and_apiserver(self) -> None:
        pki = self.workdir / "pki"
        data_dir = self.workdir / "etcd-data"
        shutil.rmtree(data_dir, ignore_errors=True)
        client_port, peer_port = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        etcd = [
            str(self.binaries.etcd),
            "--name=gpuplace-local",
            f"--data-dir={data_dir}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=gpuplace-local={peer_url}",
            "--unsafe-no-fsync",  # test data: durability is not needed, fsync is the slow part
            "--log-level=warn",
            *self._etcd_args,
        ]
        self.start_process("etcd", etcd, ready_url=f"{etcd_url}/health", ready_timeout=self.startup_timeout)
        self.etcd_url = etcd_url

        port = free_port()
        server = f"https://127.0.0.1:{port}"
        apiserver = [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'kube-apiserver.crt'}",
            f"--tls-private-key-file={pki / 'kube-apiserver.key'}",
            f"--client-ca-file={self.ca_file}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            *self._admission_args(),
            # The advertise address is loopback and there is one apiserver: do not manage Endpoints.
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--profiling=false",
            *self._apiserver_args,
        ]
        self.start_process(
            "kube-apiserver",
            apiserver,
            ready_url=f"{server}/readyz",
            ready_timeout=self.startup_timeout,
            ready_token=self.admin_token,
        )
        self._server = server
        write_kubeconfig(
            self.admin_kubeconfig, server=server, ca_file=self.ca_file, token=self.admin_token, user="admin"
        )
        write_kubeconfig(
            self.scheduler_kubeconfig,
            server=server,
            ca_file=self.ca_file,
            token=self.scheduler_token,
            user="system:kube-scheduler",
        )
        write_kubeconfig(
            self.controller_manager_kubeconfig,
            server=server,
            ca_file=self.ca_file,
            token=self._controller_manager_token,
            user="system:kube-controller-manager",
        )
        write_kubeconfig(self.kwok_kubeconfig, server=server, ca_file=self.ca_file, token=self._kwok_token, user="kwok")

    def _admission_args(self) -> list[str]:
        """Default admission plugins; the static world disables the two that need missing components."""
        if self.lifecycle:
            return self.timers.apiserver_args()  # DefaultTolerationSeconds' bounds
        # No token controller for the ServiceAccount plugin, and nothing would remove the not-ready
        # taint TaintNodesByCondition puts on new Nodes.
        return ["--disable-admission-plugins=ServiceAccount,TaintNodesByCondition"]

    def _start_lifecycle(self) -> None:
        lc.start(self, controller_manager_args=self._controller_manager_args)

    # ----- processes ------------------------------------------------------------------------------

    def start_process(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str | None] | None = None,
        cwd: Path | None = None,
        ready_url: str | None = None,
        ready_timeout: float = 60.0,
        ready_insecure: bool = False,
        ready_token: str | None = None,
    ) -> ManagedProcess:
        """Start ``argv`` with its output in ``logs/<name>.log``; optionally wait for ``ready_url``.

        ``ready_url`` must answer HTTP 200; https URLs are verified against this control plane's
        CA unless ``ready_insecure``. On failure the process is stopped and ProcessStartError
        (with the log tail) is raised.
        """
        if name in self.processes and self.processes[name].alive():
            raise ValueError(f"a process named {name!r} is already running")
        process = spawn(name, argv, log_file=self.log_file(name), env=env, cwd=cwd)
        process.ready_url = ready_url
        self.processes[name] = process
        if ready_url:
            try:
                wait_ready(
                    process,
                    ready_url,
                    timeout=ready_timeout,
                    ca_file=self.ca_file,
                    token=ready_token,
                    insecure=ready_insecure,
                )
            except ProcessStartError:
                self.stop_process(name)
                raise
        return process

    def stop_process(self, name: str) -> int | None:
        """Stop one process started here; returns its exit status (None if unknown)."""
        process = self.processes.pop(name, None)
        return process.stop() if process else None

    def start_scheduler(
        self,
        scheduler_config: Mapping[str, Any] | None = None,
        *,
        name: str = "kube-scheduler",
        extra_args: Sequence[str] = (),
        ready_timeout: float = 60.0,
    ) -> ManagedProcess:
        """Start upstream kube-scheduler with a KubeSchedulerConfiguration given as a dict.

        ``clientConnection.kubeconfig`` (the scheduler identity) and ``leaderElection.leaderElect:
        false`` are filled in unless present (with ``--config``, the ``--kubeconfig`` flag is
        ignored). Waits for ``/readyz`` on its secure port, which includes informer sync.
        """
        cfg = copy.deepcopy(dict(scheduler_config or {}))
        cfg.setdefault("apiVersion", "kubescheduler.config.k8s.io/v1")
        cfg.setdefault("kind", "KubeSchedulerConfiguration")
        cfg.setdefault("clientConnection", {}).setdefault("kubeconfig", str(self.scheduler_kubeconfig))
        cfg.setdefault("leaderElection", {}).setdefault("leaderElect", False)
        config_file = self.workdir / f"{name}.config.yaml"
        config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
        pki = self.workdir / "pki"

        def argv(port: int) -> list[str]:
            return [
                str(self.binaries.kube_scheduler),
                f"--config={config_file}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--tls-cert-file={pki / 'kube-scheduler.crt'}",
                f"--tls-private-key-file={pki / 'kube-scheduler.key'}",
                # delegated authn/z so /metrics works with a token; /healthz and /readyz are always allowed
                f"--authentication-kubeconfig={self.scheduler_kubeconfig}",
                f"--authorization-kubeconfig={self.scheduler_kubeconfig}",
                # no front-proxy CA in this cluster: do not look up requestheader config (log noise)
                "--authentication-skip-lookup=true",
                "--v=2",
                *extra_args,
            ]

        process = self.start_on_free_port(name, argv, "https://127.0.0.1:{port}/readyz", ready_timeout=ready_timeout)
        process.extra["config_file"] = config_file
        return process

    def start_on_free_port(
        self, name: str, argv: Callable[[int], Sequence[str]], ready_url: str, *, ready_timeout: float = 60.0
    ) -> ManagedProcess:
        """``start_process(name, argv(port))`` on a free port, retried when another process took it first.

        ``ready_url`` is formatted with ``port``; the port is kept in ``process.extra["port"]``.
        """
        for attempt in range(_PORT_ATTEMPTS):
            port = free_port()
            try:
                process = self.start_process(
                    name, argv(port), ready_url=ready_url.format(port=port), ready_timeout=ready_timeout
                )
            except ProcessStartError as exc:
                if not exc.port_clash or attempt == _PORT_ATTEMPTS - 1:
                    raise
                continue
            process.extra["port"] = port
            return process
        raise AssertionError("unreachable")

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
