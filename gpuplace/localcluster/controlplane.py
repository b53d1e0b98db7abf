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
(:mod:`gpuplace.localcluster.access`: :meth:`ControlPlane.api_client`,
:meth:`~ControlPlane.create_service_account`, :meth:`~ControlPlane.register_webhook`) are ``async`` and open a short-lived kubernetes_asyncio
client in the caller's event loop, so they work with per-test event loops.

Identities (static bearer tokens for admin, kube-scheduler, kube-controller-manager and kwok) and
their files: :mod:`gpuplace.localcluster.identities`; command lines: :mod:`~gpuplace.localcluster.apiserver`
(etcd, kube-apiserver), :mod:`~gpuplace.localcluster.kube_scheduler` and
:mod:`~gpuplace.localcluster.lifecycle` (kube-controller-manager, kwok). gpuplace itself should run as a
ServiceAccount made by :meth:`ControlPlane.create_service_account` with the least rules it documents.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from gpuplace.localcluster import apiserver as api_args
from gpuplace.localcluster import kube_scheduler
from gpuplace.localcluster import lifecycle as lc
from gpuplace.localcluster.access import Access
from gpuplace.localcluster.binaries import Binaries
from gpuplace.localcluster.gates import Features
from gpuplace.localcluster.identities import Identities, write_kubeconfigs, write_pki
from gpuplace.localcluster.pki import CertificateAuthority
from gpuplace.localcluster.processes import (
    ManagedProcess,
    ProcessStartError,
    free_port,
    spawn,
    wait_ready,
)

ENV_KEEP_WORKDIR = "GPUPLACE_KEEP_WORKDIR"
_PORT_ATTEMPTS = 3


class ControlPlane(Access):
    """etcd + kube-apiserver (+ kube-controller-manager and kwok unless ``lifecycle=False``) on free
    loopback ports, with kube-scheduler and other processes on demand.

    Use ``with ControlPlane() as cp:`` (or ``start()``/``stop()``). Everything lives in a fresh
    temporary directory (``cp.workdir``), removed on stop unless ``keep_workdir`` or the
    environment variable ``GPUPLACE_KEEP_WORKDIR=1``. Process logs are in ``cp.workdir/logs``.
    ``features`` (gpuplace.localcluster.gates): feature gates for kube-apiserver, kube-controller-manager
    and every kube-scheduler started here, and API versions kube-apiserver serves beyond its defaults.
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
        features: Features | None = None,
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
        self.features = features or Features()
        self._controller_manager_args = [*self.features.component_args(), *controller_manager_args]
        self.startup_timeout = startup_timeout
        self.processes: dict[str, ManagedProcess] = {}
        self._workdir: Path | None = None
        self._server: str | None = None
        self.etcd_url: str | None = None
        self.identities = Identities()
        self.admin_token = self.identities.admin
        self.scheduler_token = self.identities.scheduler
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
        (self.workdir / "kubeconfigs").mkdir()
        self.ca = write_pki(self.workdir / "pki", self.ca_file, self.identities)

    def _start_etcd_and_apiserver(self) -> None:
        data_dir = self.workdir / "etcd-data"
        shutil.rmtree(data_dir, ignore_errors=True)
        etcd_url, peer_url = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
        etcd = api_args.etcd_argv(
            self.binaries.etcd,
            data_dir=data_dir,
            client_url=etcd_url,
            peer_url=peer_url,
            extra_args=self._etcd_args,
        )
        self.start_process("etcd", etcd, ready_url=f"{etcd_url}/health", ready_timeout=self.startup_timeout)
        self.etcd_url = etcd_url

        port = free_port()
        server = f"https://127.0.0.1:{port}"
        apiserver = api_args.apiserver_argv(
            self.binaries.kube_apiserver,
            etcd_url=etcd_url,
            port=port,
            workdir=self.workdir,
            ca_file=self.ca_file,
            admission=api_args.admission_args(lifecycle=self.lifecycle, timers=self.timers),
            extra_args=[*self.features.apiserver_args(), *self._apiserver_args],
        )
        self.start_process(
            "kube-apiserver",
            apiserver,
            ready_url=f"{server}/readyz",
            ready_timeout=self.startup_timeout,
            ready_token=self.admin_token,
        )
        self._server = server
        write_kubeconfigs(
            self.workdir / "kubeconfigs", server=server, ca_file=self.ca_file, identities=self.identities
        )

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
        ignored). The control plane's feature gates come first in its arguments (``extra_args`` may
        override them). Waits for ``/readyz`` on its secure port, which includes informer sync.
        """
        config_file = kube_scheduler.write_config(
            self.workdir / f"{name}.config.yaml", scheduler_config, kubeconfig=self.scheduler_kubeconfig
        )

        def argv(port: int) -> list[str]:
            return kube_scheduler.scheduler_argv(
                self.binaries.kube_scheduler,
                config_file=config_file,
                kubeconfig=self.scheduler_kubeconfig,
                pki=self.workdir / "pki",
                port=port,
                extra_args=[*self.features.component_args(), *extra_args],
            )

        process = self.start_on_free_port(
            name, argv, "https://127.0.0.1:{port}/readyz", ready_timeout=ready_timeout
        )
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
