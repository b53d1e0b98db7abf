"""GPUs through Dynamic Resource Allocation on the real control plane: kube-apiserver, kube-scheduler v1.36.3 with
gpuplace as its extender, kube-controller-manager's resourceclaim controller, and kwok.

The world: NVIDIA's DeviceClasses (`gpu.nvidia.com` with extendedResourceName `nvidia.com/gpu`, `mig.nvidia.com`) and
ResourceSlices exactly as NVIDIA's DRA driver v25.12.0 publishes them (gpuplace.localcluster.dra_slices) on DRA nodes,
beside device-plugin nodes (allocatable `nvidia.com/gpu`). Pods ask with ResourceClaimTemplates (1 GPU; 2 GPUs behind one
PCIe root, `matchAttribute: resource.kubernetes.io/pcieRoot`; a MIG profile by CEL selector) or with a DRA-backed
`nvidia.com/gpu: 1`. The webhook marks claim pods (toleration, `gpuplace.io/dra-gpu`), so kube-scheduler calls gpuplace
for them; kube-scheduler's DynamicResources plugin allocates the devices (Filter/Reserve, status.allocation in PreBind),
gpuplace scores the nodes, binds, and counts the allocation.

kwok nodes have no kubelet, hence no DRA kubelet plugin: nothing calls NodePrepareResources, and kwok makes a bound pod
Running as soon as it is bound. What a real node adds after binding (CDI devices in the container, the driver's
checkpoint) is therefore not exercised here; everything up to and including the allocation written to the API is.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from kubernetes_asyncio import client

from gpuplace.localcluster import ControlPlane, ManagedProcess
from gpuplace.localcluster.dra_slices import DRIVER, PCIE_ROOT, devices, ensure_device_classes
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer, run_sync
from gpuplace.localcluster.workload import create_pod, pod_manifest, wait_bound, wait_pending
from tests.e2e import dra
from tests.e2e.helpers import NodeFactory, owner

pytestmark = pytest.mark.e2e
MARKER = "gpuplace.io/dra-gpu"


@pytest.fixture(scope="module")
def device_classes(control_plane: ControlPlane) -> None:
    async def create() -> None:
        async with control_plane.api_client() as api:
            await ensure_device_classes(api)

    run_sync(create())


@pytest.fixture
async def dra_nodes(k8s: client.ApiClient, device_classes: None) -> AsyncIterator[dra.DraNodeFactory]:
    async for make in dra.dra_node_factory(k8s):
        yield make


async def _audit(k8s: client.ApiClient, *namespaces: str) -> None:
    problems = await dra.device_audit(k8s, namespaces)
    assert not problems, problems


async def _pod(k8s: client.ApiClient, namespace: str, name: str) -> Any:
    return await client.CoreV1Api(k8s).read_namespaced_pod(name, namespace)


async def test_the_control_plane_serves_dra(k8s: client.ApiClient) -> None:
    """resource.k8s.io/v1 is served (GA since 1.34, on by default) with the kinds the scenario uses."""
    resources = await client.CustomObjectsApi(k8s).get_api_resources("resource.k8s.io", "v1")
    names = {r.name for r in resources.resources}
    assert {"deviceclasses", "resourceslices", "resourceclaims", "resourceclaimtemplates"} <= names


async def test_claim_pods_are_allocated_placed_and_bound_by_gpuplace(
    gpuplace: GpuplaceServer,
    gpuplace_scheduler: ManagedProcess,
    k8s: client.ApiClient,
    namespace: str,
    dra_nodes: dra.DraNodeFactory,
    node_factory: NodeFactory,
) -> None:
    mine = owner(namespace)
    h100 = await dra_nodes("hgx-h100", labels=mine)
    a100 = await dra_nodes("a100-80gb-mig", labels=mine)
    plugin = await node_factory("hgx-h100", labels=mine)
    await dra.create_templates(
        k8s,
        namespace,
        dra.gpu_template("one-gpu"),
        dra.gpu_template("pair", count=2, same_pcie_root=True),
        dra.mig_template("mig-1g", "1g.10gb"),
    )
    binds_before = gpuplace.metric("gpuplace_binds_total", result="ok")
    pods = {
        "one": dra.claim_pod("one", "one-gpu", node_selector=mine),
        "pair": dra.claim_pod("pair", "pair", node_selector=mine),
        "mig": dra.claim_pod("mig", "mig-1g", node_selector=mine),
        # nvidia.com/gpu served by DRA: the DRA node has no such allocatable, gpu.nvidia.com maps it
        "extended": pod_manifest("extended", gpus=1, cpu="4", node_selector={"kubernetes.io/hostname": h100}),
        "plugin": pod_manifest("plugin", gpus=1, cpu="4", node_selector={"kubernetes.io/hostname": plugin}),
    }
    for name, body in pods.items():
        await create_pod(k8s, namespace, body)
        await wait_bound(k8s, namespace, [name], within=60)
        await _audit(k8s, namespace)  # after every bind, not only at the end
    bound = await wait_bound(k8s, namespace, list(pods), within=5)
    claims = await dra.list_claims(k8s, namespace)

    for name in ("one", "pair", "mig"):
        pod = await _pod(k8s, namespace, name)
        assert MARKER in pod.spec.containers[0].resources.limits, f"{name}: the webhook did not mark it"
        assert any(t.key == "nvidia.com/gpu" for t in pod.spec.tolerations or []), f"{name}: no GPU toleration"
    by_pod = {}
    for name in pods:
        pod = await _pod(k8s, namespace, name)
        claim = dra.pod_claim(claims, pod)
        by_pod[name] = dra.allocated_devices(claim) if claim else []
    assert by_pod["plugin"] == [], "a device-plugin pod got a claim"
    for name in ("one", "pair", "mig", "extended"):
        assert by_pod[name], f"{name} has no allocated claim: {claims}"
        assert {pool for _, pool, _ in by_pod[name]} == {bound[name]}, f"{name}: devices not on its node {bound[name]}"
    assert bound["one"] in (h100, a100) and bound["pair"] == h100 and bound["mig"] == a100
    assert bound["extended"] == h100 and bound["plugin"] == plugin
    assert len(by_pod["pair"]) == 2
    slices = {d["name"]: d for d in devices(h100, "hgx-h100")}
    roots = {slices[device]["attributes"][PCIE_ROOT]["string"] for _, _, device in by_pod["pair"]}
    assert len(roots) == 1, f"the pair spans PCIe roots {roots}"
    [(_, _, mig_device)] = by_pod["mig"]
    assert "-mig-1g10gb-" in mig_device
    assert gpuplace.metric("gpuplace_binds_total", result="ok") - binds_before == len(pods)
