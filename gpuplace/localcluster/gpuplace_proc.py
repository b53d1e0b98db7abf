"""`gpuplace serve` as a child process of a local control plane, wired the way a cluster wires it.

What :class:`GpuplaceServer` does, in order (the issue's launcher sequence):
1. applies the RBAC documents from deploy/ (ServiceAccount, ClusterRoles/Roles and their bindings)
   and mints a token for that ServiceAccount through the TokenRequest API — gpuplace talks to the
   apiserver with exactly the rights the manifests give it, never the admin token;
2. issues serving certificates (SAN ``IP:127.0.0.1``) from the control plane's CA for the extender
   (HTTPS unless ``extender_https=False``) and for the webhook;
3. writes a gpuplace config file — deploy/'s example config (deploy/*/gpuplace-config.yaml) with
   ``kubernetes.kubeconfig``, listen addresses, TLS files and ``webhook_server`` filled in, plus any
   ``settings`` overrides — and starts ``python -m gpuplace.cli serve --config <file>``;
   waits for the extender's ``/readyz`` (informers synced, kernels warm) and the webhook's ``/healthz``;
4. registers deploy/webhook's MutatingWebhookConfiguration with ``clientConfig.url`` on loopback and
   the CA as ``caBundle``, and waits until a server-side dry-run GPU pod comes back mutated;
5. :meth:`scheduler_config` gives the KubeSchedulerConfiguration for ``ControlPlane.start_scheduler``:
   the extender entry from deploy/scheduler with ``urlPrefix`` pointed at this process.

:meth:`start` retries on new ports when another process took one first (``free_port`` races);
:meth:`restart` stops and starts the process on the same ports (kube-scheduler's configuration
keeps pointing at it); :meth:`close` also removes the webhook registration. If deploy/ has no RBAC
that lets the ServiceAccount create ``pods/binding``, a fallback ClusterRole is applied and
``rbac_fallback`` is set (tests fail on it: the shipped manifests must be sufficient).

Steps 1 and 5 live beside it: gpuplace/localcluster/gpuplace_rbac.py (the ServiceAccount, its RBAC and
token) and gpuplace/localcluster/scheduler_entry.py (kube-scheduler's extender entry).
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml
from kubernetes_asyncio import client
from prometheus_client.parser import text_string_to_metric_families

from gpuplace.localcluster import accounts, gpuplace_rbac, manifests, scheduler_entry
from gpuplace.localcluster.binaries import repo_root
from gpuplace.localcluster.controlplane import ControlPlane
from gpuplace.localcluster.manifests import deep_merge
from gpuplace.localcluster.pki import CertPair
from gpuplace.localcluster.processes import ManagedProcess, ProcessStartError, free_port, probe, wait_ready
from gpuplace.localcluster.scheduler_entry import GPU_RESOURCE
from gpuplace.localcluster.waiting import run_sync, wait_until

log = logging.getLogger("gpuplace.localcluster")
PORT_ATTEMPTS = 3  # as ControlPlane retries etcd, kube-apiserver and kube-scheduler on a port clash


def example_config() -> dict[str, Any]:
    """deploy/'s example `gpuplace serve` config (a YAML mapping with a `scheduler:` section), or {}."""
    for path in sorted(manifests.deploy_dir().glob("*/gpuplace-config.y*ml")):
        doc = yaml.safe_load(path.read_text())
        if isinstance(doc, dict) and "scheduler" in doc:
            return doc
    return {}


