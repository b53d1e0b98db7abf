"""`gpuplace simulate`: replay an openb-format trace with one or more placement policies.

    gpuplace simulate --nodes openb_node_list_gpu_node.csv --pods openb_pod_list_default.csv \\
        --policy gpuplace,FGD --seeds 42..51 --arrival 1.3 [--departures] [--out DIR]

Without --departures this is FGD's evaluation method: per seed, shuffle the pods and keep submitting (with
resampling) until the requested GPU reaches `arrival` × capacity, no pod ever leaves. With --departures the
trace's creation/deletion times are replayed instead. Prints mean ± std over seeds; --out also writes
results.md, results.json and allocation.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gpuplace.simulate import report
from gpuplace.simulate.metrics import PolicySummary
from gpuplace.simulate.runner import Scenario, parse_seeds, run_policy
from gpuplace.simulate.traces import TraceError, read_nodes, read_pods
from placement_core.policies import Policy


def parse_policies(text: str) -> list[Policy]:
    if text.strip().lower() == "all":
        return list(Policy)
    return [Policy.parse(p) for p in text.split(",") if p.strip()]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gpuplace simulate", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", required=True, type=Path, help="node list CSV (sn,cpu_milli,memory_mib,gpu,model)")
    ap.add_argument("--pods", required=True, type=Path, help="pod list CSV (openb 11- or 5-column format)")
    ap.add_argument("--policy", default="gpuplace",
                    help=f"comma-separated, or 'all': {', '.join(p.label for p in Policy)} (default gpuplace)")
    ap.add_argument("--seeds", default="42..51", help="'42..51', '42,43' or '42' (default 42..51)")
    ap.add_argument("--arrival", type=float, default=1.3,
                    help="submit pods until requested GPU reaches this × capacity (default 1.3)")
    ap.add_argument("--departures", action="store_true",
                    help="replay creation_time/deletion_time instead of FGD's arrival-only method")
    ap.add_argument("--exact-scores", action="store_true",
                    help="published policies compare exact scores instead of their reference's 0-100 integers")
    ap.add_argument("--out", type=Path, help="directory for results.md, results.json and allocation.png")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def fail(error: Exception) -> int:
    """An error is one plain line on stderr (people grep logs): never rich's console, which wraps and colours."""
    message = " ".join(str(error).split())
    print(f"gpuplace simulate: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        policies = parse_policies(args.policy)
        seeds = parse_seeds(args.seeds)
        scenario = Scenario(read_nodes(args.nodes), read_pods(args.pods), args.arrival, args.departures)
    except (TraceError, ValueError) as e:
        return fail(e)
    results: list[PolicySummary] = []
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=Console(stderr=True), transient=True, disable=args.no_progress)
    try:
        with progress:
            task = progress.add_task("simulating", total=len(policies) * len(seeds))
            for policy in policies:
                progress.update(task, description=f"{policy.label}")
                results.append(run_policy(policy, scenario, seeds, quantize=False if args.exact_scores else None,
                                          on_seed=lambda _s, _m: progress.advance(task)))
    except ValueError as e:
        return fail(e)
    title = (f"{args.pods.name} on {args.nodes.name}: seeds {args.seeds}, "
             + ("departures replayed" if args.departures else f"arrival {args.arrival:.2f}"))
    report.print_table(title, results, scenario.points, departures=args.departures)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.md").write_text(
            f"# {title}\n\n" + report.markdown_table(results, scenario.points, departures=args.departures))
        meta = {"nodes": str(args.nodes), "pods": str(args.pods), "seeds": seeds, "arrival": args.arrival,
                "departures": args.departures, "exact_scores": args.exact_scores}
        (args.out / "results.json").write_text(report.to_json(results, meta))
        report.plot(args.out / "allocation.png", title, results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
