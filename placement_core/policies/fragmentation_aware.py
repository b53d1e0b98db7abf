"""The fragmentation-aware policies: FGD (USENIX ATC'23) and gpuplace's own, both scored by ΔF — the node
fragmentation (placement_core.fragmentation) a placement removes. Kernels first, their twins below."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from placement_core.fragmentation import node_frag, node_frag_twin
from placement_core.policies.definitions import NEG_INF
from placement_core.policies.node_ops import (
    Arr,
    _after_whole,
    _free_total,
    _gpus,
    gpu_capacity,
    gpu_free_total,
    take_whole,
)
from placement_core.request import WHOLE
from placement_core.workload import BIG_JOB_GPUS

W_FRAG = 4.0  # gpuplace: score per GPU (1000 milli) of fragmentation removed
W_CPU, W_MEM, W_GPU = 1.0, 2.0, 2.0  # gpuplace: weight of each resource fraction left free on the node


@njit(cache=True, nogil=True)
def fgd_value(delta):
    """FGD's node score for a fragmentation change ΔF (milli-GPU): 100·sigmoid(ΔF/1000)."""
    return 100.0 / (1.0 + math.exp(-delta / 1000.0))


@njit(cache=True, nogil=True)
def share_scores(
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
    gpus_out,
    scores_out,
):
    """ΔF-based score of putting the share on each GPU that fits, in index order, one GPU per distinct
    free-milli value (GPUs with equal free milli give equal results; the lowest index stands for them).
    Fills gpus_out[:m] / scores_out[:m] and returns m.

    scale > 0: score = scale·ΔF/1000 (gpuplace); scale == 0: FGD's 100·sigmoid, floored if fgd_quantize.
    """
    m = 0
    work = free.copy()
    for g in range(free.shape[0]):
        if not present[g] or free[g] < milli:
            continue
        seen = False
        for h in range(g):
            if present[h] and free[h] == free[g]:
                seen = True
                break
        if seen:
            continue
        work[g] -= milli
        after = node_frag(
            work,
            present,
            cpu_free - cpu,
            mem_free - mem,
            model,
            tp_cpu,
            tp_mem,
            tp_count,
            tp_milli,
            tp_allowed,
            tp_weight,
        )
        work[g] += milli
        if scale > 0:
            s = scale * (frag_before - after) / WHOLE
        else:
            s = fgd_value(frag_before - after)
            if fgd_quantize:
                s = float(math.floor(s))
        gpus_out[m] = g
        scores_out[m] = s
        m += 1
    return m


@njit(cache=True, nogil=True)
def _best_share(
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
):
    """The share GPU with the largest `share_scores` score (lowest index on ties) and that score."""
    G = free.shape[0]
    gpus = np.empty(G, np.int64)
    scores = np.empty(G, np.float64)
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
        scores,
    )
    best = NEG_INF
    best_g = -1
    for j in range(m):
        if scores[j] > best:
            best = scores[j]
            best_g = gpus[j]
    return best, best_g


@njit(cache=True, nogil=True)
def fgd_node(
    free,
    present,
    cpu_free,
    mem_free,
    model,
    frag_before,
    cpu,
    mem,
    count,
    milli,
    tp_cpu,
    tp_mem,
    tp_count,
    tp_milli,
    tp_allowed,
    tp_weight,
    quantize,
):
    """(score, share GPU) for FGD on one feasible node; `frag_before` = node_frag of the node now."""
    if count == 1 and milli < WHOLE:
        return _best_share(
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
            0.0,
            quantize,
        )
    work = take_whole(free, present, count)
    after = node_frag(
        work,
        present,
        cpu_free - cpu,
        mem_free - mem,
        model,
        tp_cpu,
        tp_mem,
        tp_count,
        tp_milli,
        tp_allowed,
        tp_weight,
    )
    s = fgd_value(frag_before - after)
    if quantize:
        s = float(math.floor(s))
    return s, -1


@njit(cache=True, nogil=True)
def spread_value(free, present, cpu_free, mem_free, cpu_total, mem_total, cpu, mem, count, milli):
    """gpuplace's spreading term: weighted fractions of CPU, memory and GPU the node keeps free after placing."""
    v = 0.0
    if cpu_total > 0:
        v += W_CPU * (cpu_free - cpu) / cpu_total
    if mem_total > 0:
        v += W_MEM * (mem_free - mem) / mem_total
    cap = gpu_capacity(present)
    if cap > 0:
        v += W_GPU * (gpu_free_total(free, present) - count * milli) / cap
    return v


