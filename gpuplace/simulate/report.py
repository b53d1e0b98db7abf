"""Tables (terminal, Markdown, JSON) and the allocation plot for simulation results.

Columns: allocation % at 100 % and 130 % arrived (mean ± std over seeds), fragmentation amount (% of GPU
capacity) and rate (% of free GPU) at the end, arrived % at the first failed pod, pods that failed (mean per
seed), 8-GPU pods failed / submitted, and the share of 2/4/8-GPU pods whose GPUs form one NVLink island
among those placed on a node that had a free island of that size.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gpuplace.simulate.metrics import MULTI_GPU_SIZES, PolicySummary


def _pct(num: int, den: int) -> str:
    return "—" if den == 0 else f"{100.0 * num / den:.1f}"


def nvlink_cell(s: PolicySummary) -> str:
    """In-island % of 2/4/8-GPU pods among those placed when a free island of their size existed."""
    return " / ".join(_pct(s.nvlink[k].inside_possible, s.nvlink[k].possible) for k in MULTI_GPU_SIZES)


def columns(points: Sequence[int], *, departures: bool, published: bool) -> list[str]:
    top = max(points)
    if departures:
        cols = ["policy", "mean alloc %", "mean frag amt %", "mean frag rate %"]
    else:
        cols = ["policy", *(f"alloc@{x}" for x in points)]
        if published:
            cols.append(f"paper@{top}")
        cols += [f"frag amt@{top}", f"frag rate@{top}", "1st fail@"]
    return [*cols, "failed pods", "8-GPU failed", "NVLink 2/4/8", "s"]


def row(s: PolicySummary, points: Sequence[int], *, departures: bool,
        published: Mapping[str, float] | None) -> list[str]:
    top = max(points)
    if departures:
        cells = [s.policy, s.mean_alloc.fmt(), s.mean_frag_amount.fmt(), s.mean_frag_rate.fmt()]
    else:
        cells = [s.policy, *(s.alloc[x].fmt() for x in points)]
        if published is not None:
            pub = published.get(s.policy)
            cells.append("—" if pub is None else f"{pub:.2f}")
        cells += [s.frag_amount[top].fmt(), s.frag_rate[top].fmt(), s.first_failure.fmt(1)]
    failed8 = s.failed.get("8", 0.0)
    return [*cells, f"{sum(s.failed.values()):.0f}", f"{failed8:.1f}/{failed8 + s.placed.get('8', 0.0):.1f}",
            nvlink_cell(s), f"{s.seconds:.1f}"]


def print_table(title: str, results: Sequence[PolicySummary], points: Sequence[int], *, departures: bool = False,
                published: Mapping[str, float] | None = None, console: Console | None = None) -> None:
    table = Table(title=title)
    for c in columns(points, departures=departures, published=published is not None):
        table.add_column(c, justify="left" if c == "policy" else "right")
    for s in results:
        table.add_row(*row(s, points, departures=departures, published=published))
    out = console or Console()
    if not out.is_terminal:  # piped or captured: print the full table rather than squeeze it into 80 columns
        out = Console(file=out.file, width=max(out.width, 200))
    out.print(table)


def markdown_table(results: Sequence[PolicySummary], points: Sequence[int], *, departures: bool = False,
                   published: Mapping[str, float] | None = None) -> str:
    cols = columns(points, departures=departures, published=published is not None)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for s in results:
        lines.append("| " + " | ".join(row(s, points, departures=departures, published=published)) + " |")
    return "\n".join(lines) + "\n"


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def to_json(results: Sequence[PolicySummary], meta: Mapping[str, Any]) -> str:
    out: dict[str, Any] = {"meta": dict(meta), "policies": {}}
    for s in results:
        out["policies"][s.policy] = {
            "seeds": s.seeds,
            "alloc": {str(x): {"mean": _num(v.mean), "std": _num(v.std)} for x, v in s.alloc.items()},
            "alloc_per_seed": {str(x): [_num(v) for v in vs] for x, vs in s.per_seed_alloc.items()},
            "frag_amount": {str(x): {"mean": _num(v.mean), "std": _num(v.std)} for x, v in s.frag_amount.items()},
            "frag_rate": {str(x): {"mean": _num(v.mean), "std": _num(v.std)} for x, v in s.frag_rate.items()},
            "first_failure": {"mean": _num(s.first_failure.mean), "std": _num(s.first_failure.std)},
            "mean_alloc": {"mean": _num(s.mean_alloc.mean), "std": _num(s.mean_alloc.std)},
            "mean_frag_amount": {"mean": _num(s.mean_frag_amount.mean), "std": _num(s.mean_frag_amount.std)},
            "mean_frag_rate": {"mean": _num(s.mean_frag_rate.mean), "std": _num(s.mean_frag_rate.std)},
            "failed_per_seed": s.failed,
            "placed_per_seed": s.placed,
            "nvlink": {str(k): vars_of(v) for k, v in s.nvlink.items()},
            "seconds": round(s.seconds, 2),
        }
    return json.dumps(out, indent=1, sort_keys=False)


def vars_of(obj: Any) -> dict[str, Any]:
    return {f: getattr(obj, f) for f in obj.__slots__}


def plot(path: Path, title: str, results: Sequence[PolicySummary], *, zoom_from: int = 80) -> None:
    """Allocation % against arrived % for every policy (mean over seeds): full range and a zoom."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, zoom) = plt.subplots(1, 2, figsize=(12, 4.8))
    for s in results:
        x = list(range(len(s.curve)))
        style = {"linewidth": 2.4} if s.policy in ("gpuplace", "FGD") else {"linewidth": 1.2}
        ax.plot(x, s.curve, label=s.policy, **style)
        zoom.plot(x[zoom_from:], s.curve[zoom_from:], label=s.policy, **style)
    top = max(len(s.curve) for s in results) - 1
    ax.plot([0, min(top, 100), top], [0, min(top, 100), min(top, 100)], color="grey", linestyle=":",
            linewidth=1, label="demand (upper bound)")
    for a in (ax, zoom):
        a.set_xlabel("arrived GPU demand, % of capacity")
        a.set_ylabel("GPU allocation, % of capacity")
        a.grid(alpha=0.3)
    ax.set_title(title)
    zoom.set_title(f"zoom: arrived ≥ {zoom_from} %")
    zoom.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
