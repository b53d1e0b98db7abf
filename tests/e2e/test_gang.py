"""Gang scheduling on the real control plane: kube-scheduler v1.36.3 with gpuplace as extender and
binder; bare pods carrying the webhook's gang keys, a real Indexed Job through kube-controller-manager,
and pods naming a scheduler-plugins PodGroup. Every scenario runs the reservation-ledger audit
(GET /debug/gangs) in the background while it runs and fails on the first violation. Plans across a
gpuplace kill and a member's replacement: test_gang_recovery.py; the native 1.36 gates:
test_gang_native.py (a control plane of their own).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from gpuplace.localcluster import ControlPlane, ManagedProcess
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
from gpuplace.localcluster.workload import pod_manifest, wait_bound, wait_pending
from tests.e2e.gang_rig import TTL, GangRig, gang_gpuplace, member
from tests.e2e.gangs import gangs, gangs_now, ledger_audit, until
from tests.e2e.helpers import NodeFactory

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gpuplace(control_plane: ControlPlane) -> Iterator[GpuplaceServer]:
    with gang_gpuplace(control_plane) as server:
        yield server


@pytest.fixture
def rig(
    gpuplace: GpuplaceServer,
    gpuplace_scheduler: ManagedProcess,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
) -> GangRig:
    return GangRig(gpuplace, k8s, namespace, node_factory)


async def test_happy_path_four_by_eight_in_the_clique_that_fits(rig: GangRig) -> None:
    where = await rig.cliques({"a": 3, "b": 4})
    async with ledger_audit(rig.gp):
        names = await rig.gang("train", 4)
        placed = await wait_bound(rig.k8s, rig.namespace, names, within=60)
    assert {where[n] for n in placed.values()} == {"b"} and len(set(placed.values())) == 4
    await rig.audited()


async def test_four_of_five_fit_nothing_binds_and_nothing_is_held(rig: GangRig) -> None:
    await rig.cliques({"c": 4})
    async with ledger_audit(rig.gp):
        await rig.gang("big", 5)
        await wait_pending(
            rig.k8s, rig.namespace, "big-4", contains="4 of 5 members fit; needs 8 more GPUs", within=60
        )
        assert await rig.none_bound()
        snap = await gangs_now(rig.gp)
        assert not [p for p in snap["plans"] if p["namespace"] == rig.namespace]
        # the capacity is free: a single 8-GPU pod on these nodes binds at once
        await rig.create(pod_manifest("single", gpus=8, node_selector=rig.mine))
        await wait_bound(rig.k8s, rig.namespace, ["single"], within=60)


async def test_two_gangs_that_fit_one_at_a_time_exactly_one_proceeds(rig: GangRig) -> None:
    await rig.cliques({"d": 3})
    names = {g: [f"{g}-{i}" for i in range(3)] for g in ("left", "right")}
    async with ledger_audit(rig.gp):
        for i in range(3):  # interleaved arrival
            for g in names:
                await rig.create(member(g, i, 3, rig.mine))

        async def one_gang_bound() -> str | None:
            bound = await rig.bound()
            done = [g for g, pods in names.items() if all(bound[p] for p in pods)]
            assert not any(bound[p] for g, pods in names.items() if g not in done for p in pods) or not done
            return done[0] if done else None

        first = await until(rig.gp, "one gang bound whole", one_gang_bound)
        other = next(g for g in names if g != first)
        for p in names[other]:  # rejected (by kube-scheduler's own GPU count once the first gang is bound)
            await wait_pending(rig.k8s, rig.namespace, p, within=60)
        bound = await rig.bound()
        assert not any(bound[p] for p in names[other])
        core = client.CoreV1Api(rig.k8s)
        for p in names[first]:
            await core.delete_namespaced_pod(p, rig.namespace, grace_period_seconds=0)
        await wait_bound(rig.k8s, rig.namespace, names[other], within=60)
    await rig.audited()


async def test_four_members_on_one_node_bind_at_once(rig: GangRig) -> None:
    """HAMi #1832: members allowed together collide in bind. Here 4 x 2 GPUs share one node."""
    await rig.cliques({"f": 1})
    async with ledger_audit(rig.gp):
        names = await rig.gang("quad", 4, gpus=2)
        placed = await wait_bound(rig.k8s, rig.namespace, names, within=60)
    assert len(set(placed.values())) == 1
    assert (await rig.audited()).with_record == 4


