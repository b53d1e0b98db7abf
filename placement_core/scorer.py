"""Fragmentation-aware policies (FGD, gpuplace's default) on a live ClusterState, for the extender.

`placement_core.policies` scores raw node arrays; the simulator drives it directly. The extender scores
the same arrays but many times per second on a cluster whose hardware rarely changes, so `PolicyScorer`
caches what depends only on hardware — the typical-pod arrays compiled against the model ids, the
BestFit/DotProd normalisers and the reserve plan for big jobs — keyed on `ClusterState.hw_version`, and
recomputes per call only what depends on usage. MIG requests are outside the fragmentation model
(it counts milli-GPU), so they fall back to most-allocated over MIG instances.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from placement_core import placer
from placement_core.cluster import ClusterState
from placement_core.policies import Context, Policy, reserve_plan, score_all
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

    def _present(self, s: ClusterState) -> npt.NDArray[np.bool_]:
        n = s.n_rows
        return np.asarray(s.gpu_present[:n] & s.gpu_healthy[:n] & ~s.gpu_mig[:n], np.bool_)

    def reserved(self, s: ClusterState) -> npt.NDArray[np.bool_]:
        """The empty big nodes held back for big jobs right now (gpuplace policy only)."""
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
        if req.mig_profile is not None:
            return placer.score(s, req, reason, Policy.MOST_ALLOCATED, topo_weight=0.0)
        n = s.n_rows
        ctx, _, _ = self._hardware(s)
        reserved = self.reserved(s) if self.policy == Policy.GPUPLACE else np.zeros(n, np.bool_)
        G = s.gpu_free_milli.shape[1]
        scores, _ = score_all(
            int(self.policy),
            s.gpu_free_milli[:n],
            self._present(s),
            s.node_cpu_free[:n],
            s.node_mem_free[:n],
            s.node_cpu_total[:n],
            s.node_mem_total[:n],
            s.node_model[:n],
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
            reserved,
            ctx.big_gpus,
            np.zeros(n),
        )
        out: npt.NDArray[np.float64] = np.where(reason[:n] == 0, scores, -np.inf)
        # gpuplace's own feasibility (health, memory, NVLink, MIG) may pass a node the policy's simpler
        # fit test rejects (it never does the reverse); keep such nodes ranked last, not dropped.
        bad = (reason[:n] == 0) & ~np.isfinite(out)
        if bad.any():
            finite = out[np.isfinite(out)]
            out[bad] = (finite.min() if finite.size else 0.0) - 1.0
        return out


def island_fit(s: ClusterState, req: GpuRequest, reason: npt.NDArray[np.int8]) -> npt.NDArray[np.float64]:
    """k / (size of the smallest free NVLink island holding the k GPUs), 0 when none or k ≤ 1 — the
    topology term of `placement_core.scoring`, on its own (its score with weight 1 minus weight 0)."""
    with_topo = placer.score(s, req, reason, Policy.BEST_FIT, topo_weight=1.0)
    without = placer.score(s, req, reason, Policy.BEST_FIT, topo_weight=0.0)
    out = np.zeros(len(with_topo), np.float64)
    ok = np.isfinite(with_topo)
    out[ok] = with_topo[ok] - without[ok]
    return out
