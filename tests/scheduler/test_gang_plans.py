"""A gang plan's life after filter: it expires and backs off, a member's deletion releases it, a
replacement is planned inside the gang's clique, it survives a restart through the plan store,
pending members are nudged when it changes, and it is released early once kube-scheduler keeps dropping
its members after filter. The reservation-ledger audit runs after every step."""

from __future__ import annotations

import asyncio

import pytest

from scheduler.binder import MemoryBinder
from scheduler.gang import MemoryPlanStore
from scheduler.verbs.bind import bind
from scheduler.verbs.filter import filter_nodes
from scheduler.wire import ExtenderArgs
from tests.scheduler import objects as o
from tests.scheduler.gangs import NODES, Clock, add, bargs, bound, drain, filt, make, member, settle


async def test_an_unfinished_plan_expires_releases_and_backs_off() -> None:
    clock = Clock()
    ctx = make(clock=clock, backoff_seconds=10)
    pods = add(ctx, *(member("train", i, 2) for i in range(2)))
    filt(ctx, pods[0])
    assert ctx.gangs.expire() == 0  # type: ignore[union-attr]
    clock.now += 61
    assert ctx.gangs.expire() == 1  # type: ignore[union-attr]
    settle(ctx)
    assert not [u for u in ctx.cache.state.allocations if u.startswith("gang-hold/")]
    r = filt(ctx, pods[1])
    assert set(r.failed_and_unresolvable_nodes.values()) == {
        "gang train: its plan expired; planning again in 10s"
    }
    clock.now += 10
    assert len(filt(ctx, pods[1]).node_names or []) == 1


async def test_member_deleted_before_any_bind_releases_the_plan() -> None:
    ctx = make()
    pods = add(ctx, *(member("train", i, 2) for i in range(2)))
    filt(ctx, pods[0])
    ctx.binder.delete("default", "train-1")  # type: ignore[attr-defined]
    settle(ctx)
    assert not ctx.gangs.plans  # type: ignore[union-attr]
    assert not [u for u in ctx.cache.state.allocations if u.startswith("gang-hold/")]


async def test_replacement_after_a_partial_bind_is_planned_inside_the_gangs_clique() -> None:
    ctx = make()
    pods = add(ctx, *(member("train", i, 2, gpus=4) for i in range(3)))
    nodes = {p["metadata"]["name"]: filt(ctx, p).node_names[0] for p in pods}  # type: ignore[index]
    await drain(ctx)
    await asyncio.gather(*(bind(bargs(p, nodes[p["metadata"]["name"]]), ctx) for p in pods[:2]))
    ctx.binder.delete("default", "train-2")  # type: ignore[attr-defined]
    new = add(ctx, member("train", 3, 2, gpus=4))[0]
    r = filt(ctx, new)
    assert r.node_names and r.node_names[0][0] == nodes["train-0"][0]  # same clique


async def test_plans_survive_a_restart_with_one_member_bound() -> None:
    store, clock = MemoryPlanStore(), Clock()
    ctx = make(store, clock)
    pods = add(ctx, *(member("train", i, 3) for i in range(3)))
    nodes = {p["metadata"]["name"]: filt(ctx, p).node_names[0] for p in pods}  # type: ignore[index]
    await drain(ctx)
    assert store.objects
    # gpuplace is killed after one member's Binding landed: rebuild from the store and the pod list
    listed = [dict(p) for p in ctx.binder.pods.values()]  # type: ignore[attr-defined]
    listed[0] = {**listed[0], "spec": {**listed[0]["spec"], "nodeName": nodes[listed[0]["metadata"]["name"]]}}
    fresh = make(store, clock)
    assert fresh.gangs is not None
    fresh.cache.replace_pods([], listed_at=0.0)
    await fresh.gangs.load()
    fresh.cache.replace_pods(listed, listed_at=1.0)
    settle(fresh)
    holds = sorted(u for u in fresh.cache.state.allocations if u.startswith("gang-hold/"))
    assert len(holds) == 2  # the bound member's hold is gone, its pod counts instead
    for p in listed[1:]:
        r = filter_nodes(ExtenderArgs.model_validate(o.extender_args(p, names=NODES)), fresh).to_wire()
        assert r.node_names == [nodes[p["metadata"]["name"]]]


async def test_nudges_patch_pending_members_on_plan_release_and_backoff_end() -> None:
    clock = Clock()
    ctx = make(clock=clock, backoff_seconds=10)
    pods = add(ctx, *(member("train", i, 2) for i in range(2)))
    binder = ctx.binder
    assert isinstance(binder, MemoryBinder)
    filt(ctx, pods[0])
    await drain(ctx)
    planned = [c for c in binder.calls if c[0] == "patch"]
    assert sorted(n for _, _, n in planned) == ["train-0", "train-1"]
    annotation = binder.pods[("default", "train-1")]["metadata"]["annotations"]["gpuplace.io/gang-plan"]
    assert annotation.endswith("/1")
    binder.calls.clear()
    clock.now += 61
    ctx.gangs.expire()  # type: ignore[union-attr]
    await drain(ctx)
    assert len([c for c in binder.calls if c[0] == "patch"]) == 2  # released
    binder.calls.clear()
    clock.now += 10
    ctx.gangs.expire()  # type: ignore[union-attr]
    await drain(ctx)
    assert len([c for c in binder.calls if c[0] == "patch"]) == 2  # backoff over: retry now


