"""The bind-fault modules' shared harness: a fault proxy in front of kube-apiserver, a gpuplace whose API
traffic goes through it, and the pods and audit those scenarios use (tests/e2e/apiserver_proxy.py is the
proxy itself)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client

from gpuplace.localcluster import ControlPlane
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
from gpuplace.localcluster.workload import pod_manifest
from tests.e2e.apiserver_proxy import FaultProxy
from tests.e2e.helpers import audit_namespaces


@contextmanager
def fault_proxy(cp: ControlPlane, name: str) -> Iterator[FaultProxy]:
    """A running FaultProxy in front of `cp`'s kube-apiserver, serving its own certificate `name`."""
    cert = cp.issue_serving_cert(name)
    fp = FaultProxy(cp.server, cp.ca_file, cert.cert_file, cert.key_file)
    with fp.running():
        yield fp


class ProxiedGpuplace(GpuplaceServer):
    """`gpuplace serve` whose kubeconfig points at the fault proxy (same token, same CA)."""

    def __init__(self, cp: ControlPlane, proxy: FaultProxy, *, settings: dict[str, Any], **kwargs: Any) -> None:
        self.proxy = proxy
        name = kwargs.get("name", "gpuplace")
        self.proxied_kubeconfig = cp.workdir / "kubeconfigs" / f"{name}-proxied.kubeconfig"
        settings = {**settings, "kubernetes": {"kubeconfig": str(self.proxied_kubeconfig)}}
        super().__init__(cp, settings=settings, **kwargs)

    def launch(self) -> None:
        assert self.credentials is not None
        doc = yaml.safe_load(Path(self.credentials.kubeconfig).read_text())
        for cluster in doc["clusters"]:
            cluster["cluster"]["server"] = f"https://127.0.0.1:{self.proxy.port}"
        self.proxied_kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        self.proxied_kubeconfig.write_text(yaml.safe_dump(doc))
        self.proxied_kubeconfig.chmod(0o600)
        super().launch()


def gpu_pod(name: str, gpus: int, selector: dict[str, str]) -> dict[str, Any]:
    """A pod as the webhook would leave it (GPU requests, the GPU toleration): no webhook here."""
    return pod_manifest(name, gpus=gpus, node_selector=selector, gpu_requests=True, tolerate_gpu_taint=True)


async def no_double_booking(k8s: client.ApiClient, namespace: str) -> None:
    result = await audit_namespaces(k8s, namespace)
    assert result.ok, result.problems
