"""Warm-up covers every kernel a request can reach: after it, the verbs compile (or load) nothing.

Why it matters: filter and prioritize run their kernels on the event loop. A kernel that warm-up missed
compiles on the first real request — 70 s on a loaded 2-core machine for `score_all` — and for that
long the replica answers nothing and cannot renew its Lease, so a follower takes over while the old
leader is frozen mid-request (seen in tests/e2e/test_failover.py before warm-up covered the policies).
The check is tests/warm_kernels.py's (a fresh interpreter, signatures counted, so it holds with a warm
cache and a cold one alike).
"""

from __future__ import annotations

from tests.warm_kernels import first_reached_after

WARMUP = """
import asyncio
import numpy as np
from placement_core.placer import warmup
warmup()
"""

CALLS = """

    from placement_core import MODELS, ClusterState, GpuRequest, GpuSpec, NodeSpec
    from placement_core.gangplan import Member, plan_gang
    from scheduler.policy import POLICIES, scoring_function
    from scheduler.verbs.bind import bind
    from scheduler.verbs.filter import filter_nodes
    from scheduler.verbs.prioritize import prioritize
    from scheduler.wire import ExtenderArgs, ExtenderBindingArgs
    from tests.scheduler import objects as o
    from tests.scheduler.conftest import make_ctx

    nodes = [
        o.node("h0"),
        o.node("h1"),
        o.node("v0", product="Tesla-V100-SXM2-32GB", memory_mib=32768),
        o.node("a0", product="NVIDIA-A100-SXM4-80GB", gpus=4, memory_mib=81920,
               mig={"3g.40gb": 4, "1g.10gb": 14}),
    ]
    names = [n["metadata"]["name"] for n in nodes]
    pods = [
        o.pod("one", gpus=1),
        o.pod("pair", gpus=2, annotations={"gpuplace.io/nvlink": "required"}),
        o.pod("four", gpus=4),
        o.pod("eight", gpus=8),
        o.pod("share", gpus=1, annotations={"gpuplace.io/gpu-milli": "500"}),
        o.pod("mig", mig="3g.40gb"),
        o.pod("model", gpus=1, annotations={"gpuplace.io/gpu-models": "V100-32GB"}),
    ]

    async def verbs(ctx):
        for p in pods:
            a = ExtenderArgs.model_validate(o.extender_args(p, names=names))
            filter_nodes(a, ctx)
            best = max(prioritize(a, ctx).to_wire(), key=lambda h: h.score).host
            m = p["metadata"]
            await bind(ExtenderBindingArgs.model_validate(
                {"PodName": m["name"], "PodNamespace": m["namespace"], "PodUID": m["uid"], "Node": best}
            ), ctx)

    for name in POLICIES:
        ctx = make_ctx(nodes, [])
        ctx.score = scoring_function(name, ctx.settings.topology_weight)
        asyncio.run(verbs(ctx))

    # a DRA pod: a 2-GPU claim under one PCIe root, and a shared GPU's capacity (scheduler.dra)
    from tests.scheduler import dra_payloads as rp
    ctx = make_ctx([o.node(n, product="", gpus=0) for n in ("d0", "d1")], [])
    ctx.cache.replace_slices([rp.a100_node_slice(n) for n in ("d0", "d1")])
    claims = [rp.claim("train", count=2, pcie_constraint=True),
              rp.claim("share", capacity={"memory": "10Gi"})]
    ctx.cache.replace_claims(claims)
    for c in claims:
        p = rp.pod_with_claim(c["metadata"]["name"].split("-")[0], c["metadata"]["name"])
        ctx.cache.apply_pod("ADDED", p)
        a = ExtenderArgs.model_validate(o.extender_args(p, names=["d0", "d1"]))
        filter_nodes(a, ctx)
        prioritize(a, ctx)

    h100 = MODELS["H100-80GB"]
    s = ClusterState(max_gpus=8, capacity=4)
    for i in range(2):
        s.upsert_node(NodeSpec(f"g{i}", h100, [GpuSpec(g, h100.memory_mib) for g in range(8)],
                               cpu_milli=64000, memory_mib=512000, clique="c", rack="r", zone="z"))
    plan_gang(s, [Member(f"m{i}", GpuRequest(count=8)) for i in range(2)], need=2,
              rows=np.arange(s.n_rows))

"""


def test_no_kernel_is_compiled_or_loaded_after_warmup() -> None:
    grew = first_reached_after(WARMUP, CALLS, ("placement_core", "scheduler"))
    assert grew == "{}", f"kernels first reached after warm-up (they would compile on a request): {grew}"
