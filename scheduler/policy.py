"""Policy name (from the config) → scoring function over all nodes.

Why a registry of plain functions: prioritize must not know which policy it runs. Every function has
the shape of `placer.score` — one float per row, higher is better, −inf where `reason` says infeasible —
and one more promise: feasible rows score in [0, 1] on a FIXED scale, the same for a node whichever other
nodes are offered. Prioritize then scales by the best offered node, as kube-scheduler's
DefaultNormalizeScore does, so differences stay proportional and a near-tie stays a near-tie (it must:
kube-scheduler adds score × weight × 10 to the in-tree plugins' points, and a stretched tie would
override the soft in-tree preferences such as preferred node affinity or PreferNoSchedule taints).

- `gpuplace` (default): gpuplace's fragmentation-aware policy (placement_core.policies). It beats FGD on
  the Alibaba openb traces and packs whole-GPU pods wherever CPU and memory cannot strand GPUs
  (scheduler/README.md "Scoring policy": the rule and its trade-off). Its raw value (fragmentation removed
  in GPUs, weighted, plus the headroom term) has no natural bound, so it goes through the logistic σ(raw)
  — FGD itself maps its ΔF with a sigmoid — a fixed, monotone map that keeps small raw differences small.
- `fgd`: FGD (USENIX ATC'23) re-implemented in placement_core.policies: its own 0..100 score / 100.
- `most-allocated`: GPU utilisation after placing (placement_core.scoring), + the NVLink island term for
  multi-GPU pods: (base + w·k/s) / (1 + w), w = `topology_weight`.
- `least-allocated`: 1 − utilisation after placing, + the same island term.
- `best-fit`: 1 − (GPUs left free after placing) / max_gpus_per_node, + the island term.

For the fragmentation-aware policies the topology decides first for multi-GPU pods: the node whose
smallest free NVLink island holding the k GPUs is tightest (k/s highest) wins, and the policy's unit score
orders nodes of equal fit: (policy + ISLAND_FIRST·k/s) / (1 + ISLAND_FIRST). Topology first on purpose:
the trace-tuned policy spreads among placements that fragment alike (bench/results/summary.md), which on
its own would break an empty 8-GPU island for a 2-GPU pod while a 2-GPU hole waits elsewhere. The price of
proportional scores: the policy's part is worth less than one of the extender's 0..10 points there, so
among nodes of equal island fit the in-tree plugins decide. Shares, single GPUs and MIG follow the policy
alone. `topology_weight: 0` turns the island rule off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from placement_core import ClusterState, GpuRequest, Policy, placer
from placement_core.scorer import PolicyScorer, island_fit

Rows = npt.NDArray[np.intp] | None
Local = tuple[npt.NDArray[np.float64], ...]


@dataclass(frozen=True)
class Scoring:
    """A policy's scores in two parts, so the extender can keep the first per row across calls
    (scheduler.context): `local(state, req, reason, rows)` — each row's values on their own, for `rows`
    (all when None; `reason` covers all rows) — and `finish(state, req, reason, local)`, what depends on
    the whole cluster (placement_core.scorer). Called as a function it is both: a `ScoreFn`."""

    local: Callable[[ClusterState, GpuRequest, npt.NDArray[np.int8], Rows], Local]
    finish: Callable[[ClusterState, GpuRequest, npt.NDArray[np.int8], Local], npt.NDArray[np.float64]]

    def __call__(
        self, state: ClusterState, req: GpuRequest, reason: npt.NDArray[np.int8]
    ) -> npt.NDArray[np.float64]:
        return self.finish(state, req, reason, self.local(state, req, reason, None))


ScoreFn = Callable[[ClusterState, GpuRequest, npt.NDArray[np.int8]], npt.NDArray[np.float64]]


def _topology_applies(req: GpuRequest, topology_weight: float) -> bool:
    """When placement_core.scoring adds its island term (whole multi-GPU, non-MIG requests)."""
    return topology_weight > 0 and req.count > 1 and not req.is_share and req.mig_profile is None


def _placer(policy: Policy) -> Callable[[float], Scoring]:
    def make(topology_weight: float) -> Scoring:
        def local(state: ClusterState, req: GpuRequest, reason: npt.NDArray[np.int8], rows: Rows) -> Local:
            return (placer.score(state, req, reason, policy, topo_weight=topology_weight, rows=rows),)

        def finish(
            state: ClusterState, req: GpuRequest, reason: npt.NDArray[np.int8], raw: Local
        ) -> npt.NDArray[np.float64]:
            w = topology_weight if _topology_applies(req, topology_weight) else 0.0
            if policy == Policy.BEST_FIT:  # base = −(GPUs left free) ∈ [−max_gpus, 0]
                return _unit((raw[0] + state.G) / (state.G + w))
            return _unit(raw[0] / (1.0 + w))

        return Scoring(local, finish)

    return make


def _unit(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Clip feasible values into [0, 1]; −inf stays."""
    return np.where(np.isfinite(x), np.clip(x, 0.0, 1.0), -np.inf)


def _policy_unit(policy: Policy, raw: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """FGD's 0..100 score / 100, or σ(raw) for gpuplace, clipped into [0, 1]; −inf stays (one pass
    over all rows: np.tanh(−inf) is −1, replaced by −inf below)."""
    # FGD's score is 100·σ(ΔF/1000) ∈ (0, 100); gpuplace's σ(raw) via tanh, without exp overflow
    unit = raw / 100.0 if policy == Policy.FGD else 0.5 * (1.0 + np.tanh(0.5 * raw))
    return np.where(np.isfinite(raw), np.clip(unit, 0.0, 1.0), -np.inf)


def _fragmentation_aware(policy: Policy) -> Callable[[float], Scoring]:
    def make(topology_weight: float) -> Scoring:
        scorer = PolicyScorer(policy)

        def local(state: ClusterState, req: GpuRequest, reason: npt.NDArray[np.int8], rows: Rows) -> Local:
            own = scorer.local(state, req, reason, rows)
            if not _topology_applies(req, topology_weight):
                return (own,)
            return own, island_fit(state, req, reason, rows)

        def finish(
            state: ClusterState, req: GpuRequest, reason: npt.NDArray[np.int8], parts: Local
        ) -> npt.NDArray[np.float64]:
            out = _policy_unit(policy, scorer.finish(state, req, reason, parts[0]))
            if len(parts) > 1:
                out = (out + ISLAND_FIRST * parts[1]) / (1.0 + ISLAND_FIRST)
            return out

        return Scoring(local, finish)

    return make


POLICIES: dict[str, Callable[[float], Scoring]] = {
    "gpuplace": _fragmentation_aware(Policy.GPUPLACE),
    "fgd": _fragmentation_aware(Policy.FGD),
    "most-allocated": _placer(Policy.MOST_ALLOCATED),
    "least-allocated": _placer(Policy.LEAST_ALLOCATED),
    "best-fit": _placer(Policy.BEST_FIT),
}
DEFAULT_POLICY = "gpuplace"
ISLAND_FIRST = 10.0  # island fit k/s ∈ (0, 1] × 10 dominates the policy's unit score


def scoring_function(name: str, topology_weight: float) -> Scoring:
    try:
        return POLICIES[name](topology_weight)
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(sorted(POLICIES))}") from None
