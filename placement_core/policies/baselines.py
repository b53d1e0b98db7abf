"""The published baselines (FGD paper §6.1) and Kubernetes' NodeResourcesFit pair, one node at a time:
GpuPacking, GpuClustering, BestFit, DotProd, MostAllocated / LeastAllocated. Kernels first, twins below."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from placement_core.policies.node_ops import Arr, _free_total, _gpus, gpu_capacity, gpu_free_total
from placement_core.request import WHOLE


@njit(cache=True, nogil=True)
def gpu_packing_value(free, present, count, milli):
    """GpuPacking's integer score (FGD reference `getPackingScore`); 0 for CPU-only pods."""
    if count == 0:
        return 0.0
    G = free.shape[0]
    n_gpus = 0
    fully_free = 0
    for g in range(G):
        if present[g]:
            n_gpus += 1
            if free[g] == WHOLE:
                fully_free += 1
    if fully_free == n_gpus:
        return float(max(100 // 3 - fully_free, fully_free))
    order = np.argsort(free, kind="mergesort")  # ascending free, index order on ties
    need = count
    whole_used = 0
    share_pct = 0
    for k in range(G):
        g = order[k]
        if need == 0:
            break
        if present[g] and free[g] >= milli:
            need -= 1
            share_pct += free[g] * 100 // WHOLE
            if free[g] == WHOLE:
                whole_used += 1
    if whole_used > 0:
        return float(max(100 // 2 - whole_used, 100 // 3))
    return float(max(100 - share_pct // 10, 100 // 2))


@njit(cache=True, nogil=True)
def gpu_clustering_value(free, present, kinds, count, milli, max_gpu_milli, quantize):
    """GpuClustering's score: a band by the kinds of pods already on the node, fuller is better within it."""
    if count == 0:
        return 0.0
    kind = 0 if milli < WHOLE else min(count, kinds.shape[0] - 1)
    n_kinds = 0
    for k in range(kinds.shape[0]):
        if kinds[k] > 0:
            n_kinds += 1
    used = max_gpu_milli - gpu_free_total(free, present)
    fill = float((25 * used) // max_gpu_milli) if quantize else 25.0 * used / max_gpu_milli
    if kinds[kind] > 0:
        return fill + (75.0 if n_kinds == 1 else 50.0)
    return fill + (25.0 if n_kinds == 0 else 0.0)


@njit(cache=True, nogil=True)
def _allocated_part(cap, req, most, quantize):
    if cap <= 0:
        return 0.0
    req = min(req, cap)
    if quantize:
        return float((req * 100) // cap) if most else float(((cap - req) * 100) // cap)
    return req * 100.0 / cap if most else (cap - req) * 100.0 / cap


@njit(cache=True, nogil=True)
def allocated_value(
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
    most,
    quantize,
):
    """Kubernetes MostAllocated (most=True) / LeastAllocated over cpu, memory and GPU milli, weight 1 each."""
    cap = gpu_capacity(present)
    gpu_req = cap - gpu_free_total(free, present) + count * milli
    total = (
        _allocated_part(cpu_total, cpu_total - cpu_free + cpu, most, quantize)
        + _allocated_part(mem_total, mem_total - mem_free + mem, most, quantize)
        + _allocated_part(cap, gpu_req, most, quantize)
    )
    return float(math.floor(total / 3)) if quantize else total / 3


@njit(cache=True, nogil=True)
def best_fit_value(free, present, cpu_free, cpu, count, milli, max_cpu, max_gpu_milli):
    left = (
        0.5 * (cpu_free - cpu) / max_cpu
        + 0.5 * (gpu_free_total(free, present) - count * milli) / max_gpu_milli
    )
    return 100.0 * (1.0 - left)


@njit(cache=True, nogil=True)
def dot_prod_value(free, present, cpu_free, cpu, count, milli, max_cpu, max_gpu_milli):
    node_gpu = gpu_free_total(free, present) / max_gpu_milli
    dot = (cpu_free / max_cpu) * (cpu / max_cpu) + node_gpu * (count * milli / max_gpu_milli)
    return 100.0 * (1.0 - dot / 2.0)


# ---- twins: the same rules in plain Python (tests hold them equal) ------------------------------------


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


def _best_fit(
    free: Arr, present: Arr, cpu_free: int, cpu: int, count: int, milli: int, max_cpu: int, max_gpu_milli: int
) -> float:
    left = (
        0.5 * (cpu_free - cpu) / max_cpu + 0.5 * (_free_total(free, present) - count * milli) / max_gpu_milli
    )
    return 100.0 * (1.0 - left)


def _dot_prod(
    free: Arr, present: Arr, cpu_free: int, cpu: int, count: int, milli: int, max_cpu: int, max_gpu_milli: int
) -> float:
    dot = (cpu_free / max_cpu) * (cpu / max_cpu) + (_free_total(free, present) / max_gpu_milli) * (
        count * milli / max_gpu_milli
    )
    return 100.0 * (1.0 - dot / 2.0)
