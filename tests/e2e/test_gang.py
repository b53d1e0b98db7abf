"""Gang scheduling on the real control plane: kube-scheduler v1.36.3 with gpuplace as extender and
binder; bare pods carrying the webhook's gang keys, a real Indexed Job through kube-controller-manager,
and pods naming a scheduler-plugins PodGroup. Every scenario runs the reservation-ledger audit
(GET /debug/gangs) in the background while it runs and fails on the first violation. The native 1.36
gates are in test_gang_native.py (a control plane of their own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from gpuplace.localcluster import ControlPlane, ManagedProcess
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
from gpuplace.localcluster.workload import create_pod, node_names, pod_manifest, wait_bound, wait_pending
from tests.e2e.gangs import gangs, ledger_audit, until
from tests.e2e.helpers import NodeFactory, audit_namespaces, owner

pytestmark = pytest.mark.e2e
TTL = 20


@pytest.fixture(scope="module")
def gpuplace(control_plane: ControlPlane) -> Iterator[GpuplaceServer]:
    gang = {
        "plan_ttl_seconds": TTL,
        "backoff_seconds": 5,
        "barrier_seconds": 8,
        "podgroup_recheck_seconds": 1,
    }
    settings = {"scheduler": {"gang": gang}}
    with GpuplaceServer(control_plane, settings=settings) as server:
        yield server


def member(gang: str, i: int, size: int, selector: dict[str, str], gpus: int = 8) -> dict[str, Any]:
    body = pod_manifest(f"{gang}-{i}", gpus=gpus, cpu="8", memory="64Gi", node_selector=selector)
    body["metadata"]["labels"] = {"gpuplace.io/gang": gang}
    body["metadata"]["annotations"] = {"gpuplace.io/gang-min-member": str(size)}
    return body


async def cliques(node_factory: NodeFactory, mine: dict[str, str], sizes: dict[str, int]) -> dict[str, str]:
    """node → clique, `sizes[c]` HGX H100 nodes per clique."""
    out = {}
    for c, n in sizes.items():
        for _ in range(n):
            name = await node_factory("hgx-h100", labels=mine, topology=True, clique=f"cluster-{c}.0")
            out[name] = c
    return out


async def test_happy_path_four_by_eight_in_the_clique_that_fits(
    gpuplace: GpuplaceServer,
    gpuplace_scheduler: ManagedProcess,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
) -> None:
    mine = owner(namespace)
    where = await cliques(node_factory, mine, {"a": 3, "b": 4})
    async with ledger_audit(gpuplace):
        for i in range(4):
            await create_pod(k8s, namespace, member("train", i, 4, mine))
        placed = await wait_bound(k8s, namespace, [f"train-{i}" for i in range(4)], within=60)
    assert {where[n] for n in placed.values()} == {"b"} and len(set(placed.values())) == 4
    result = await audit_namespaces(k8s, namespace)
    assert result.ok, result.problems


async def test_four_of_five_fit_nothing_binds_and_nothing_is_held(
    gpuplace: GpuplaceServer,
    gpuplace_scheduler: ManagedProcess,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
) -> None:
    mine = owner(namespace)
    await cliques(node_factory, mine, {"c": 4})
    async with ledger_audit(gpuplace):
        for i in range(5):
            await create_pod(k8s, namespace, member("big", i, 5, mine))
        await wait_pending(
            k8s, namespace, "big-4", contains="4 of 5 members fit; needs 8 more GPUs", within=60
        )
        assert not any((await node_names(k8s, namespace)).values())
        snap = gangs(gpuplace)
        assert not [p for p in snap["plans"] if p["namespace"] == namespace]
        # the capacity is free: a single 8-GPU pod on these nodes binds at once
        await create_pod(k8s, namespace, pod_manifest("single", gpus=8, node_selector=mine))
        await wait_bound(k8s, namespace, ["single"], within=30)


async def test_two_gangs_that_fit_one_at_a_time_exactly_one_proceeds(
    gpuplace: GpuplaceServer,
    gpuplace_scheduler: ManagedProcess,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
) -> None:
    mine = owner(namespace)
    await cliques(node_factory, mine, {"d": 3})
    names = {g: [f"{g}-{i}" for i in range(3)] for g in ("left", "right")}
    async with ledger_audit(gpuplace):
        for i in range(3):  # interleaved arrival
            for g in names:
                await create_pod(k8s, namespace, member(g, i, 3, mine))
        first = None
        while first is None:
            bound = await node_names(k8s, namespace)
            done = [g for g, pods in names.items() if all(bound[p] for p in pods)]
            assert not any(bound[p] for g, pods in names.items() if g not in done for p in pods) or not done
            first = done[0] if done else None
            await asyncio.sleep(0.2)
        other = next(g for g in names if g != first)
        for p in names[other]:  # rejected (by kube-scheduler's own GPU count once the first gang is bound)
            await wait_pending(k8s, namespace, p, within=30)
        bound = await node_names(k8s, namespace)
        assert not any(bound[p] for p in names[other])
        core = client.CoreV1Api(k8s)
        for p in names[first]:
            await core.delete_namespaced_pod(p, namespace, grace_period_seconds=0)
        await wait_bound(k8s, namespace, names[other], within=60)
    result = await audit_namespaces(k8s, namespace)
    assert result.ok, result.problems


async def test_plan_held_across_a_gpuplace_kill_and_never_given_to_other_pods(
    gpuplace: GpuplaceServer,
    gpuplace_scheduler: ManagedProcess,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
) -> None:
    """Member 1 waits behind a scheduling gate (it exists, so the quorum is there, but it never reaches
    the scheduler): member 0's plan holds two nodes while member 0 waits at the bind barrier. Other GPU
    pods get only the third node. gpuplace is SIGKILLed and restarted: the plan comes back from its
    ConfigMap, and once the gate is lifted both members bind exactly where they were planned."""
    mine = owner(namespace)
    await cliques(node_factory, mine, {"e": 3})
    core = client.CoreV1Api(k8s)
    async with ledger_audit(gpuplace):
        gated = member("held", 1, 2, mine)
        gated["spec"]["schedulingGates"] = [{"name": "e2e.gpuplace.io/hold"}]
        await create_pod(k8s, namespace, gated)
        await create_pod(k8s, namespace, member("held", 0, 2, mine))
        plan = None
        while plan is None:
            plan = next((p for p in gangs(gpuplace)["plans"] if p["namespace"] == namespace), None)
            await asyncio.sleep(0.1)
        planned = {a["pod"]: a["node"] for a in plan["assignments"].values()}
        assert set(planned) == {"held-0", "held-1"}
        await create_pod(k8s, namespace, pod_manifest("single-a", gpus=8, node_selector=mine))
        await create_pod(k8s, namespace, pod_manifest("single-b", gpus=8, node_selector=mine))
        got = None
        while got is None:  # exactly one single pod gets the free node; the other waits
            bound = await node_names(k8s, namespace)
            got = next((p for p in ("single-a", "single-b") if bound[p]), None)
            await asyncio.sleep(0.2)
        assert bound[got] not in planned.values()
        waiting = "single-b" if got == "single-a" else "single-a"
        await wait_pending(k8s, namespace, waiting, contains="needs 8 free GPUs", within=30)
        cms = await core.list_namespaced_config_map(namespace, label_selector="gpuplace.io/gang-plan=v1")
        assert len(cms.items) == 1

        assert gpuplace.process is not None
        gpuplace.process.popen.kill()  # SIGKILL: no shutdown code runs
        await asyncio.to_thread(gpuplace.stop)
        await asyncio.to_thread(gpuplace.launch)
        snap = gangs(gpuplace)
        assert [p["uid"] for p in snap["plans"] if p["namespace"] == namespace] == [plan["uid"]]
        await core.patch_namespaced_pod("held-1", namespace, {"spec": {"schedulingGates": None}})
        placed = await wait_bound(k8s, namespace, ["held-0", "held-1"], within=60)
        assert placed == planned
        bound = await node_names(k8s, namespace)
        assert not bound[waiting]
    result = await audit_namespaces(k8s, namespace)
    assert result.ok, result.problems
    cms = await core.list_namespaced_config_map(namespace, label_selector="gpuplace.io/gang-plan=v1")
    assert cms.items == []  # a completed plan is deleted


async def test_four_members_on_one_node_bind_at_once(
    gpuplace: GpuplaceServer,
    gpuplace_scheduler: ManagedProcess,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
) -> None:
    """HAMi #1832: members allowed together collide in bind. Here 4 x 2 GPUs share one node."""
    mine = owner(namespace)
    await cliques(node_factory, mine, {"f": 1})
    async with ledger_audit(gpuplace):
        for i in range(4):
            await create_pod(k8s, namespace, member("quad", i, 4, mine, gpus=2))
        placed = await wait_bound(k8s, namespace, [f"quad-{i}" for i in range(4)], within=60)
    assert len(set(placed.values())) == 1
    result = await audit_namespaces(k8s, namespace)
    assert result.ok, result.problems
    assert result.with_record == 4


