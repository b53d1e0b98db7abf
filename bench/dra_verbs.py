"""Cost of the DRA verbs in-process: filter and prioritize for a pod with a GPU ResourceClaim.

Cluster: N nodes, each published by one ResourceSlice of 8 A100s under two PCIe roots (as
tests/scheduler/dra_payloads.py shapes NVIDIA's driver output), half the nodes with a claim holding
3 GPUs (gpu-0, gpu-1, gpu-4). Two pods:
- `fits`: 2 GPUs under one PCIe root (`matchAttribute: resource.kubernetes.io/pcieRoot`): every node
  fits it;
- `fails`: 4 GPUs under one root: only the nodes without a claim fit, the others get the sentence
  listing their roots' free GPUs.
Times the plain functions (no HTTP) over all N names, median of `--repeat` calls, in two situations:
- `moved`: the DRA state is marked changed before each filter (its version moves, nothing else);
- `bind`: before each filter one more claim is allocated on one node, as a bind between two pods
  does (what the extender sees while kube-scheduler places pods one after another);
- `slice`: before each filter one node's driver republishes its slice (a new pool generation), the
  event that re-joins gpuplace's packed table (timed with the filter after it).
Prioritize runs after each filter and reuses its fit. Also the time to apply the slice and claim lists
(the restart cost).

`--baseline DIR` runs the same measurement against the checkout in DIR (e.g. a worktree of the
commit before) in a subprocess, and prints both side by side.

    .venv/bin/python bench/dra_verbs.py [--nodes 1000,5000] [--repeat 7] [--baseline /tmp/old-dra]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SITUATIONS = ("moved", "bind", "slice")


def run(n: int, repeat: int) -> dict[str, float]:
    from scheduler.binder import MemoryBinder
    from scheduler.context import ExtenderContext
    from scheduler.settings import SchedulerSettings
    from scheduler.verbs.filter import filter_nodes
    from scheduler.verbs.prioritize import prioritize
    from scheduler.wire import ExtenderArgs
    from tests.scheduler import dra_payloads as rp
    from tests.scheduler import objects as o

    names = [f"n{i}" for i in range(n)]
    ctx = ExtenderContext.build(SchedulerSettings(), MemoryBinder())
    ctx.cache.replace_nodes([o.node(x, product="", gpus=0) for x in names])
    claims, pods = [], []
    for i, x in enumerate(names[::2]):
        c = rp.allocated(rp.claim(f"h{i}", count=3), x, ["gpu-0", "gpu-1", "gpu-4"])
        claims.append(c)
        pods.append(rp.pod_with_claim(f"h{i}", c["metadata"]["name"], node=x))
    wants = {
        "fits": rp.claim("train", count=2, pcie_constraint=True),
        "fails": rp.claim("big", count=4, pcie_constraint=True),
    }
    asking = {k: rp.pod_with_claim(k, c["metadata"]["name"]) for k, c in wants.items()}
    ctx.cache.replace_pods([*pods, *asking.values()], listed_at=0.0)
    t0 = time.perf_counter()
    ctx.cache.replace_slices([rp.a100_node_slice(x) for x in names])
    ctx.cache.replace_claims([*claims, *wants.values()])
    out = {"load": time.perf_counter() - t0}
    assert ctx.cache.dra is not None
    binds = 0

    def bind_one() -> None:  # a claim allocated on a node without one (gpu-7 of an odd node)
        nonlocal binds
        x = names[(2 * binds + 1) % n]  # the odd nodes, round robin, then their next GPU down
        c = rp.allocated(rp.claim(f"b{binds}", count=1), x, [f"gpu-{7 - (2 * binds + 1) // n % 8}"])
        ctx.cache.apply_claim("ADDED", c)
        binds += 1

    generation = 1

    for kind, pod in asking.items():
        args = ExtenderArgs.model_validate(o.extender_args(pod, names=names))
        for situation in SITUATIONS:
            f, p = [], []
            for _ in range(repeat + 1):  # the first call packs the table once: not counted
                t = time.perf_counter()
                if situation == "moved":
                    ctx.cache.dra.changed(())
                elif situation == "bind":
                    bind_one()
                else:
                    generation += 1
                    t = time.perf_counter()
                    ctx.cache.apply_slice("ADDED", rp.a100_node_slice(names[-1], generation=generation))
                if situation != "slice":
                    t = time.perf_counter()
                res = filter_nodes(args, ctx)
                f.append(time.perf_counter() - t)
                t = time.perf_counter()
                prioritize(args, ctx)
                p.append(time.perf_counter() - t)
            failed = len(res.to_wire().failed_nodes or {})
            out[f"{kind}/{situation}/filter"] = statistics.median(f[1:])
            out[f"{kind}/{situation}/prioritize"] = statistics.median(p[1:])
            out[f"{kind}/failed"] = failed
    return out


def measure(nodes: list[int], repeat: int) -> dict[str, dict[str, float]]:
    return {str(n): run(n, repeat) for n in nodes}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", default="1000,5000")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--baseline", help="a checkout to measure the same way, side by side")
    ap.add_argument("--root", help=argparse.SUPPRESS)  # the checkout to import (set for --baseline)
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    root = Path(a.root) if a.root else ROOT
    sys.path.insert(0, str(root))
    nodes = [int(x) for x in a.nodes.split(",")]
    import scheduler

    assert Path(scheduler.__file__).resolve().is_relative_to(root.resolve()), scheduler.__file__
    if a.json:
        print(json.dumps(measure(nodes, a.repeat)))
        return
    cols: dict[str, dict[str, dict[str, float]]] = {}
    if a.baseline:
        cmd = [sys.executable, __file__, "--root", a.baseline, "--json", "--nodes", a.nodes]
        done = subprocess.run([*cmd, "--repeat", str(a.repeat)], capture_output=True, text=True, check=True)
        cols["baseline"] = json.loads(done.stdout.strip().splitlines()[-1])
    cols["this"] = measure(nodes, a.repeat)
    _table(cols, nodes)


def _table(cols: dict[str, Any], nodes: list[int]) -> None:
    print("| nodes | pod | situation | verb | " + " | ".join(f"{c} (ms)" for c in cols) + " |")
    print("|---|---|---|---|" + "---|" * len(cols))
    for n in nodes:
        for kind in ("fits", "fails"):
            for situation in SITUATIONS:
                for verb in ("filter", "prioritize"):
                    key = f"{kind}/{situation}/{verb}"
                    vals = " | ".join(f"{cols[c][str(n)][key] * 1000:.1f}" for c in cols)
                    label = f"{kind} ({int(cols['this'][str(n)][f'{kind}/failed'])} rejected)"
                    print(f"| {n} | {label} | {situation} | {verb} | {vals} |")
        loads = " | ".join(f"{cols[c][str(n)]['load'] * 1000:.0f}" for c in cols)
        print(f"| {n} | — | apply slices + claims | — | {loads} |")


if __name__ == "__main__":
    main()
