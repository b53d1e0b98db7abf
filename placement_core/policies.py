"""Node-scoring policies over all nodes: FGD, the published baselines, Kubernetes' two, and gpuplace's.

Every policy answers, for one request and one node: a score (higher is better, −inf = infeasible) and,
for a fractional share, which GPU on that node it would take (−1 otherwise; whole-GPU sets are chosen by
the GPU-set chooser). Scores are in kube-scheduler units (0–100) for the published policies, so that
`quantize=True` reproduces the integer scores their reference implementation compares (FGD's simulator,
alibaba/kubernetes-scheduler-simulator, breaks equal integer scores by node order). Definitions, from
the FGD paper (USENIX ATC'23, §6.1) and that simulator's plugins:

- RANDOM: uniform over feasible nodes (the caller supplies one uniform draw `u` per node); a random
  fitting GPU for shares.
- BEST_FIT: 100·(1 − ½·(cpu_free − cpu)/max_cpu − ½·(gpu_free − gpu)/max_gpu), after placement.
- DOT_PROD (Tetris): 100·(1 − ½·(node_free · request)) on [cpu, gpu] vectors normalised by the
  largest node — aligns requests with what is free, fills nodes.
- GPU_PACKING: prefer shared GPUs (100 − free% of the GPUs used/10, ≥ 50), then partly-used nodes
  (50 − whole GPUs taken, ≥ 33), then empty nodes (33 − free GPUs).
- GPU_CLUSTERING: prefer nodes that only host pods of the same kind (share / k-GPU): 75–100, nodes with
  that kind among others 50–75, empty nodes 25–50, other nodes 0–25; within a band, fuller is better.
- FGD: 100·sigmoid(ΔF/1000), ΔF = node fragmentation before − after placing the pod
  (`placement_core.fragmentation`); shares go to the GPU with the largest ΔF.
- MOST_ALLOCATED / LEAST_ALLOCATED: Kubernetes NodeResourcesFit strategies over cpu, memory and GPU
  milli (weight 1 each): mean of requested-after/allocatable (or its complement) × 100.
- GPUPLACE (default): see `gpuplace_node`.
Shares under every policy except FGD, RANDOM and GPUPLACE take the tightest GPU that fits (the reference
simulator's "best" GPU selection). The readable definitions are in `placement_core._policy_twins`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from placement_core.fragmentation import node_frag

WHOLE = 1000
NEG_INF = -np.inf


class Policy(enum.IntEnum):
    RANDOM = 0
    BEST_FIT = 1
    DOT_PROD = 2
    GPU_PACKING = 3
    GPU_CLUSTERING = 4
    FGD = 5
    MOST_ALLOCATED = 6
    LEAST_ALLOCATED = 7
    GPUPLACE = 8

    @property
    def label(self) -> str:
        return _LABELS[self]

    @classmethod
    def parse(cls, name: str) -> Policy:
        key = name.strip().lower().replace("-", "").replace("_", "")
        for p in cls:
            if key in (p.label.lower(), p.name.lower().replace("_", "")):
                return p
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(p.label for p in cls)}")


_LABELS = {
    Policy.RANDOM: "Random", Policy.BEST_FIT: "BestFit", Policy.DOT_PROD: "DotProd",
    Policy.GPU_PACKING: "GpuPacking", Policy.GPU_CLUSTERING: "GpuClustering", Policy.FGD: "FGD",
    Policy.MOST_ALLOCATED: "MostAllocated", Policy.LEAST_ALLOCATED: "LeastAllocated",
    Policy.GPUPLACE: "gpuplace",
}


def kind_of(count: int, milli: int) -> int:
    """GpuClustering's pod kind, a column of `node_kinds`: 0 = share, k = k whole GPUs, −1 = no GPU."""
    if count <= 0:
        return -1
    return 0 if milli < WHOLE else count


# ---- per-node building blocks (usable from other kernels, e.g. the simulator's replay loop) -------------

@njit(cache=True, nogil=True)
def fits(free, present, cpu_free, mem_free, model, cpu, mem, count, milli, allowed):  # type: ignore[no-untyped-def]
    """Can the node take the request now (CPU, memory, GPU model, and GPUs with enough free milli)?"""
    if cpu_free < cpu or mem_free < mem:
        return False
    if count == 0:
        return True
    if model < 0 or not allowed[model]:
        return False
    n = 0
    for g in range(free.shape[0]):
        if present[g] and free[g] >= milli:
            n += 1
    return n >= count


@njit(cache=True, nogil=True)
def gpu_free_total(free, present):  # type: ignore[no-untyped-def]
    total = 0
    for g in range(free.shape[0]):
        if present[g] and free[g] > 0:
            total += free[g]
    return total


@njit(cache=True, nogil=True)
def tightest_gpu(free, present, milli):  # type: ignore[no-untyped-def]
    """The GPU with the least free milli that still fits `milli` (lowest index on ties), or −1."""
    best = -1
    for g in range(free.shape[0]):
        if present[g] and free[g] >= milli and (best < 0 or free[g] < free[best]):
            best = g
    return best


@njit(cache=True, nogil=True)
def random_gpu(free, present, milli, u):  # type: ignore[no-untyped-def]
    """The ⌊u·k⌋-th of the k GPUs that fit `milli`, in index order, or −1."""
    k = 0
    for g in range(free.shape[0]):
        if present[g] and free[g] >= milli:
            k += 1
    if k == 0:
        return -1
    pick = min(int(u * k), k - 1)
    for g in range(free.shape[0]):
        if present[g] and free[g] >= milli:
            if pick == 0:
                return g
            pick -= 1
    return -1


