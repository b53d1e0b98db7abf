"""Gang placement in the simulator: gpuplace's planner beside an all-or-nothing planner without
topology and beside kube-scheduler alone (members placed one by one).

Cluster: 64 HGX H100 nodes (8 GPUs each) in 8 NVLink cliques of 8 nodes; racks of 2 cliques; one zone.
Workload (seeded): gangs of 2, 4, 8 or 16 members x 8 GPUs, and single pods of 1, 2 or 4 GPUs, arriving
one after another until the cluster is full (no departures). Per strategy:
- gangs placed, and the share of them in their smallest feasible domain (one clique for up to 8
  members, one rack beyond);
- GPU allocation at the end;
- partial gangs (some members placed, some not) and the GPUs they hold idle — only kube-scheduler alone
  can make them;
- planner time per gang (median, ms).
kube-scheduler alone is modelled as per-member first fit by node order (what its count-only
NodeResourcesFit does with an extender that only filters); it is a model, not the real binary.

    .venv/bin/python bench/gang.py [--seeds 5] [--arrivals 60]

`--real`: the same kind of workload on the local control plane (kube-apiserver, etcd and kube-scheduler
v1.36.3; static fake nodes, `GPUPLACE_LOCAL_BIN` as for the e2e tests), once with gpuplace as extender
and binder and once with kube-scheduler alone. Gangs arrive one after another, each gang's members
created in shuffled order with small random gaps (slow arrival); the next gang starts once this one is
fully bound or no member of it bound for a while (`--settle`). Per run: gangs fully bound, time to full
bind counted from the creation of the gang's last member (issue 11's target: 15 s), partial gangs at
the end, and the GPUs they hold idle (count, and GPU-hours from each member's bind to the end).

    .venv/bin/python bench/gang.py --real [--real-cliques 4] [--real-gangs 12]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from placement_core import MODELS, ClusterState, GpuRequest, GpuSpec, NodeSpec, placer
from placement_core.gangplan import Level, Member, plan_gang

H100 = MODELS["H100-80GB"]
CLIQUES, PER_CLIQUE = 8, 8


def cluster() -> ClusterState:
    s = ClusterState(max_gpus=8, capacity=64)
    for c in range(CLIQUES):
        for i in range(PER_CLIQUE):
            s.upsert_node(NodeSpec(f"c{c}n{i}", H100, [GpuSpec(g, H100.memory_mib) for g in range(8)],
                                   cpu_milli=224000, memory_mib=2_000_000, clique=f"cl{c}", rack=f"r{c // 2}",
                                   zone="z"))
    return s


def workload(seed: int, n: int) -> list[tuple[str, int, int]]:
    """(kind, members, GPUs per member)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        if rng.random() < 0.35:
            out.append(("gang", int(rng.choice([2, 4, 8, 16], p=[0.35, 0.3, 0.25, 0.1])), 8))
        else:
            out.append(("single", 1, int(rng.choice([1, 2, 4]))))
    return out


@dataclass
class Result:
    gangs: int = 0
    placed: int = 0
    smallest: int = 0
    partial: int = 0
    partial_gpus: int = 0
    plan_ms: list[float] = field(default_factory=list)
    alloc: float = 0.0


def smallest_ok(s: ClusterState, nodes: list[str], members: int) -> bool:
    rows = [s.index[n] for n in nodes]
    ids = (s.node_clique if members <= PER_CLIQUE else s.node_rack)[rows]
    return len(set(ids.tolist())) == 1


def run(strategy: str, seed: int, arrivals: int) -> Result:
    s, r = cluster(), Result()
    rows = np.arange(s.n_rows)
    for k, (kind, members, gpus) in enumerate(workload(seed, arrivals)):
        req = GpuRequest(count=gpus)
        if kind == "single":
            for row in rows.tolist():
                p = placer.choose(s, s.names[row], req)
                if p is not None:
                    s.allocate(f"s{k}", p)
                    break
            continue
        r.gangs += 1
        ms = [Member(f"g{k}m{i}", req) for i in range(members)]
        if strategy == "kube-scheduler alone":
            placed = []
            for m in ms:
                for row in rows.tolist():
                    p = placer.choose(s, s.names[row], req)
                    if p is not None:
                        s.allocate(m.uid, p)
                        placed.append(p.node)
                        break
            if len(placed) == members:
                r.placed += 1
                r.smallest += smallest_ok(s, placed, members)
            elif placed:
                r.partial += 1
                r.partial_gpus += len(placed) * gpus
            continue
        t0 = time.perf_counter()
        if strategy == "gpuplace":
            out = plan_gang(s, ms, need=members, rows=rows)
        else:  # all-or-nothing, no topology: the whole cluster is one domain
            out = plan_gang(s, ms, need=members, rows=rows, within=(Level.CLUSTER, 0))
        r.plan_ms.append((time.perf_counter() - t0) * 1000)
        if out.assignments is not None:
            for uid, p in out.assignments.items():
                s.allocate(uid, p)
            r.placed += 1
            r.smallest += smallest_ok(s, [p.node for p in out.assignments.values()], members)
    total = s.node_gpu_count[: s.n_rows].sum() * 1000
    r.alloc = 1 - s.gpu_free_milli[: s.n_rows].sum() / total
    return r


