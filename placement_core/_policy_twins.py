"""Plain-Python twins of `placement_core.policies`: one readable function per policy, node by node.

These state the rules; the kernels in `policies` compute the same numbers (property tests in
tests/simulate hold them equal on random clusters). Arguments mirror the kernels': a node is its row of
`gpu_free_milli` (`free`) and `gpu_present` (`present`) plus its scalars; a request is cpu, mem, count,
milli (per GPU) and the allowed-model mask; `tp` is the typical-pod arrays tuple
(tp_cpu, tp_mem, tp_count, tp_milli, tp_allowed, tp_weight).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from placement_core.fragmentation import node_frag_twin
from placement_core.policies import RESERVE_PENALTY, W_CPU, W_FRAG, W_GPU, W_MEM, Policy
from placement_core.workload import BIG_JOB_GPUS

WHOLE = 1000
Arr = npt.NDArray[Any]


def _gpus(free: Arr, present: Arr) -> list[int]:
    """Indices of the node's GPUs."""
    return [g for g in range(len(free)) if present[g]]


def fits_twin(
    free: Arr,
    present: Arr,
    cpu_free: int,
    mem_free: int,
    model: int,
    cpu: int,
    mem: int,
    count: int,
    milli: int,
    allowed: Arr,
) -> bool:
    if cpu_free < cpu or mem_free < mem:
        return False
    if count == 0:
        return True
    if model < 0 or not allowed[model]:
        return False
    return sum(1 for g in _gpus(free, present) if free[g] >= milli) >= count


def _free_total(free: Arr, present: Arr) -> int:
    return sum(max(int(free[g]), 0) for g in _gpus(free, present))


def _tightest(free: Arr, present: Arr, milli: int) -> int:
    fitting = [g for g in _gpus(free, present) if free[g] >= milli]
    return min(fitting, key=lambda g: (free[g], g)) if fitting else -1


def _random_gpu(free: Arr, present: Arr, milli: int, u: float) -> int:
    fitting = [g for g in _gpus(free, present) if free[g] >= milli]
    return fitting[min(int(u * len(fitting)), len(fitting) - 1)] if fitting else -1


def _frag(free: Arr, present: Arr, cpu_free: int, mem_free: int, model: int, tp: tuple[Arr, ...]) -> float:
    return node_frag_twin(free, present, cpu_free, mem_free, model, *tp)


def _after_whole(free: Arr, present: Arr, count: int) -> Arr:
    """`free` after taking `count` fully free GPUs (lowest index first)."""
    out = free.copy()
    for g in [g for g in _gpus(free, present) if free[g] >= WHOLE][:count]:
        out[g] -= WHOLE
    return out


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


