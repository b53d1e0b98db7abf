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

The real control plane half of the bench (time to full bind under kube-scheduler v1.36.3) is not
built yet; tests/e2e/test_gang.py shows the happy path bound in under a second there.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--arrivals", type=int, default=60)
    a = ap.parse_args()
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
