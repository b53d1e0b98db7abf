"""Node-scoring policies over all nodes: FGD, the published baselines, Kubernetes' two, and gpuplace's.

Every policy answers, for one request and one node: a score (higher is better, −inf = infeasible) and, for
a fractional share, which GPU on that node it would take (−1 otherwise; whole-GPU sets are chosen by the
GPU-set chooser). Published policies score in kube-scheduler units (0–100): with `quantize=True` a score is
truncated to the integer their reference implementation compares (FGD's simulator,
alibaba/kubernetes-scheduler-simulator, then breaks equal scores by a random node order) — this matters:
FGD with exact scores allocates ~1.4 points less on the openb trace. Definitions (FGD paper §6.1 and that
simulator's plugins):

- RANDOM: uniform over feasible nodes (the caller supplies one uniform draw `u` per node); a random fitting
  GPU for shares.
- BEST_FIT: 100·(1 − ½·(cpu_free − cpu)/max_cpu − ½·(gpu_free − gpu)/max_gpu) — least left over wins.
- DOT_PROD (Tetris): 100·(1 − ½·(free · request)), [cpu, gpu] vectors normalised by the largest node.
- GPU_PACKING: shared GPUs first (100 − free % of the GPUs used / 10, ≥ 50), then partly used nodes
  (50 − whole GPUs taken, ≥ 33), then empty nodes (33 − free GPUs).
- GPU_CLUSTERING: nodes hosting only pods of the same kind (share / k-GPU) 75–100, with that kind among
  others 50–75, empty 25–50, others 0–25; fuller is better inside a band. CPU-only pods score 0 everywhere.
- FGD: 100·sigmoid(ΔF/1000), ΔF = node fragmentation before − after placing (placement_core.fragmentation);
  a share takes the GPU with the largest score (lowest index on ties).
- MOST_ALLOCATED / LEAST_ALLOCATED: Kubernetes NodeResourcesFit over cpu, memory and GPU milli, weight 1
  each: mean of requested-after / allocatable (or its complement) × 100.
- GPUPLACE, the default (see `gpuplace_node`): W_FRAG·ΔF/1000 with a memory-aware typical-pod distribution,
  plus the CPU, memory and GPU fractions the node keeps free after placement (whole-node jobs: the reverse,
  the smallest node that fits), minus RESERVE_PENALTY on the empty 8-GPU nodes held back for 8-GPU jobs
  (`reserve_plan` sizes that reserve per node class from the 8-GPU jobs' share of the GPU demand).
Other policies put shares on the tightest GPU that fits (the reference's "best" GPU selection).
The readable definitions are the twins in `placement_core._policy_twins`.
"""

from __future__ import annotations

import enum
import math

import numpy as np
from numba import njit

from placement_core.fragmentation import node_frag
from placement_core.workload import BIG_JOB_GPUS

WHOLE = 1000
NEG_INF = -np.inf
W_FRAG = 4.0  # gpuplace: score per GPU (1000 milli) of fragmentation removed
W_CPU, W_MEM, W_GPU = 1.0, 2.0, 2.0  # gpuplace: weight of each resource fraction left free on the node
RESERVE_PENALTY = 10.0  # gpuplace: cost of placing a smaller pod on a reserved empty 8-GPU node


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
    Policy.RANDOM: "Random",
    Policy.BEST_FIT: "BestFit",
    Policy.DOT_PROD: "DotProd",
    Policy.GPU_PACKING: "GpuPacking",
    Policy.GPU_CLUSTERING: "GpuClustering",
    Policy.FGD: "FGD",
    Policy.MOST_ALLOCATED: "MostAllocated",
    Policy.LEAST_ALLOCATED: "LeastAllocated",
    Policy.GPUPLACE: "gpuplace",
}
_RANDOM, _BEST_FIT, _DOT_PROD, _GPU_PACKING, _GPU_CLUSTERING, _FGD, _MOST, _LEAST, _GPUPLACE = range(9)


def kind_of(count: int, milli: int) -> int:
    """GpuClustering's pod kind, a column of `node_kinds`: 0 = share, k = k whole GPUs, −1 = no GPU."""
    if count <= 0:
        return -1
    return 0 if milli < WHOLE else count


