"""Run one policy over several seeds of a trace: the library entry point behind `gpuplace simulate`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gpuplace.simulate.engine import (
    Cluster,
    PodArrays,
    arrivals,
    policy_context,
    run_seed,
    timeline,
    trace_typical_pods,
)
from gpuplace.simulate.metrics import PolicySummary, SeedMetrics, seed_metrics, summarise
from gpuplace.simulate.traces import NodeTable, PodTable
from placement_core.policies import Context, Policy


@dataclass(frozen=True, slots=True)
class Scenario:
    """A trace replay setting. `arrival` = submitted GPU demand / cluster GPU capacity (FGD: 1.3)."""

    nodes: NodeTable
    pods: PodTable
    arrival: float = 1.3
    departures: bool = False

    @property
    def top(self) -> int:
        return round(self.arrival * 100)

    @property
    def points(self) -> list[int]:
        """Arrived percentages reported: 100 % and the end of the replay."""
        return sorted({p for p in (100, self.top) if p <= self.top}) or [self.top]


def parse_seeds(text: str) -> list[int]:
    """'42..51' (inclusive), '42,43,47' or '42'."""
    out: list[int] = []
    for raw in text.split(","):
        part = raw.strip()
        if ".." in part:
            lo, hi = part.split("..", 1)
            a, b = int(lo), int(hi)
            if b < a:
                raise ValueError(f"empty seed range {part!r}")
            out.extend(range(a, b + 1))
        elif part:
            out.append(int(part))
    if not out:
        raise ValueError(f"no seeds in {text!r}")
    return out


def run_policy(policy: Policy, scenario: Scenario, seeds: Sequence[int], *, quantize: bool | None = None,
               on_seed: Callable[[int, SeedMetrics], None] | None = None) -> PolicySummary:
    """Replay the scenario once per seed with `policy`; mean ± std over seeds."""
    if scenario.arrival <= 0 or not math.isfinite(scenario.arrival):
        raise ValueError(f"arrival must be a positive ratio (1.3 = 130 % of GPU capacity), got {scenario.arrival}")
    cluster = Cluster.from_table(scenario.nodes)
    if cluster.capacity_milli == 0:
        raise ValueError("the node list has no GPUs")
    pods = PodArrays.build(scenario.pods, cluster.model_names)
    ctx = policy_context(policy, cluster, scenario.pods, quantize=quantize)
    metric = Context.build(trace_typical_pods(scenario.pods), cluster.model_names, cluster.gpu_present,
                           cluster.node_cpu_total)
    fixed = timeline(scenario.pods) if scenario.departures else None
    runs: list[SeedMetrics] = []
    start = time.perf_counter()
    for seed in seeds:
        t0 = time.perf_counter()
        rng = np.random.default_rng(seed)
        events = fixed if fixed is not None else arrivals(scenario.pods, cluster.capacity_milli, scenario.arrival,
                                                          rng)
        run = run_seed(policy, cluster, pods, ctx, metric, events, rng=rng)
        top = scenario.top
        if scenario.departures:
            top = max(top, math.ceil(run.arrived_milli[-1] / cluster.capacity_milli * 100))
        m = seed_metrics(run, events, scenario.pods.gpu_count, scenario.pods.gpu_milli, cluster.capacity_milli,
                         scenario.points, top, time.perf_counter() - t0)
        runs.append(m)
        if on_seed is not None:
            on_seed(seed, m)
    return summarise(policy.label, seeds, runs, scenario.points, time.perf_counter() - start)