@dataclass
class RealResult:
    name: str
    gangs: int = 0
    full: int = 0
    latencies: list[float] = field(default_factory=list)
    partial: int = 0
    partial_gpus: int = 0
    idle_gpu_hours: float = 0.0
    problems: list[str] = field(default_factory=list)


def real_gangs(seed: int, n: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(rng.choice([2, 4, 8, 16], p=[0.3, 0.35, 0.25, 0.1])) for _ in range(n)]


async def real_run(cp: Any, name: str, config: dict[str, Any], gangs: list[int], settle: float,
                   console: Console) -> RealResult:  # fmt: skip
    import random

    from kubernetes_asyncio import client
    from scheduler_throughput import CLIENT, BindWatch

    from gpuplace.localcluster import audit
    from gpuplace.localcluster.workload import pod_manifest

    rng, r = random.Random(11), RealResult(name, gangs=len(gangs))
    slug = name.replace(" ", "-")
    namespace = f"bench-gang-{slug}"
    async with cp.api_client() as api:
        core = client.CoreV1Api(api)
        await core.create_namespace({"metadata": {"name": namespace}})  # type: ignore[arg-type]
        watch = BindWatch(api, namespace)
        await watch.start()
        cfg = {**config, "percentageOfNodesToScore": 100, "clientConnection": dict(CLIENT)}
        process = await asyncio.to_thread(cp.start_scheduler, cfg, name=f"kube-scheduler-gang-{slug}")
        members: dict[str, list[str]] = {}
        try:
            for g, size in enumerate(gangs):
                names = [f"g{g:02d}-{i:02d}" for i in range(size)]
                members[f"g{g:02d}"] = names
                for i in rng.sample(range(size), size):
                    body = pod_manifest(names[i], gpus=8, cpu="8", memory="64Gi", gpu_requests=True,
                                        tolerate_gpu_taint=True, labels={"gpuplace.io/gang": f"g{g:02d}"},
                                        annotations={"gpuplace.io/gang-min-member": str(size)})  # fmt: skip
                    await core.create_namespaced_pod(namespace, body)  # type: ignore[arg-type]
                    last_created = time.monotonic()  # ends as the last member's creation
                    await asyncio.sleep(rng.uniform(0.0, 0.3))  # a bench, not a test: slow arrival
                progress, seen = time.monotonic(), 0
                while True:
                    bound = [watch.times[n] for n in names if n in watch.times]
                    if len(bound) == size:
                        r.full += 1
                        r.latencies.append(max(bound) - last_created)
                        break
                    if len(bound) != seen:
                        progress, seen = time.monotonic(), len(bound)
                    elif time.monotonic() - progress > settle:
                        break
                    await asyncio.sleep(0.05)
                console.print(f"  \\[{name}] gang g{g:02d} x{size}: {seen if len(bound) < size else size}/{size} bound")
            end = time.monotonic()
            for names in members.values():
                bound = [watch.times[n] for n in names if n in watch.times]
                if 0 < len(bound) < len(names):
                    r.partial += 1
                    r.partial_gpus += 8 * len(bound)
                    r.idle_gpu_hours += sum(8 * (end - t) for t in bound) / 3600
            raw = await audit.list_raw(api, "pods", namespace=namespace)
            verdict = audit.audit(raw, await audit.list_raw(api, "nodes"), require_records=name == "gpuplace")
            r.problems = verdict.problems[:10]
        finally:
            await asyncio.to_thread(cp.stop_process, process.name)
            await watch.stop()
            await core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
            while True:
                if not (await core.list_namespaced_pod(namespace, limit=1)).items:
                    break
                await asyncio.sleep(0.5)
    return r


