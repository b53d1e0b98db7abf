"""Fragmentation-aware policies (FGD, gpuplace's default) on a live ClusterState, for the extender.

`placement_core.policies` scores raw node arrays; the simulator drives it directly. The extender scores
the same arrays but many times per second on a cluster whose hardware rarely changes, so `PolicyScorer`
caches what depends only on hardware — the typical-pod arrays compiled against the model ids, the
BestFit/DotProd normalisers and the reserve plan for big jobs — keyed on `ClusterState.hw_version`, and
recomputes per call only what depends on usage. A call splits in two so callers can keep the first part
per row: `local` (the policy's score of each row on its own, a function of that row's arrays and the
hardware) and `finish` (what depends on the whole cluster: the empty big nodes held back, and the rank
of nodes the policy's simpler fit test rejects). MIG requests are outside the fragmentation model
(it counts milli-GPU), so they fall back to most-allocated over MIG instances.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from placement_core import placer
from placement_core.cluster import ClusterState
from placement_core.policies import Context, Policy, reserve_plan, score_all
from placement_core.policies.definitions import NEG_INF
from placement_core.policies.reserve import RESERVE_PENALTY
from placement_core.request import WHOLE, GpuRequest
from placement_core.workload import DEFAULT_TYPICAL_PODS, TypicalPods


class PolicyScorer:
    """Raw scores (higher is better, −inf where `reason` ≠ 0) of `policy` for every row of a state."""

    def __init__(self, policy: Policy, *, typical: TypicalPods = DEFAULT_TYPICAL_PODS) -> None:
        self.policy = policy
        self.typical = typical
        self._key: tuple[int, int] | None = None
        self._ctx: Context | None = None
        self._plan: tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]] | None = None
        self._reserved_key: tuple[int, int, int] | None = None
        self._reserved: npt.NDArray[np.bool_] | None = None

    def _hardware(self, s: ClusterState) -> tuple[Context, npt.NDArray[np.int32], npt.NDArray[np.int64]]:
        key = (id(s), s.hw_version)
        if key != self._key or self._ctx is None or self._plan is None:
            n = s.n_rows
            self._ctx = Context.build(self.typical, s.models.names, s.gpu_present[:n], s.node_cpu_total[:n])
            self._plan = reserve_plan(
                self._ctx.big_jobs,
                s.gpu_present[:n],
                s.node_cpu_total[:n],
                s.node_mem_total[:n],
                s.node_model[:n],
                self._ctx.big_gpus,
            )
            self._key = key
        return self._ctx, *self._plan

    def reserved(self, s: ClusterState) -> npt.NDArray[np.bool_]:
        """The empty big nodes held back for big jobs right now (gpuplace policy only); kept while the
        state's version stands (callers must not mutate it)."""
        key = (id(s), s.version, s.hw_version)
        if key != self._reserved_key or self._reserved is None:
            self._reserved = self._compute_reserved(s)
            self._reserved_key = key
        return self._reserved

    def _compute_reserved(self, s: ClusterState) -> npt.NDArray[np.bool_]:
        n = s.n_rows
        _, node_class, reserve = self._hardware(s)
        empty = (s.node_cpu_free[:n] == s.node_cpu_total[:n]) & (node_class >= 0)
        rows = np.flatnonzero(empty)  # untouched big nodes: few on a busy cluster, so test their GPUs only
        if rows.size:
            empty[rows] = np.all(~s.gpu_present[rows] | (s.gpu_free_milli[rows] >= WHOLE), axis=1)
        if not empty.any():
            return np.asarray(empty, np.bool_)
        per_class = np.bincount(node_class[empty], minlength=len(reserve))
        k = np.maximum(node_class, 0)
        return np.asarray(empty & (per_class[k] <= reserve[k]), np.bool_)

    def __call__(
        self, s: ClusterState, req: GpuRequest, reason: npt.NDArray[np.int8]
    ) -> npt.NDArray[np.float64]:
        return self.finish(s, req, reason, self.local(s, req, reason))

    def local(
        self,
        s: ClusterState,
        req: GpuRequest,
        reason: npt.NDArray[np.int8],
        rows: npt.NDArray[np.intp] | None = None,
    ) -> npt.NDArray[np.float64]:
        """Each row's score on its own (no reserve penalty), for `rows` (all when None); `reason` covers
        all rows. Rows are independent: scoring a subset gives the same values as scoring all."""
        if req.mig_profile is not None:
            return placer.score(s, req, reason, Policy.MOST_ALLOCATED, topo_weight=0.0, rows=rows)
        ctx, _, _ = self._hardware(s)
        n = s.n_rows if rows is None else len(rows)
        sel = slice(0, n) if rows is None else rows
        G = s.gpu_free_milli.shape[1]
        present = s.gpu_present[sel] & s.gpu_healthy[sel] & ~s.gpu_mig[sel]
        scores, _ = score_all(
            int(self.policy),
            s.gpu_free_milli[sel],
            np.asarray(present, np.bool_),
            s.node_cpu_free[sel],
            s.node_mem_free[sel],
            s.node_cpu_total[sel],
            s.node_mem_total[sel],
            s.node_model[sel],
            np.zeros((n, G + 1), np.int32),
            req.cpu_milli,
            req.memory_mib,
            req.count if not req.is_share else 1,
            req.milli,
            s.model_mask(req.models),
            *ctx.typical_args(),
            ctx.max_cpu,
            ctx.max_gpu_milli,
            ctx.quantize,
            np.zeros(n, np.bool_),  # the reserve penalty is `finish`'s: it depends on the whole cluster
            ctx.big_gpus,
            np.zeros(n),
        )
        return scores  # type: ignore[no-any-return]

    def finish(
        self, s: ClusterState, req: GpuRequest, reason: npt.NDArray[np.int8], local: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """The scores from `local` (all rows): −inf where `reason` ≠ 0, the reserve penalty on the big
        nodes held back (gpuplace), and nodes the policy's fit test rejects ranked last."""
        n = s.n_rows
        if req.mig_profile is not None:
            return local
        ctx, _, _ = self._hardware(s)
        scores = local
        if self.policy == Policy.GPUPLACE and (req.count if not req.is_share else 1) < ctx.big_gpus:
            held = self.reserved(s) & (local > NEG_INF)
            if held.any():  # as score_all subtracts it when given the mask
                scores = np.where(held, local - RESERVE_PENALTY, local)
        out: npt.NDArray[np.float64] = np.where(reason[:n] == 0, scores, -np.inf)
        # gpuplace's own feasibility (health, memory, NVLink, MIG) may pass a node the policy's simpler
        # fit test rejects (it never does the reverse); keep such nodes ranked last, not dropped.
        bad = (reason[:n] == 0) & ~np.isfinite(out)
        if bad.any():
            finite = out[np.isfinite(out)]
            out[bad] = (finite.min() if finite.size else 0.0) - 1.0
        return out


def island_fit(
    s: ClusterState,
    req: GpuRequest,
    reason: npt.NDArray[np.int8],
    rows: npt.NDArray[np.intp] | None = None,
) -> npt.NDArray[np.float64]:
    """k / (size of the smallest free NVLink island holding the k GPUs), 0 when none or k ≤ 1 — the
    topology term of `placement_core.scoring`, on its own (its score with weight 1 minus weight 0).
    With `rows`, for those rows only (each row on its own)."""
    with_topo = placer.score(s, req, reason, Policy.BEST_FIT, topo_weight=1.0, rows=rows)
    without = placer.score(s, req, reason, Policy.BEST_FIT, topo_weight=0.0, rows=rows)
    out = np.zeros(len(with_topo), np.float64)
    ok = np.isfinite(with_topo)
    out[ok] = with_topo[ok] - without[ok]
    return out
