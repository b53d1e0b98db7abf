"""Gang plans under leader election and concurrent writers (scheduler.gang.upkeep, scheduler.gang.store):
only the leader expires and writes plans, a new leader rereads them, and a plan someone else wrote is
never overwritten."""

from __future__ import annotations

from typing import Any

from scheduler.binder import MemoryBinder
from scheduler.context import ExtenderContext
from scheduler.gang import MemoryPlanStore, Plan, audit
from scheduler.leader import LeaderBinder
from scheduler.settings import SchedulerSettings
from tests.scheduler import objects as o
from tests.scheduler.gangs import NODES, Clock, add, drain, filt, make, member


class Role:
    def __init__(self, leader: bool) -> None:
        self.leader = leader

    def is_leader(self) -> bool:
        return self.leader

    def describe(self) -> str:
        return "leader" if self.leader else "follower"

    def refused(self, verb: str) -> None:
        pass


def follower(store: MemoryPlanStore, clock: Clock, role: Role) -> ExtenderContext:
    """A second replica built as gpuplace serve builds it under leader election (a LeaderBinder)."""
    settings = SchedulerSettings(gang={"barrier_seconds": 2.0, "plan_ttl_seconds": 60})
    binder = MemoryBinder()
    ctx = ExtenderContext.build(settings, LeaderBinder(binder, role), plan_store=store)
    assert ctx.gangs is not None
    ctx.gangs.clock = clock
    ctx.cache.replace_nodes([o.node(n, labels={"nvidia.com/gpu.clique": f"cl.{n[0]}"}) for n in NODES])
    ctx.warm = True
    return ctx


async def test_a_follower_never_expires_nor_deletes_the_leaders_plan() -> None:
    store, clock = MemoryPlanStore(), Clock()
    leader = make(store, clock)
    pods = add(leader, *(member("train", i, 2) for i in range(2)))
    filt(leader, pods[0])
    await drain(leader)
    assert list(store.objects) == [("default", "train")]
    other = follower(store, clock, Role(False))
    assert other.gangs is not None
    await other.gangs.load()
    other.cache.replace_pods(pods, listed_at=0.0)
    clock.now += 61  # past the TTL: the leader's to release, not the follower's
    other.gangs.expire()
    await drain(other)
    assert list(store.objects) == [("default", "train")]
    assert not [c for c in other.binder.inner.calls if c[0] == "patch"]  # type: ignore[attr-defined]


async def test_taking_the_lease_rereads_the_plans_before_answering_for_gangs() -> None:
    store, clock = MemoryPlanStore(), Clock()
    role = Role(False)
    other = make(store, clock, role=role)
    gangs = other.gangs
    assert gangs is not None
    await gangs.load()  # at start: nothing stored yet
    leader = make(store, clock)
    pods = add(leader, *(member("train", i, 2) for i in range(2)))
    planned = filt(leader, pods[0]).node_names
    await drain(leader)
    add(other, *pods)
    role.leader = True
    r = filt(other, pods[0])
    assert set(r.failed_and_unresolvable_nodes.values()) == {
        "gang train: gpuplace is reloading gang plans (it just took the lease)"
    }
    await drain(other)
    assert gangs.plans[("default", "train")].uid == leader.gangs.plans[("default", "train")].uid  # type: ignore[union-attr]
    assert filt(other, pods[0]).node_names == planned
    assert audit(gangs) == []


async def test_a_plan_someone_else_wrote_is_never_overwritten_and_the_stored_one_is_taken() -> None:
    store, clock = MemoryPlanStore(), Clock()
    ctx = make(store, clock)
    gangs = ctx.gangs
    assert gangs is not None
    pods = add(ctx, *(member("train", i, 2) for i in range(2)))
    filt(ctx, pods[0])
    await drain(ctx)
    mine = gangs.plans[("default", "train")]
    theirs = Plan.from_json(mine.to_json())
    theirs.uid, theirs.epoch = "someone-else", mine.epoch + 1
    moved = dict(mine.assignments)
    free = [n for n in NODES if n not in {p.node for p in moved.values()}]
    theirs.assignments = {uid: type(p)(free[i], gpus=p.gpus, milli=p.milli, cpu_milli=p.cpu_milli,
                                       memory_mib=p.memory_mib) for i, (uid, p) in enumerate(moved.items())}  # fmt: skip
    store.put(theirs)
    gangs.upkeep.save(mine)  # any later write of this plan
    await drain(ctx)
    now = gangs.plans[("default", "train")]
    assert now.uid == "someone-else"
    assert {p.node for p in now.assignments.values()} == set(free[:2])
    assert {ctx.cache.state.allocations[f"gang-hold/{u}"].node for u in now.assignments} == set(free[:2])
    assert audit(gangs) == []
    assert store.objects[("default", "train")][0] == now.resource_version


async def test_store_compare_and_set() -> None:
    store, clock = MemoryPlanStore(), Clock()
    ctx = make(store, clock)
    pods = add(ctx, *(member("t", i, 1) for i in range(1)))
    filt(ctx, pods[0])
    await drain(ctx)
    plan: Any = ctx.gangs.plans[("default", "t")]  # type: ignore[union-attr]
    stale = Plan.from_json(plan.to_json())
    stale.resource_version = plan.resource_version
    await store.save(plan)  # its own write: the version moves on
    import pytest

    from scheduler.gang import PlanConflictError

    with pytest.raises(PlanConflictError):
        await store.delete(stale)  # a delete on an old version leaves the newer write alone
    other = Plan.from_json(plan.to_json())
    other.uid = "x"
    with pytest.raises(PlanConflictError):
        await store.save(other)  # a create over someone else's plan
    await store.delete(plan)
    assert store.objects == {}
