"""What one replay measured, in FGD's terms, and its mean ± std over seeds.

FGD's analysis scripts (alibaba/kubernetes-scheduler-simulator, experiments/analysis) turn the per-event log
into values at integer "arrived" percentages: arrived % = requested GPU milli of all pods submitted so far
(placed or not) / cluster GPU milli; the value at x % is the mean over the events whose arrived % rounds to
x (or, if none, to x ± 1). We do the same for:
- allocation %: allocated GPU milli / cluster GPU milli;
- fragmentation amount: fragmented GPU milli as % of cluster GPU milli (the paper's Fig. 7 unit);
- fragmentation rate: fragmented / free GPU milli, %.
Plus the arrived % at which the first pod found no node, failures by pod size, and NVLink placement of
multi-GPU pods.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gpuplace.simulate.engine import Events, SeedRun

MULTI_GPU_SIZES = (2, 4, 8)


@dataclass(frozen=True, slots=True)
class Nvlink:
    """k-GPU pods: placed on nodes with an NVLink island ≥ k (`eligible`), of which `possible` had a free
    one at that moment, and `inside` got GPUs forming one island (`inside_possible`: when it was possible)."""

    eligible: int = 0
    possible: int = 0
    inside: int = 0
    inside_possible: int = 0


@dataclass(frozen=True, slots=True)
class SeedMetrics:
    alloc: dict[int, float]  # arrived % → allocation %
    frag_amount: dict[int, float]  # arrived % → fragmented GPU milli, % of capacity
    frag_rate: dict[int, float]  # arrived % → fragmented / free GPU milli, %
    first_failure: float | None  # arrived % at the first unplaceable pod
    failed: dict[str, int]  # pod size ("share", "1", "2", …) → pods that found no node
    placed: dict[str, int]
    nvlink: dict[int, Nvlink]
    curve: npt.NDArray[np.float64]  # allocation % at arrived 0, 1, … top %
    mean_alloc: float  # mean over all events (the departures-mode headlines)
    mean_frag_amount: float
    mean_frag_rate: float
    seconds: float = 0.0


def _at(arrived_pct: npt.NDArray[np.float64], values: npt.NDArray[np.float64], x: int) -> float:
    r = np.round(arrived_pct)
    sel = r == x
    if not sel.any():
        sel = np.abs(r - x) <= 1
    return float(values[sel].mean()) if sel.any() else math.nan


def _size(count: int, milli: int) -> str:
    if count == 0:
        return "cpu"
    return "share" if milli < 1000 else str(count)


def seed_metrics(run: SeedRun, events: Events, count: npt.NDArray[np.int32], milli: npt.NDArray[np.int32],
                 capacity_milli: int, points: Sequence[int], top: int, seconds: float = 0.0) -> SeedMetrics:
    """Reduce one replay to FGD's measures at the arrived percentages `points` (and a 0..top curve)."""
    arrived = run.arrived_milli / capacity_milli * 100.0
    alloc = run.used_milli / capacity_milli * 100.0
    idle = capacity_milli - run.used_milli
    amount = run.frag_milli / capacity_milli * 100.0
    rate = np.where(idle > 0, run.frag_milli / np.maximum(idle, 1) * 100.0, 0.0)
    fails = np.nonzero(run.failed)[0]
    first = float(arrived[fails[0] + 1]) if len(fails) else None
    failed: dict[str, int] = {}
    for e in fails:
        key = _size(int(count[events.pod[e]]), int(milli[events.pod[e]]))
        failed[key] = failed.get(key, 0) + 1
    placed: dict[str, int] = {}
    nvl: dict[int, Nvlink] = {}
    inst_count = count[events.inst_pod]
    for k in np.nonzero(run.node >= 0)[0]:
        p = events.inst_pod[k]
        key = _size(int(count[p]), int(milli[p]))
        placed[key] = placed.get(key, 0) + 1
    for size in MULTI_GPU_SIZES:
        sel = (inst_count == size) & run.nvl_hw
        nvl[size] = Nvlink(int(sel.sum()), int((sel & run.nvl_possible).sum()), int((sel & run.nvl_in).sum()),
                           int((sel & run.nvl_possible & run.nvl_in).sum()))
    curve = np.array([_at(arrived, alloc, x) for x in range(top + 1)])
    return SeedMetrics(
        alloc={x: _at(arrived, alloc, x) for x in points},
        frag_amount={x: _at(arrived, amount, x) for x in points},
        frag_rate={x: _at(arrived, rate, x) for x in points},
        first_failure=first, failed=failed, placed=placed, nvlink=nvl, curve=curve,
        mean_alloc=float(alloc[1:].mean()) if len(alloc) > 1 else 0.0,
        mean_frag_amount=float(amount[1:].mean()) if len(amount) > 1 else 0.0,
        mean_frag_rate=float(rate[1:].mean()) if len(rate) > 1 else 0.0, seconds=seconds,
    )


