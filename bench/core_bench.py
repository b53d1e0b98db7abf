"""placement_core micro-benchmark: feasibility + score + GPU-set choice for one request.

Clusters of 1,000 / 5,000 / 10,000 nodes × 8 GPUs (H100 NVSwitch, DGX-1 V100 and PCIe L40S boxes, ~60%
of GPUs busy), request = 4 NVLink-preferred GPUs. Kernel vs pure-Python twin, median and p99 over
repeated calls, plus cold start: a fresh interpreter importing placement_core and making its first call
with a warm Numba cache (NUMBA_CACHE_DIR). Targets (issue 2): ≤ 1 ms feasibility+score at 5,000 nodes;
first call after import ≤ 1 s.

    .venv/bin/python bench/core_bench.py [--reps 200] [--twin-reps 3]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from placement_core import MODELS, ClusterState, GpuRequest, NodeSpec, NvlinkNeed, Placement, Policy, placer


def build(n_nodes: int, seed: int = 1) -> ClusterState:
    rng = np.random.default_rng(seed)
    st = ClusterState(max_gpus=8, capacity=n_nodes)
    kinds = [MODELS["H100-80GB"], MODELS["V100-32GB"], MODELS["L40S"]]
    for i in range(n_nodes):
        st.upsert_node(NodeSpec.uniform(f"node-{i:05d}", kinds[i % 3], 8, cpu_milli=192000, memory_mib=2**21))
        busy = tuple(int(g) for g in np.flatnonzero(rng.random(8) < 0.6))
        if busy:
            st.allocate(f"pod-{i}", Placement(f"node-{i:05d}", gpus=busy, cpu_milli=1000, memory_mib=1024))
    return st


def feas_score(st: ClusterState, req: GpuRequest, *, twin: bool) -> None:
    reason, _ = placer.evaluate(st, req, twin=twin)
    placer.score(st, req, reason, Policy.MOST_ALLOCATED, twin=twin)


def one_request(st: ClusterState, req: GpuRequest, *, twin: bool) -> None:
    reason, _ = placer.evaluate(st, req, twin=twin)
    scores = placer.score(st, req, reason, Policy.MOST_ALLOCATED, twin=twin)
    best = int(np.argmax(scores))
    placer.choose(st, st.names[best], req, twin=twin)


def timed(fn, reps: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def cold_start() -> tuple[float, float]:
    code = (
        "import time; t=time.perf_counter(); "
        "from placement_core import placer; t1=time.perf_counter(); placer.warmup(); "
        "print(t1-t, time.perf_counter()-t1)"
    )
    env = dict(os.environ)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)  # fill the cache
    out = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)
    imp, first = out.stdout.split()
    return float(imp), float(first)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--twin-reps", type=int, default=3)
    ap.add_argument("--sizes", default="1000,5000,10000")
    args = ap.parse_args()
    placer.warmup()
    req = GpuRequest(count=4, nvlink=NvlinkNeed.PREFERRED, cpu_milli=1000, memory_mib=1024)
    table = Table(title="placement_core: one 4-GPU request (feasibility + score [+ GPU-set choice])")
    for col in ("nodes", "impl", "feas+score p50 ms", "feas+score p99 ms", "+choose p50 ms", "+choose p99 ms"):
        table.add_column(col, justify="right")
    for n in (int(x) for x in args.sizes.split(",")):
        st = build(n)
        for impl, reps in (("kernel", args.reps), ("twin", args.twin_reps)):
            twin = impl == "twin"

            a = timed(functools.partial(feas_score, st, req, twin=twin), reps)
            b = timed(functools.partial(one_request, st, req, twin=twin), reps)
            q = lambda xs: (statistics.median(xs), float(np.percentile(xs, 99)))  # noqa: E731
            table.add_row(str(n), impl, *(f"{v:.3f}" for v in (*q(a), *q(b))))
    Console().print(table)
    imp, first = cold_start()
    Console().print(
        f"cold start, fresh interpreter, warm Numba cache: import placement_core {imp:.2f} s (numba itself "
        f"is most of it); first call of every kernel (placer.warmup) {first:.2f} s"
    )


if __name__ == "__main__":
    main()
