"""Gang scheduling through the verbs: quorum, one plan, holds others respect, the bind barrier,
ordering, how a gang's size is read. The reservation-ledger audit runs after every step (`settle`);
a plan's life after filter (expiry, deletion, restart, nudges) is in test_gang_plans.py."""

from __future__ import annotations

import asyncio

import pytest

from scheduler.gang import audit
from scheduler.verbs.bind import bind
from tests.scheduler import objects as o
from tests.scheduler.gangs import NODES, add, bargs, bound, drain, filt, make, member, settle


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