@dataclass(frozen=True, slots=True)
class Stat:
    mean: float
    std: float

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Stat:
        v = np.array([math.nan if x is None else x for x in values], np.float64)
        v = v[~np.isnan(v)]
        if len(v) == 0:
            return cls(math.nan, math.nan)
        return cls(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0)

    def fmt(self, digits: int = 2) -> str:
        if math.isnan(self.mean):
            return "—"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


@dataclass(slots=True)
class PolicySummary:
    """Mean ± std over seeds of one policy on one trace."""

    policy: str
    seeds: list[int]
    alloc: dict[int, Stat]
    frag_amount: dict[int, Stat]
    frag_rate: dict[int, Stat]
    first_failure: Stat
    failed: dict[str, float]  # mean pods per seed
    placed: dict[str, float]
    nvlink: dict[int, Nvlink]  # summed over seeds
    curve: npt.NDArray[np.float64]
    mean_alloc: Stat
    mean_frag_amount: Stat
    mean_frag_rate: Stat
    seconds: float  # wall time for all seeds
    per_seed_alloc: dict[int, list[float]] = field(default_factory=dict)


def _nanmean_rows(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    ok = ~np.isnan(a)
    n = ok.sum(axis=0)
    total = np.where(ok, a, 0.0).sum(axis=0)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def summarise(policy: str, seeds: Sequence[int], runs: Sequence[SeedMetrics], points: Sequence[int],
              seconds: float) -> PolicySummary:
    keys = sorted({k for r in runs for k in (*r.failed, *r.placed)})
    nvl = {}
    for size in MULTI_GPU_SIZES:
        nvl[size] = Nvlink(*(sum(getattr(r.nvlink[size], f) for r in runs)
                             for f in ("eligible", "possible", "inside", "inside_possible")))
    return PolicySummary(
        policy=policy, seeds=list(seeds),
        alloc={x: Stat.of([r.alloc[x] for r in runs]) for x in points},
        frag_amount={x: Stat.of([r.frag_amount[x] for r in runs]) for x in points},
        frag_rate={x: Stat.of([r.frag_rate[x] for r in runs]) for x in points},
        first_failure=Stat.of([r.first_failure for r in runs]),
        failed={k: float(np.mean([r.failed.get(k, 0) for r in runs])) for k in keys},
        placed={k: float(np.mean([r.placed.get(k, 0) for r in runs])) for k in keys},
        nvlink=nvl, curve=_nanmean_rows(np.stack([r.curve for r in runs])),
        mean_alloc=Stat.of([r.mean_alloc for r in runs]),
        mean_frag_amount=Stat.of([r.mean_frag_amount for r in runs]),
        mean_frag_rate=Stat.of([r.mean_frag_rate for r in runs]), seconds=seconds,
        per_seed_alloc={x: [r.alloc[x] for r in runs] for x in points},
    )