async def real_main(a: argparse.Namespace, console: Console) -> list[RealResult]:
    from gpuplace.localcluster import ControlPlane
    from gpuplace.localcluster.fake_nodes import create_node, node_manifest
    from gpuplace.localcluster.gpuplace_proc import GpuplaceServer

    gangs = real_gangs(a.seed, a.real_gangs)
    out = []
    with ControlPlane(lifecycle=False) as cp:
        async with cp.api_client() as api:
            for c in range(a.real_cliques):
                for i in range(PER_CLIQUE):
                    await create_node(api, node_manifest(f"c{c}n{i}", "hgx-h100", topology=True, zone="z",
                                                         rack=f"r{c // 2}", clique=f"cluster-{c}.0"))  # fmt: skip
        gp = await asyncio.to_thread(GpuplaceServer(cp, register_webhook=False).start)
        try:
            out.append(await real_run(cp, "gpuplace", gp.scheduler_config(), gangs, a.settle, console))
        finally:
            await asyncio.to_thread(gp.close)
        out.append(await real_run(cp, "kube-scheduler alone", {}, gangs, min(a.settle, 5.0), console))
    return out


def real_table(results: list[RealResult], a: argparse.Namespace, gangs: list[int]) -> Table:
    nodes = a.real_cliques * PER_CLIQUE
    t = Table(caption="time to full bind: from the creation of a gang's last member to its last bind "
                      "(kube-scheduler alone binds members as they come, so it is near 0 there)",
              title=f"gangs on the local control plane (kube-scheduler v1.36.3): {nodes} nodes x 8 GPUs in "
                    f"{a.real_cliques} cliques; gangs x8 GPUs: {gangs} ({sum(gangs)} members)")  # fmt: skip
    for col in ("run", "gangs fully bound", "time to full bind p50 s", "max s", "within 15 s", "partial gangs",
                "GPUs idle in partial gangs", "idle GPU-hours (to end of run)", "audit"):
        t.add_column(col, justify="right")
    for r in results:
        lat = sorted(r.latencies)
        t.add_row(
            r.name,
            f"{r.full}/{r.gangs}",
            f"{statistics.median(lat):.2f}" if lat else "-",
            f"{lat[-1]:.2f}" if lat else "-",
            f"{sum(x <= 15 for x in lat)}/{len(lat)}",
            str(r.partial),
            str(r.partial_gpus),
            f"{r.idle_gpu_hours:.3f}",
            "ok" if not r.problems else "; ".join(r.problems[:2]),
        )
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--arrivals", type=int, default=60)
    ap.add_argument("--real", action="store_true", help="run on the local control plane instead")
    ap.add_argument("--real-cliques", type=int, default=4)
    ap.add_argument("--real-gangs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--settle", type=float, default=20.0,
                    help="move to the next gang after this long without a bind of this one")  # fmt: skip
    a = ap.parse_args()
    if a.real:
        console = Console(width=200)
        results = asyncio.run(real_main(a, console))
        console.print(real_table(results, a, real_gangs(a.seed, a.real_gangs)))
        return
    plan_gang(cluster(), [Member("w", GpuRequest(count=8))], need=1, rows=np.arange(4))  # compile / load
    table = Table(title=f"gang placement, {CLIQUES * PER_CLIQUE} nodes x 8 GPUs, {a.seeds} seeds x "
                        f"{a.arrivals} arrivals")
    for col in ("strategy", "gangs placed", "in smallest domain", "GPU allocation", "partial gangs",
                "GPUs idle in partial gangs", "plan ms (median)"):
        table.add_column(col, justify="right")
    for strategy in ("gpuplace", "all-or-nothing, no topology", "kube-scheduler alone"):
        res = [run(strategy, seed, a.arrivals) for seed in range(a.seeds)]
        gangs, placed = sum(x.gangs for x in res), sum(x.placed for x in res)
        smallest = sum(x.smallest for x in res)
        ms = [m for x in res for m in x.plan_ms]
        table.add_row(
            strategy,
            f"{placed}/{gangs}",
            f"{smallest / placed:.0%}" if placed else "-",
            f"{statistics.mean(x.alloc for x in res):.1%}",
            str(sum(x.partial for x in res)),
            str(sum(x.partial_gpus for x in res)),
            f"{statistics.median(ms):.1f}" if ms else "-",
        )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