async def test_a_member_kept_off_by_its_own_node_selector_leaves_no_partial_gang_and_the_plan_expires(
    gpuplace: GpuplaceServer,
    gpuplace_scheduler: ManagedProcess,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
) -> None:
    """Member 1's nodeSelector matches no node, so kube-scheduler's in-tree filters reject it before
    gpuplace sees it. Member 0's plan waits at the bind barrier, nothing binds, and the plan is
    released after its TTL (checked by the audit running meanwhile)."""
    mine = owner(namespace)
    await cliques(node_factory, mine, {"g": 2})
    async with ledger_audit(gpuplace):
        await create_pod(k8s, namespace, member("stuck", 1, 2, {**mine, "e2e.gpuplace.io/nowhere": "x"}))
        await create_pod(k8s, namespace, member("stuck", 0, 2, mine))
        seen_plan = False
        while True:
            plans = [p for p in gangs(gpuplace)["plans"] if p["namespace"] == namespace]
            seen_plan = seen_plan or bool(plans)
            if seen_plan and not plans:
                break
            assert not any((await node_names(k8s, namespace)).values())
            await asyncio.sleep(0.2)
        assert not any((await node_names(k8s, namespace)).values())
        # the released capacity is there for others
        await create_pod(k8s, namespace, pod_manifest("single", gpus=8, node_selector=mine))
        await wait_bound(k8s, namespace, ["single"], within=30)


