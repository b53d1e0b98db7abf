"""Gang scheduling with Kubernetes 1.36's native gang scheduling on: kube-apiserver, kube-controller-manager
and kube-scheduler v1.36.3 with ``--feature-gates=GenericWorkload=true,GangScheduling=true``, and
``scheduling.k8s.io/v1alpha2`` served (kube-apiserver ``--runtime-config``). WorkloadWithJob is OFF, so
no controller makes PodGroups: the tests create v1alpha2 PodGroups and bare pods naming them in
``spec.schedulingGroup.podGroupName``. The module has a control plane of its own (the gates are
cluster-wide): it overrides conftest's ``control_plane``, so ``gpuplace``, ``gpuplace_scheduler``,
``k8s``, ``namespace`` and ``node_factory`` all run against it.

What the native cycle does with an extender (v1.36.3 sources; what these tests observe):
- A pod with ``spec.schedulingGroup`` is scheduled by the pod-group cycle (pkg/scheduler/schedule_one.go
  ``ScheduleOne`` → schedule_one_podgroup.go ``scheduleOnePodGroup``). GangScheduling's PreEnqueue keeps
  members out of the queue until the PodGroup exists and ``minCount`` members do
  (framework/plugins/gangscheduling/gangscheduling.go ``PreEnqueue``).
- ``podGroupSchedulingDefaultAlgorithm`` runs the per-pod algorithm for every member in one snapshot —
  in-tree filters, then the extender's filter and prioritize (``findNodesThatPassExtenders``,
  ``prioritizeNodes``) — and *assumes* each feasible member in kube-scheduler's cache only, so member k's
  ExtenderArgs say nothing of members 1..k-1. Permit runs per member inside the cycle (Wait until
  ``minCount`` are assumed). A member the filters reject does not stop the cycle; the group is schedulable
  only if some member's Permit succeeded. Every assumed member is then reverted (``defer revertFn()``).
- Only if the group is schedulable (``submitPodGroupAlgorithmResult``) does each member go through
  ``prepareForBindingCycle`` again: assume, Permit against the live cache — members 1..minCount-1 Wait
  (they are registered as waiting pods), the last one Allows them all — and ``runBindingCycle``:
  NominatedNodeName is written for waiting members, ``WaitOnPermit``, PreBind, then ``bind`` with the
  binding extender first (``extendersBinding``). So gpuplace's bind IS used, and only after the whole group
  was found feasible and Permit released it; the test counts scheduler_permit_wait_duration_seconds.
- A group that fails is requeued with ``clearNominatedNode`` and the extender is told nothing; the
  PodGroup gets ``PodGroupScheduled=False`` (``updatePodGroupCondition``).

gpuplace plans the whole gang at the first member's filter and answers every member with its own planned
node and GPUs (scheduler/gang/README.md), so members only assumed in kube-scheduler never get the same
GPUs; a plan made for a group that then fails is released once kube-scheduler has come back to filter its
members without binding them (``release_after_dropped_attempts``), at the latest at its TTL
(``native_timeout_seconds``, short here). Every scenario polls gpuplace's ledger audit (/debug/gangs) and the placement-record audit
(AuditLoop: each GPU once, from the API) while it runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes_asyncio import client
from prometheus_client.parser import text_string_to_metric_families

from gpuplace.localcluster import ControlPlane, ManagedProcess, binaries
from gpuplace.localcluster.audit import AuditLoop
from gpuplace.localcluster.fake_nodes import topology_document
from gpuplace.localcluster.gates import NATIVE_GANG
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
from gpuplace.localcluster.processes import probe, tail
from gpuplace.localcluster.workload import create_pod, node_names, pod_manifest, wait_bound, wait_pending
from tests.e2e.gangs import gangs, gangs_now, ledger_audit, until
from tests.e2e.helpers import NodeFactory, audit_namespaces, owner, record_of

pytestmark = pytest.mark.e2e
NATIVE_TTL = 6  # native_timeout_seconds: the plan TTL of a v1alpha2 PodGroup (300 s by default)
API = ("scheduling.k8s.io", "v1alpha2")


@pytest.fixture(scope="module")
def control_plane(local_binaries: binaries.Binaries) -> Iterator[ControlPlane]:
    with ControlPlane(bin_dir=local_binaries.kubectl.parent, features=NATIVE_GANG) as cp:
        yield cp


@pytest.fixture(scope="module")
def gpuplace(control_plane: ControlPlane) -> Iterator[GpuplaceServer]:
    gang = {"native_timeout_seconds": NATIVE_TTL, "backoff_seconds": 2, "barrier_seconds": 8}
    with GpuplaceServer(control_plane, settings={"scheduler": {"gang": gang}}) as server:
        yield server


def scheduler_metric(cp: ControlPlane, scheduler: ManagedProcess, sample: str, **labels: str) -> float:
    """Sum of kube-scheduler's /metrics samples named `sample` whose labels include `labels`."""
    status, body = probe(
        f"https://127.0.0.1:{scheduler.extra['port']}/metrics",
        ca_file=cp.ca_file,
        token=cp.admin_token,
        timeout=10,
    )
    assert status == 200, f"kube-scheduler /metrics answered {status}: {body[:300]}"
    return sum(
        s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name == sample and labels.items() <= s.labels.items()
    )


