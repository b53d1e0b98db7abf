"""Gang members on nodes whose GPUs the NVIDIA DRA driver publishes. A member asking `nvidia.com/gpu`
there (DRAExtendedResource, beta and on in 1.36) is planned like any member — before PreBind it has no
claim — but kube-scheduler's DynamicResources PreBind then allocates a special claim for it
(status.extendedResourceClaimStatus) and gpuplace's bind confirms that claim (scheduler.dra.extender).
The gang's bind barrier must still hold such a member until its quorum reached bind."""

from __future__ import annotations

import asyncio
from typing import Any

from scheduler.binder import MemoryBinder
from scheduler.context import ExtenderContext
from scheduler.gang import MemoryPlanStore, audit
from scheduler.settings import SchedulerSettings
from scheduler.verbs.bind import bind
from scheduler.verbs.filter import filter_nodes
from scheduler.wire import ExtenderArgs
from tests.scheduler import dra_payloads as rp
from tests.scheduler import objects as o
from tests.scheduler.gangs import bargs, bound, drain, member

NODES = ["n1", "n2"]


def make(**gang: Any) -> tuple[ExtenderContext, MemoryBinder]:
    settings = SchedulerSettings(gang={"barrier_seconds": 0.3, "plan_ttl_seconds": 60, **gang})
    binder = MemoryBinder()
    ctx = ExtenderContext.build(settings, binder, plan_store=MemoryPlanStore())
    binder.on_change = ctx.cache.apply_pod
    labels = {"nvidia.com/gpu.clique": "cl.a", "gpuplace.io/rack": "r1", "topology.kubernetes.io/zone": "z1"}
    ctx.cache.replace_nodes([o.node(n, product="", gpus=0, labels=labels) for n in NODES])
    ctx.cache.replace_slices([rp.a100_node_slice(n) for n in NODES])
    ctx.cache.replace_claims([])
    ctx.cache.replace_pods([], listed_at=0.0)
    ctx.warm = True
    return ctx, binder


def prebind(binder: MemoryBinder, pod: dict[str, Any], node: str) -> None:
    """What kube-scheduler's DynamicResources PreBind writes for an extended-resource request: a claim
    allocated on `node` for all 8 GPUs, named in the pod's status.extendedResourceClaimStatus."""
    name = pod["metadata"]["name"]
    claim = rp.allocated(rp.claim(name, count=8), node, [f"gpu-{g}" for g in range(8)], pod=name)
    claim["metadata"]["name"] = f"{name}-extended-resources-abcde"
    binder.claims[("default", claim["metadata"]["name"])] = claim
    stored = binder.pods[("default", name)]
    stored["status"]["extendedResourceClaimStatus"] = {
        "resourceClaimName": claim["metadata"]["name"],
        "requestMappings": [
            {
                "containerName": "main",
                "requestName": "container-0-request-0",
                "resourceName": "nvidia.com/gpu",
            }
        ],
    }


async def test_extended_resource_member_on_a_dra_node_waits_at_the_gang_barrier() -> None:
    ctx, binder = make()
    pods = [binder.add(member("train", i, 2, uid=f"pod-uid-train-{i}")) for i in range(2)]
    planned = {}
    for p in pods:
        r = filter_nodes(ExtenderArgs.model_validate(o.extender_args(p, names=NODES)), ctx).to_wire()
        assert r.node_names is not None and len(r.node_names) == 1, r
        planned[p["metadata"]["name"]] = r.node_names[0]
    assert sorted(planned.values()) == NODES
    await drain(ctx)
    assert ctx.gangs is not None and audit(ctx.gangs) == []
    for p in pods:
        prebind(binder, p, planned[p["metadata"]["name"]])
    alone = await bind(bargs(pods[0], planned["train-0"]), ctx)
    assert "1 of 2 members ready to bind" in alone.error, alone
    assert bound(ctx) == {}  # never a partial gang, whichever way the GPUs are allocated
    both = await asyncio.gather(*(bind(bargs(p, planned[p["metadata"]["name"]]), ctx) for p in pods))
    assert [r.error for r in both] == ["", ""]
    assert bound(ctx) == planned
    s = ctx.cache.state
    assert not [u for u in s.allocations if u.startswith("gang-hold/")]  # the claims count, holds gone
    assert s.check_invariants() == [] and ctx.cache.dra is not None and ctx.cache.dra.problems() == []
    assert audit(ctx.gangs) == [] and not ctx.gangs.plans