async def test_an_indexed_job_through_kube_controller_manager_binds_as_one_gang(
    gpuplace: GpuplaceServer,
    gpuplace_scheduler: ManagedProcess,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
) -> None:
    """A real Indexed Job: kube-controller-manager creates the pods, the webhook labels them a gang of 4
    (completions == parallelism), and all four bind into the one clique that holds them."""
    mine = owner(namespace)
    where = await cliques(node_factory, mine, {"j": 2, "k": 4})
    container = {"name": "main", "image": "registry.k8s.io/pause:3.10",
                 "resources": {"limits": {"nvidia.com/gpu": "8"}, "requests": {"cpu": "8", "memory": "64Gi"}}}  # fmt: skip
    job: Any = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "train"},
        "spec": {
            "parallelism": 4,
            "completions": 4,
            "completionMode": "Indexed",
            "template": {"spec": {"restartPolicy": "Never", "nodeSelector": mine, "containers": [container]}},
        },
    }
    async with ledger_audit(gpuplace):
        await client.BatchV1Api(k8s).create_namespaced_job(namespace, job)

        async def four_pods() -> list[str] | None:  # the Job controller creates them
            names = sorted(await node_names(k8s, namespace))
            return names if len(names) == 4 else None

        names = await until(gpuplace, "the Job controller created 4 pods", four_pods)
        placed = await wait_bound(k8s, namespace, names, within=60)
    pods = await client.CoreV1Api(k8s).list_namespaced_pod(namespace)
    assert {p.metadata.labels.get("gpuplace.io/gang") for p in pods.items} == {"job_train"}
    assert {where[n] for n in placed.values()} == {"k"} and len(set(placed.values())) == 4
    result = await audit_namespaces(k8s, namespace)
    assert result.ok, result.problems