class GpuplaceServer:
    """``gpuplace serve`` (extender + webhook) started against a :class:`ControlPlane`. See module docstring."""

    def __init__(
        self,
        cp: ControlPlane,
        *,
        name: str = "gpuplace",
        extender_https: bool = True,
        settings: Mapping[str, Any] | None = None,
        register_webhook: bool = True,
        python: str = sys.executable,
        python_args: Sequence[str] = (),
        ready_timeout: float = 90.0,
    ) -> None:
        self.cp = cp
        self.name = name
        self.extender_https = extender_https
        self.settings = dict(settings or {})
        self.register = register_webhook
        self.python = python
        self.python_args = list(python_args)  # e.g. ["-m", "cProfile", "-o", "gpuplace.prof"]
        self.ready_timeout = ready_timeout
        self.extender_port = 0
        self.webhook_port = 0
        self.credentials: accounts.ServiceAccountCredentials | None = None
        self.serving: CertPair | None = None
        self.config_file: Path | None = None
        self.webhook_names: list[str] = []
        self.rbac_fallback = False
        self.process: ManagedProcess | None = None

    # ----- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> Self:
        """Prepare (first call only), start the process, wait until ready, register the webhook."""
        try:
            if self.config_file is not None:
                self.launch()  # after stop(): the same ports, kube-scheduler's config points at them
            else:
                self._prepare()
                for attempt in range(PORT_ATTEMPTS):
                    try:
                        self.launch()
                        break
                    except ProcessStartError as exc:  # free_port() raced another process for a port
                        if not exc.port_clash or attempt == PORT_ATTEMPTS - 1:
                            raise
                        self._write_config()
            if self.register and not self.webhook_names:
                run_sync(self.register_webhooks())
        except BaseException:
            self.close()
            raise
        return self

    def stop(self) -> int | None:
        """Stop the process only (the webhook stays registered: GPU pod creation fails meanwhile)."""
        self.process = None
        return self.cp.stop_process(self.name)

    def restart(self) -> None:
        """A new process on the same ports; its cache is rebuilt from the API server."""
        self.stop()
        self.launch()

    def close(self) -> None:
        """Unregister the webhook, then stop the process."""
        if self.webhook_names:
            names, self.webhook_names = self.webhook_names, []
            try:
                for name in names:
                    run_sync(self.cp.unregister_webhook(name))
            except Exception as exc:  # the control plane may be gone already
                log.warning("could not unregister webhook: %s", exc)
        self.stop()

    # ----- endpoints ---------------------------------------------------------------------------------

    @property
    def url_prefix(self) -> str:
        return str(self.settings.get("scheduler", {}).get("url_prefix", "/scheduler")).rstrip("/")

    @property
    def extender_base(self) -> str:
        scheme = "https" if self.extender_https else "http"
        return f"{scheme}://127.0.0.1:{self.extender_port}"

    @property
    def extender_url(self) -> str:
        return f"{self.extender_base}{self.url_prefix}"

    @property
    def webhook_base(self) -> str:
        return f"https://127.0.0.1:{self.webhook_port}"

    @property
    def log_file(self) -> Path:
        return self.cp.log_file(self.name)

    def _metrics(self) -> str:
        status, body = probe(f"{self.extender_base}/metrics", ca_file=self.cp.ca_file, timeout=10)
        if status != 200:
            raise RuntimeError(f"gpuplace /metrics answered {status}")
        return body

    def metric(self, sample: str, **labels: str) -> float:
        """The sum of the extender's samples named ``sample`` (e.g. ``gpuplace_binds_total``) whose labels
        include ``labels``; 0 when there is none."""
        return sum(
            s.value
            for family in text_string_to_metric_families(self._metrics())
            for s in family.samples
            if s.name == sample and labels.items() <= s.labels.items()
        )

    def node_gpus(self) -> dict[str, dict[str, float]]:
        """gpuplace's own view, from its ``gpuplace_node_gpus`` gauge: node → {"allocated": n, "free": n, "unavailable": n}.

        A node is absent when gpuplace's model has no GPUs for it (deleted, or not a GPU node).
        """
        out: dict[str, dict[str, float]] = {}
        for family in text_string_to_metric_families(self._metrics()):
            if family.name == "gpuplace_node_gpus":
                for sample in family.samples:
                    node = out.setdefault(sample.labels["node"], {})
                    node[sample.labels["state"]] = node.get(sample.labels["state"], 0.0) + sample.value
        return out

    # ----- preparation -------------------------------------------------------------------------------

    def _prepare(self) -> None:
        self.credentials, self.rbac_fallback = gpuplace_rbac.apply_rbac(self.cp, self.name)
        self.serving = self.cp.issue_serving_cert(f"{self.name}-serving")
        self._write_config()

    def _write_config(self) -> None:
        """Pick free ports and write the config file for them."""
        assert self.credentials is not None and self.serving is not None
        self.extender_port, self.webhook_port = free_port(), free_port()
        while self.webhook_port == self.extender_port:
            self.webhook_port = free_port()
        config: dict[str, Any] = {
            "kubernetes": {"kubeconfig": str(self.credentials.kubeconfig)},
            "logging": {"level": "INFO", "json": False},
            "scheduler": {"host": "127.0.0.1", "port": self.extender_port, "tls": None},
            "webhook_server": {
                "enabled": True,
                "host": "127.0.0.1",
                "port": self.webhook_port,
                "cert_file": str(self.serving.cert_file),
                "key_file": str(self.serving.key_file),
            },
        }
        if self.extender_https:
            config["scheduler"]["tls"] = {
                "cert_file": str(self.serving.cert_file),
                "key_file": str(self.serving.key_file),
            }
        config = deep_merge(deep_merge(example_config(), config), self.settings)
        self.config_file = self.cp.workdir / f"{self.name}.config.yaml"
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))

    # ----- the process -------------------------------------------------------------------------------

    def launch(self) -> None:
        """Start the process with the prepared config (after :meth:`stop`: same ports) and wait until ready."""
        assert self.config_file is not None
        argv = [self.python, *self.python_args, "-m", "gpuplace.cli", "serve", "--config", str(self.config_file)]
        # Only the config file configures the child: GPUPLACE_* variables would override it.
        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("GPUPLACE_")}
        env["PYTHONUNBUFFERED"] = "1"
        process = self.cp.start_process(
            self.name,
            argv,
            env=env,
            cwd=repo_root(),
            ready_url=f"{self.extender_base}/readyz",
            ready_timeout=self.ready_timeout,
        )
        try:
            wait_ready(process, f"{self.webhook_base}/healthz", timeout=30, ca_file=self.cp.ca_file)
        except BaseException:
            self.cp.stop_process(self.name)
            raise
        self.process = process

    # ----- webhook registration ----------------------------------------------------------------------

    def webhook_manifests(self) -> list[dict[str, Any]]:
        """deploy/'s MutatingWebhookConfigurations with the Service reference replaced by the loopback URL."""
        out = []
        for doc in manifests.objects_of_kind({"MutatingWebhookConfiguration"}):
            body = copy.deepcopy(doc)
            for hook in body.get("webhooks", []):
                cc = hook.setdefault("clientConfig", {})
                path = (cc.pop("service", None) or {}).get("path", "/mutate")
                cc["url"] = f"{self.webhook_base}{path}"
            out.append(body)
        if not out:
            raise FileNotFoundError(f"no MutatingWebhookConfiguration under {manifests.deploy_dir()}")
        return out

    async def register_webhooks(self, probe_namespace: str = "default") -> None:
        for body in self.webhook_manifests():
            self.webhook_names.append(await self.cp.register_webhook(body, self.cp.ca_pem))
        async with self.cp.api_client() as api:
            core = client.CoreV1Api(api)
            probe: Any = {
                "metadata": {"generateName": "gpuplace-webhook-probe-"},
                "spec": {
                    "containers": [
                        {"name": "probe", "image": "registry.k8s.io/pause:3.10",
                         "resources": {"limits": {GPU_RESOURCE: "1"}}}
                    ]
                },
            }  # fmt: skip

            async def mutated() -> bool:
                pod = await core.create_namespaced_pod(probe_namespace, probe, dry_run="All")
                requests = pod.spec.containers[0].resources.requests or {}
                return requests.get(GPU_RESOURCE) == "1"

            await wait_until(mutated, within=30, what="the gpuplace webhook to mutate a dry-run GPU pod")

    # ----- kube-scheduler configuration (gpuplace/localcluster/scheduler_entry.py) -------------------

    def extender_entry(self) -> dict[str, Any]:
        """deploy/'s gpuplace extender entry (or the default), pointed at this process."""
        return scheduler_entry.extender_entry(
            self.extender_url, https=self.extender_https, ca_file=self.cp.ca_file
        )

    def scheduler_config(self, **overrides: Any) -> dict[str, Any]:
        """A KubeSchedulerConfiguration for ``cp.start_scheduler`` with gpuplace as extender."""
        return scheduler_entry.scheduler_config(self.extender_entry(), **overrides)