async def test_an_indexed_job_through_kube_controller_manager_binds_as_one_gang(rig: GangRig) -> None:
    """A real Indexed Job: kube-controller-manager creates the pods, the webhook labels them a gang of 4
    (completions == parallelism), and all four bind into the one clique that holds them."""
    where = await rig.cliques({"j": 2, "k": 4})
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
            "template": {
                "spec": {"restartPolicy": "Never", "nodeSelector": rig.mine, "containers": [container]}
            },
        },
    }
    async with ledger_audit(rig.gp):
        await client.BatchV1Api(rig.k8s).create_namespaced_job(rig.namespace, job)

        async def four_pods() -> list[str] | None:  # the Job controller creates them
            names = sorted(await rig.bound())
            return names if len(names) == 4 else None

        names = await until(rig.gp, "the Job controller created 4 pods", four_pods)
        placed = await wait_bound(rig.k8s, rig.namespace, names, within=60)
    pods = await client.CoreV1Api(rig.k8s).list_namespaced_pod(rig.namespace)
    assert {p.metadata.labels.get("gpuplace.io/gang") for p in pods.items} == {"job_train"}
    assert {where[n] for n in placed.values()} == {"k"} and len(set(placed.values())) == 4
    await rig.audited()


async def test_shuffled_and_slow_arrival_binds_nothing_before_the_quorum(rig: GangRig) -> None:
    """Members arrive out of order, each only once the earlier ones were rejected for want of members;
    nothing binds until the last one exists, then all do."""
    await rig.cliques({"s": 4})
    order = [2, 0, 3, 1]
    async with ledger_audit(rig.gp):
        for k, i in enumerate(order[:-1]):
            await rig.gang("slow", 4, order=[i])
            await wait_pending(
                rig.k8s, rig.namespace, f"slow-{i}", contains=f"waiting for members: {k + 1} of 4", within=60
            )
            assert await rig.none_bound()
        names = await rig.gang("slow", 4, order=order[-1:])
        await wait_bound(rig.k8s, rig.namespace, names, within=60)
    await rig.audited()


async def test_required_rack_with_fragmented_capacity_binds_nothing_and_preferred_uses_the_fewest_racks(
    rig: GangRig,
) -> None:
    """Racks of 1, 1 and 2 free nodes (no clique labels): a gang of 3 that requires one rack fits
    nowhere and binds nothing; the same gang preferred spreads over two racks, not three."""
    rack_of = {}
    for rack, n in (("r-x", 1), ("r-y", 1), ("r-w", 2)):  # the small racks first
        for _ in range(n):
            rack_of[await rig.node_factory("hgx-h100", labels=rig.mine, rack=rack)] = rack
    async with ledger_audit(rig.gp):
        for i in range(3):
            body = member("strict", i, 3, rig.mine)
            body["metadata"]["annotations"]["gpuplace.io/gang-topology"] = "required-rack"
            await rig.create(body)
        await wait_pending(rig.k8s, rig.namespace, "strict-2",
                           contains="2 of 3 members fit; needs 8 more GPUs in one rack", within=60)  # fmt: skip
        assert await rig.none_bound()
        core = client.CoreV1Api(rig.k8s)
        for i in range(3):
            await core.delete_namespaced_pod(f"strict-{i}", rig.namespace, grace_period_seconds=0)
        names = await rig.gang("loose", 3)
        placed = await wait_bound(rig.k8s, rig.namespace, names, within=60)
    racks = [rack_of[n] for n in placed.values()]
    assert sorted(racks).count("r-w") == 2 and len(set(racks)) == 2, (
        f"{placed} in racks {rack_of}\n{rig.state()}"
    )


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