async def test_shuffled_and_slow_arrival_binds_nothing_before_the_quorum(
    gpuplace: GpuplaceServer,
    gpuplace_scheduler: ManagedProcess,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
) -> None:
    """Members arrive out of order, each only once the earlier ones were rejected for want of members;
    nothing binds until the last one exists, then all do."""
    mine = owner(namespace)
    await cliques(node_factory, mine, {"s": 4})
    order = [2, 0, 3, 1]
    async with ledger_audit(gpuplace):
        for k, i in enumerate(order[:-1]):
            await create_pod(k8s, namespace, member("slow", i, 4, mine))
            await wait_pending(
                k8s, namespace, f"slow-{i}", contains=f"waiting for members: {k + 1} of 4", within=30
            )
            assert not any((await node_names(k8s, namespace)).values())
        await create_pod(k8s, namespace, member("slow", order[-1], 4, mine))
        await wait_bound(k8s, namespace, [f"slow-{i}" for i in range(4)], within=60)
    result = await audit_namespaces(k8s, namespace)
    assert result.ok, result.problems


async def test_required_rack_with_fragmented_capacity_binds_nothing_and_preferred_uses_the_fewest_racks(
    gpuplace: GpuplaceServer,
    gpuplace_scheduler: ManagedProcess,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
) -> None:
    """Racks of 1, 1 and 2 free nodes (no clique labels): a gang of 3 that requires one rack fits
    nowhere and binds nothing; the same gang preferred spreads over two racks, not three."""
    mine = owner(namespace)
    rack_of = {}
    for rack, n in (("r-x", 1), ("r-y", 1), ("r-w", 2)):  # the small racks first
        for _ in range(n):
            rack_of[await node_factory("hgx-h100", labels=mine, rack=rack)] = rack
    async with ledger_audit(gpuplace):
        for i in range(3):
            body = member("strict", i, 3, mine)
            body["metadata"]["annotations"]["gpuplace.io/gang-topology"] = "required-rack"
            await create_pod(k8s, namespace, body)
        await wait_pending(k8s, namespace, "strict-2", contains="2 of 3 members fit; needs 8 more GPUs in one rack",
                           within=60)  # fmt: skip
        assert not any((await node_names(k8s, namespace)).values())
        core = client.CoreV1Api(k8s)
        for i in range(3):
            await core.delete_namespaced_pod(f"strict-{i}", namespace, grace_period_seconds=0)
        for i in range(3):
            await create_pod(k8s, namespace, member("loose", i, 3, mine))
        placed = await wait_bound(k8s, namespace, [f"loose-{i}" for i in range(3)], within=60)
    racks = [rack_of[n] for n in placed.values()]
    assert sorted(racks).count("r-w") == 2 and len(set(racks)) == 2, racks


