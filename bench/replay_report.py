"""What bench/cluster_replay.py prints and writes: the table (console and markdown), the JSON, the PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from replay_run import RunResult, Simulated
from rich.table import Table

COLUMNS = (
    "run",
    "GPU alloc % (time mean)",
    "GPU alloc % (end)",
    "of which on physical GPUs % (end)",
    "whole-GPU pods alloc % (time mean / end)",
    "pending at end (whole-GPU)",
    "mean pending s (whole-GPU)",
    "nodes physically overbooked (end)",
    "queue settled s after the last arrival + 10 s",
)


def rows(results: list[RunResult], sims: dict[str, Simulated], *, departures: bool) -> list[list[str]]:
    out = [[r.description, f"{r.mean_alloc:.1f}", f"{r.end_alloc:.1f}", f"{r.end_alloc_physical:.1f}",
            f"{r.mean_alloc_whole:.1f} / {r.whole_alloc_end:.1f}", f"{r.pending_end} ({r.pending_end_whole})",
            f"{r.mean_pending_s:.1f} ({r.mean_pending_whole_s:.1f})", str(r.overbooked_nodes), f"{r.settle_s:.0f}"]
           for r in results]  # fmt: skip
    for policy, sim in sims.items():
        if departures:
            out.append([f"gpuplace simulate --departures --policy {policy} (placement_core alone; mean over "
                        "events; failures dropped)", f"{sim.alloc:.1f}", "", "", "",
                        f"{sim.failed} failed ({sim.failed_whole})", "", "0", ""])  # fmt: skip
        else:
            out.append([f"gpuplace simulate --policy {policy}, same arrivals (placement_core alone; failures "
                        "dropped)", "", f"{sim.alloc:.1f}", f"{sim.alloc:.1f}", "", f"{sim.failed} failed ({sim.failed_whole})", "",
                        "0", ""])  # fmt: skip
    return out


def console_table(title: str, body: list[list[str]]) -> Table:
    table = Table(title=title)
    for col in COLUMNS:
        table.add_column(col)
    for row in body:
        table.add_row(*row)
    return table


def markdown(title: str, body: list[list[str]], preamble: str) -> str:
    lines = [f"# {title}", "", preamble.strip(), "", "| " + " | ".join(COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]  # fmt: skip
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def write_json(
    path: Path, args: dict[str, Any], stamp: str, results: list[RunResult], sims: dict[str, Simulated]
) -> None:
    out = {"args": args, "stamp": stamp, "runs": [r.__dict__ for r in results],
           "simulate": {k: v.__dict__ for k, v in sims.items()}}  # fmt: skip
    path.write_text(json.dumps(out, indent=1, default=str))


def plot(results: list[RunResult], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_whole) = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    for r in results:
        (line,) = ax.plot(r.times, r.alloc, label=r.description)
        ax_whole.plot(r.times, r.alloc_whole, color=line.get_color())
    ax.set_title("all GPU pods", fontsize=9)
    ax_whole.set_title("whole-GPU pods only", fontsize=9)
    for a in (ax, ax_whole):
        a.set_xlabel("seconds into the replay")
        a.grid(alpha=0.3)
    ax.set_ylabel("GPU capacity bound, % (trace milli)")
    ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