async def test_a_scheduler_plugins_podgroup_created_after_its_pods_sizes_the_gang(rig: GangRig) -> None:
    """The scheduler-plugins PodGroup CRD is installed while gpuplace runs (it was not served at start:
    gpuplace lists it again and starts watching). Pods naming a PodGroup that does not exist yet wait
    saying so; when the PodGroup appears its minMember sizes the gang, the members are nudged and bind.
    The v1alpha2 API is not served by this control plane: gpuplace says so and carries on."""
    from kubernetes_asyncio.client.exceptions import ApiException

    await rig.cliques({"pg": 2})
    ext = client.ApiextensionsV1Api(rig.k8s)
    custom = client.CustomObjectsApi(rig.k8s)
    try:
        await ext.create_custom_resource_definition(PODGROUP_CRD)
    except ApiException as e:
        if e.status != 409:
            raise
    try:
        async with ledger_audit(rig.gp):

            async def watched() -> bool:
                served = gangs(rig.gp).get("podgroups", {})
                return served.get("scheduling.x-k8s.io/v1alpha1") is True

            await until(rig.gp, "gpuplace watching scheduling.x-k8s.io/v1alpha1 PodGroups", watched)
            assert (await gangs_now(rig.gp))["podgroups"]["scheduling.k8s.io/v1alpha2"] is False
            for i in range(2):
                body = pod_manifest(f"pg-{i}", gpus=8, cpu="8", memory="64Gi", node_selector=rig.mine)
                body["metadata"]["labels"] = {"scheduling.x-k8s.io/pod-group": "pg"}
                await rig.create(body)
            await wait_pending(
                rig.k8s, rig.namespace, "pg-1",
                contains=f"scheduler-plugins PodGroup {rig.namespace}/pg, which does not exist", within=60,
            )  # fmt: skip
            assert await rig.none_bound()
            group = {"apiVersion": "scheduling.x-k8s.io/v1alpha1", "kind": "PodGroup", "metadata": {"name": "pg"},
                     "spec": {"minMember": 2, "scheduleTimeoutSeconds": 30}}  # fmt: skip
            await custom.create_namespaced_custom_object(
                "scheduling.x-k8s.io", "v1alpha1", rig.namespace, "podgroups", group
            )
            await wait_bound(rig.k8s, rig.namespace, ["pg-0", "pg-1"], within=60)
    finally:
        await custom.delete_collection_namespaced_custom_object(
            "scheduling.x-k8s.io", "v1alpha1", rig.namespace, "podgroups"
        )
    await rig.audited()


async def test_a_member_kept_off_by_its_own_node_selector_leaves_no_partial_gang_and_the_plan_expires(
    rig: GangRig,
) -> None:
    """Member 1's nodeSelector matches no node, so kube-scheduler's in-tree filters reject it before
    gpuplace sees it. Member 0's plan waits at the bind barrier, nothing binds, and the plan is
    released after its TTL (checked by the audit running meanwhile)."""
    await rig.cliques({"g": 2})
    async with ledger_audit(rig.gp):
        await rig.create(member("stuck", 1, 2, {**rig.mine, "e2e.gpuplace.io/nowhere": "x"}))
        await rig.create(member("stuck", 0, 2, rig.mine))
        seen_plan = False

        async def plan_made_and_released() -> bool:
            nonlocal seen_plan
            plans = [p for p in (await gangs_now(rig.gp))["plans"] if p["namespace"] == rig.namespace]
            seen_plan = seen_plan or bool(plans)
            assert await rig.none_bound()
            return seen_plan and not plans

        await until(rig.gp, f"gang stuck's plan made and released after its {TTL}s TTL", plan_made_and_released,
                    within=TTL + 90)  # fmt: skip
        assert await rig.none_bound()
        # the released capacity is there for others
        await rig.create(pod_manifest("single", gpus=8, node_selector=rig.mine))
        await wait_bound(rig.k8s, rig.namespace, ["single"], within=60)