async def test_gpuplace_killed_mid_binding_the_gang_completes_without_duplicates(
    gpuplace: GpuplaceServer,
    gpuplace_scheduler: ManagedProcess,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
) -> None:
    """Two of three members wait at the bind barrier (the third is behind a scheduling gate) when
    gpuplace is SIGKILLed: their binds fail in kube-scheduler, the plan comes back from its ConfigMap,
    and once the gate lifts all three bind where they were planned, each GPU once."""
    mine = owner(namespace)
    await cliques(node_factory, mine, {"m": 3})
    core = client.CoreV1Api(k8s)
    async with ledger_audit(gpuplace):
        gated = member("mid", 2, 3, mine)
        gated["spec"]["schedulingGates"] = [{"name": "e2e.gpuplace.io/hold"}]
        await create_pod(k8s, namespace, gated)
        for i in range(2):
            await create_pod(k8s, namespace, member("mid", i, 3, mine))

        async def both_at_barrier() -> dict[str, Any] | None:
            plan = next((p for p in gangs(gpuplace).get("plans", []) if p["namespace"] == namespace), None)
            return plan if plan is not None and len(plan["arrived"]) == 2 else None

        plan = await until(gpuplace, "two members waiting at the bind barrier", both_at_barrier)
        planned = {a["pod"]: a["node"] for a in plan["assignments"].values()}
        assert gpuplace.process is not None
        gpuplace.process.popen.kill()
        await asyncio.to_thread(gpuplace.stop)
        await asyncio.to_thread(gpuplace.launch)
        assert [p["uid"] for p in gangs(gpuplace)["plans"] if p["namespace"] == namespace] == [plan["uid"]]
        await core.patch_namespaced_pod("mid-2", namespace, {"spec": {"schedulingGates": None}})
        placed = await wait_bound(k8s, namespace, ["mid-0", "mid-1", "mid-2"], within=60)
        assert placed == planned
    result = await audit_namespaces(k8s, namespace)
    assert result.ok, result.problems
    assert result.with_record == 3


async def test_a_member_deleted_after_binding_is_replaced_inside_the_gangs_clique(
    gpuplace: GpuplaceServer,
    gpuplace_scheduler: ManagedProcess,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
) -> None:
    """A bound gang of 3 fills clique p; clique q has a free node. A member is deleted and its node
    taken by another pod: the replacement waits (it rolls forward inside p only) although q has room,
    and binds in p once p has room again."""
    mine = owner(namespace)
    where = await cliques(node_factory, mine, {"p": 3, "q": 1})
    core = client.CoreV1Api(k8s)
    async with ledger_audit(gpuplace):
        for i in range(3):
            await create_pod(k8s, namespace, member("keep", i, 3, mine))
        placed = await wait_bound(k8s, namespace, [f"keep-{i}" for i in range(3)], within=60)
        assert {where[n] for n in placed.values()} == {"p"}
        await core.delete_namespaced_pod("keep-2", namespace, grace_period_seconds=0)

        async def gone() -> bool:
            return "keep-2" not in await node_names(k8s, namespace)

        await until(gpuplace, "keep-2 deleted", gone)
        intruder = pod_manifest(
            "intruder", gpus=8, node_selector={**mine, "kubernetes.io/hostname": placed["keep-2"]}
        )
        await create_pod(k8s, namespace, intruder)
        await wait_bound(k8s, namespace, ["intruder"], within=30)
        await create_pod(k8s, namespace, member("keep", 3, 3, mine))
        await wait_pending(k8s, namespace, "keep-3", contains="0 of 1 members fit", within=30)
        assert not (await node_names(k8s, namespace))["keep-3"]
        await core.delete_namespaced_pod("intruder", namespace, grace_period_seconds=0)
        again = await wait_bound(k8s, namespace, ["keep-3"], within=60)
    assert again["keep-3"] == placed["keep-2"]
    result = await audit_namespaces(k8s, namespace)
    assert result.ok, result.problems


PODGROUP_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "podgroups.scheduling.x-k8s.io"},
    "spec": {
        "group": "scheduling.x-k8s.io",
        "scope": "Namespaced",
        "names": {
            "plural": "podgroups",
            "singular": "podgroup",
            "kind": "PodGroup",
            "listKind": "PodGroupList",
        },
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
            }
        ],
    },
}


