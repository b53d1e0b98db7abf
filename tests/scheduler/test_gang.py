"""Gang scheduling through the verbs: quorum, one plan, holds others respect, the bind barrier, expiry,
ordering, restart. The reservation-ledger audit runs after every step (`settle`)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from scheduler.binder import MemoryBinder
from scheduler.context import ExtenderContext
from scheduler.gang import MemoryPlanStore, audit
from scheduler.leader import LeaderBinder
from scheduler.settings import SchedulerSettings
from scheduler.verbs.bind import bind
from scheduler.verbs.filter import filter_nodes
from scheduler.wire import ExtenderArgs, ExtenderBindingArgs, ExtenderFilterResult
from tests.scheduler import objects as o

CLIQUES = {"a": 4, "b": 3}  # clique a: 4 nodes, clique b: 3 nodes; one rack, one zone
NODES = [f"{c}{i}" for c, n in CLIQUES.items() for i in range(n)]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make(
    store: MemoryPlanStore | None = None, clock: Clock | None = None, *, role: Any = None, **gang: Any
) -> ExtenderContext:
    """`role`: a scheduler.leader Role; the binder is then a LeaderBinder, as under leader election."""
    settings = SchedulerSettings(gang={"barrier_seconds": 2.0, "plan_ttl_seconds": 60, **gang})
    binder = MemoryBinder()
    outer: Any = binder if role is None else LeaderBinder(binder, role)
    ctx = ExtenderContext.build(settings, outer, plan_store=store or MemoryPlanStore())
    assert ctx.gangs is not None
    ctx.gangs.clock = clock or Clock()
    binder.on_change = ctx.cache.apply_pod
    nodes = [
        o.node(
            n,
            labels={
                "nvidia.com/gpu.clique": f"cl.{n[0]}",
                "gpuplace.io/rack": "r1",
                "topology.kubernetes.io/zone": "z1",
            },
        )
        for n in NODES
    ]
    ctx.cache.replace_nodes(nodes)
    ctx.cache.replace_pods([], listed_at=0.0)
    ctx.warm = True
    return ctx


def member(gang: str, i: int, size: int, *, gpus: int = 8, priority: int = 0, **kw: Any) -> dict[str, Any]:
    p = o.pod(f"{gang}-{i}", gpus=gpus, priority=priority, **kw)
    p["metadata"]["labels"]["gpuplace.io/gang"] = gang
    p["metadata"]["annotations"]["gpuplace.io/gang-min-member"] = str(size)
    p["metadata"]["creationTimestamp"] = f"2026-01-01T00:00:{i:02d}Z"
    return p


def add(ctx: ExtenderContext, *pods: dict[str, Any]) -> list[dict[str, Any]]:
    binder = getattr(ctx.binder, "inner", ctx.binder)
    assert isinstance(binder, MemoryBinder)
    return [binder.add(p) for p in pods]


def filt(ctx: ExtenderContext, p: dict[str, Any], names: list[str] = NODES) -> ExtenderFilterResult:
    r = filter_nodes(ExtenderArgs.model_validate(o.extender_args(p, names=names)), ctx).to_wire()
    settle(ctx)
    return r


def bargs(p: dict[str, Any], node: str) -> ExtenderBindingArgs:
    m = p["metadata"]
    return ExtenderBindingArgs.model_validate(
        {"PodName": m["name"], "PodNamespace": m["namespace"], "PodUID": m["uid"], "Node": node}
    )


def settle(ctx: ExtenderContext) -> None:
    assert ctx.gangs is not None
    assert audit(ctx.gangs) == []


def bound(ctx: ExtenderContext) -> dict[str, str]:
    assert isinstance(ctx.binder, MemoryBinder)
    return {n: p["spec"]["nodeName"] for (_, n), p in ctx.binder.pods.items() if p["spec"].get("nodeName")}


async def drain(ctx: ExtenderContext) -> None:
    """Let the plan writes and nudges scheduled by filter run."""
    assert ctx.gangs is not None
    while ctx.gangs.upkeep._tasks:
        await asyncio.gather(*list(ctx.gangs.upkeep._tasks))


async def test_members_wait_for_quorum_with_a_readable_reason() -> None:
    ctx = make()
    pods = add(ctx, *(member("train", i, 4) for i in range(3)))
    r = filt(ctx, pods[0])
    assert r.node_names == [] and r.failed_nodes == {}
    assert set(r.failed_and_unresolvable_nodes.values()) == {"gang train: waiting for members: 3 of 4 exist"}
    assert not ctx.gangs.plans  # type: ignore[union-attr]


async def test_happy_path_one_clique_all_bind_together_without_double_booking() -> None:
    ctx = make()
    pods = add(ctx, *(member("train", i, 4) for i in range(4)))
    planned = {}
    for p in pods:
        r = filt(ctx, p)
        assert r.node_names is not None and len(r.node_names) == 1, r
        planned[p["metadata"]["name"]] = r.node_names[0]
    assert set(planned.values()) == {"a0", "a1", "a2", "a3"}  # the clique that fits exactly (best fit)
    await drain(ctx)
    results = await asyncio.gather(*(bind(bargs(p, planned[p["metadata"]["name"]]), ctx) for p in pods))
    assert [r.error for r in results] == ["", "", "", ""]
    assert bound(ctx) == planned
    settle(ctx)
    assert not ctx.gangs.plans and not [u for u in ctx.cache.state.allocations if u.startswith("gang-hold/")]  # type: ignore[union-attr]


async def test_four_of_five_fit_holds_nothing_and_says_what_is_missing() -> None:
    ctx = make(default_topology="required-clique")
    pods = add(ctx, *(member("big", i, 5) for i in range(5)))
    r = filt(ctx, pods[0])
    assert set(r.failed_and_unresolvable_nodes.values()) == {
        "gang big: 4 of 5 members fit; needs 8 more GPUs in one NVLink domain"
    }
    assert not [u for u in ctx.cache.state.allocations if u.startswith("gang-hold/")]


async def test_preferred_gang_spreads_over_the_fewest_domains_when_no_clique_fits() -> None:
    ctx = make()
    pods = add(ctx, *(member("big", i, 5) for i in range(5)))
    nodes = [filt(ctx, p).node_names for p in pods]
    assert all(n and len(n) == 1 for n in nodes)
    assert len({n[0] for n in nodes if n}) == 5


async def test_a_non_gang_pod_never_takes_planned_capacity() -> None:
    ctx = make()
    pods = add(ctx, *(member("train", i, 4) for i in range(4)))
    filt(ctx, pods[0])
    single = add(ctx, o.pod("single", gpus=8))[0]
    r = filt(ctx, single)
    assert r.node_names == ["b0", "b1", "b2"]
    assert set(r.failed_nodes) == {"a0", "a1", "a2", "a3"}


async def test_a_member_binds_only_after_the_quorum_reached_bind() -> None:
    ctx = make(barrier_seconds=0.3)
    pods = add(ctx, *(member("train", i, 2) for i in range(2)))
    node0 = filt(ctx, pods[0]).node_names[0]  # type: ignore[index]
    await drain(ctx)
    alone = await bind(bargs(pods[0], node0), ctx)
    assert "1 of 2 members ready to bind" in alone.error
    assert bound(ctx) == {}
    settle(ctx)  # the hold is back: the plan keeps its GPUs
    node1 = filt(ctx, pods[1]).node_names[0]  # type: ignore[index]
    r = await asyncio.gather(bind(bargs(pods[0], node0), ctx), bind(bargs(pods[1], node1), ctx))
    assert [x.error for x in r] == ["", ""]
    assert set(bound(ctx)) == {"train-0", "train-1"}


async def test_bind_to_another_node_than_planned_is_refused() -> None:
    ctx = make()
    pods = add(ctx, *(member("train", i, 1) for i in range(1)))
    node = filt(ctx, pods[0]).node_names[0]  # type: ignore[index]
    other = next(n for n in NODES if n != node)
    r = await bind(bargs(pods[0], other), ctx)
    assert f"planned on {node}, not {other}" in r.error


async def test_two_gangs_that_fit_one_at_a_time_the_higher_priority_proceeds() -> None:
    ctx = make(default_topology="required-clique")
    low = add(ctx, *(member("low", i, 4) for i in range(4)))
    high = add(ctx, *(member("high", i, 4, priority=100) for i in range(4)))
    r = filt(ctx, low[0])  # low asks first, but high waits with its quorum: high is planned first
    assert set(r.failed_and_unresolvable_nodes.values()) == {
        "gang low: 3 of 4 members fit; needs 8 more GPUs in one NVLink domain"
    }
    assert set(ctx.gangs.plans) == {("default", "high")}  # type: ignore[union-attr]
    assert all(len(filt(ctx, p).node_names or []) == 1 for p in high)
    assert ctx.binder is not None
    for p in high:  # the high gang finishes and leaves: low completes
        ctx.binder.delete("default", p["metadata"]["name"])  # type: ignore[attr-defined]
    settle(ctx)
    assert all(len(filt(ctx, p).node_names or []) == 1 for p in low)


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


@pytest.mark.parametrize(
    ("labels", "annotations", "reason"),
    [
        (
            {"gpuplace.io/gang": "g"},
            {},
            "gang g (label gpuplace.io/gang): waiting: annotation gpuplace.io/gang-min-member is missing",
        ),
        (
            {"scheduling.x-k8s.io/pod-group": "pg"},
            {},
            "gang pg (label scheduling.x-k8s.io/pod-group): waiting: "
            "its size is in scheduler-plugins PodGroup default/pg; scheduling.x-k8s.io/v1alpha1 PodGroups are not "
            "listed yet",
        ),
    ],
)
async def test_a_gang_of_unknown_size_is_never_placed_alone(
    labels: dict[str, str], annotations: dict[str, str], reason: str
) -> None:
    ctx = make()
    p = o.pod("x", gpus=1, annotations=annotations)
    p["metadata"]["labels"] |= labels
    add(ctx, p)
    assert set(filt(ctx, p).failed_and_unresolvable_nodes.values()) == {reason}


async def test_kueue_pod_group_total_count_is_the_minimum() -> None:
    ctx = make()
    pods = []
    for i in range(2):
        p = o.pod(f"k{i}", gpus=8, annotations={"kueue.x-k8s.io/pod-group-total-count": "2"})
        p["metadata"]["labels"]["kueue.x-k8s.io/pod-group-name"] = "kg"
        pods.append(p)
    add(ctx, pods[0])
    assert "waiting for members: 1 of 2 exist" in next(
        iter(filt(ctx, pods[0]).failed_and_unresolvable_nodes.values())
    )
    add(ctx, pods[1])
    assert len(filt(ctx, pods[0]).node_names or []) == 1


async def test_a_bad_topology_annotation_waits_with_the_error() -> None:
    ctx = make()
    p = member("t", 0, 1, annotations={"gpuplace.io/gang-topology": "nearby"})
    add(ctx, p)
    r = filt(ctx, p)
    assert r.error == (
        "gpuplace: pod default/t-0: annotation gpuplace.io/gang-topology='nearby': use one of preferred, "
        "required-clique, required-rack, required-zone"
    )


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


async def test_the_audit_sees_a_stray_hold_and_a_double_booking() -> None:
    from placement_core import Placement

    ctx = make()
    pods = add(ctx, *(member("train", i, 1) for i in range(1)))
    node = filt(ctx, pods[0]).node_names[0]  # type: ignore[index]
    ctx.cache.state.allocate("gang-hold/ghost", Placement("b2", gpus=(0,)))
    ctx.cache.state.allocate("intruder", Placement(node, gpus=(0,)), check=False)
    problems = audit(ctx.gangs)  # type: ignore[arg-type]
    assert "hold ghost on b2 belongs to no plan" in problems
    assert any("oversubscribed" in p for p in problems)


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


async def test_members_nominated_to_their_planned_node_do_not_block_each_others_bind() -> None:
    """kube-scheduler nominates members whose attempts failed (preemption ran for them); a sibling's
    nomination is already covered by its gang hold, so counting it again refused every member's bind
    ("its free GPUs are held for nominated pod ...") and the gang waited forever."""
    ctx = make()
    pods = add(ctx, *(member("quad", i, 4, gpus=2) for i in range(4)))
    planned = {}
    for p in pods:
        r = filt(ctx, p)
        assert r.node_names is not None and len(r.node_names) == 1, r
        planned[p["metadata"]["name"]] = r.node_names[0]
    (node,) = set(planned.values())  # 4 x 2 GPUs: one 8-GPU node, best fit
    for p in pods:
        p["status"]["nominatedNodeName"] = node
        ctx.cache.apply_pod("MODIFIED", p)
    await drain(ctx)
    results = await asyncio.gather(*(bind(bargs(p, node), ctx) for p in pods))
    assert [r.error for r in results] == ["", "", "", ""]
    assert bound(ctx) == planned
    settle(ctx)
