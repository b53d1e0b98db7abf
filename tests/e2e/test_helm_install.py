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
from gpuplace.localcluster.waiting import WaitTimeoutError, wait_until
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


def _endpoint_slice(name: str, service: str, *, ready: bool) -> dict[str, Any]:
    """An EndpointSlice as kcm's EndpointSlice controller writes one for a Service's pod (discovery/v1).

    The local control plane has no pod network and runs no EndpointSlice controller, so the test plays
    it: the address stands for a webhook pod's IP (never dialled: the gate reads the slice, the API
    server is not asked to call the webhook here), `ready` for the pod's Ready condition."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service,
                                              "endpointslice.kubernetes.io/managed-by": "tests.gpuplace.io"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.0.10"], "conditions": {"ready": ready}}],
        "ports": [{"name": "webhook", "port": 8443, "protocol": "TCP"}],
    }  # fmt: skip


async def _gone(read: Any, *args: str) -> bool:
    try:
        await read(*args)
    except ApiException as e:
        if e.status == 404:
            return True
        raise
    return False


async def test_registration_waits_for_a_ready_service_endpoint_and_uninstall_collects_it(
    own_control_plane: ControlPlane, helm: Path, e2e_report: Any
) -> None:
    """The Service gate (gpuplace/registration.py `Registrar.service_ready`) on the real API server, and
    `helm uninstall` leaving nothing gpuplace wrote behind, removed by kcm's real garbage collector.

    The replica registers through `clientConfig.service` (no `url` override, unlike the test above), so
    the gate is live: no slice, a slice of another Service, and a not-ready endpoint of its own Service
    keep it from registering; a ready endpoint lets it. Each "still not registered" is checked after the
    replica has logged another declined pass that started after the change (never after a fixed sleep)."""
    cp = own_control_plane
    kubeconfig = ["--kubeconfig", str(cp.admin_kubeconfig)]
    install = await asyncio.to_thread(
        chart.run, [helm, "install", "gpuplace", chart.CHART, "-n", NS, "--create-namespace", *kubeconfig]
    )
    assert install.returncode == 0, install.stderr
    async with cp.api_client() as api:
        core, adm = client.CoreV1Api(api), client.AdmissionregistrationV1Api(api)
        discovery = client.DiscoveryV1Api(api)
        creds = await accounts.service_account_token(
            api, namespace=NS, name="gpuplace", server=cp.server, ca_file=cp.ca_file,
            kubeconfig_path=cp.workdir / "kubeconfigs" / "helm-gpuplace-gate.kubeconfig",
        )  # fmt: skip
        webhook_port, ops_port = free_port(), free_port()
        argv, env = chart.local_process(
            chart.helm_template(helm), "gpuplace-webhook", workdir=cp.workdir / "helm-gate",
            kubeconfig=creds.kubeconfig, pod_name="gpuplace-webhook-gate",
            ports={"webhook_server.port": webhook_port, "webhook_server.ops_port": ops_port},
            overrides={"webhook_server": {"certificates": {"resync_seconds": 0.3},
                                          "registration": {"resync_seconds": 0.3}}},
        )  # fmt: skip
        process = await asyncio.to_thread(
            cp.start_process, "helm-webhook-gate", argv, env=env, cwd=binaries.repo_root(),
            ready_url=f"http://127.0.0.1:{ops_port}/readyz", ready_timeout=90,
        )  # fmt: skip
        declined = "webhook Service has no ready endpoint yet"

        def log_tail() -> str:
            return process.log_file.read_text(errors="replace")[-3000:]

        async def wait(probe: Any, what: str) -> Any:
            try:
                return await wait_until(probe, within=60, what=what)
            except WaitTimeoutError as e:
                pytest.fail(f"{e}\n--- {process.log_file} ---\n{log_tail()}", pytrace=False)

        def declines() -> int:
            return process.log_file.read_text(errors="replace").count(declined)

        async def still_unregistered(after: str) -> None:
            seen = declines()

            async def declined_again() -> bool:  # one whole pass began after the change
                return declines() >= seen + 2

            await wait(declined_again, f"the replica to decline registering again {after}")
            assert await _gone(adm.read_mutating_webhook_configuration, "gpuplace"), (
                f"registered {after}:\n{log_tail()}"
            )

        other: Any = _endpoint_slice("other", "other-service", ready=True)
        own: Any = _endpoint_slice("webhook-a", "gpuplace-webhook", ready=False)
        await still_unregistered("with no EndpointSlice")
        await discovery.create_namespaced_endpoint_slice(NS, other)
        await still_unregistered("with a ready endpoint of another Service only")
        await discovery.create_namespaced_endpoint_slice(NS, own)
        await still_unregistered("with a not-ready endpoint of its Service")
        ready: Any = {"endpoints": [{"addresses": ["10.244.0.10"], "conditions": {"ready": True}}]}
        await discovery.patch_namespaced_endpoint_slice("webhook-a", NS, ready)

        async def registered() -> Any:
            try:
                return await adm.read_mutating_webhook_configuration("gpuplace")
            except ApiException as e:
                if e.status == 404:
                    return None
                raise

        mwc = await wait(registered, "registration once the Service has a ready endpoint")
        (hook,) = mwc.webhooks
        secret = await core.read_namespaced_secret("gpuplace-webhook-tls", NS)
        assert hook.client_config.url is None
        service = hook.client_config.service
        assert (service.name, service.namespace) == ("gpuplace-webhook", NS)
        assert hook.failure_policy == "Fail" and hook.client_config.ca_bundle == secret.data["ca-bundle.crt"]
        # What the release's uninstall must take with it: both are gpuplace's writes, not helm's objects.
        role = await client.RbacAuthorizationV1Api(api).read_cluster_role("gpuplace-webhook")
        for obj in (mwc, secret):
            owners = [(o.kind, o.name, o.uid) for o in obj.metadata.owner_references or []]
            assert owners == [("ClusterRole", "gpuplace-webhook", role.metadata.uid)], (obj.kind, owners)
        # A Deployment's pods are gone before the release is; the replica stops first here too.
        assert process.alive()
        cp.stop_process("helm-webhook-gate")

        uninstall = await asyncio.to_thread(chart.run, [helm, "uninstall", "gpuplace", "-n", NS, *kubeconfig])
        assert uninstall.returncode == 0, uninstall.stderr

        async def nothing_left() -> bool:
            return await _gone(adm.read_mutating_webhook_configuration, "gpuplace") and await _gone(
                core.read_namespaced_secret, "gpuplace-webhook-tls", NS
            )

        await wait(nothing_left, "the garbage collector to remove the registration and the Secret")
    e2e_report("registration Service gate and uninstall garbage collection on the real control plane: ok")
