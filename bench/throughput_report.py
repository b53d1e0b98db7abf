"""What bench/scheduler_throughput.py measures per run (`RunResult`) and prints: the throughput table, the
CPU-seconds table, and the medians per run kind written to bench/results/scheduler_throughput.json."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from rich.table import Table

CPU_PROCESSES = ("gpuplace", "kube-scheduler", "kube-apiserver", "etcd")


@dataclass
class RunResult:
    name: str
    description: str
    pods: int
    bound: int = 0
    seconds: float = 0.0  # first → last binding
    pods_per_second: float = 0.0
    to_first_bind: float = 0.0  # scheduler start → first binding
    extender_ms: dict[str, float] = field(default_factory=dict)  # verb → mean latency inside gpuplace
    interval_p50_ms: float = 0.0
    interval_p99_ms: float = 0.0
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # process → CPU s in the window
    problems: list[str] = field(default_factory=list)

    @property
    def cpu_ms_per_pod(self) -> float:
        total = sum(self.cpu_seconds.get(k, 0.0) for k in CPU_PROCESSES)
        return 1000 * total / self.bound if self.bound else 0.0



def _kind(r: RunResult) -> str:
    return r.name.rsplit("-", 1)[0]


def _ratio(r: RunResult, results: list[RunResult], base_kind: str) -> str:
    round_ = r.name.rsplit("-", 1)[1]
    base = next((b for b in results if b.name == f"{base_kind}-{round_}"), None)
    return f"{r.pods_per_second / base.pods_per_second:.2f}" if base and base.pods_per_second else "-"


def table(results: list[RunResult]) -> Table:
    """One row per run; "vs alone" / "vs alone-100" divide by that run of the same round ("-": not run)."""
    t = Table(title="kube-scheduler throughput: same nodes, same pods, one control plane")
    for col in ("run", "round", "pods bound", "seconds", "pods/s", "vs alone", "vs alone-100", "gap p50 ms",
                "gap p99 ms", "gpuplace ms filter/prio/bind", "double-booked"):  # fmt: skip
        t.add_column(col, justify="left" if col == "run" else "right")
    for r in results:
        round_ = r.name.rsplit("-", 1)[1]
        ext = "/".join(f"{r.extender_ms.get(v, 0):.1f}" for v in ("filter", "prioritize", "bind")) \
            if r.extender_ms else "-"
        t.add_row(r.description, round_, f"{r.bound}/{r.pods}", f"{r.seconds:.1f}", f"{r.pods_per_second:.1f}",
                  _ratio(r, results, "alone"), _ratio(r, results, "alone-100"), f"{r.interval_p50_ms:.1f}",
                  f"{r.interval_p99_ms:.1f}", ext, "none" if not r.problems else str(len(r.problems)))  # fmt: skip
    return t


def cpu_table(results: list[RunResult]) -> Table:
    """CPU seconds (user + system) each process spent in the measured window, and their sum per pod bound."""
    t = Table(title="CPU seconds in the measured window (kube-scheduler start → last pod bound)")
    for col in ("run", "round", "pods/s", *CPU_PROCESSES, "sum", "CPU ms/pod"):
        t.add_column(col, justify="left" if col == "run" else "right")
    for r in results:
        name, round_ = r.name.rsplit("-", 1)
        cpu = [f"{r.cpu_seconds[c]:.1f}" if c in r.cpu_seconds else "-" for c in CPU_PROCESSES]
        total = sum(r.cpu_seconds.get(c, 0.0) for c in CPU_PROCESSES)
        t.add_row(name, round_, f"{r.pods_per_second:.1f}", *cpu, f"{total:.1f}", f"{r.cpu_ms_per_pod:.2f}")
    return t


def summary(results: list[RunResult]) -> dict[str, float]:
    """Median pods/s and CPU ms per pod per run kind, and the gpuplace / alone ratio of the medians."""
    kinds: dict[str, list[RunResult]] = {}
    for r in results:
        kinds.setdefault(_kind(r), []).append(r)
    out = {f"{k}_pods_per_second": statistics.median(r.pods_per_second for r in v) for k, v in kinds.items()}
    out |= {f"{k}_cpu_ms_per_pod": statistics.median(r.cpu_ms_per_pod for r in v) for k, v in kinds.items()}
    if out.get("alone_pods_per_second") and "gpuplace_pods_per_second" in out:
        out["ratio_gpuplace_vs_alone"] = out["gpuplace_pods_per_second"] / out["alone_pods_per_second"]
    if out.get("alone-100_pods_per_second") and "gpuplace_pods_per_second" in out:
        out["ratio_gpuplace_vs_alone_100"] = out["gpuplace_pods_per_second"] / out["alone-100_pods_per_second"]
    return out