async def podgroup(k8s: client.ApiClient, namespace: str, name: str, min_count: int) -> None:
    body = {"apiVersion": "/".join(API), "kind": "PodGroup", "metadata": {"name": name},
            "spec": {"schedulingPolicy": {"gang": {"minCount": min_count}}}}  # fmt: skip
    await client.CustomObjectsApi(k8s).create_namespaced_custom_object(*API, namespace, "podgroups", body)


async def scheduled_condition(k8s: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    """The PodGroup's PodGroupScheduled condition, which only kube-scheduler's pod-group cycle writes."""
    pg: Any = await client.CustomObjectsApi(k8s).get_namespaced_custom_object(
        *API, namespace, "podgroups", name
    )
    conditions = (pg.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "PodGroupScheduled"), None)


def member(group: str, i: int, gpus: int, selector: dict[str, str]) -> dict[str, Any]:
    """A bare pod of the v1alpha2 PodGroup `group` (no gpuplace keys: the webhook derives them)."""
    body = pod_manifest(f"{group}-{i}", gpus=gpus, cpu="2", memory="8Gi", node_selector=selector)
    body["spec"]["schedulingGroup"] = {"podGroupName": group}
    return body


def half_healthy(name: str) -> dict[str, Any]:
    """An HGX H100's topology document with GPUs 4-7 unhealthy: kube-scheduler counts 8 allocatable GPUs,
    gpuplace places onto 4."""
    doc = topology_document(name, "hgx-h100")
    assert doc is not None
    for gpu in doc["gpus"][4:]:
        gpu["healthy"] = False
    return doc


async def test_the_native_gates_are_on_and_a_gang_binds_all_or_nothing_in_one_clique(
    control_plane: ControlPlane,
    gpuplace: GpuplaceServer,
    gpuplace_scheduler: ManagedProcess,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
    e2e_report: Callable[[str], None],
) -> None:
    """A v1alpha2 PodGroup with minCount 4 and 4 bare members x 8 GPUs; cliques of 2 and 4 nodes. The
    pod-group cycle places them; gpuplace's plan takes the clique that holds all four; every member binds
    through gpuplace's bind after it waited at kube-scheduler's Permit; the PodGroup says Scheduled."""
    mine = owner(namespace)
    where = {}
    for clique, n in (("a", 2), ("b", 4)):
        for _ in range(n):
            where[await node_factory("hgx-h100", labels=mine, topology=True, clique=f"native-{clique}.0")] = (
                clique
            )
    assert (await gangs_now(gpuplace))["podgroups"]["scheduling.k8s.io/v1alpha2"] is True
    waited = scheduler_metric(control_plane, gpuplace_scheduler, "scheduler_permit_wait_duration_seconds_count",
                              result="Success")  # fmt: skip
    bound_before = gpuplace.metric("gpuplace_binds_total", result="ok")
    await podgroup(k8s, namespace, "train", 4)
    async with ledger_audit(gpuplace), AuditLoop(k8s, namespaces=[namespace], every=0.5) as records:
        for i in range(4):
            await create_pod(k8s, namespace, member("train", i, 8, mine))
        raw = await client.CoreV1Api(k8s).read_namespaced_pod("train-0", namespace, _preload_content=False)
        assert '"schedulingGroup":{"podGroupName":"train"}' in (await raw.read()).decode(), (
            "the API server dropped spec.schedulingGroup: GenericWorkload is off"
        )
        try:
            placed = await wait_bound(k8s, namespace, [f"train-{i}" for i in range(4)], within=60)
        except TimeoutError as e:
            raise AssertionError(
                f"{e}\n/debug/gangs: {gangs(gpuplace)}\n{tail(gpuplace_scheduler.log_file)}"
            ) from e
    assert records.problems == []
    assert {where[n] for n in placed.values()} == {"b"} and len(set(placed.values())) == 4, placed
    result = await audit_namespaces(k8s, namespace)
    assert result.ok, result.problems
    assert result.with_record == 4  # gpuplace's bind wrote every member's GPUs: the extender bound them
    assert gpuplace.metric("gpuplace_binds_total", result="ok") - bound_before == 4

    async def scheduled() -> dict[str, Any] | None:
        cond = await scheduled_condition(k8s, namespace, "train")
        return cond if cond is not None and cond["status"] == "True" else None

    await until(gpuplace, "the PodGroup's PodGroupScheduled condition True", scheduled,
                also=lambda: tail(gpuplace_scheduler.log_file))  # fmt: skip
    # Members 1..3 waited at Permit in their binding cycles until the 4th was assumed (the 4th never waits).
    after = scheduler_metric(control_plane, gpuplace_scheduler, "scheduler_permit_wait_duration_seconds_count",
                             result="Success")  # fmt: skip
    assert after - waited >= 3
    e2e_report(
        f"native gang 4 x 8 GPUs: {after - waited:.0f} members waited at Permit, then gpuplace bound all 4"
    )


