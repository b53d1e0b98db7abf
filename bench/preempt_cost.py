"""What one preempt call costs (scheduler.verbs.preempt), by number of candidate nodes and by path.

Every candidate is an 8x A40 node with NVLink bridges in pairs, full of 1-GPU pods; kube-scheduler's
victims are the pods on GPUs 0 and 2 (different pairs), so gpuplace has to add one victim per node.
Paths: `kept` (the pod needs no NVLink: kube-scheduler's victims are returned unchanged), `greedy`
(the other six pods have distinct priorities: one reprieve pass), `ties` (the six share one priority
and no start time: the exhaustive search over that level, up to 2^6 fit checks). kube-scheduler asks
with up to max(100, 10% of nodes) candidates by default (`minCandidateNodesPercentage`,
`minCandidateNodesAbsolute`) and waits `httpTimeout` (30 s in deploy/scheduler).

    .venv/bin/python bench/preempt_cost.py [--reps 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from typing import Any

from rich.console import Console
from rich.table import Table

from gpuplace.localcluster.fake_nodes import node_manifest
from placement_core import Placement, placer
from scheduler.binder import MemoryBinder
from scheduler.context import ExtenderContext
from scheduler.contract import encode_record
from scheduler.settings import SchedulerSettings
from scheduler.verbs.preempt import preempt
from scheduler.wire import ExtenderPreemptionArgs


def pod(name: str, node: str, gpu: int, priority: int) -> dict[str, Any]:
    rec = encode_record(Placement(node=node, gpus=(gpu,)), [])
    return {
        "metadata": {
            "name": name,
            "namespace": "bench",
            "uid": str(uuid.uuid4()),
            "resourceVersion": "1",
            "annotations": {"gpuplace.io/gpus": rec},
        },
        "spec": {
            "nodeName": node,
            "priority": priority,
            "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
        },
        "status": {"phase": "Running"},
    }


def scenario(n: int, path: str) -> tuple[ExtenderContext, ExtenderPreemptionArgs]:
    ctx = ExtenderContext.build(SchedulerSettings(), MemoryBinder())
    nodes = [node_manifest(f"a40-{i:04d}", "a40-pairs") for i in range(n)]
    pods, victims = [], {}
    for i in range(n):
        node = f"a40-{i:04d}"
        prios = [1, 2, 1, 3, 4, 5, 6, 7] if path == "greedy" else [1, 2, 1, 2, 2, 2, 2, 2]
        here = [pod(f"p{i}-{g}", node, g, p) for g, p in enumerate(prios)]
        pods += here
        victims[node] = {"Pods": [{"UID": here[0]["metadata"]["uid"]}, {"UID": here[2]["metadata"]["uid"]}]}
    ctx.cache.replace_nodes(nodes)
    ctx.cache.replace_pods(pods, listed_at=0.0)
    ann = {} if path == "kept" else {"gpuplace.io/nvlink": "required"}
    preemptor = {
        "metadata": {
            "name": "high",
            "namespace": "bench",
            "uid": "high",
            "resourceVersion": "1",
            "annotations": ann,
        },
        "spec": {
            "priority": 1000,
            "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "2"}}}],
        },
    }
    args = ExtenderPreemptionArgs.model_validate({"Pod": preemptor, "NodeNameToMetaVictims": victims})
    return ctx, args


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    opts = ap.parse_args()
    placer.warmup()
    table = Table(title="preempt: one call (meta victims), ms")
    for col in ("candidates", "path", "victims/node", "median", "p99"):
        table.add_column(col, justify="right")
    for n in (10, 100, 500):
        for path in ("kept", "greedy", "ties"):
            ctx, args = scenario(n, path)
            times, result = [], None
            for _ in range(opts.reps):
                t0 = time.perf_counter()
                result = preempt(args, ctx)
                times.append((time.perf_counter() - t0) * 1000)
            assert result is not None and len(result.node_name_to_meta_victims) == n
            per_node = {len(mv.pods) for mv in result.node_name_to_meta_victims.values()}
            p99 = sorted(times)[max(0, round(0.99 * len(times)) - 1)]
            table.add_row(
                str(n),
                path,
                ",".join(map(str, sorted(per_node))),
                f"{statistics.median(times):.1f}",
                f"{p99:.1f}",
            )
    Console().print(table)


if __name__ == "__main__":
    main()
