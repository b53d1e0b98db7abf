"""An upper bound on the GPU allocation any policy can reach at 130 % arrived, per trace and seed.

    .venv/bin/python bench/upper_bound.py                      # the four openb traces, seeds 42..51
    .venv/bin/python bench/upper_bound.py --trace gpushare40 --seeds 42..44

Per seed the arrived pods are exactly those the replay submits (same shuffle and resampling, same seed), and
the bound is the optimum of a relaxation of packing them *offline*: a policy sees pods one at a time and
must place each one that fits, so whatever it reaches is a feasible packing of a subset of these pods, and
no packing allocates more than this optimum. Relaxation (nodes aggregated by type t = (model, GPUs, CPU,
memory), n_t nodes of it; pods by class c = (CPU, memory, GPU count, milli per GPU, allowed models)):

- x[c, t] ≥ 0 pods of class c on nodes of type t, only where one empty node of type t can take one;
  y[t] GPUs of type t given to shares; Σ_t x[c, t] ≤ arrived pods of class c;
- CPU and memory: Σ_c x·cpu_c ≤ n_t·cpu_t, likewise memory;
- GPUs: whole-GPU pods' GPUs + y[t] ≤ n_t·G_t; the shares' milli ≤ 1000·y[t];
- share shapes: a GPU holds at most j shares larger than 1000/(j+1) milli, so Σ x over those ≤ j·y[t]
  (j = 1..9);
- big items: a node holds at most j pods that need more than 1/(j+1) of its CPU (or memory, or GPUs),
  so Σ x over those ≤ j·n_t (j = 1..3);
- maximise Σ x·GPU milli. `LP` is the linear relaxation; `MILP` the same model with integer x and y —
  still a relaxation (the per-node packing is aggregated), solved to optimality by HiGHS or, when the time
  limit stops it, its proven dual bound. Both are valid; the MILP one is tighter.

CPU-only pods are left out (placing them can only take resources from GPU pods). Writes
bench/results/upper_bound.{md,json}; the gpuplace and FGD figures beside it are read from
bench/results/headline.json (bench/simulate.py --all).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from scipy.sparse import coo_matrix

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import fleet_v2026  # noqa: E402
from gpuplace.simulate.engine import (  # noqa: E402
    Cluster,
    Events,
    PodArrays,
    arrivals,
    policy_context,
    run_seed,
    trace_typical_pods,
)
from gpuplace.simulate.runner import parse_seeds  # noqa: E402
from gpuplace.simulate.traces import NodeTable, PodTable, read_nodes, read_pods  # noqa: E402
from placement_core.policies import Context, Policy  # noqa: E402

WHOLE = 1000
TRACES = ("default", "gpushare40", "gpuspec10", "multigpu20")
OUT = ROOT / "bench" / "results"
SHARE_CUTS = range(1, 10)
BIG_CUTS = range(1, 4)
POINT = 130  # arrived % the bound is for (FGD's headline point)


def arrived_classes(pods: PodTable, capacity: int, seed: int, point: int) -> Counter[tuple[object, ...]]:
    """GPU pods of one seed arrived while the arrived % still rounds to ≤ `point`, counted by class (CPU,
    memory, GPUs, milli per GPU, allowed models)."""
    events = arrivals(pods, capacity, 1.3, np.random.default_rng(seed))
    demand = np.cumsum(pods.gpu_milli_total[events.pod])
    last = np.searchsorted(demand, (point + 0.5) / 100 * capacity, side="right")
    out: Counter[tuple[object, ...]] = Counter()
    for i in events.pod[:last]:
        if pods.gpu_count[i] > 0:
            out[(int(pods.cpu_milli[i]), int(pods.memory_mib[i]), int(pods.gpu_count[i]), int(pods.gpu_milli[i]),
                 pods.models[i])] += 1
    return out


def offline_packing(nodes: NodeTable, pods: PodTable, capacity: int, seed: int, point: int) -> float:
    """GPU milli a clairvoyant packer places from the same arrived pods: all of them offered at once, largest
    GPU demand first (then most CPU), each to gpuplace's best node — an achievable allocation, so the
    offline optimum lies between this and the bound."""
    events = arrivals(pods, capacity, 1.3, np.random.default_rng(seed))
    demand = np.cumsum(pods.gpu_milli_total[events.pod])
    seq = events.pod[: np.searchsorted(demand, (point + 0.5) / 100 * capacity, side="right")]
    seq = seq[np.lexsort((-pods.cpu_milli[seq], -pods.gpu_milli_total[seq]))]
    offline = Events(seq, np.zeros(len(seq), np.bool_), len(seq), np.arange(len(seq), dtype=np.int64), seq)
    cluster = Cluster.from_table(nodes)
    ctx = policy_context(Policy.GPUPLACE, cluster, pods)
    metric = Context.build(trace_typical_pods(pods), cluster.model_names, cluster.gpu_present, cluster.node_cpu_total)
    run = run_seed(Policy.GPUPLACE, cluster, PodArrays.build(pods, cluster.model_names), ctx, metric, offline,
                   rng=np.random.default_rng(seed))
    return float(run.used_milli[-1])


def node_types(nodes: NodeTable) -> list[tuple[tuple[str, int, int, int], int]]:
    types = Counter((m, int(g), int(c), int(me)) for m, g, c, me in
                    zip(nodes.models, nodes.gpus, nodes.cpu_milli, nodes.memory_mib, strict=True) if g > 0)
    return sorted(types.items())


def bound(nodes: NodeTable, classes: Counter[tuple[object, ...]], *, integer: bool,
          time_limit: float = 60.0) -> tuple[float, str]:
    """(max allocatable GPU milli, how it was obtained) under the relaxation in the module docstring."""
    types = node_types(nodes)
    cls = list(classes.items())
    pairs = [(c, t) for c, ((cpu, mem, k, milli, allowed), _) in enumerate(cls)
             for t, ((model, g, tcpu, tmem), _) in enumerate(types)
             if cpu <= tcpu and mem <= tmem and k <= g and (allowed is None or model in allowed)]
    nx, ny = len(pairs), len(types)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    ub: list[float] = []

    def row(entries: list[tuple[int, float]], rhs: float) -> None:
        r = len(ub)
        for col, v in entries:
            rows.append(r)
            cols.append(col)
            vals.append(v)
        ub.append(rhs)

    by_type: dict[int, list[int]] = {}
    by_class: dict[int, list[int]] = {}
    for j, (c, t) in enumerate(pairs):
        by_type.setdefault(t, []).append(j)
        by_class.setdefault(c, []).append(j)
    for c, js in by_class.items():
        row([(j, 1.0) for j in js], float(cls[c][1]))
    for t, js in by_type.items():
        (_, g, tcpu, tmem), n = types[t]
        y = nx + t
        spec = [cls[pairs[j][0]][0] for j in js]
        row([(j, s[0]) for j, s in zip(js, spec, strict=True)], float(n * tcpu))
        row([(j, s[1]) for j, s in zip(js, spec, strict=True)], float(n * tmem))
        row([(j, s[2]) for j, s in zip(js, spec, strict=True) if s[3] >= WHOLE] + [(y, 1.0)], float(n * g))
        row([(j, s[3]) for j, s in zip(js, spec, strict=True) if s[3] < WHOLE] + [(y, -WHOLE)], 0.0)
        for k in SHARE_CUTS:
            big = [(j, 1.0) for j, s in zip(js, spec, strict=True) if s[3] < WHOLE and s[3] * (k + 1) > WHOLE]
            if big:
                row([*big, (y, -float(k))], 0.0)
        for k in BIG_CUTS:
            for dim, cap in ((0, tcpu), (1, tmem), (2, g)):
                big = [(j, 1.0) for j, s in zip(js, spec, strict=True)
                       if (s[dim] if dim < 2 else (s[2] if s[3] >= WHOLE else 0)) * (k + 1) > cap]
                if big:
                    row(big, float(k * n))
    a = coo_matrix((vals, (rows, cols)), shape=(len(ub), nx + ny)).tocsr()
    gain = np.array([cls[c][0][2] * cls[c][0][3] for c, _ in pairs] + [0.0] * ny, np.float64)
    hi = np.array([cls[c][1] for c, _ in pairs] + [types[t][1] * types[t][0][1] for t in range(ny)], np.float64)
    if not integer:
        res = linprog(-gain, A_ub=a, b_ub=np.array(ub), bounds=list(zip(np.zeros(nx + ny), hi, strict=True)),
                      method="highs")
        if res.status != 0:
            raise RuntimeError(f"LP failed: {res.message}")
        return -float(res.fun), "LP optimum"
    res = milp(-gain, constraints=LinearConstraint(a, -np.inf, np.array(ub)), integrality=np.ones(nx + ny),
               bounds=Bounds(np.zeros(nx + ny), hi), options={"time_limit": time_limit})
    if res.status == 0:
        return -float(res.fun), "MILP optimum"
    dual = getattr(res, "mip_dual_bound", None)
    if dual is None or not np.isfinite(dual):
        raise RuntimeError(f"MILP stopped without a bound: {res.message}")
    return -float(dual), "MILP dual bound (time limit)"


def scenarios(data: Path) -> list[tuple[str, NodeTable, PodTable]]:
    openb = read_nodes(data / "openb_node_list_gpu_node.csv")
    out = [(t, openb, read_pods(data / f"openb_pod_list_{t}.csv")) for t in TRACES]
    return [*out, ("v2026 fleet", fleet_v2026.nodes(data.parent / "alibaba-v2026" / "node_info_df.csv"),
                   fleet_v2026.pods())]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", action="append", help="a trace (default, gpushare40, ...) or 'v2026 fleet'")
    ap.add_argument("--seeds", default="42..51")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "openb")
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds per MILP")
    args = ap.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    headline_path = OUT / "headline.json"
    headline = json.loads(headline_path.read_text()) if headline_path.exists() else {}
    results: dict[str, dict[str, object]] = {}
    started = time.perf_counter()
    for name, nodes, pods in scenarios(args.data):
        if args.trace and name not in args.trace:
            continue
        capacity = nodes.total_gpus * WHOLE
        lp, ip, packed, how = [], [], [], set()
        for seed in seeds:
            classes = arrived_classes(pods, capacity, seed, POINT)
            lp.append(100.0 * bound(nodes, classes, integer=False)[0] / capacity)
            value, kind = bound(nodes, classes, integer=True, time_limit=args.time_limit)
            ip.append(100.0 * value / capacity)
            packed.append(100.0 * offline_packing(nodes, pods, capacity, seed, POINT) / capacity)
            how.add(kind)
        results[name] = {"seeds": seeds, "lp": lp, "milp": ip, "offline": packed, "milp_kind": sorted(how)}
        print(f"{name}: LP {np.mean(lp):.2f}  MILP {np.mean(ip):.2f} ({', '.join(sorted(how))})  "
              f"offline packing {np.mean(packed):.2f}", flush=True)
    seconds = time.perf_counter() - started
    table = render(results, headline)
    print(table)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "upper_bound.json").write_text(json.dumps(results, indent=1))
    section = (f"# Upper bound on allocation at 130 % arrived (seeds {args.seeds})\n\n"
               f"Command: `.venv/bin/python bench/upper_bound.py` ({seconds:.0f} s; HiGHS via scipy). Per seed, the"
               " pods the replay submits up to 130 % (same shuffle, same seed). `bound`: the optimum of an LP / MILP"
               " relaxation of packing them offline with each node's CPU, memory, GPU count and the shares' shapes"
               " (a GPU holds at most j shares above 1000/(j+1) milli; a node at most j pods above 1/(j+1) of its"
               " CPU, memory or GPUs); no online policy can exceed it. `offline packing`: what a clairvoyant packer"
               " reaches with the same pods, largest first — achievable, so the offline optimum lies between the"
               " two. Method: bench/upper_bound.py. gpuplace and FGD: alloc@130 of bench/simulate.py --all.\n\n"
               + table + NOTE)
    (OUT / "upper_bound.md").write_text(section)
    summary = OUT / "summary.md"
    if summary.exists():
        text = summary.read_text()
        text = text.split(SUMMARY_MARK)[0].rstrip("\n") + "\n\n" + SUMMARY_MARK + "\n\n" + section
        summary.write_text(text)
    return 0


SUMMARY_MARK = "<!-- bench/upper_bound.py -->"
NOTE = (
    '\n\nReading it: where the bound is the GPU capacity (the openb traces, to 0.01 point), some subset of '
    'the arrived pods — 30 % more demand than GPUs — fits every GPU once CPU, memory and share shapes are'
    ' respected, so what a policy leaves below it is the price of placing pods as they come, not of resou'
    'rce shapes; the offline packer shows how much of it a clairvoyant placement recovers. Where the offl'
    'ine packer meets the bound (the whole-GPU fleet) that is the optimum, and no policy beats another by'
    ' more than their distances to it.\n'
)


def render(results: dict[str, dict[str, object]], headline: dict[str, dict[str, float]]) -> str:
    lines = [
        "| trace | bound LP | bound MILP | offline packing | gpuplace | FGD | gpuplace to bound | FGD to bound |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lp, ip, packed = (np.array(r[k], np.float64) for k in ("lp", "milp", "offline"))
        gp = headline.get(name, {}).get("gpuplace")
        fgd = headline.get(name, {}).get("FGD")
        b = float(ip.mean())
        cells = [f"{v:.2f}" if v is not None else "—" for v in (gp, fgd)]
        gaps = [f"{b - v:.2f}" if v is not None else "—" for v in (gp, fgd)]
        lines.append(f"| {name} | {lp.mean():.2f} ± {lp.std():.2f} | {b:.2f} ± {ip.std():.2f} | "
                     f"{packed.mean():.2f} ± {packed.std():.2f} | {cells[0]} | {cells[1]} | {gaps[0]} | {gaps[1]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