def _gpu_packing(free: Arr, present: Arr, count: int, milli: int) -> float:
    if count == 0:
        return 0.0
    gpus = _gpus(free, present)
    fully_free = sum(1 for g in gpus if free[g] == WHOLE)
    if fully_free == len(gpus):  # an empty node: the last resort
        return float(max(100 // 3 - fully_free, fully_free))
    used = [g for g in sorted(range(len(free)), key=lambda g: free[g]) if present[g] and free[g] >= milli][
        :count
    ]
    whole = sum(1 for g in used if free[g] == WHOLE)
    if whole:  # must open whole GPUs on a used node
        return float(max(100 // 2 - whole, 100 // 3))
    return float(max(100 - sum(int(free[g]) * 100 // WHOLE for g in used) // 10, 100 // 2))  # shared GPUs


def _gpu_clustering(
    free: Arr, present: Arr, kinds: Arr, count: int, milli: int, max_gpu_milli: int, quantize: bool
) -> float:
    if count == 0:
        return 0.0
    kind = 0 if milli < WHOLE else min(count, len(kinds) - 1)
    n_kinds = sum(1 for k in kinds if k > 0)
    used = max_gpu_milli - _free_total(free, present)
    fill = float((25 * used) // max_gpu_milli) if quantize else 25.0 * used / max_gpu_milli
    if kinds[kind] > 0:
        return fill + (75.0 if n_kinds == 1 else 50.0)
    return fill + (25.0 if n_kinds == 0 else 0.0)


def _allocated(
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
    most: bool,
    quantize: bool,
) -> float:
    cap_gpu = WHOLE * len(_gpus(free, present))
    pairs = [
        (cpu_total, cpu_total - cpu_free + cpu),
        (mem_total, mem_total - mem_free + mem),
        (cap_gpu, cap_gpu - _free_total(free, present) + count * milli),
    ]
    total = 0.0
    for cap, requested in pairs:
        if cap <= 0:
            continue
        req = min(requested, cap)
        if quantize:
            total += float((req * 100) // cap) if most else float(((cap - req) * 100) // cap)
        else:
            total += req * 100.0 / cap if most else (cap - req) * 100.0 / cap
    return float(math.floor(total / 3)) if quantize else total / 3


def node_score_twin(
    policy: int,
    free: Arr,
    present: Arr,
    cpu_free: int,
    mem_free: int,
    cpu_total: int,
    mem_total: int,
    model: int,
    kinds: Arr,
    cpu: int,
    mem: int,
    count: int,
    milli: int,
    allowed: Arr,
    tp: tuple[Arr, ...],
    max_cpu: int,
    max_gpu_milli: int,
    quantize: bool,
    u: float,
) -> tuple[float, int]:
    """(score, share GPU) as `policies.node_score` (without gpuplace's cluster-wide reserve)."""
    if not fits_twin(free, present, cpu_free, mem_free, model, cpu, mem, count, milli, allowed):
        return -math.inf, -1
    share = count == 1 and milli < WHOLE
    p = Policy(policy)
    if p == Policy.FGD:
        return _fgd(free, present, cpu_free, mem_free, model, cpu, mem, count, milli, tp, quantize)
    if p == Policy.GPUPLACE:
        return _gpuplace(
            free, present, cpu_free, mem_free, cpu_total, mem_total, model, cpu, mem, count, milli, tp
        )
    if p == Policy.RANDOM:
        return u, _random_gpu(free, present, milli, (u * 1048576.0) % 1.0) if share else -1
    gpu = _tightest(free, present, milli) if share else -1
    gpu_free = _free_total(free, present)
    if p == Policy.BEST_FIT:
        left = 0.5 * (cpu_free - cpu) / max_cpu + 0.5 * (gpu_free - count * milli) / max_gpu_milli
        s = 100.0 * (1.0 - left)
    elif p == Policy.DOT_PROD:
        dot = (cpu_free / max_cpu) * (cpu / max_cpu) + (gpu_free / max_gpu_milli) * (
            count * milli / max_gpu_milli
        )
        s = 100.0 * (1.0 - dot / 2.0)
    elif p == Policy.GPU_PACKING:
        s = _gpu_packing(free, present, count, milli)
    elif p == Policy.GPU_CLUSTERING:
        s = _gpu_clustering(free, present, kinds, count, milli, max_gpu_milli, quantize)
    else:
        s = _allocated(
            free,
            present,
            cpu_free,
            mem_free,
            cpu_total,
            mem_total,
            cpu,
            mem,
            count,
            milli,
            p == Policy.MOST_ALLOCATED,
            quantize,
        )
    return (float(math.trunc(s)) if quantize else s), gpu


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
    """Same arguments and results as `policy_batch.score_all`."""
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


def group_states_twin(
    gpu_free_milli: Arr,
    gpu_present: Arr,
    node_cpu_free: Arr,
    node_mem_free: Arr,
    node_cpu_total: Arr,
    node_mem_total: Arr,
    node_model: Arr,
) -> tuple[Arr, Arr]:
    """Same as `policy_batch.group_states`: rows whose FGD/gpuplace score cannot differ share a group.

    A node's state is the sorted free milli of its GPUs (their order does not matter, unless a GPU has more
    than 1000 free: then `take_whole`'s choice does, and the state keeps slot order), its free and total
    CPU and memory, and its model. Groups are numbered by first row; `first[k]` is group k's first row.
    """
    seen: dict[tuple[Any, ...], int] = {}
    group = []
    for i in range(gpu_free_milli.shape[0]):
        gpus = _gpus(gpu_free_milli[i], gpu_present[i])
        values = [int(gpu_free_milli[i, g]) for g in gpus]
        if any(v > WHOLE for v in values):
            state: tuple[Any, ...] = (
                "slots",
                tuple(int(v) if p else None for v, p in zip(gpu_free_milli[i], gpu_present[i], strict=True)),
            )
        else:
            state = ("sorted", tuple(sorted(values)))
        key = (
            state,
            int(node_cpu_free[i]),
            int(node_mem_free[i]),
            int(node_cpu_total[i]),
            int(node_mem_total[i]),
            int(node_model[i]),
        )
        group.append(seen.setdefault(key, len(seen)))
    first = [group.index(k) for k in range(len(seen))]
    return np.array(group, np.int32), np.array(first, np.int64)
