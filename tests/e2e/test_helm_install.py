"""The chart against a real kube-apiserver: server-side dry run, `helm install`, and the install order.

The install test runs its own control plane: the chart's cluster-scoped objects (ClusterRoles named
gpuplace-*) would collide with the ones the session's gpuplace fixture applies from deploy/. There is
no kubelet, so after `helm install` nothing runs: the test starts the webhook Deployment's container
as a local process from what the chart rendered (tests/deploy/chart.py `local_process`), which is what
lets it check the install order — no MutatingWebhookConfiguration exists until a replica serves, and
then the one registered is trusted, mutates, and is owned by the release's ClusterRole.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from gpuplace.localcluster import ControlPlane, accounts, binaries
from gpuplace.localcluster.processes import free_port
from gpuplace.localcluster.waiting import wait_until
from tests.deploy import chart

pytestmark = pytest.mark.e2e
NS = chart.NAMESPACE


@pytest.fixture(scope="session")
def helm() -> Path:
    return chart.tool("helm")


def _gpu_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
    }  # fmt: skip


def _tolerates_gpu(pod: Any) -> bool:
    """The webhook's mark on a GPU pod (the API server itself already defaults requests to limits)."""
    return any(t.key == "nvidia.com/gpu" for t in pod.spec.tolerations or [])


async def _ensure_namespace(cp: ControlPlane, name: str) -> None:
    async with cp.api_client() as api:
        await accounts.ensure_namespace(api, name)


@pytest.mark.parametrize("mode", ["extender", "second-scheduler"])
async def test_rendered_chart_passes_server_dry_run(
    control_plane: ControlPlane, helm: Path, mode: str
) -> None:
    objs = chart.helm_template(helm, f"mode={mode}")
    await _ensure_namespace(control_plane, NS)
    result = await asyncio.to_thread(
        control_plane.kubectl,
        "apply",
        "--dry-run=server",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(objs),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(objs), result.stdout
    # The registration gpuplace applies itself, with a caBundle as it will have one.
    mwc = yaml.safe_load(
        chart.rendered(objs, "ConfigMap", "gpuplace-webhook-registration")["data"][
            "mutatingwebhookconfiguration.yaml"
        ]
    )
    for hook in mwc["webhooks"]:
        hook["clientConfig"]["caBundle"] = base64.b64encode(control_plane.ca_pem).decode()
    result = await asyncio.to_thread(
        control_plane.kubectl, "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(mwc), check=False
    )
    assert result.returncode == 0 and "(server dry run)" in result.stdout, result.stderr


@pytest.fixture(scope="module")
def own_control_plane(local_binaries: binaries.Binaries) -> Iterator[ControlPlane]:
    with ControlPlane(bin_dir=local_binaries.kubectl.parent) as cp:
        yield cp


async def test_helm_install_registers_the_webhook_only_once_it_is_served(
    own_control_plane: ControlPlane, helm: Path, e2e_report: Any
) -> None:
    cp = own_control_plane
    kubeconfig = ["--kubeconfig", str(cp.admin_kubeconfig)]
    install = await asyncio.to_thread(
        chart.run, [helm, "install", "gpuplace", chart.CHART, "-n", NS, "--create-namespace", *kubeconfig]
    )
    assert install.returncode == 0, install.stderr
    status = await asyncio.to_thread(chart.run, [helm, "status", "gpuplace", "-n", NS, *kubeconfig])
    assert "STATUS: deployed" in status.stdout, status.stdout + status.stderr

    async with cp.api_client() as api:
        core, adm = client.CoreV1Api(api), client.AdmissionregistrationV1Api(api)
        await accounts.ensure_namespace(api, "workload")
        # Installed, nothing serving yet: no Fail webhook is registered, so a GPU pod is still admitted.
        with pytest.raises(ApiException) as missing:
            await adm.read_mutating_webhook_configuration("gpuplace")
        assert missing.value.status == 404
        pod = await core.create_namespaced_pod("workload", _gpu_pod("before-webhook"), dry_run="All")  # type: ignore[arg-type]
        assert not _tolerates_gpu(pod)  # admitted, not mutated

        # One webhook replica, started from the rendered Deployment, with the release's ServiceAccount.
        creds = await accounts.service_account_token(
            api, namespace=NS, name="gpuplace", server=cp.server, ca_file=cp.ca_file,
            kubeconfig_path=cp.workdir / "kubeconfigs" / "helm-gpuplace.kubeconfig",
        )  # fmt: skip
        objs = chart.helm_template(helm)
        webhook_port, ops_port = free_port(), free_port()
        argv, env = chart.local_process(
            objs, "gpuplace-webhook", workdir=cp.workdir / "helm", kubeconfig=creds.kubeconfig,
            pod_name="gpuplace-webhook-0", ports={"webhook_server.port": webhook_port, "webhook_server.ops_port": ops_port},
            # no Service routing here: the API server calls the replica on loopback (clientConfig.url)
            overrides={"webhook_server": {"certificates": {"extra_sans": ["IP:127.0.0.1"]},
                                          "registration": {"url": f"https://127.0.0.1:{webhook_port}"}}},
        )  # fmt: skip
        process = await asyncio.to_thread(
            cp.start_process, "helm-webhook-0", argv, env=env, cwd=binaries.repo_root(),
            ready_url=f"http://127.0.0.1:{ops_port}/readyz", ready_timeout=90,
        )  # fmt: skip

        async def mutated() -> bool:
            pod = await core.create_namespaced_pod("workload", _gpu_pod("after-webhook"), dry_run="All")  # type: ignore[arg-type]
            return _tolerates_gpu(pod)

        await wait_until(mutated, within=60, what="the self-registered webhook to mutate a GPU pod")
        secret = await core.read_namespaced_secret("gpuplace-webhook-tls", NS)
        assert set(secret.data) == {"tls.crt", "tls.key", "ca.crt", "ca.key", "ca-bundle.crt"}
        mwc = await adm.read_mutating_webhook_configuration("gpuplace")
        (hook,) = mwc.webhooks
        assert hook.failure_policy == "Fail" and hook.client_config.ca_bundle == secret.data["ca-bundle.crt"]
        role = await client.RbacAuthorizationV1Api(api).read_cluster_role("gpuplace-webhook")
        (owner,) = mwc.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid) == ("ClusterRole", "gpuplace-webhook", role.metadata.uid)
        assert process.alive()
        cp.stop_process("helm-webhook-0")

    uninstall = await asyncio.to_thread(chart.run, [helm, "uninstall", "gpuplace", "-n", NS, *kubeconfig])
    assert uninstall.returncode == 0, uninstall.stderr
    e2e_report("helm install/uninstall of the chart into the local control plane: ok")