async def test_a_scheduler_plugins_podgroup_created_after_its_pods_sizes_the_gang(
    gpuplace: GpuplaceServer,
    gpuplace_scheduler: ManagedProcess,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
) -> None:
    """The scheduler-plugins PodGroup CRD is installed while gpuplace runs (it was not served at start:
    gpuplace lists it again and starts watching). Pods naming a PodGroup that does not exist yet wait
    saying so; when the PodGroup appears its minMember sizes the gang, the members are nudged and bind.
    The v1alpha2 API is not served by this control plane: gpuplace says so and carries on."""
    from kubernetes_asyncio.client.exceptions import ApiException

    mine = owner(namespace)
    await cliques(node_factory, mine, {"pg": 2})
    ext = client.ApiextensionsV1Api(k8s)
    custom = client.CustomObjectsApi(k8s)
    try:
        await ext.create_custom_resource_definition(PODGROUP_CRD)
    except ApiException as e:
        if e.status != 409:
            raise
    try:
        async with ledger_audit(gpuplace):

            async def watched() -> bool:
                served = gangs(gpuplace).get("podgroups", {})
                return served.get("scheduling.x-k8s.io/v1alpha1") is True

            await until(gpuplace, "gpuplace watching scheduling.x-k8s.io/v1alpha1 PodGroups", watched)
            assert gangs(gpuplace)["podgroups"]["scheduling.k8s.io/v1alpha2"] is False
            for i in range(2):
                body = pod_manifest(f"pg-{i}", gpus=8, cpu="8", memory="64Gi", node_selector=mine)
                body["metadata"]["labels"] = {"scheduling.x-k8s.io/pod-group": "pg"}
                await create_pod(k8s, namespace, body)
            await wait_pending(
                k8s, namespace, "pg-1", contains=f"scheduler-plugins PodGroup {namespace}/pg, which does not exist",
                within=30,
            )  # fmt: skip
            assert not any((await node_names(k8s, namespace)).values())
            group = {"apiVersion": "scheduling.x-k8s.io/v1alpha1", "kind": "PodGroup", "metadata": {"name": "pg"},
                     "spec": {"minMember": 2, "scheduleTimeoutSeconds": 30}}  # fmt: skip
            await custom.create_namespaced_custom_object(
                "scheduling.x-k8s.io", "v1alpha1", namespace, "podgroups", group
            )
            await wait_bound(k8s, namespace, ["pg-0", "pg-1"], within=60)
    finally:
        await custom.delete_collection_namespaced_custom_object(
            "scheduling.x-k8s.io", "v1alpha1", namespace, "podgroups"
        )
    result = await audit_namespaces(k8s, namespace)
    assert result.ok, result.problems


async def test_plan_configmaps_are_written_compare_and_set(k8s: client.ApiClient, namespace: str) -> None:
    """KubePlanStore against the real API server: a plan someone else rewrote is never overwritten nor
    deleted on an old resourceVersion; the writer learns what is stored."""
    from placement_core import Placement
    from placement_core.gangplan import Level
    from scheduler.gang import KubePlanStore, Plan, PlanConflictError
    from scheduler.gang.store import configmap_name

    store = KubePlanStore(k8s)
    mine = Plan(namespace, "cas", "u-mine", 1, 1, Level.CLIQUE, "c", 0.0, 60.0,
                {"p0": Placement("n0", gpus=(0,))}, {"p0": "cas-0"})  # fmt: skip
    await store.save(mine)
    first = mine.resource_version
    mine.expires += 1
    await store.save(mine)  # its own object, changed: a new version (an unchanged update keeps it)
    assert mine.resource_version and mine.resource_version != first
    theirs = Plan.from_json(mine.to_json())
    theirs.uid = "u-theirs"
    core = client.CoreV1Api(k8s)
    await core.patch_namespaced_config_map(
        configmap_name("cas"), namespace, {"data": {"plan": theirs.to_json().decode()}}
    )
    with pytest.raises(PlanConflictError) as e:
        await store.save(mine)
    assert e.value.current is not None and e.value.current.uid == "u-theirs"
    with pytest.raises(PlanConflictError):
        await store.delete(mine)  # an old version: the newer write stays
    assert [p.uid for p in await store.load() if p.namespace == namespace] == ["u-theirs"]
    stored = next(p for p in await store.load() if p.namespace == namespace)
    await store.delete(stored)
    assert [p for p in await store.load() if p.namespace == namespace] == []
