"""FGD (USENIX ATC'23): score a placement by ΔF, the node fragmentation (placement_core.fragmentation) it
removes. `frag_gain` is the ΔF score both fragmentation-aware policies start from — FGD's 100·sigmoid, or
gpuplace's exact scale·ΔF — and picks a share's GPU; `fgd_node` is FGD's node score. Kernels first, their
twins below."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numba import njit

from placement_core.fragmentation import node_frag, node_frag_twin
from placement_core.policies.definitions import NEG_INF
from placement_core.policies.node_ops import Arr, _after_whole, _gpus, take_whole
from placement_core.request import WHOLE


@njit(cache=True, nogil=True)
def fgd_value(delta):
    """FGD's node score for a fragmentation change ΔF (milli-GPU): 100·sigmoid(ΔF/1000)."""
    return 100.0 / (1.0 + math.exp(-delta / 1000.0))


@njit(cache=True, nogil=True)
def _gain(delta, scale, fgd_quantize):
    """scale > 0: scale·ΔF/1000 (gpuplace); scale == 0: FGD's 100·sigmoid, floored if fgd_quantize."""
    if scale > 0:
        return scale * delta / WHOLE
    s = fgd_value(delta)
    if fgd_quantize:
        s = float(math.floor(s))
    return s


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
    Fills gpus_out[:m] / scores_out[:m] and returns m. Scores as `_gain`.
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
        gpus_out[m] = g
        scores_out[m] = _gain(frag_before - after, scale, fgd_quantize)
        m += 1
    return m


@njit(cache=True, nogil=True)
def frag_gain(
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
    scale,
    fgd_quantize,
):
    """(ΔF score as `_gain`, share GPU) of placing the request on one feasible node; `frag_before` =
    node_frag of the node now. A share takes the GPU with the largest score (lowest index on ties);
    whole GPUs are taken as `take_whole` does (share GPU −1)."""
    if count == 1 and milli < WHOLE:
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
    return _gain(frag_before - after, scale, fgd_quantize), -1


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
    """(score, share GPU) for FGD on one feasible node: `frag_gain` with FGD's sigmoid."""
    return frag_gain(
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
        0.0,
        quantize,
    )


# ---- twins: the same rules in plain Python (tests hold them equal) ------------------------------------


def _frag(free: Arr, present: Arr, cpu_free: int, mem_free: int, model: int, tp: tuple[Arr, ...]) -> float:
    return node_frag_twin(free, present, cpu_free, mem_free, model, *tp)


def _frag_gain(
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
    gain: Callable[[float], float],
) -> tuple[float, int]:
    """gain(ΔF) of the placement; a share tries every GPU that fits and keeps the best (lowest index on ties)."""
    before = _frag(free, present, cpu_free, mem_free, model, tp)

    def value(after_free: Arr) -> float:
        return gain(before - _frag(after_free, present, cpu_free - cpu, mem_free - mem, model, tp))

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
    """100·sigmoid(ΔF/1000), floored if `quantize`."""

    def sigmoid(delta: float) -> float:
        v = 100.0 / (1.0 + math.exp(-delta / 1000.0))
        return float(math.floor(v)) if quantize else v

    return _frag_gain(free, present, cpu_free, mem_free, model, cpu, mem, count, milli, tp, sigmoid)