@njit(cache=True, nogil=True)
def fgd_value(delta):  # type: ignore[no-untyped-def]
    """FGD's node score for a fragmentation change ΔF (milli-GPU): 100·sigmoid(ΔF/1000)."""
    return 100.0 / (1.0 + math.exp(-delta / 1000.0))


@njit(cache=True, nogil=True)
def frag_after_whole(free, present, cpu_free, model, cpu, count, tp_cpu, tp_count, tp_milli, tp_allowed,  # type: ignore[no-untyped-def]
                     tp_weight):
    """Fragmentation after taking `count` whole GPUs (any fully free ones: F only sees the multiset)."""
    work = free.copy()
    need = count
    for g in range(work.shape[0]):
        if need == 0:
            break
        if present[g] and work[g] >= WHOLE:
            work[g] -= WHOLE
            need -= 1
    return node_frag(work, present, cpu_free - cpu, model, tp_cpu, tp_count, tp_milli, tp_allowed, tp_weight)


@njit(cache=True, nogil=True)
def fgd_node(free, present, cpu_free, model, frag_before, cpu, count, milli, tp_cpu, tp_count, tp_milli,  # type: ignore[no-untyped-def]
             tp_allowed, tp_weight, quantize):
    """(score, share GPU) for FGD on one feasible node; `frag_before` = node_frag of the node now."""
    if count == 1 and milli < WHOLE:
        best = NEG_INF
        best_g = -1
        work = free.copy()
        for g in range(free.shape[0]):
            if not present[g] or free[g] < milli:
                continue
            seen = False  # GPUs with equal free milli give equal results; the lowest index is kept
            for h in range(g):
                if present[h] and free[h] == free[g]:
                    seen = True
                    break
            if seen:
                continue
            work[g] -= milli
            after = node_frag(work, present, cpu_free - cpu, model, tp_cpu, tp_count, tp_milli, tp_allowed,
                              tp_weight)
            work[g] += milli
            s = fgd_value(frag_before - after)
            if quantize:
                s = math.floor(s)
            if s > best:
                best = s
                best_g = g
        return best, best_g
    after = frag_after_whole(free, present, cpu_free, model, cpu, count, tp_cpu, tp_count, tp_milli, tp_allowed,
                             tp_weight)
    s = fgd_value(frag_before - after)
    if quantize:
        s = math.floor(s)
    return s, -1


@njit(cache=True, nogil=True)
def gpu_packing_value(free, present, count, milli):  # type: ignore[no-untyped-def]
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
def gpu_clustering_value(free, present, kinds, count, milli, max_gpu_milli, quantize):  # type: ignore[no-untyped-def]
    """GpuClustering's score: a band by the kinds of pods already on the node, fuller is better within it."""
    if count == 0:
        return 0.0
    kind = 0 if milli < WHOLE else min(count, kinds.shape[0] - 1)
    n_kinds = 0
    for k in range(kinds.shape[0]):
        if kinds[k] > 0:
            n_kinds += 1
    used = max_gpu_milli - gpu_free_total(free, present)
    fill = (25 * used) // max_gpu_milli if quantize else 25.0 * used / max_gpu_milli
    if kinds[kind] > 0:
        return fill + (75.0 if n_kinds == 1 else 50.0)
    return fill + (25.0 if n_kinds == 0 else 0.0)


@njit(cache=True, nogil=True)
def _allocated_part(cap, req, most, quantize):  # type: ignore[no-untyped-def]
    if cap <= 0:
        return 0.0
    req = min(req, cap)
    if quantize:
        return float((req * 100) // cap) if most else float(((cap - req) * 100) // cap)
    return req * 100.0 / cap if most else (cap - req) * 100.0 / cap


@njit(cache=True, nogil=True)
def allocated_value(free, present, cpu_free, mem_free, cpu_total, mem_total, cpu, mem, count, milli, most,  # type: ignore[no-untyped-def]
                    quantize):
    """Kubernetes MostAllocated (most=True) / LeastAllocated over cpu, memory and GPU milli, weight 1 each."""
    gpu_cap = 0
    for g in range(free.shape[0]):
        if present[g]:
            gpu_cap += WHOLE
    gpu_req = gpu_cap - gpu_free_total(free, present) + count * milli
    total = (_allocated_part(cpu_total, cpu_total - cpu_free + cpu, most, quantize)
             + _allocated_part(mem_total, mem_total - mem_free + mem, most, quantize)
             + _allocated_part(gpu_cap, gpu_req, most, quantize))
    return math.floor(total / 3) if quantize else total / 3


@njit(cache=True, nogil=True)
def best_fit_value(free, present, cpu_free, cpu, count, milli, max_cpu, max_gpu_milli):  # type: ignore[no-untyped-def]
    left = 0.5 * (cpu_free - cpu) / max_cpu + 0.5 * (gpu_free_total(free, present) - count * milli) / max_gpu_milli
    return 100.0 * (1.0 - left)


@njit(cache=True, nogil=True)
def dot_prod_value(free, present, cpu_free, cpu, count, milli, max_cpu, max_gpu_milli):  # type: ignore[no-untyped-def]
    dot = (cpu_free / max_cpu) * (cpu / max_cpu) + (gpu_free_total(free, present) / max_gpu_milli) * (
        count * milli / max_gpu_milli)
    return 100.0 * (1.0 - dot / 2.0)
