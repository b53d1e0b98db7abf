"""Replay a slice of the openb trace through the real control plane: kube-scheduler alone vs with gpuplace.

    .venv/bin/python bench/cluster_replay.py                     # 100 nodes; FGD's arrivals to 130 %
    .venv/bin/python bench/cluster_replay.py --departures        # the trace's own creation/deletion times

The slice, the nodes and how each arm asks for GPUs: bench/replay_trace.py (both arms get the same
time-sliced nodes, ``--replicas`` per GPU; kube-scheduler alone asks ``ceil(milli × replicas / 1000)``
replicas per GPU, gpuplace's arm asks as its contract says). Running one arm: bench/replay_run.py.
Two workloads:

- default, FGD's method: the simulator's own arrival sequence for ``--seed`` (pods shuffled and resampled
  until the requested GPU reaches ``--arrival`` × capacity), submitted at ``--rate`` pods/s, nobody leaves;
- ``--departures``: pods arrive at their ``creation_time`` and are deleted at their ``deletion_time``, both
  compressed so that the last arrival is at ``--seconds``; pods still alive then stay. Over its 149 days
  the trace's pods live a median 9 minutes, so this keeps the cluster almost empty (allocation ≈ 1 %):
  it shows that the harness replays real churn, not placement quality.

Why both arms get the same time-sliced nodes: an earlier version gave gpuplace's arm plain nodes
(``nvidia.com/gpu`` = GPU count) and let a share ask ``nvidia.com/gpu: 1``, so kube-scheduler's
NodeResourcesFit counted every share as a whole device (an 8-GPU node took 8 pods, whatever gpuplace's
milli booking said) while the baseline's nodes had 10 replicas per GPU: gpuplace 81.0 % vs 97.2 % measured
the harness, not the placement. On equal nodes they are within a point of each other; the baseline's
figure includes shares no layout on physical GPUs can hold (its nodes count replicas only).

Arms: kube-scheduler alone (its defaults: NodeResourcesFit LeastAllocated; and NodeResourcesFit
MostAllocated weighted on ``nvidia.com/gpu``) and kube-scheduler + gpuplace for every ``--policies`` entry
(default: the default policy ``gpuplace`` and the other fragmentation-aware one, ``fgd``).

Printed per run: GPU allocation (the trace's GPU-milli of bound pods / capacity) time-averaged over the run
and at its end, the part of it held by whole-GPU pods, pods unschedulable at the end, mean pending time
(creation → bound, sampled every second; unbound pods count until the end, or until deleted), and the nodes whose bound pods fit no physical GPU
layout (kube-scheduler alone counts replicas only); beside them ``gpuplace simulate`` (placement_core
alone, no Kubernetes) with each gpuplace policy on the same slice, seed and workload: how far the
simulator is from the real scheduler. Writes bench/results/cluster_replay[-departures].{json,md,png}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from replay_report import console_table, markdown, plot, rows, write_json  # noqa: E402
from replay_run import MOST_ALLOCATED, NO_IN_TREE_SCORES, Arm, RunResult, one_run, simulated  # noqa: E402
from replay_trace import DATA, departure_events, fgd_events, stratified_slice  # noqa: E402
from rich.console import Console  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def arms(policies: list[str], *, baselines: bool, diagnose: bool = False) -> list[Arm]:
    out = []
    if baselines:
        out += [Arm("alone", "kube-scheduler alone, defaults (LeastAllocated)", None),
                Arm("alone-most", "kube-scheduler alone, NodeResourcesFit MostAllocated", None, MOST_ALLOCATED)]  # fmt: skip
    out += [Arm(f"gpuplace-{p}", f"kube-scheduler + gpuplace, policy {p}", p) for p in policies]
    if diagnose:
        out += [Arm(f"gpuplace-{p}-only", f"kube-scheduler + gpuplace, policy {p}, in-tree score plugins off", p,
                    NO_IN_TREE_SCORES) for p in policies[:1]]  # fmt: skip
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=150.0, help="--departures: the last arrival, compressed")
    ap.add_argument("--policies", default="gpuplace,fgd", help="gpuplace policies, comma-separated")
    ap.add_argument("--replicas", type=int, default=10, help="time-slicing replicas per GPU on every node")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument(
        "--diagnose-scoring",
        action="store_true",
        help="also the first policy with kube-scheduler's in-tree score plugins off (only gpuplace ranks)",
    )
    ap.add_argument(
        "--departures",
        action="store_true",
        help="the trace's own creation/deletion times instead of FGD's arrival-only method",
    )
    ap.add_argument(
        "--arrival", type=float, default=1.3, help="FGD method: requested GPU / capacity at the end"
    )
    ap.add_argument("--rate", type=float, default=8.0, help="FGD method: pods submitted per second")
    ap.add_argument("--data", type=Path, default=DATA, help="the openb folder (default ../shared/data/openb)")
    ap.add_argument("--out", default=None, help="results file stem (default cluster_replay[-departures])")
    args = ap.parse_args()
    if args.replicas < 2:
        ap.error("--replicas must be at least 2: shares need time-sliced GPUs (scheduler/README.md)")
    console = Console(width=max(Console().width, 160))
    sl = stratified_slice(args.nodes, args.seconds, args.seed, args.data)
    sizes = Counter(sl.kind(i) for i in range(len(sl.pods)))
    events = departure_events(sl) if args.departures else fgd_events(sl, args.seed, args.arrival, args.rate)
    workload = (
        "trace times"
        if args.departures
        else f"FGD arrivals to {args.arrival:.0%} of GPU capacity at {args.rate:g} pods/s"
    )
    load = (f"{len(sl.nodes)} nodes ({dict(Counter(sl.nodes.models))}), {int(sl.nodes.gpus.sum())} GPUs "
            f"time-sliced ×{args.replicas}; {len(sl.pods)} pods ({dict(sizes)}); {len(events)} events ({workload})")  # fmt: skip
    console.print(f"slice: {load}")
    policies = [p for p in args.policies.split(",") if p]
    results: list[RunResult] = []
    for arm in arms(policies, baselines=not args.no_baselines, diagnose=args.diagnose_scoring):
        console.print(f"run {arm.name}: {arm.description}")
        t = time.monotonic()
        results.append(one_run(sl, events, arm, replicas=args.replicas, console=console))
        console.print(f"  {time.monotonic() - t:.0f}s")
    sims = {
        p: simulated(sl, args.seed, departures=args.departures, arrival=args.arrival, policy=p)
        for p in policies
    }
    title = f"openb default slice on the real control plane ({len(sl.nodes)} nodes, {len(sl.pods)} pods)"
    body = rows(results, sims, departures=args.departures)
    console.print(console_table(title, body))
    stem = args.out or ("cluster_replay-departures" if args.departures else "cluster_replay")
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = "bench/cluster_replay.py " + " ".join(sys.argv[1:])
    preamble = f"Command: `.venv/bin/python {command.strip()}`\n\nLoad: {load}.\n\nSee bench/replay_trace.py for how each arm asks for GPUs."
    (RESULTS / f"{stem}.md").write_text(markdown(title, body, preamble))
    write_json(RESULTS / f"{stem}.json", vars(args), dt.datetime.now(dt.UTC).isoformat(), results, sims)
    plot(results, RESULTS / f"{stem}.png", title)
    console.print(f"wrote {RESULTS / stem}.{{md,json,png}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
