"""Gang plans through failures on the real control plane (kube-scheduler v1.36.3 with gpuplace as extender
and binder): a plan held while a member waits survives a gpuplace SIGKILL and is never given to other pods,
a gang gpuplace was killed
in the middle of binding completes, a bound gang's deleted member is replaced inside its clique, and
plans are written compare-and-set. The reservation-ledger audit (GET /debug/gangs) runs in the
background during every scenario and fails on the first violation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from gpuplace.localcluster import ControlPlane, ManagedProcess
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
from gpuplace.localcluster.workload import pod_manifest, wait_bound, wait_pending
from tests.e2e.gang_rig import GangRig, gang_gpuplace, member
from tests.e2e.gangs import gangs_now, ledger_audit, until
from tests.e2e.helpers import NodeFactory

pytestmark = pytest.mark.e2e
# A plan here must outlive a gpuplace SIGKILL and restart (relist, warm-up, the inherited-binds hold):
# ~5 s idle, 20-30 s at load 20, so the short rig TTL expired plans mid-scenario. Expiry itself is
# tested in test_gang.py with the short TTL.
RESTART_TTL = 120
HOLD = (
    "e2e.gpuplace.io/hold"  # a scheduling gate: the member exists (the quorum is there) but is not scheduled
)


@pytest.fixture(scope="module")
def gpuplace(control_plane: ControlPlane) -> Iterator[GpuplaceServer]:
    with gang_gpuplace(control_plane, ttl=RESTART_TTL) as server:
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


def gated(body: dict[str, Any]) -> dict[str, Any]:
    body["spec"]["schedulingGates"] = [{"name": HOLD}]
    return body


async def plans_of(rig: GangRig) -> list[dict[str, Any]]:
    return [p for p in (await gangs_now(rig.gp))["plans"] if p["namespace"] == rig.namespace]


async def kill_and_restart(gp: GpuplaceServer) -> None:
    assert gp.process is not None
    gp.process.popen.kill()  # SIGKILL: no shutdown code runs
    await asyncio.to_thread(gp.stop)
    await asyncio.to_thread(gp.launch)


async def test_plan_held_across_a_gpuplace_kill_and_never_given_to_other_pods(rig: GangRig) -> None:
    """Member 1 waits behind a scheduling gate (it exists, so the quorum is there, but it never reaches
    the scheduler): member 0's plan holds two nodes while member 0 waits at the bind barrier. Other GPU
    pods get only the third node. gpuplace is SIGKILLed and restarted: the plan comes back from its
    ConfigMap, and once the gate is lifted both members bind exactly where they were planned."""
    await rig.cliques({"e": 3})
    core = client.CoreV1Api(rig.k8s)
    async with ledger_audit(rig.gp):
        await rig.create(gated(member("held", 1, 2, rig.mine)))
        await rig.create(member("held", 0, 2, rig.mine))

        async def the_plan() -> dict[str, Any] | None:
            return next(iter(await plans_of(rig)), None)

        plan = await until(rig.gp, "a plan for gang held", the_plan)
        planned = {a["pod"]: a["node"] for a in plan["assignments"].values()}
        assert set(planned) == {"held-0", "held-1"}
        await rig.create(pod_manifest("single-a", gpus=8, node_selector=rig.mine))
        await rig.create(pod_manifest("single-b", gpus=8, node_selector=rig.mine))

        async def one_single_bound() -> str | None:  # exactly one single pod gets the free node
            bound = await rig.bound()
            return next((p for p in ("single-a", "single-b") if bound[p]), None)

        got = await until(rig.gp, "one of single-a, single-b bound", one_single_bound)
        assert (await rig.bound())[got] not in planned.values()
        waiting = "single-b" if got == "single-a" else "single-a"
        await wait_pending(rig.k8s, rig.namespace, waiting, contains="needs 8 free GPUs", within=60)
        cms = await core.list_namespaced_config_map(rig.namespace, label_selector="gpuplace.io/gang-plan=v1")
        assert len(cms.items) == 1

        await kill_and_restart(rig.gp)
        assert [p["uid"] for p in await plans_of(rig)] == [plan["uid"]]
        await core.patch_namespaced_pod("held-1", rig.namespace, {"spec": {"schedulingGates": None}})
        placed = await wait_bound(rig.k8s, rig.namespace, ["held-0", "held-1"], within=60)
        assert placed == planned
        assert not (await rig.bound())[waiting]
    await rig.audited()
    cms = await core.list_namespaced_config_map(rig.namespace, label_selector="gpuplace.io/gang-plan=v1")
    assert cms.items == []  # a completed plan is deleted


async def test_gpuplace_killed_mid_binding_the_gang_completes_without_duplicates(rig: GangRig) -> None:
    """Two of three members wait at the bind barrier (the third is behind a scheduling gate) when
    gpuplace is SIGKILLed: their binds fail in kube-scheduler, the plan comes back from its ConfigMap,
    and once the gate lifts all three bind where they were planned, each GPU once."""
    await rig.cliques({"m": 3})
    core = client.CoreV1Api(rig.k8s)
    async with ledger_audit(rig.gp):
        await rig.create(gated(member("mid", 2, 3, rig.mine)))
        await rig.gang("mid", 3, order=[0, 1])

        async def both_at_barrier() -> dict[str, Any] | None:
            plan = next(iter(await plans_of(rig)), None)
            return plan if plan is not None and len(plan["arrived"]) == 2 else None

        plan = await until(rig.gp, "two members waiting at the bind barrier", both_at_barrier)
        planned = {a["pod"]: a["node"] for a in plan["assignments"].values()}
        await kill_and_restart(rig.gp)
        assert [p["uid"] for p in await plans_of(rig)] == [plan["uid"]]
        await core.patch_namespaced_pod("mid-2", rig.namespace, {"spec": {"schedulingGates": None}})
        placed = await wait_bound(rig.k8s, rig.namespace, ["mid-0", "mid-1", "mid-2"], within=60)
        assert placed == planned
    assert (await rig.audited()).with_record == 3


async def test_a_member_deleted_after_binding_is_replaced_inside_the_gangs_clique(rig: GangRig) -> None:
    """A bound gang of 3 fills clique p; clique q has a free node. A member is deleted and its node
    taken by another pod: the replacement waits (it rolls forward inside p only) although q has room,
    and binds in p once p has room again."""
    where = await rig.cliques({"p": 3, "q": 1})
    core = client.CoreV1Api(rig.k8s)
    async with ledger_audit(rig.gp):
        names = await rig.gang("keep", 3)
        placed = await wait_bound(rig.k8s, rig.namespace, names, within=60)
        assert {where[n] for n in placed.values()} == {"p"}
        await core.delete_namespaced_pod("keep-2", rig.namespace, grace_period_seconds=0)

        async def gone() -> bool:
            return "keep-2" not in await rig.bound()

        await until(rig.gp, "keep-2 deleted", gone)
        intruder = pod_manifest(
            "intruder", gpus=8, node_selector={**rig.mine, "kubernetes.io/hostname": placed["keep-2"]}
        )
        await rig.create(intruder)
        await wait_bound(rig.k8s, rig.namespace, ["intruder"], within=60)
        await rig.create(member("keep", 3, 3, rig.mine))
        await wait_pending(rig.k8s, rig.namespace, "keep-3", contains="0 of 1 members fit", within=60)
        assert not (await rig.bound())["keep-3"]
        await core.delete_namespaced_pod("intruder", rig.namespace, grace_period_seconds=0)
        again = await wait_bound(rig.k8s, rig.namespace, ["keep-3"], within=60)
    assert again["keep-3"] == placed["keep-2"]
    await rig.audited()


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
