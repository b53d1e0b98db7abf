"""The gang verbs' test rig: a context over two cliques (a: 4 nodes, b: 3; one rack, one zone) with an
in-memory binder and plan store, gang members, and the steps every gang test takes (filter, bind, let
the plan writes and nudges run) with the reservation-ledger audit after each."""

from __future__ import annotations

import asyncio
from typing import Any

from scheduler.binder import MemoryBinder
from scheduler.context import ExtenderContext
from scheduler.gang import MemoryPlanStore, audit
from scheduler.leader import LeaderBinder
from scheduler.settings import SchedulerSettings
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
