"""Cost of the DRA verbs in-process: filter and prioritize for a pod with a GPU ResourceClaim.

Cluster: N nodes, each published by one ResourceSlice of 8 A100s under two PCIe roots (as
tests/scheduler/dra_payloads.py shapes NVIDIA's driver output), half the nodes with a claim holding
3 GPUs. The pod asks 2 GPUs under one PCIe root (`matchAttribute: resource.kubernetes.io/pcieRoot`).
Times the plain functions (no HTTP) over all N names, median of `--repeat` calls (the DRA state is
marked changed before each filter, as a bind between two pods does; prioritize then reuses filter's
fit), and the time to apply the slice and claim lists (the restart cost). Prints a table.

    .venv/bin/python bench/dra_verbs.py [--nodes 100,1000,5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scheduler.binder import MemoryBinder
from scheduler.context import ExtenderContext
from scheduler.settings import SchedulerSettings
from scheduler.verbs.filter import filter_nodes
from scheduler.verbs.prioritize import prioritize
from scheduler.wire import ExtenderArgs
from tests.scheduler import dra_payloads as rp
from tests.scheduler import objects as o


def run(n: int, repeat: int) -> tuple[float, float, float]:
    names = [f"n{i}" for i in range(n)]
    ctx = ExtenderContext.build(SchedulerSettings(), MemoryBinder())
    ctx.cache.replace_nodes([o.node(x, product="", gpus=0) for x in names])
    claims, pods = [], []
    for i, x in enumerate(names[::2]):
        c = rp.allocated(rp.claim(f"h{i}", count=3), x, ["gpu-0", "gpu-1", "gpu-4"])
        claims.append(c)
        pods.append(rp.pod_with_claim(f"h{i}", c["metadata"]["name"], node=x))
    want = rp.claim("train", count=2, pcie_constraint=True)
    pod = rp.pod_with_claim("train", want["metadata"]["name"])
    ctx.cache.replace_pods([*pods, pod], listed_at=0.0)
    t0 = time.perf_counter()
    ctx.cache.replace_slices([rp.a100_node_slice(x) for x in names])
    ctx.cache.replace_claims([*claims, want])
    load = time.perf_counter() - t0
    args = ExtenderArgs.model_validate(o.extender_args(pod, names=names))
    f, p = [], []
    assert ctx.cache.dra is not None
    for _ in range(repeat):
        ctx.cache.dra.changed(())  # the cluster moved since the last pod (a bind), as in real scheduling
        t = time.perf_counter()
        filter_nodes(args, ctx)
        f.append(time.perf_counter() - t)
        t = time.perf_counter()
        prioritize(args, ctx)
        p.append(time.perf_counter() - t)
    return load, statistics.median(f), statistics.median(p)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", default="100,1000,5000")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    print("| nodes | apply slices + claims (s) | filter (ms) | prioritize (ms) |")
    print("|---|---|---|---|")
    for n in (int(x) for x in a.nodes.split(",")):
        load, f, p = run(n, a.repeat)
        print(f"| {n} | {load:.2f} | {f * 1000:.1f} | {p * 1000:.1f} |")


if __name__ == "__main__":
    main()
