"""All nodes at once: `score_all` over node arrays, and the Python entry points around it.

`placement_core.policies` defines each policy for ONE node (`node_score` and its building blocks, also
called from the simulator's replay loop). This module applies them to every node of a cluster in one
kernel call, memoised per distinct node state for FGD and gpuplace, and holds the Python-side inputs:
the compiled request (`Request`), the typical-pod context (`Context`) and gpuplace's reserve plan for
whole-node jobs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from placement_core.fragmentation import node_frag
from placement_core.policies import (
    _FGD,
    _GPUPLACE,
    NEG_INF,
    RESERVE_PENALTY,
    W_FRAG,
    WHOLE,
    Policy,
    fits,
    node_score,
    share_scores,
)
from placement_core.workload import BIG_JOB_GPUS, BigJob, TypicalPods

# ---- memoised scoring for the fragmentation-aware policies ------------------------------------------------
# FGD's and gpuplace's score of a node depends only on its state: the multiset of its GPUs' free milli (GPU
# order does not matter: every term sums over GPUs, and `take_whole` empties GPUs with exactly 1000 free),
# its free and total CPU and memory, and its model. Real clusters hold thousands of nodes in a few hundred
# states, so `score_all` scores each distinct state once. Only the share GPU depends on the order: it is
# the lowest-index GPU whose free milli is among the values with the best ΔF (`_share_ties`).

_NO_GPU = np.iinfo(np.int64).max  # key filler for absent GPU slots (sorts after every value)


@njit(cache=True, nogil=True, inline="always")
def _cx(a, b):
    return min(a, b), max(a, b)


@njit(cache=True, nogil=True)
def state_key(free, present, cpu_free, mem_free, cpu_total, mem_total, model, key):
    """Write a node's state into `key` (int64[G + 6]) and return a hash of it.

    key = [order, GPU free milli (G), cpu_free, mem_free, cpu_total, mem_total, model]. order 0: the GPUs'
    values ascending, absent slots as `_NO_GPU` (last); order 1 (a GPU has > 1000 free, so which GPUs
    `take_whole` empties matters): the values slot by slot.
    """
    G = free.shape[0]
    over = False
    for g in range(G):
        v = np.int64(free[g]) if present[g] else _NO_GPU
        if present[g] and v > WHOLE:
            over = True
        key[g + 1] = v
    if not over and G == 8:  # an optimal 19-comparator sorting network, branch-free
        a0, a1, a2, a3 = key[1], key[2], key[3], key[4]
        a4, a5, a6, a7 = key[5], key[6], key[7], key[8]
        a0, a2 = _cx(a0, a2)
        a1, a3 = _cx(a1, a3)
        a4, a6 = _cx(a4, a6)
        a5, a7 = _cx(a5, a7)
        a0, a4 = _cx(a0, a4)
        a1, a5 = _cx(a1, a5)
        a2, a6 = _cx(a2, a6)
        a3, a7 = _cx(a3, a7)
        a0, a1 = _cx(a0, a1)
        a2, a3 = _cx(a2, a3)
        a4, a5 = _cx(a4, a5)
        a6, a7 = _cx(a6, a7)
        a2, a4 = _cx(a2, a4)
        a3, a5 = _cx(a3, a5)
        a1, a4 = _cx(a1, a4)
        a3, a6 = _cx(a3, a6)
        a1, a2 = _cx(a1, a2)
        a3, a4 = _cx(a3, a4)
        a5, a6 = _cx(a5, a6)
        key[1], key[2], key[3], key[4] = a0, a1, a2, a3
        key[5], key[6], key[7], key[8] = a4, a5, a6, a7
    elif not over:  # insertion sort
        for g in range(1, G):
            v = key[g + 1]
            j = g
            while j > 0 and key[j] > v:
                key[j + 1] = key[j]
                j -= 1
            key[j + 1] = v
    key[0] = 1 if over else 0
    key[G + 1] = cpu_free
    key[G + 2] = mem_free
    key[G + 3] = cpu_total
    key[G + 4] = mem_total
    key[G + 5] = model
    h = np.uint64(0)
    for c in range(G + 6):
        h = (h + np.uint64(key[c])) * np.uint64(0x9E3779B97F4A7C15)
    h ^= h >> np.uint64(32)
    return np.int64(h)


@njit(cache=True, nogil=True)
def group_states(
    gpu_free_milli, gpu_present, node_cpu_free, node_mem_free, node_cpu_total, node_mem_total, node_model
):
    """(group int32[N], first int64[K]): rows with equal `state_key` share a group; groups are numbered in
    order of their first row, `first[k]` is that row."""
    n, G = gpu_free_milli.shape
    L = G + 6
    size = 1
    while size < 2 * n:
        size *= 2
    mask = size - 1
    table = np.full(size, -1, np.int64)  # open addressing, linear probing: slot → group
    group = np.empty(n, np.int32)
    first = np.empty(n, np.int64)
    keys = np.empty((min(n, 64), L), np.int64)  # one key per group, grown on demand
    cur = np.empty(L, np.int64)
    k = 0
    for i in range(n):
        h = state_key(
            gpu_free_milli[i],
            gpu_present[i],
            node_cpu_free[i],
            node_mem_free[i],
            node_cpu_total[i],
            node_mem_total[i],
            node_model[i],
            cur,
        )
        j = h & mask
        while True:
            gid = table[j]
            if gid < 0:
                if k == keys.shape[0]:
                    grown = np.empty((2 * k, L), np.int64)
                    grown[:k] = keys
                    keys = grown
                keys[k] = cur
                table[j] = k
                first[k] = i
                group[i] = k
                k += 1
                break
            same = True
            for c in range(L):
                if keys[gid, c] != cur[c]:
                    same = False
                    break
            if same:
                group[i] = gid
                break
            j = (j + 1) & mask
    return group, first[:k].copy()


@njit(cache=True, nogil=True)
def _share_ties(
    free,
    present,
    cpu_free,
    mem_free,
    model,
    frag_before,
    cpu,
    mem,
    milli,
    tp_cpu,
    tp_mem,
    tp_count,
    tp_milli,
    tp_allowed,
    tp_weight,
    scale,
    fgd_quantize,
    ties,
):
    """Write into `ties` the free-milli values whose GPU gets `_best_share`'s best score; return how many.

    `_best_share` keeps the first GPU (in index order) with the best score, so on any node with this state
    its GPU is the lowest-index one whose free milli is among `ties`.
    """
    G = free.shape[0]
    gpus = np.empty(G, np.int64)
    vs = np.empty(G, np.float64)
    m = share_scores(
        free,
        present,
        cpu_free,
        mem_free,
        model,
        frag_before,
        cpu,
        mem,
        milli,
        tp_cpu,
        tp_mem,
        tp_count,
        tp_milli,
        tp_allowed,
        tp_weight,
        scale,
        fgd_quantize,
        gpus,
        vs,
    )
    best = NEG_INF
    for j in range(m):
        if vs[j] > best:  # noqa: PLR1730 - as `_best_share` compares (a NaN never wins)
            best = vs[j]
    n_ties = 0
    if best > NEG_INF:
        for j in range(m):
            if vs[j] == best:
                ties[n_ties] = free[gpus[j]]
                n_ties += 1
    return n_ties


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


# ---- Python entry point ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """One pod: `gpu_milli` per GPU (1000 = whole GPUs; < 1000 = a share, count 1); `allowed` bool[M]."""

    cpu_milli: int
    memory_mib: int
    gpu_count: int
    gpu_milli: int
    allowed: npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Context:
    """Scoring inputs besides the node arrays: the typical pods compiled against the model ids, the largest
    node's CPU and GPU milli (BestFit/DotProd normalisation), the integer-score switch, and the big jobs
    gpuplace keeps empty nodes for."""

    tp_cpu: npt.NDArray[np.int64]
    tp_mem: npt.NDArray[np.int64]
    tp_count: npt.NDArray[np.int32]
    tp_milli: npt.NDArray[np.int32]
    tp_allowed: npt.NDArray[np.bool_]
    tp_weight: npt.NDArray[np.float64]
    max_cpu: int
    max_gpu_milli: int
    quantize: bool = False
    big_jobs: tuple[BigJob, ...] = ()
    big_gpus: int = BIG_JOB_GPUS

    @classmethod
    def build(
        cls,
        typical: TypicalPods,
        model_names: list[str] | tuple[str, ...],
        gpu_present: npt.NDArray[np.bool_],
        node_cpu_total: npt.NDArray[np.int64],
        *,
        quantize: bool = False,
    ) -> Context:
        """A context for a cluster, with BestFit/DotProd normalisers taken from its largest node."""
        return cls(
            *typical.arrays(model_names),
            max_cpu=max(1, int(node_cpu_total.max(initial=0))),
            max_gpu_milli=max(WHOLE, int(gpu_present.sum(axis=1).max(initial=0)) * WHOLE),
            quantize=quantize,
            big_jobs=typical.big_jobs,
        )

    def typical_args(
        self,
    ) -> tuple[
        npt.NDArray[np.int64],
        npt.NDArray[np.int64],
        npt.NDArray[np.int32],
        npt.NDArray[np.int32],
        npt.NDArray[np.bool_],
        npt.NDArray[np.float64],
    ]:
        return self.tp_cpu, self.tp_mem, self.tp_count, self.tp_milli, self.tp_allowed, self.tp_weight


def reserve_plan(
    big_jobs: tuple[BigJob, ...],
    gpu_present: npt.NDArray[np.bool_],
    node_cpu_total: npt.NDArray[np.int64],
    node_mem_total: npt.NDArray[np.int64],
    node_model: npt.NDArray[np.int32],
    big_gpus: int = BIG_JOB_GPUS,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """(node_class[N], class_reserve[C]): how many empty nodes gpuplace keeps per class of big nodes.

    Nodes with ≥ `big_gpus` GPUs are grouped by (model, GPUs, CPU, memory); other rows get class −1. Each big
    job shape needs share × (number of big nodes) whole nodes — its part of the GPU demand, in nodes; that
    need is spread over the classes able to host it (enough GPUs, CPU and memory), in proportion to their
    size. So a 120-core job's need lands on the 128-core nodes only, and the reserve tracks the workload.
    """
    gpus = gpu_present.sum(axis=1)
    keys: dict[tuple[int, int, int, int], int] = {}
    node_class = np.full(len(gpus), -1, np.int32)
    for n in np.nonzero(gpus >= big_gpus)[0]:
        key = (int(node_model[n]), int(gpus[n]), int(node_cpu_total[n]), int(node_mem_total[n]))
        node_class[n] = keys.setdefault(key, len(keys))
    sizes = np.bincount(node_class[node_class >= 0], minlength=len(keys))
    need = np.zeros(len(keys))
    for job in big_jobs:
        hosts = [
            k
            for (_, g, cpu, mem), k in keys.items()
            if g >= job.gpu_count and cpu >= job.cpu_milli and mem >= job.memory_mib
        ]
        room = sum(int(sizes[k]) for k in hosts)
        for k in hosts:
            need[k] += job.share * int(sizes.sum()) * sizes[k] / room
    return node_class, np.round(need).astype(np.int64)


def reserved_nodes(s: Any, ctx: Context, n: int | None = None) -> npt.NDArray[np.bool_]:
    """bool[N]: the empty big nodes gpuplace currently holds back (their class has ≤ its reserve empty)."""
    rows = s.gpu_free_milli.shape[0] if n is None else n
    node_class, reserve = reserve_plan(
        ctx.big_jobs,
        s.gpu_present[:rows],
        s.node_cpu_total[:rows],
        s.node_mem_total[:rows],
        s.node_model[:rows],
        ctx.big_gpus,
    )
    present = s.gpu_present[:rows]
    untouched = np.asarray(s.node_cpu_free[:rows] == s.node_cpu_total[:rows], np.bool_)
    all_free = np.all(~present | (s.gpu_free_milli[:rows] >= WHOLE), axis=1)
    empty: npt.NDArray[np.bool_] = untouched & all_free & (node_class >= 0)
    if not empty.any():
        return empty
    per_class = np.bincount(node_class[empty], minlength=len(reserve))
    k = np.maximum(node_class, 0)
    held: npt.NDArray[np.bool_] = empty & (per_class[k] <= reserve[k])
    return held


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
