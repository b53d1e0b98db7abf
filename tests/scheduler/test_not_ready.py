"""Nodes the node-lifecycle controller tainted not-ready / unreachable: what gpuplace's model says of them.

kube-scheduler's TaintToleration filter keeps pods that do not tolerate the taint off such a node before
the extender is asked, so gpuplace never rejects the node itself (a pod that tolerates it may go there),
but its free GPUs are not free capacity (metrics), and gangs gpuplace plans on its own initiative (ahead
of the asking gang, on nodes kube-scheduler did not filter for them) stay off it.
"""

from __future__ import annotations

from typing import Any

from scheduler.context import ExtenderContext
from scheduler.verbs.filter import filter_nodes
from scheduler.wire import ExtenderArgs
from tests.scheduler import gangs as g
from tests.scheduler import objects as o
from tests.scheduler.conftest import make_ctx

NOT_READY = "node.kubernetes.io/not-ready"


def tainted(node: dict[str, Any], key: str = NOT_READY) -> dict[str, Any]:
    """As the node-lifecycle controller leaves a node whose Ready condition turned False."""
    node["spec"]["taints"] = [
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
        {"key": key, "effect": "NoSchedule"},
        {"key": key, "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"},
    ]
    node["status"]["conditions"] = [{"type": "Ready", "status": "False" if key == NOT_READY else "Unknown"}]
    return node


def gauges(ctx: ExtenderContext) -> dict[tuple[str, ...], float]:
    ctx.metrics.refresh(ctx.cache, force=True)
    out = {}
    for family in ctx.metrics.registry.collect():
        for s in family.samples:
            if s.name in ("gpuplace_gpus", "gpuplace_node_gpus", "gpuplace_stranded_gpus"):
                out[(s.name, s.labels.get("node", ""), s.labels.get("state", ""))] = s.value
    return out


def test_free_gpus_of_a_not_ready_node_are_not_counted_as_free() -> None:
    nodes = [o.node("h0"), tainted(o.node("h1"))]
    ctx = make_ctx(nodes, [o.pod("run", gpus=2, node_name="h1", phase="Running")])
    view = gauges(ctx)
    assert view[("gpuplace_gpus", "", "free")] == 8.0  # h0 only
    assert view[("gpuplace_gpus", "", "unavailable")] == 6.0
    assert view[("gpuplace_gpus", "", "allocated")] == 2.0  # its pod still holds its GPUs until evicted
    assert view[("gpuplace_node_gpus", "h1", "free")] == 0.0
    assert view[("gpuplace_node_gpus", "h1", "unavailable")] == 6.0
    assert view[("gpuplace_stranded_gpus", "", "")] == 0.0  # unavailable, not stranded
    # Ready again: the node-lifecycle controller removes the taints; the GPUs are free again.
    ctx.cache.apply_node("MODIFIED", o.node("h1"))
    view = gauges(ctx)
    assert view[("gpuplace_gpus", "", "free")] == 14.0
    assert view[("gpuplace_gpus", "", "unavailable")] == 0.0
    assert ctx.cache.unavailable == {}


def test_unreachable_counts_as_not_ready_and_a_deleted_node_is_forgotten() -> None:
    ctx = make_ctx([o.node("h0"), tainted(o.node("h1"), "node.kubernetes.io/unreachable")])
    assert ctx.cache.unavailable == {
        "h1": ("node.kubernetes.io/unreachable:NoExecute", "node.kubernetes.io/unreachable:NoSchedule")
    }
    assert gauges(ctx)[("gpuplace_gpus", "", "unavailable")] == 8.0
    ctx.cache.apply_node("DELETED", o.node("h1"))
    assert ctx.cache.unavailable == {}


def test_a_not_ready_node_offered_for_a_tolerating_pod_passes_filter() -> None:
    """kube-scheduler offers the node only when the pod tolerates the taint (TaintToleration runs first):
    gpuplace must not reject it for a reason kube-scheduler waived."""
    ctx = make_ctx([tainted(o.node("h1"))])
    pod = o.pod("tolerant", gpus=4)
    pod["spec"]["tolerations"].append({"operator": "Exists"})
    r = filter_nodes(ExtenderArgs.model_validate(o.extender_args(pod, names=["h1"])), ctx).to_wire()
    assert r.node_names == ["h1"], r


def test_a_gang_planned_ahead_of_the_asking_one_stays_off_not_ready_nodes() -> None:
    """`high` (4 nodes in one clique) waits with its quorum; `low` asks, and gpuplace plans `high` first on
    rows kube-scheduler never filtered for `high`'s pods. Clique a's a0 is NotReady: `high` does not fit
    (clique a has three usable nodes, b has three), so it must not be planned, holding GPUs on a node its
    members can never be offered; `low` (3 nodes) proceeds."""
    ctx = g.make(default_topology="required-clique")
    ctx.cache.apply_node("MODIFIED", _tainted_gang_node("a0"))
    high = g.add(ctx, *(g.member("high", i, 4, priority=100) for i in range(4)))
    low = g.add(ctx, *(g.member("low", i, 3) for i in range(3)))
    offered = [n for n in g.NODES if n != "a0"]  # TaintToleration removed a0 for low's pods
    r = g.filt(ctx, low[0], offered)
    assert ctx.gangs is not None
    plans = {key[1]: {p.node for p in plan.assignments.values()} for key, plan in ctx.gangs.plans.items()}
    assert "a0" not in set().union(*plans.values()), plans
    assert "high" not in plans
    assert len(r.node_names or []) == 1, r
    assert "3 of 4 members fit" in str(g.filt(ctx, high[0], g.NODES).failed_and_unresolvable_nodes)


def _tainted_gang_node(name: str) -> dict[str, Any]:
    labels = {
        "nvidia.com/gpu.clique": f"cl.{name[0]}",
        "gpuplace.io/rack": "r1",
        "topology.kubernetes.io/zone": "z1",
    }
    return tainted(o.node(name, labels=labels))
