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
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from gpuplace.localcluster import ControlPlane, ManagedProcess, audit
from gpuplace.localcluster.dra_slices import PCIE_ROOT, devices, ensure_device_classes
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
from gpuplace.localcluster.lifecycle import wait_namespace_usable
from gpuplace.localcluster.waiting import WaitTimeoutError, run_sync, wait_until
from gpuplace.localcluster.workload import create_pod, pod_manifest, wait_bound, wait_pending
from tests.e2e import dra
from tests.e2e.helpers import NodeFactory, owner

pytestmark = pytest.mark.e2e
MARKER = "gpuplace.io/dra-gpu"


@pytest.fixture(scope="module")
def gpuplace(control_plane: ControlPlane) -> Iterator[GpuplaceServer]:
    """conftest's gpuplace, with its per-node GPU gauges refreshed every second (the counts are compared with
    the claims; the default 10 s would only make the waits longer)."""
    with GpuplaceServer(control_plane, settings={"scheduler": {"metrics": {"refresh_seconds": 1}}}) as server:
        yield server


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
        assert any(t.key == "nvidia.com/gpu" for t in pod.spec.tolerations or []), (
            f"{name}: no GPU toleration"
        )
    by_pod = {}
    for name in pods:
        pod = await _pod(k8s, namespace, name)
        claim = dra.pod_claim(claims, pod)
        by_pod[name] = dra.allocated_devices(claim) if claim else []
    assert by_pod["plugin"] == [], "a device-plugin pod got a claim"
    for name in ("one", "pair", "mig", "extended"):
        assert by_pod[name], f"{name} has no allocated claim: {claims}"
        assert {pool for _, pool, _ in by_pod[name]} == {bound[name]}, (
            f"{name}: devices not on its node {bound[name]}"
        )
    assert bound["one"] in (h100, a100) and bound["pair"] in (h100, a100) and bound["mig"] == a100
    assert bound["extended"] == h100 and bound["plugin"] == plugin
    assert len(by_pod["pair"]) == 2
    published = {h100: devices(h100, "hgx-h100"), a100: devices(a100, "a100-80gb-mig")}
    slices = {d["name"]: d for d in published[bound["pair"]]}
    roots = {slices[device]["attributes"][PCIE_ROOT]["string"] for _, _, device in by_pod["pair"]}
    assert len(roots) == 1, f"the pair spans PCIe roots {roots}"
    [(_, _, mig_device)] = by_pod["mig"]
    assert "-mig-1g10gb-" in mig_device
    assert gpuplace.metric("gpuplace_binds_total", result="ok") - binds_before == len(pods)
    await _gpuplace_counts_the_claims(k8s, gpuplace, [h100])


async def _gpus_used(k8s: client.ApiClient, nodes: list[str]) -> dict[str, int]:
    """node → whole-GPU devices held by allocated claims (what status.allocation says)."""
    used = dict.fromkeys(nodes, 0)
    for claim in await dra.list_claims(k8s):
        for _, pool, _ in dra.allocated_devices(claim):
            if pool in used:
                used[pool] += 1
    return used


async def _gpuplace_counts_the_claims(
    k8s: client.ApiClient, gpuplace: GpuplaceServer, nodes: list[str]
) -> None:
    """gpuplace's own view (gpuplace_node_gpus) equals the allocations in the API, node by node."""
    want = await _gpus_used(k8s, nodes)

    async def agrees() -> bool:
        view = await asyncio.to_thread(gpuplace.node_gpus)
        return all(view.get(n, {}).get("allocated") == want[n] for n in nodes)

    try:
        await wait_until(agrees, within=60, what="gpuplace's GPU counts to equal the claims' allocations")
    except WaitTimeoutError as exc:
        view = await asyncio.to_thread(gpuplace.node_gpus)
        raise AssertionError(f"claims say {want}, gpuplace says { {n: view.get(n) for n in nodes} }") from exc


async def test_a_gpuplace_restart_in_the_middle(
    gpuplace: GpuplaceServer,
    gpuplace_scheduler: ManagedProcess,
    k8s: client.ApiClient,
    namespace: str,
    dra_nodes: dra.DraNodeFactory,
) -> None:
    """gpuplace is restarted while claim pods are being created. The new process rebuilds its ledger from the
    ResourceClaims in the API: it keeps packing the half-used node (an 8-GPU pod created last needs the other
    node whole, which a gpuplace that forgot the allocations would have spread onto), and its counts equal
    what status.allocation says."""
    mine = owner(namespace)
    nodes = [await dra_nodes("hgx-h100", labels=mine) for _ in range(2)]
    await dra.create_templates(k8s, namespace, dra.gpu_template("one-gpu"), dra.gpu_template("eight", count=8),
                               dra.gpu_template("pair", count=2, same_pcie_root=True))  # fmt: skip
    async with audit.AuditLoop(k8s, namespaces=[namespace], dra=True, every=0.5) as loop:  # DURING it all
        first = {"a": "one-gpu", "b": "one-gpu", "c": "pair"}
        for name, template in first.items():
            await create_pod(k8s, namespace, dra.claim_pod(name, template, node_selector=mine, cpu="16"))
            await wait_bound(k8s, namespace, [name], within=60)
        await _audit(k8s, namespace)
        await _gpuplace_counts_the_claims(k8s, gpuplace, nodes)

        restart = asyncio.create_task(asyncio.to_thread(gpuplace.restart))
        second = [f"d{i}" for i in range(4)]  # created while gpuplace is down or coming back
        for name in second:
            await create_pod(
                k8s, namespace, dra.claim_pod(name, "one-gpu", node_selector=mine, cpu="16"), retry_for=90
            )
        await restart
        await wait_bound(k8s, namespace, second, within=90)
        await _audit(k8s, namespace)
        await _gpuplace_counts_the_claims(k8s, gpuplace, nodes)
        assert sorted((await _gpus_used(k8s, nodes)).values()) == [0, 8], (
            "the restarted gpuplace spread the pods"
        )

        await create_pod(k8s, namespace, dra.claim_pod("eight", "eight", node_selector=mine, cpu="16"))
        await wait_bound(k8s, namespace, ["eight"], within=60)
        await create_pod(k8s, namespace, dra.claim_pod("late", "one-gpu", node_selector=mine, cpu="16"))
        pending = await wait_pending(k8s, namespace, "late", within=60)
        assert "cannot allocate all claims" in pending.text or "GPU" in pending.text, pending
        await _audit(k8s, namespace)
        await _gpuplace_counts_the_claims(k8s, gpuplace, nodes)

    assert loop.rounds > 0 and not loop.problems, loop.problems