# ---- per-node building blocks (also called from the simulator's replay loop) ---------------------------


@njit(cache=True, nogil=True)
def fits(free, present, cpu_free, mem_free, model, cpu, mem, count, milli, allowed):
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
def gpu_free_total(free, present):
    total = 0
    for g in range(free.shape[0]):
        if present[g] and free[g] > 0:
            total += free[g]
    return total


@njit(cache=True, nogil=True)
def gpu_capacity(present):
    total = 0
    for g in range(present.shape[0]):
        if present[g]:
            total += WHOLE
    return total


@njit(cache=True, nogil=True)
def tightest_gpu(free, present, milli):
    """The GPU with the least free milli that still fits `milli` (lowest index on ties), or −1."""
    best = -1
    for g in range(free.shape[0]):
        if present[g] and free[g] >= milli and (best < 0 or free[g] < free[best]):
            best = g
    return best


@njit(cache=True, nogil=True)
def random_gpu(free, present, milli, u):
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
def fgd_value(delta):
    """FGD's node score for a fragmentation change ΔF (milli-GPU): 100·sigmoid(ΔF/1000)."""
    return 100.0 / (1.0 + math.exp(-delta / 1000.0))


@njit(cache=True, nogil=True)
def take_whole(free, present, count):
    """A copy of `free` with `count` fully free GPUs taken (which ones does not matter to F)."""
    work = free.copy()
    need = count
    for g in range(work.shape[0]):
        if need == 0:
            break
        if present[g] and work[g] >= WHOLE:
            work[g] -= WHOLE
            need -= 1
    return work


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


@njit(cache=True, nogil=True)
def is_empty_big(free, present, cpu_free, cpu_total, big_gpus):
    """An untouched node with at least `big_gpus` GPUs (a candidate for the 8-GPU reserve)."""
    if cpu_free != cpu_total or gpu_capacity(present) < big_gpus * WHOLE:
        return False
    for g in range(free.shape[0]):  # noqa: SIM110 - a plain loop compiles in Numba
        if present[g] and free[g] < WHOLE:
            return False
    return True


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


@njit(cache=True, nogil=True)
def node_score(
    policy,
    free,
    present,
    cpu_free,
    mem_free,
    cpu_total,
    mem_total,
    model,
    kinds,
    frag_before,
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
    u,
):
    """(score, share GPU) of `policy` for one node; (−inf, −1) when the node cannot take the request.

    `frag_before` is the node's current fragmentation if known, else NaN (then computed here when needed).
    `u` is a uniform draw in [0, 1), used only by RANDOM. gpuplace's reserve is not included (see
    `reserved_nodes`): it depends on the whole cluster, not on this node alone.
    """
    if not fits(free, present, cpu_free, mem_free, model, cpu, mem, count, milli, allowed):
        return NEG_INF, -1
    share = count == 1 and milli < WHOLE
    if policy == _FGD or policy == _GPUPLACE:  # noqa: PLR1714, SIM109 - plain comparisons for Numba
        if math.isnan(frag_before):
            frag_before = node_frag(
                free,
                present,
                cpu_free,
                mem_free,
                model,
                tp_cpu,
                tp_mem,
                tp_count,
                tp_milli,
                tp_allowed,
                tp_weight,
            )
        if policy == _FGD:
            return fgd_node(
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
            )
        return gpuplace_node(
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
        )
    if policy == _RANDOM:
        g = random_gpu(free, present, milli, (u * 1048576.0) % 1.0) if share else -1
        return u, g
    g = tightest_gpu(free, present, milli) if share else -1
    if policy == _BEST_FIT:
        s = best_fit_value(free, present, cpu_free, cpu, count, milli, max_cpu, max_gpu_milli)
    elif policy == _DOT_PROD:
        s = dot_prod_value(free, present, cpu_free, cpu, count, milli, max_cpu, max_gpu_milli)
    elif policy == _GPU_PACKING:
        s = gpu_packing_value(free, present, count, milli)
    elif policy == _GPU_CLUSTERING:
        s = gpu_clustering_value(free, present, kinds, count, milli, max_gpu_milli, quantize)
    else:
        s = allocated_value(
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
            policy == _MOST,
            quantize,
        )
    if quantize:
        s = float(math.trunc(s))
    return s, g