@njit(cache=True, nogil=True)
def gpuplace_node(
    free,
    present,
    cpu_free,
    mem_free,
    cpu_total,
    mem_total,
    model,
    frag_before,
    cpu,
    mem,
    count,
    milli,
    tp_cpu,
    tp_mem,
    tp_count,
    tp_milli,
    tp_allowed,
    tp_weight,
):
    """(score, share GPU) for gpuplace's default policy on one feasible node.

    score = W_FRAG·ΔF/1000 + spread. ΔF is FGD's fragmentation removed by the placement, measured against a
    typical-pod distribution that includes memory; it is kept exact (FGD's 0–100 integer hides differences
    below ~40 milli-GPU and lets a random node order decide). The spread term — CPU, memory and GPU fractions
    the node keeps free after placing — stands in for that randomness deterministically: among placements
    that fragment alike it prefers the node with the most headroom left, so CPU and memory do not run out
    next to free GPUs, and a pod that would take a large part of a small node goes to a bigger one.
    A whole-node job (≥ BIG_JOB_GPUS GPUs) takes the reverse — the node it fills best — so the big nodes
    (e.g. 128 cores) stay for the jobs that only fit there.
    """
    spread = spread_value(free, present, cpu_free, mem_free, cpu_total, mem_total, cpu, mem, count, milli)
    if count >= BIG_JOB_GPUS:
        spread = -spread
    if count == 1 and milli < WHOLE:
        s, g = _best_share(
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
            W_FRAG,
            False,
        )
        return s + spread, g
    work = take_whole(free, present, count)
    after = node_frag(
        work,
        present,
        cpu_free - cpu,
        mem_free - mem,
        model,
        tp_cpu,
        tp_mem,
        tp_count,
        tp_milli,
        tp_allowed,
        tp_weight,
    )
    return W_FRAG * (frag_before - after) / WHOLE + spread, -1


# ---- twins: the same rules in plain Python (tests hold them equal) ------------------------------------


def _frag(free: Arr, present: Arr, cpu_free: int, mem_free: int, model: int, tp: tuple[Arr, ...]) -> float:
    return node_frag_twin(free, present, cpu_free, mem_free, model, *tp)


def _fgd(
    free: Arr,
    present: Arr,
    cpu_free: int,
    mem_free: int,
    model: int,
    cpu: int,
    mem: int,
    count: int,
    milli: int,
    tp: tuple[Arr, ...],
    quantize: bool,
) -> tuple[float, int]:
    """100·sigmoid(ΔF/1000); a share tries every GPU that fits and keeps the best (lowest index on ties)."""
    before = _frag(free, present, cpu_free, mem_free, model, tp)

    def value(after_free: Arr) -> float:
        after = _frag(after_free, present, cpu_free - cpu, mem_free - mem, model, tp)
        v = 100.0 / (1.0 + math.exp(-(before - after) / 1000.0))
        return float(math.floor(v)) if quantize else v

    if count == 1 and milli < WHOLE:
        best, best_g = -math.inf, -1
        for g in _gpus(free, present):
            if free[g] >= milli:
                trial = free.copy()
                trial[g] -= milli
                v = value(trial)
                if v > best:
                    best, best_g = v, g
        return best, best_g
    return value(_after_whole(free, present, count)), -1


def _spread(
    free: Arr,
    present: Arr,
    cpu_free: int,
    mem_free: int,
    cpu_total: int,
    mem_total: int,
    cpu: int,
    mem: int,
    count: int,
    milli: int,
) -> float:
    """Fractions of CPU, memory and GPU the node keeps free after placing, weighted."""
    v = 0.0
    if cpu_total > 0:
        v += W_CPU * (cpu_free - cpu) / cpu_total
    if mem_total > 0:
        v += W_MEM * (mem_free - mem) / mem_total
    cap = WHOLE * len(_gpus(free, present))
    if cap > 0:
        v += W_GPU * (_free_total(free, present) - count * milli) / cap
    return v


def _gpuplace(
    free: Arr,
    present: Arr,
    cpu_free: int,
    mem_free: int,
    cpu_total: int,
    mem_total: int,
    model: int,
    cpu: int,
    mem: int,
    count: int,
    milli: int,
    tp: tuple[Arr, ...],
) -> tuple[float, int]:
    """W_FRAG·ΔF/1000 (memory-aware ΔF) + spread; shares take the GPU with the largest ΔF.

    Whole-node jobs (≥ BIG_JOB_GPUS GPUs) subtract the spread instead: the node they fill best.
    """
    before = _frag(free, present, cpu_free, mem_free, model, tp)
    spread = _spread(free, present, cpu_free, mem_free, cpu_total, mem_total, cpu, mem, count, milli)
    if count >= BIG_JOB_GPUS:
        spread = -spread

    def value(after_free: Arr) -> float:
        return (
            W_FRAG * (before - _frag(after_free, present, cpu_free - cpu, mem_free - mem, model, tp)) / WHOLE
        )

    if count == 1 and milli < WHOLE:
        best, best_g = -math.inf, -1
        for g in _gpus(free, present):
            if free[g] >= milli:
                trial = free.copy()
                trial[g] -= milli
                v = value(trial)
                if v > best:
                    best, best_g = v, g
        return best + spread, best_g
    return value(_after_whole(free, present, count)) + spread, -1
