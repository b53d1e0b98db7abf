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
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import logging
import os
import sys
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import yaml
from kubernetes_asyncio import client
from prometheus_client.parser import text_string_to_metric_families

from gpuplace.localcluster import accounts, manifests
from gpuplace.localcluster.binaries import repo_root
from gpuplace.localcluster.controlplane import ControlPlane
from gpuplace.localcluster.pki import CertPair
from gpuplace.localcluster.processes import ManagedProcess, ProcessStartError, free_port, probe, wait_ready
from gpuplace.localcluster.waiting import wait_until
from placement_core import MODELS

log = logging.getLogger("gpuplace.localcluster")
PORT_ATTEMPTS = 3  # as ControlPlane retries etcd, kube-apiserver and kube-scheduler on a port clash
T = TypeVar("T")

GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_NAMESPACE = "gpuplace-system"
DEFAULT_ACCOUNT = "gpuplace"
RBAC_KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
_FALLBACK_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/binding"], "verbs": ["create"]},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["list", "watch"]},
]


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when the caller's thread runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def mig_resource_names() -> list[str]:
    """``nvidia.com/mig-<profile>`` for every MIG profile of every catalog model (managedResources)."""
    names = {f"nvidia.com/mig-{p.resource_suffix}" for m in MODELS.values() for p in m.mig_profiles}
    return sorted(names)


def default_extender_entry() -> dict[str, Any]:
    """The extender entry used when deploy/ has no KubeSchedulerConfiguration (documented in deploy/scheduler)."""
    return {
        "urlPrefix": "http://127.0.0.1:8888/scheduler",
        "filterVerb": "filter",
        "prioritizeVerb": "prioritize",
        "preemptVerb": "preempt",
        "bindVerb": "bind",
        "weight": 5,
        "enableHTTPS": False,
        "httpTimeout": "30s",
        "nodeCacheCapable": True,
        "ignorable": False,
        "managedResources": [
            {"name": name, "ignoredByScheduler": False} for name in [GPU_RESOURCE, *mig_resource_names()]
        ],
    }


def example_config() -> dict[str, Any]:
    """deploy/'s example `gpuplace serve` config (a YAML mapping with a `scheduler:` section), or {}."""
    for path in sorted(manifests.deploy_dir().glob("*/gpuplace-config.y*ml")):
        doc = yaml.safe_load(path.read_text())
        if isinstance(doc, dict) and "scheduler" in doc:
            return doc
    return {}


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


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

    def node_gpus(self) -> dict[str, dict[str, float]]:
        """gpuplace's own view, from its ``gpuplace_node_gpus`` gauge: node → {"allocated": n, "free": n, "unavailable": n}.

        A node is absent when gpuplace's model has no GPUs for it (deleted, or not a GPU node).
        """
        status, body = probe(f"{self.extender_base}/metrics", ca_file=self.cp.ca_file, timeout=10)
        if status != 200:
            raise RuntimeError(f"gpuplace /metrics answered {status}")
        out: dict[str, dict[str, float]] = {}
        for family in text_string_to_metric_families(body):
            if family.name == "gpuplace_node_gpus":
                for sample in family.samples:
                    node = out.setdefault(sample.labels["node"], {})
                    node[sample.labels["state"]] = node.get(sample.labels["state"], 0.0) + sample.value
        return out

    # ----- preparation -------------------------------------------------------------------------------

    def _prepare(self) -> None:
        self.credentials = self._apply_rbac()
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
        config = _deep_merge(_deep_merge(example_config(), config), self.settings)
        self.config_file = self.cp.workdir / f"{self.name}.config.yaml"
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))

    def _apply_rbac(self) -> accounts.ServiceAccountCredentials:
        """Apply deploy/'s RBAC for gpuplace's ServiceAccount and mint its token."""
        docs = manifests.objects_of_kind(RBAC_KINDS)
        namespace, account = DEFAULT_NAMESPACE, DEFAULT_ACCOUNT
        for doc in docs:
            if doc["kind"] in ("ClusterRoleBinding", "RoleBinding"):
                for subject in doc.get("subjects") or []:
                    if subject.get("kind") == "ServiceAccount":
                        namespace, account = subject.get("namespace", namespace), subject["name"]
        namespaces = {namespace} | {
            str(d["metadata"]["namespace"]) for d in docs if (d.get("metadata") or {}).get("namespace")
        }
        base: list[dict[str, Any]] = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in sorted(namespaces)
        ]
        base.append(
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": namespace}}
        )
        bundle = base + [d for d in docs if d["kind"] not in ("Namespace", "ServiceAccount")]
        self.cp.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(bundle))
        self.rbac_fallback = not self._can(namespace, account, "create", "pods", "binding")
        if self.rbac_fallback:
            log.warning("deploy/ grants %s/%s no pods/binding: applying a fallback ClusterRole", namespace, account)
            role = f"{self.name}-local-fallback"
            fallback = [
                {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                 "metadata": {"name": role}, "rules": _FALLBACK_RULES},
                {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                 "metadata": {"name": role},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                 "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]},
            ]  # fmt: skip
            self.cp.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(fallback))

        async def token() -> accounts.ServiceAccountCredentials:
            async with self.cp.api_client() as api:
                return await accounts.service_account_token(
                    api,
                    namespace=namespace,
                    name=account,
                    server=self.cp.server,
                    ca_file=self.cp.ca_file,
                    kubeconfig_path=self.cp.workdir / "kubeconfigs" / f"{self.name}.kubeconfig",
                )

        return run_sync(token())

    def _can(self, namespace: str, account: str, verb: str, resource: str, subresource: str = "") -> bool:
        args = ["auth", "can-i", verb, resource, f"--as=system:serviceaccount:{namespace}:{account}", "-A"]
        if subresource:
            args.insert(4, f"--subresource={subresource}")
        return self.cp.kubectl(*args, check=False).stdout.strip() == "yes"

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

    # ----- kube-scheduler configuration -------------------------------------------------------------

    def extender_entry(self) -> dict[str, Any]:
        """deploy/'s gpuplace extender entry (or the default), pointed at this process."""
        entry: dict[str, Any] | None = None
        for cfg in manifests.scheduler_configurations():
            for ext in cfg.get("extenders") or []:
                if entry is None or "gpuplace" in str(ext.get("urlPrefix", "")):
                    entry = copy.deepcopy(dict(ext))
        entry = entry or default_extender_entry()
        entry["urlPrefix"] = self.extender_url
        entry["enableHTTPS"] = self.extender_https
        if self.extender_https:
            entry["tlsConfig"] = {"caFile": str(self.cp.ca_file)}
        else:
            entry.pop("tlsConfig", None)
        return entry

    def scheduler_config(self, **overrides: Any) -> dict[str, Any]:
        """A KubeSchedulerConfiguration for ``cp.start_scheduler`` with gpuplace as extender."""
        base: dict[str, Any] = {"percentageOfNodesToScore": 100}
        for cfg in manifests.scheduler_configurations():
            if cfg.get("extenders"):
                for key in ("percentageOfNodesToScore", "profiles", "parallelism"):
                    if key in cfg:
                        base[key] = copy.deepcopy(cfg[key])
                break
        base["extenders"] = [self.extender_entry()]
        return _deep_merge(base, overrides)