async def test_three_of_four_fit_nothing_binds_and_nothing_is_held(
    gpuplace: GpuplaceServer,
    gpuplace_scheduler: ManagedProcess,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
) -> None:
    """Four 8-GPU members; four nodes, but one has only 4 healthy GPUs (kube-scheduler counts 8, so its
    own filters pass all four members). gpuplace plans nothing, every member waits with the reason, no
    plan or hold ever exists, and the capacity is free: lone 8-GPU pods take the three whole nodes."""
    mine = owner(namespace)
    names = [
        await node_factory("hgx-h100", labels=mine, topology=True, clique="native-c.0") for _ in range(3)
    ]
    lame = f"lame-{namespace[-6:]}"
    await node_factory("hgx-h100", name=lame, labels=mine, topology=half_healthy(lame), clique="native-c.0")
    await podgroup(k8s, namespace, "big", 4)
    async with ledger_audit(gpuplace), AuditLoop(k8s, namespaces=[namespace], every=0.5) as records:
        for i in range(4):
            await create_pod(k8s, namespace, member("big", i, 8, mine))
        await wait_pending(k8s, namespace, "big-3", contains="3 of 4 members fit", within=60)
        assert not any((await node_names(k8s, namespace)).values())
        snap = await gangs_now(gpuplace)
        assert not [p for p in snap["plans"] if p["namespace"] == namespace], snap
        assert not snap["holds"], snap
        for i, node in enumerate(names):
            pin = {**mine, "kubernetes.io/hostname": node}
            await create_pod(k8s, namespace, pod_manifest(f"lone-{i}", gpus=8, node_selector=pin))
        await wait_bound(k8s, namespace, [f"lone-{i}" for i in range(3)], within=60)
        assert not any(v for k, v in (await node_names(k8s, namespace)).items() if k.startswith("big-"))
    assert records.problems == []


async def test_a_group_that_fails_after_gpuplace_planned_it_leaves_nothing_reserved(
    control_plane: ControlPlane,
    gpuplace: GpuplaceServer,
    gpuplace_scheduler: ManagedProcess,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
    e2e_report: Callable[[str], None],
) -> None:
    """Member 3's own nodeSelector matches no node, so kube-scheduler's in-tree filters reject it and the
    group's Permit never reaches minCount 4, while gpuplace planned (and holds) all four. kube-scheduler
    never tells gpuplace the group failed, and retries it back to back: GangScheduling's Permit (Wait,
    quorum not met) activates the group's unscheduled pods (gangscheduling.go ``Permit`` →
    ``handle.Activate``), which are in flight, so the queue requeues them the moment they fail
    (backend/queue/scheduling_queue.go ``Activate``: EventForceActivate for in-flight pods). gpuplace sees
    its members filtered again with no bind in between and releases the plan after
    ``release_after_dropped_attempts`` (3), backs the gang off, and plans again after the backoff (to be
    released again). Nothing binds, nothing stays held beyond that (both audits throughout; the TTL +
    margin invariant among them), and with the gang gone the GPUs go to lone pods. kube-scheduler's loop
    goes on during the backoff, when gpuplace rejects every member and Permit is never reached (its v=5
    log shows each retry as a ForceActivate queue event): the cycles and gpuplace's filter calls are
    reported, not asserted."""
    mine = owner(namespace)
    for _ in range(4):
        await node_factory("hgx-h100", labels=mine, topology=True, clique="native-d.0")
    await podgroup(k8s, namespace, "stuck", 4)
    core = client.CoreV1Api(k8s)
    why = "dropped after filter"
    attempts = scheduler_metric(control_plane, gpuplace_scheduler, "scheduler_podgroup_schedule_attempts_total",
                                result="unschedulable")  # fmt: skip
    filters = gpuplace.metric("gpuplace_extender_request_seconds_count", verb="filter")
    released = gpuplace.metric("gpuplace_gang_plans_released_total", why=why)
    async with ledger_audit(gpuplace), AuditLoop(k8s, namespaces=[namespace], every=0.5) as records:
        start = asyncio.get_running_loop().time()
        for i in range(3):
            await create_pod(k8s, namespace, member("stuck", i, 8, mine))
        await create_pod(k8s, namespace, member("stuck", 3, 8, {**mine, "e2e.gpuplace.io/nowhere": "x"}))

        async def released_twice() -> bool:  # planned, released, backed off, planned and released again
            assert not any((await node_names(k8s, namespace)).values())
            n = await asyncio.to_thread(gpuplace.metric, "gpuplace_gang_plans_released_total", why=why)
            return n - released >= 2

        await until(gpuplace, f"two plans released {why!r}", released_twice,
                    also=lambda: tail(gpuplace_scheduler.log_file))  # fmt: skip
        took = asyncio.get_running_loop().time() - start
        attempts = scheduler_metric(control_plane, gpuplace_scheduler, "scheduler_podgroup_schedule_attempts_total",
                                    result="unschedulable") - attempts  # fmt: skip
        filters = gpuplace.metric("gpuplace_extender_request_seconds_count", verb="filter") - filters
        e2e_report(f"native failed group: {attempts:.0f} pod-group cycles, {filters:.0f} gpuplace filter calls in the "
                   f"{took:.1f}s from the members' creation to gpuplace's second release (backoff 2s)")  # fmt: skip
        await wait_pending(k8s, namespace, "stuck-0", contains="planning again in", within=30)
        for i in range(4):
            await core.delete_namespaced_pod(f"stuck-{i}", namespace, grace_period_seconds=0)

        async def no_plan() -> bool:
            return not [p for p in (await gangs_now(gpuplace))["plans"] if p["namespace"] == namespace]

        await until(gpuplace, "no plan left once the members are gone", no_plan)
        for i in range(4):
            await create_pod(k8s, namespace, pod_manifest(f"lone-{i}", gpus=8, node_selector=mine))
        await wait_bound(k8s, namespace, [f"lone-{i}" for i in range(4)], within=60)
    assert records.problems == []
    assert not (await gangs_now(gpuplace))["holds"]