ONE_GPU_PODS = 4  # then one 8-GPU pod, on two 8-GPU DRA nodes


async def _fragmentation_run(
    k8s: client.ApiClient, namespace: str, dra_nodes: dra.DraNodeFactory, scheduler_name: str | None
) -> tuple[dict[str, int], bool]:
    """ONE_GPU_PODS 1-GPU claim pods one after another, then an 8-GPU claim pod, on two fresh DRA nodes:
    (GPUs used per node before the 8-GPU pod, whether the 8-GPU pod was placed)."""
    mine = {**owner(namespace), "e2e.gpuplace.io/run": scheduler_name or "gpuplace"}
    nodes = [await dra_nodes("hgx-h100", labels=mine) for _ in range(2)]
    for i in range(ONE_GPU_PODS):
        name = f"small-{i}"
        body = dra.claim_pod(name, "one-gpu", node_selector=mine, cpu="16", scheduler_name=scheduler_name)
        await create_pod(k8s, namespace, body)
        await wait_bound(k8s, namespace, [name], within=60)
    used = await _gpus_used(k8s, nodes)
    big = dra.claim_pod("big", "eight", node_selector=mine, cpu="16", scheduler_name=scheduler_name)
    await create_pod(k8s, namespace, big)
    if any(n == 0 for n in used.values()):
        await wait_bound(k8s, namespace, ["big"], within=60)
        return used, True
    await wait_pending(k8s, namespace, "big", contains="cannot allocate all claims", within=60)
    return used, False


async def test_packing_dra_pods_beats_kube_scheduler_alone(
    control_plane: ControlPlane,
    gpuplace: GpuplaceServer,
    gpuplace_scheduler: ManagedProcess,
    k8s: client.ApiClient,
    namespace: str,
    dra_nodes: dra.DraNodeFactory,
    e2e_report: Callable[[str], None],
) -> None:
    """Fragmentation: the same sequence with kube-scheduler alone (a profile without the extender, its own
    schedulerName and nodes: the webhook adds no marker for it) and with gpuplace. kube-scheduler's
    DynamicResources plugin allocates devices but does not score nodes by them, and its default scoring spreads
    the 1-GPU pods over both nodes, so no node is left whole for the 8-GPU pod; gpuplace packs them."""
    alone_ns = f"{namespace}-alone"
    core = client.CoreV1Api(k8s)
    await core.create_namespace({"metadata": {"name": alone_ns}})  # type: ignore[arg-type]
    alone: ManagedProcess | None = None
    try:
        await wait_namespace_usable(k8s, alone_ns)
        for ns in (namespace, alone_ns):
            await dra.create_templates(
                k8s, ns, dra.gpu_template("one-gpu"), dra.gpu_template("eight", count=8)
            )
        config = {"profiles": [{"schedulerName": "dra-alone"}]}
        alone = await asyncio.to_thread(
            control_plane.start_scheduler, config, name="kube-scheduler-dra-alone"
        )
        baseline, baseline_big = await _fragmentation_run(k8s, alone_ns, dra_nodes, "dra-alone")
        packed, packed_big = await _fragmentation_run(k8s, namespace, dra_nodes, None)
        await _audit(k8s, namespace, alone_ns)
    finally:
        if alone is not None:
            await asyncio.to_thread(control_plane.stop_process, alone.name)
        await core.delete_collection_namespaced_pod(alone_ns, grace_period_seconds=0)
        await core.delete_namespace(alone_ns)

    def show(used: dict[str, int], big: bool) -> str:
        return f"{' '.join(f'{u}/8' for u in sorted(used.values(), reverse=True))}, 8-GPU claim pod {'bound' if big else 'Pending'}"

    e2e_report(
        f"DRA fragmentation ({ONE_GPU_PODS} x 1-GPU claim pods, then 8 GPUs, 2 DRA H100 nodes): "
        f"kube-scheduler alone {show(baseline, baseline_big)}; gpuplace {show(packed, packed_big)}"
    )
    assert packed_big and sorted(packed.values()) == [0, ONE_GPU_PODS], f"gpuplace: {packed}"
    assert not baseline_big, f"kube-scheduler alone left a node whole this time: {baseline}"
