"""All nodes at once: `score_all` over node arrays (memoised per distinct node state for FGD and gpuplace,
`grouping`) and its Python entry point `score_nodes`. Kernels first, the twin below."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from placement_core.fragmentation import node_frag
from placement_core.policies.definitions import _FGD, _GPUPLACE, NEG_INF, Context, Policy, Request
from placement_core.policies.gpuplace import W_FRAG
from placement_core.policies.grouping import _share_ties, group_states
from placement_core.policies.node import node_score, node_score_twin
from placement_core.policies.node_ops import Arr, fits
from placement_core.policies.reserve import RESERVE_PENALTY, reserved_nodes
from placement_core.request import WHOLE


@njit(cache=True, nogil=True)
def _score_grouped(
    policy,
    gpu_free_milli,
    gpu_present,
    node_cpu_free,
    node_mem_free,
    node_cpu_total,
    node_mem_total,
    node_model,
    node_kinds,
    cpu,
    mem,
    count,
    milli,
    allowed,
    tp_cpu,
    tp_mem,
    tp_count,
    tp_milli,
    tp_allowed,
    tp_weight,
    max_cpu,
    max_gpu_milli,
    quantize,
    reserved,
    big_gpus,
    u,
):
    """`score_all` for FGD and gpuplace: `node_score` once per distinct state (`group_states`)."""
    n, G = gpu_free_milli.shape
    group, first = group_states(
        gpu_free_milli, gpu_present, node_cpu_free, node_mem_free, node_cpu_total, node_mem_total, node_model
    )
    K = first.shape[0]
    share = count == 1 and milli < WHOLE
    g_score = np.empty(K, np.float64)
    ties = np.empty((K, max(G, 1)), np.int64)
    n_ties = np.zeros(K, np.int64)
    for k in range(K):
        r = first[k]
        free = gpu_free_milli[r]
        present = gpu_present[r]
        if not fits(
            free, present, node_cpu_free[r], node_mem_free[r], node_model[r], cpu, mem, count, milli, allowed
        ):
            g_score[k] = NEG_INF
            continue
        before = node_frag(
            free,
            present,
            node_cpu_free[r],
            node_mem_free[r],
            node_model[r],
            tp_cpu,
            tp_mem,
            tp_count,
            tp_milli,
            tp_allowed,
            tp_weight,
        )
        s, _ = node_score(
            policy,
            free,
            present,
            node_cpu_free[r],
            node_mem_free[r],
            node_cpu_total[r],
            node_mem_total[r],
            node_model[r],
            node_kinds[r],
            before,
            cpu,
            mem,
            count,
            milli,
            allowed,
            tp_cpu,
            tp_mem,
            tp_count,
            tp_milli,
            tp_allowed,
            tp_weight,
            max_cpu,
            max_gpu_milli,
            quantize,
            u[r],
        )
        g_score[k] = s
        if share:
            n_ties[k] = _share_ties(
                free,
                present,
                node_cpu_free[r],
                node_mem_free[r],
                node_model[r],
                before,
                cpu,
                mem,
                milli,
                tp_cpu,
                tp_mem,
                tp_count,
                tp_milli,
                tp_allowed,
                tp_weight,
                W_FRAG if policy == _GPUPLACE else 0.0,
                quantize and policy == _FGD,
                ties[k],
            )
    scores = np.empty(n, np.float64)
    gpus = np.empty(n, np.int32)
    for i in range(n):
        k = group[i]
        s = g_score[k]
        best_g = -1
        if share and s > NEG_INF:
            for g in range(G):
                if gpu_present[i, g] and gpu_free_milli[i, g] >= milli:
                    v = gpu_free_milli[i, g]
                    hit = False
                    for j in range(n_ties[k]):
                        if ties[k, j] == v:
                            hit = True
                            break
                    if hit:
                        best_g = g
                        break
        if policy == _GPUPLACE and reserved[i] and count < big_gpus and s > NEG_INF:
            s -= RESERVE_PENALTY
        scores[i] = s
        gpus[i] = best_g
    return scores, gpus


@njit(cache=True, nogil=True)
def score_all(
    policy,
    gpu_free_milli,
    gpu_present,
    node_cpu_free,
    node_mem_free,
    node_cpu_total,
    node_mem_total,
    node_model,
    node_kinds,
    cpu,
    mem,
    count,
    milli,
    allowed,
    tp_cpu,
    tp_mem,
    tp_count,
    tp_milli,
    tp_allowed,
    tp_weight,
    max_cpu,
    max_gpu_milli,
    quantize,
    reserved,
    big_gpus,
    u,
):
    """(float64[N] scores, int32[N] share GPU) of `policy` for every node; `u` is float64[N] (RANDOM).

    gpuplace only: RESERVE_PENALTY is subtracted from feasible `reserved[N]` nodes for pods needing fewer than
    `big_gpus` GPUs (`reserved_nodes` computes the mask).
    """
    if policy == _FGD or policy == _GPUPLACE:  # noqa: PLR1714, SIM109 - plain comparisons for Numba
        return _score_grouped(
            policy,
            gpu_free_milli,
            gpu_present,
            node_cpu_free,
            node_mem_free,
            node_cpu_total,
            node_mem_total,
            node_model,
            node_kinds,
            cpu,
            mem,
            count,
            milli,
            allowed,
            tp_cpu,
            tp_mem,
            tp_count,
            tp_milli,
            tp_allowed,
            tp_weight,
            max_cpu,
            max_gpu_milli,
            quantize,
            reserved,
            big_gpus,
            u,
        )
    n = gpu_free_milli.shape[0]
    scores = np.empty(n, np.float64)
    gpus = np.empty(n, np.int32)
    for i in range(n):
        s, g = node_score(
            policy,
            gpu_free_milli[i],
            gpu_present[i],
            node_cpu_free[i],
            node_mem_free[i],
            node_cpu_total[i],
            node_mem_total[i],
            node_model[i],
            node_kinds[i],
            math.nan,
            cpu,
            mem,
            count,
            milli,
            allowed,
            tp_cpu,
            tp_mem,
            tp_count,
            tp_milli,
            tp_allowed,
            tp_weight,
            max_cpu,
            max_gpu_milli,
            quantize,
            u[i],
        )
        if policy == _GPUPLACE and reserved[i] and count < big_gpus and s > NEG_INF:
            s -= RESERVE_PENALTY
        scores[i] = s
        gpus[i] = g
    return scores, gpus


def score_nodes(
    policy: Policy,
    s: Any,
    req: Request,
    ctx: Context,
    *,
    n: int | None = None,
    node_kinds: npt.NDArray[np.int32] | None = None,
    u: npt.NDArray[np.float64] | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int32]]:
    """Scores and share GPUs of every node row `[:n]` of `s` — a ClusterState or anything with its arrays
    (gpu_free_milli, gpu_present, node_cpu_free, node_mem_free, node_cpu_total, node_mem_total, node_model).
    `node_kinds[N, K]` counts pods per kind on each node (GpuClustering only; zeros if omitted)."""
    rows = s.gpu_free_milli.shape[0] if n is None else n
    G = s.gpu_free_milli.shape[1]
    kinds = np.zeros((rows, G + 1), np.int32) if node_kinds is None else node_kinds[:rows]
    draws = np.zeros(rows) if u is None else u[:rows]
    reserved = reserved_nodes(s, ctx, rows) if policy == Policy.GPUPLACE else np.zeros(rows, np.bool_)
    return score_all(  # type: ignore[no-any-return]
        int(policy),
        s.gpu_free_milli[:rows],
        s.gpu_present[:rows],
        s.node_cpu_free[:rows],
        s.node_mem_free[:rows],
        s.node_cpu_total[:rows],
        s.node_mem_total[:rows],
        s.node_model[:rows],
        kinds,
        req.cpu_milli,
        req.memory_mib,
        req.gpu_count,
        req.gpu_milli,
        req.allowed,
        *ctx.typical_args(),
        ctx.max_cpu,
        ctx.max_gpu_milli,
        ctx.quantize,
        reserved,
        ctx.big_gpus,
        draws,
    )


# ---- twins: the same rules in plain Python (tests hold them equal) ------------------------------------


def score_all_twin(
    policy: int,
    gpu_free_milli: Arr,
    gpu_present: Arr,
    node_cpu_free: Arr,
    node_mem_free: Arr,
    node_cpu_total: Arr,
    node_mem_total: Arr,
    node_model: Arr,
    node_kinds: Arr,
    cpu: int,
    mem: int,
    count: int,
    milli: int,
    allowed: Arr,
    tp_cpu: Arr,
    tp_mem: Arr,
    tp_count: Arr,
    tp_milli: Arr,
    tp_allowed: Arr,
    tp_weight: Arr,
    max_cpu: int,
    max_gpu_milli: int,
    quantize: bool,
    reserved: Arr,
    big_gpus: int,
    u: Arr,
) -> tuple[Arr, Arr]:
    """Same arguments and results as `score_all`."""
    tp = (tp_cpu, tp_mem, tp_count, tp_milli, tp_allowed, tp_weight)
    n = gpu_free_milli.shape[0]
    scores = np.empty(n, np.float64)
    gpus = np.empty(n, np.int32)
    for i in range(n):
        args = (
            gpu_free_milli[i],
            gpu_present[i],
            int(node_cpu_free[i]),
            int(node_mem_free[i]),
            int(node_cpu_total[i]),
            int(node_mem_total[i]),
            int(node_model[i]),
        )
        s, g = node_score_twin(
            policy,
            *args,
            node_kinds[i],
            cpu,
            mem,
            count,
            milli,
            allowed,
            tp,
            max_cpu,
            max_gpu_milli,
            quantize,
            float(u[i]),
        )
        if policy == Policy.GPUPLACE and reserved[i] and count < big_gpus and s > -math.inf:
            s -= RESERVE_PENALTY  # a held-back empty 8-GPU node: only whole-node jobs take it freely
        scores[i], gpus[i] = s, g
    return scores, gpus
