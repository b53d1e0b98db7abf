"""prioritize: 0..10 per offered node from the configured policy.

The policy (scheduler.policy) returns a raw score in [0, 1] on a fixed scale for every row; the offered
nodes' scores are scaled so the best gets 10 and the rest keep their ratio to it — kube-scheduler's own
`DefaultNormalizeScore` (pkg/scheduler/framework/plugins/helper/normalize_score.go: score × max / best).
Why proportional and not min–max: kube-scheduler adds score × weight × (MaxNodeScore /
MaxExtenderPriority) to each node's in-tree total (pkg/scheduler/schedule_one.go, `prioritizeNodes`);
min–max turned raw 0.900 vs 0.901 into 0 vs 10, i.e. 500 points at weight 5 for a difference of nothing,
which overrode preferred node affinity (≤ 100 × its plugin weight 2) and PreferNoSchedule taints.
Infeasible or unknown nodes get 0. Prioritize errors are ignored by kube-scheduler, so nothing here
needs an in-band error: a failure is an HTTP 500 and the pod is scheduled on the in-tree scores alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scheduler.context import ExtenderContext
from scheduler.dra.extender import demand_of, raw_scores
from scheduler.namelists import NameList
from scheduler.podreq import wants_gpus
from scheduler.wire import ExtenderArgs, HostPriority


@dataclass
class PriorityOutcome:
    names: NameList
    scores: npt.NDArray[np.int64]

    def encode(self) -> bytes:
        return self.names.priorities_json(self.scores)

    def to_wire(self) -> list[HostPriority]:
        return [
            HostPriority(host=h, score=int(s))
            for h, s in zip(self.names.names.tolist(), self.scores.tolist(), strict=True)
        ]


def normalise(raw: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Non-negative raw scores → 0..10 as `DefaultNormalizeScore(MaxExtenderPriority, false, …)`:
    10 × raw / max(raw), rounded; all zero → all 0; −inf (infeasible) → 0."""
    finite = np.isfinite(raw)
    out = np.zeros(len(raw), np.int64)
    if not finite.any():
        return out
    best = raw[finite].max()
    if best <= 0:
        return out
    out[finite] = np.rint(np.clip(raw[finite], 0.0, None) * (10.0 / best)).astype(np.int64)
    return out


def prioritize(args: ExtenderArgs, ctx: ExtenderContext, *, names: NameList | None = None) -> PriorityOutcome:
    """The prioritize verb. A pod whose request cannot be read scores 0 everywhere (filter said why)."""
    if names is None:
        if args.node_names is not None:
            names = ctx.names.for_names(args.node_names)
        elif args.nodes is not None:
            names = ctx.names.for_names(
                [str((n.get("metadata") or {}).get("name", "")) for n in args.nodes.items]
            )
        else:
            names = NameList.of([])
    cache = ctx.cache
    rows = names.resolve(cache.state.index, cache.index_gen)
    try:
        req = ctx.requests.get(args.pod)
    except ValueError:
        return PriorityOutcome(names, np.zeros(len(names), np.int64))
    demand = demand_of(ctx, args.pod)
    if demand is not None:  # GPUs from ResourceClaims: policy score × PCIe-root fit (scheduler.dra.extender)
        return PriorityOutcome(names, normalise(raw_scores(ctx, req, demand, names.names.tolist(), rows)))
    if not wants_gpus(req):  # no GPU asked: no preference; the in-tree plugins rank the nodes
        return PriorityOutcome(names, np.zeros(len(names), np.int64))
    raw_all = ctx.scores(req)
    if names.all_known:
        raw = raw_all[rows]
    else:
        known = rows >= 0
        raw = np.where(known, raw_all[np.where(known, rows, 0)], -np.inf)
    return PriorityOutcome(names, normalise(raw))