async def test_members_only_assumed_in_kube_scheduler_never_get_the_same_gpus(
    gpuplace: GpuplaceServer,
    gpuplace_scheduler: ManagedProcess,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
) -> None:
    """Two 4-GPU members; one node with 4 healthy GPUs of 8 allocatable. kube-scheduler's own count fits
    both there (the first only assumed), so a filter answering each member from the cluster as it stands
    would pass both onto the same 4 GPUs and the group would go to bind. gpuplace plans the gang as a whole:
    1 of 2 fit, nothing binds. With a second such node the gang binds, one member per node, each on its
    node's healthy GPUs, each GPU once (both audits running meanwhile)."""
    mine = owner(namespace)
    first = f"half-a-{namespace[-6:]}"
    await node_factory("hgx-h100", name=first, labels=mine, topology=half_healthy(first), clique="native-e.0")
    await podgroup(k8s, namespace, "pair", 2)
    core = client.CoreV1Api(k8s)
    async with ledger_audit(gpuplace), AuditLoop(k8s, namespaces=[namespace], every=0.5) as records:
        for i in range(2):
            await create_pod(k8s, namespace, member("pair", i, 4, mine))
        await wait_pending(k8s, namespace, "pair-1", contains="1 of 2 members fit", within=60)
        await wait_pending(k8s, namespace, "pair-0", contains="1 of 2 members fit", within=30)
        assert not any((await node_names(k8s, namespace)).values())
        assert not [p for p in (await gangs_now(gpuplace))["plans"] if p["namespace"] == namespace]
        for i in range(2):
            await core.delete_namespaced_pod(f"pair-{i}", namespace, grace_period_seconds=0)

        second = f"half-b-{namespace[-6:]}"
        await node_factory(
            "hgx-h100", name=second, labels=mine, topology=half_healthy(second), clique="native-e.0"
        )

        async def known() -> bool:  # gpuplace has the new node before the members reach its filter
            return second in await asyncio.to_thread(gpuplace.node_gpus)

        await until(gpuplace, f"gpuplace knows node {second}", known)
        await podgroup(k8s, namespace, "pair2", 2)
        for i in range(2):
            await create_pod(k8s, namespace, member("pair2", i, 4, mine))
        try:
            placed = await wait_bound(k8s, namespace, ["pair2-0", "pair2-1"], within=60)
        except TimeoutError as e:
            raise AssertionError(
                f"{e}\n/debug/gangs: {gangs(gpuplace)}\n{tail(gpuplace_scheduler.log_file)}"
            ) from e
    assert records.problems == []
    assert sorted(placed.values()) == sorted([first, second])
    for name in placed:
        assert set((await record_of(k8s, namespace, name)).gpus) <= {0, 1, 2, 3}
    result = await audit_namespaces(k8s, namespace)
    assert result.ok and result.with_record == 2, result.problems
