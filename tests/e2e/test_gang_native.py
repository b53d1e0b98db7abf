"""Gang scheduling with Kubernetes 1.36's native gang scheduling switched on: kube-apiserver and
kube-scheduler with the GenericWorkload and GangScheduling feature gates, and scheduling.k8s.io/v1alpha2
served (`--runtime-config`). WorkloadWithJob is NOT on (kube-controller-manager runs without gates), so
PodGroups are created by the test, not by the Job controller.

In this configuration kube-scheduler's pod-group cycle (pkg/scheduler/schedule_one_podgroup.go) runs
the per-pod algorithm for every member, the extender's filter included, while earlier members are only
assumed inside kube-scheduler; the ExtenderArgs of a member carry nothing about its siblings. gpuplace
answers each member with its own planned node and GPUs (the plan's holds), so it never approves two
members onto the same GPUs; and when the group fails, kube-scheduler tells the extender nothing, so the
plan is released at its TTL (`native_timeout_seconds`, short here) and nothing stays reserved. Its own
control plane (a second one, started for this module only: the gates are cluster-wide).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from gpuplace.localcluster import ControlPlane, ManagedProcess, binaries
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
from gpuplace.localcluster.processes import probe, tail
from gpuplace.localcluster.workload import create_pod, node_names, pod_manifest, wait_bound
from tests.e2e.helpers import NodeFactory, audit_namespaces, owner

pytestmark = pytest.mark.e2e
GATES = "--feature-gates=GenericWorkload=true,GangScheduling=true"
NATIVE_TTL = 8


@pytest.fixture(scope="module")
def native_plane(local_binaries: binaries.Binaries) -> Iterator[ControlPlane]:
    with ControlPlane(
        bin_dir=local_binaries.kubectl.parent,
        apiserver_args=[GATES, "--runtime-config=scheduling.k8s.io/v1alpha2=true"],
    ) as cp:
        yield cp


@pytest.fixture(scope="module")
def native_gpuplace(native_plane: ControlPlane) -> Iterator[GpuplaceServer]:
    gang = {"native_timeout_seconds": NATIVE_TTL, "backoff_seconds": 2, "barrier_seconds": 8}
    with GpuplaceServer(native_plane, settings={"scheduler": {"gang": gang}}) as server:
        yield server


@pytest.fixture(scope="module")
def native_scheduler(native_plane: ControlPlane, native_gpuplace: GpuplaceServer) -> Iterator[ManagedProcess]:
    process = native_plane.start_scheduler(
        native_gpuplace.scheduler_config(), name="kube-scheduler-native-gang", extra_args=[GATES]
    )
    yield process
    native_plane.stop_process(process.name)


@pytest.fixture
async def api(native_plane: ControlPlane) -> AsyncIterator[client.ApiClient]:
    async with native_plane.api_client() as a:
        yield a


@pytest.fixture
async def ns(api: client.ApiClient) -> AsyncIterator[str]:
    import secrets

    from gpuplace.localcluster.lifecycle import wait_namespace_usable

    name = f"native-{secrets.token_hex(3)}"
    await client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})  # type: ignore[arg-type]
    await wait_namespace_usable(api, name)
    yield name
    await client.CoreV1Api(api).delete_collection_namespaced_pod(name, grace_period_seconds=0)


@pytest.fixture
async def nodes(api: client.ApiClient) -> AsyncIterator[NodeFactory]:
    import secrets

    from gpuplace.localcluster.fake_nodes import create_node, delete_nodes, node_manifest, wait_schedulable

    made: list[str] = []

    async def make(preset: str, **kw: Any) -> str:
        name = f"{preset}-{secrets.token_hex(3)}"
        made.append(name)
        await create_node(api, node_manifest(name, preset, **kw))
        await wait_schedulable(api, [name])
        return name

    yield make
    await delete_nodes(api, made)


def debug(gp: GpuplaceServer) -> dict[str, Any]:
    status, body = probe(f"{gp.extender_base}/debug/gangs", ca_file=gp.cp.ca_file, timeout=5)
    return json.loads(body) if status == 200 else {}


async def podgroup(api: client.ApiClient, ns: str, name: str, min_count: int) -> None:
    body = {"apiVersion": "scheduling.k8s.io/v1alpha2", "kind": "PodGroup", "metadata": {"name": name},
            "spec": {"schedulingPolicy": {"gang": {"minCount": min_count}}}}  # fmt: skip
    await client.CustomObjectsApi(api).create_namespaced_custom_object(
        "scheduling.k8s.io", "v1alpha2", ns, "podgroups", body
    )


def member(group: str, i: int, gpus: int, selector: dict[str, str]) -> dict[str, Any]:
    body = pod_manifest(f"{group}-{i}", gpus=gpus, cpu="2", memory="8Gi", node_selector=selector)
    body["spec"]["schedulingGroup"] = {"podGroupName": group}
    return body


async def test_the_pod_group_cycle_never_gets_two_members_onto_the_same_gpus(
    native_gpuplace: GpuplaceServer,
    native_scheduler: ManagedProcess,
    api: client.ApiClient,
    ns: str,
    nodes: NodeFactory,
) -> None:
    """Four 4-GPU members of one v1alpha2 PodGroup on two 8-GPU nodes: every GPU once."""
    mine = owner(ns)
    for _ in range(2):
        await nodes("hgx-h100", labels=mine, topology=True, clique="native-a.0")
    assert debug(native_gpuplace)["podgroups"]["scheduling.k8s.io/v1alpha2"] is True
    await podgroup(api, ns, "quad", 4)
    for i in range(4):
        await create_pod(api, ns, member("quad", i, 4, mine))
    raw = await client.CoreV1Api(api).read_namespaced_pod("quad-0", ns, _preload_content=False)
    kept = json.loads(await raw.read())["spec"].get("schedulingGroup")
    assert kept == {"podGroupName": "quad"}, "the API server dropped spec.schedulingGroup: GenericWorkload is off"
    try:
        placed = await wait_bound(api, ns, [f"quad-{i}" for i in range(4)], within=60)
    except Exception as e:
        raise AssertionError(
            f"{e}\ngpuplace: {debug(native_gpuplace)}\n{tail(native_scheduler.log_file)}"
        ) from e
    assert sorted(list(placed.values()).count(n) for n in set(placed.values())) == [2, 2]
    result = await audit_namespaces(api, ns)
    assert result.ok, result.problems
    assert result.with_record == 4
    assert debug(native_gpuplace)["audit"] == []


async def test_a_failed_group_leaves_nothing_reserved(
    native_gpuplace: GpuplaceServer,
    native_scheduler: ManagedProcess,
    api: client.ApiClient,
    ns: str,
    nodes: NodeFactory,
) -> None:
    """One member of three can never pass kube-scheduler's own filters (its nodeSelector), so the group
    fails; gpuplace's plan for the others is released at its TTL and a lone pod then gets the GPUs."""
    mine = owner(ns)
    for _ in range(3):
        await nodes("hgx-h100", labels=mine, topology=True, clique="native-b.0")
    await podgroup(api, ns, "stuck", 3)
    await create_pod(api, ns, member("stuck", 0, 8, mine))
    await create_pod(api, ns, member("stuck", 1, 8, mine))
    await create_pod(api, ns, member("stuck", 2, 8, {**mine, "e2e.gpuplace.io/nowhere": "x"}))
    seen, problems = False, []
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        snap = debug(native_gpuplace)
        problems += snap.get("audit", [])
        plans = [p for p in snap.get("plans", []) if p["namespace"] == ns]
        seen = seen or bool(plans)
        assert not any((await node_names(api, ns)).values())
        if seen and not plans:
            break
        assert asyncio.get_running_loop().time() < deadline, f"plan not released: {snap}"
        await asyncio.sleep(0.2)
    assert problems == []  # among them: every plan released within its TTL + margin
    for i in range(3):
        await client.CoreV1Api(api).delete_namespaced_pod(f"stuck-{i}", ns, grace_period_seconds=0)
    for name in ("lone-a", "lone-b", "lone-c"):
        await create_pod(api, ns, pod_manifest(name, gpus=8, node_selector=mine))
    await wait_bound(api, ns, ["lone-a", "lone-b", "lone-c"], within=60)
    assert not debug(native_gpuplace)["holds"]