def test_plan_round_trip_and_a_broken_plan_is_refused() -> None:
    from placement_core import Placement
    from placement_core.gangplan import Level
    from scheduler.gang.store import Plan, PlanError

    plan = Plan(
        "ml",
        "train",
        "u1",
        3,
        2,
        Level.RACK,
        "r1",
        10.0,
        130.0,
        {"p0": Placement("n0", gpus=(0, 1), cpu_milli=500, memory_mib=64)},
        {"p0": "train-0"},
    )
    back = Plan.from_json(plan.to_json())
    assert (back.assignments, back.pods, back.level, back.epoch) == (
        plan.assignments,
        plan.pods,
        Level.RACK,
        3,
    )
    for bad in (b"{", b'{"v": 2}', b'{"v": 1, "namespace": "ml"}'):
        with pytest.raises(PlanError):
            Plan.from_json(bad)


async def test_a_loaded_plan_whose_member_is_gone_at_restart_is_released() -> None:
    store, clock = MemoryPlanStore(), Clock()
    ctx = make(store, clock)
    pods = add(ctx, *(member("train", i, 2) for i in range(2)))
    filt(ctx, pods[0])
    await drain(ctx)
    listed = [p for p in ctx.binder.pods.values() if p["metadata"]["name"] != "train-1"]  # type: ignore[attr-defined]
    fresh = make(store, clock)
    assert fresh.gangs is not None
    await fresh.gangs.load()
    assert len([u for u in fresh.cache.state.allocations if u.startswith("gang-hold/")]) == 2
    fresh.cache.replace_pods(listed, listed_at=1.0)
    settle(fresh)
    assert not fresh.gangs.plans
    assert not [u for u in fresh.cache.state.allocations if u.startswith("gang-hold/")]


async def test_a_plan_kube_scheduler_keeps_dropping_after_filter_is_released_and_backs_off() -> None:
    """kube-scheduler 1.36's pod-group cycle: member 2's own filters reject it, so the group fails after
    gpuplace passed members 0 and 1, and kube-scheduler tries the group again at once and again (its
    GangScheduling Permit activates the members), never binding. A member filtered again with no bind call
    since its last filter was dropped by kube-scheduler after gpuplace's answer; after
    `release_after_dropped_attempts` such filters the plan is released (not held for its TTL) and the gang
    backs off; it plans again after the backoff."""
    clock = Clock()
    ctx = make(clock=clock, backoff_seconds=10)  # release_after_dropped_attempts: 3 (the default)
    pods = add(ctx, *(member("train", i, 3) for i in range(3)))
    for _ in range(2):  # two cycles: gpuplace passes members 0 and 1 each time; member 2 never reaches it
        for p in pods[:2]:
            assert len(filt(ctx, p).node_names or []) == 1
    assert ctx.gangs.plans  # type: ignore[union-attr]
    r = filt(ctx, pods[0])  # the third dropped attempt
    assert r.node_names == []
    assert set(r.failed_and_unresolvable_nodes.values()) == {
        "gang train: kube-scheduler dropped its planned members after gpuplace's filter 3 times "
        "(is a member kept off by its own constraints?); planning again in 10s"
    }
    assert not ctx.gangs.plans  # type: ignore[union-attr]
    assert not [u for u in ctx.cache.state.allocations if u.startswith("gang-hold/")]
    assert set(filt(ctx, pods[1]).failed_and_unresolvable_nodes.values()) == {
        "gang train: its plan expired; planning again in 10s"
    }
    clock.now += 10
    assert len(filt(ctx, pods[1]).node_names or []) == 1  # planned again after the backoff


async def test_a_member_whose_bind_waited_at_the_barrier_is_not_counted_as_dropped() -> None:
    """Without the native gates a member is filtered, then its bind waits at the barrier for a sibling
    that has not reached kube-scheduler yet and times out; the retries each had a bind call: the plan
    stays (it expires at its TTL)."""
    ctx = make(barrier_seconds=0.01)
    pods = add(ctx, *(member("train", i, 2) for i in range(2)))
    uid = None
    for _ in range(4):
        r = filt(ctx, pods[0])
        assert r.node_names is not None and len(r.node_names) == 1
        plan = next(iter(ctx.gangs.plans.values()))  # type: ignore[union-attr]
        assert uid in (None, plan.uid)
        uid = plan.uid
        await drain(ctx)
        result = await bind(bargs(pods[0], r.node_names[0]), ctx)
        assert "1 of 2 members ready to bind" in result.error
    assert not bound(ctx)


async def test_a_nominated_node_filter_before_the_full_one_is_not_counted_as_dropped() -> None:
    """A member nominated to another node than its planned one (kube-scheduler's evaluateNominatedNode)
    is filtered twice per attempt: first on the nominated node alone, which gpuplace rejects, then on
    every node. Only answers that passed the member count: attempts that end in a bind call never release
    the plan."""
    ctx = make(barrier_seconds=0.01)
    pods = add(ctx, *(member("train", i, 2) for i in range(2)))
    r = filt(ctx, pods[0])
    assert r.node_names is not None and len(r.node_names) == 1
    planned = r.node_names[0]
    elsewhere = next(n for n in NODES if n != planned)
    uid = next(iter(ctx.gangs.plans.values())).uid  # type: ignore[union-attr]
    await drain(ctx)
    assert "1 of 2 members ready to bind" in (await bind(bargs(pods[0], planned), ctx)).error
    for _ in range(4):
        assert filt(ctx, pods[0], [elsewhere]).node_names == []  # the nominated node: not the planned one
        assert filt(ctx, pods[0]).node_names == [planned]
        assert "1 of 2 members ready to bind" in (await bind(bargs(pods[0], planned), ctx)).error
    assert [p.uid for p in ctx.gangs.plans.values()] == [uid]  # type: ignore[union-attr]
