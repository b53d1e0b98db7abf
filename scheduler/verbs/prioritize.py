"""prioritize: 0..10 per offered node from the configured policy.

The policy (scheduler.policy) returns a raw score for every row; the offered nodes' feasible scores are
min–max normalised to 0..10 (kube-scheduler multiplies by the extender's weight and by 10), so the
best node always gets 10 and the worst feasible one 0 — the same relative shape kube-scheduler's own
plugins produce with DefaultNormalizeScore. Infeasible or unknown nodes get 0; when all feasible nodes
tie, they all get 10. Prioritize errors are ignored by kube-scheduler, so nothing here needs an
in-band error: a failure is an HTTP 500 and the pod is scheduled on the in-tree scores alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scheduler.context import ExtenderContext
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
    """Finite scores → 0..10 by min–max; −inf (infeasible) → 0."""
    finite = np.isfinite(raw)
    out = np.zeros(len(raw), np.int64)
    if not finite.any():
        return out
    lo, hi = raw[finite].min(), raw[finite].max()
    if hi - lo < 1e-12:
        out[finite] = 10
    else:
        out[finite] = np.rint((raw[finite] - lo) * (10.0 / (hi - lo))).astype(np.int64)
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
    if not wants_gpus(req):  # no GPU asked: no preference; the in-tree plugins rank the nodes
        return PriorityOutcome(names, np.zeros(len(names), np.int64))
    reason, _ = ctx.evaluate(req)
    raw_all = ctx.score(cache.state, req, reason)
    known = rows >= 0
    raw = np.where(known, raw_all[np.where(known, rows, 0)], -np.inf)
    return PriorityOutcome(names, normalise(raw))
