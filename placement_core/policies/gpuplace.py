"""gpuplace's own policy: FGD's ΔF scored exactly (`fgd.frag_gain`) plus where the node's headroom should
go — spread where CPU or memory can strand next to free GPUs, pack whole GPUs where nothing can strand,
fill the node a whole-node job fits best. Kernels first, their twins below."""

from __future__ import annotations

import numpy as np
from numba import njit

from placement_core.policies.fgd import _frag_gain, frag_gain
from placement_core.policies.node_ops import Arr, _free_total, _gpus, gpu_capacity, gpu_free_total
from placement_core.request import WHOLE
from placement_core.workload import BIG_JOB_GPUS

W_FRAG = 4.0  # score per GPU (1000 milli) of fragmentation removed
W_CPU, W_MEM, W_GPU = 1.0, 2.0, 2.0  # weight of each resource fraction left free on the node
PACK_HEADROOM = 2.0  # whole-GPU pods pack where nodes have ≥ this × the CPU, memory their GPUs need


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
def pack_value(free, present, count, milli):
    """gpuplace's packing term for whole-GPU pods where nothing can strand: −W_GPU × the GPU fraction the
    node keeps free after placing."""
    cap = gpu_capacity(present)
    if cap <= 0:
        return 0.0
    return -W_GPU * (gpu_free_total(free, present) - count * milli) / cap


@njit(cache=True, nogil=True)
def stranding_risk(present, cpu_total, mem_total, tp_cpu, tp_mem, tp_count, tp_milli, tp_weight):
    """Can CPU or memory run out next to this node's free GPUs, so that spreading whole-GPU pods pays?

    True when the typical pods include shares and the node has less than PACK_HEADROOM × the CPU (or
    memory) its GPUs would need at the typical pods' CPU (memory) per GPU. Shares ask for far more CPU per
    GPU than whole-GPU pods; interleaving the two on every node is what keeps CPU from running out next to
    free GPUs. With no shares, or ample CPU and memory, nothing can strand: whole-GPU pods pack instead,
    keeping whole nodes and NVLink islands free for the multi-GPU jobs.
    """
    shares = False
    w_cpu = 0.0
    w_mem = 0.0
    w_gpu = 0.0
    for t in range(tp_weight.shape[0]):
        if tp_count[t] > 0:
            gpus = tp_count[t] * tp_milli[t] / WHOLE
            w_cpu += tp_weight[t] * tp_cpu[t]
            w_mem += tp_weight[t] * tp_mem[t]
            w_gpu += tp_weight[t] * gpus
            if tp_milli[t] < WHOLE and tp_weight[t] > 0:
                shares = True
    n_gpus = gpu_capacity(present) / WHOLE
    if not shares or w_gpu <= 0 or n_gpus <= 0:
        return False
    need_cpu = w_cpu / w_gpu * n_gpus  # what the node's GPUs would take at the typical ratio
    need_mem = w_mem / w_gpu * n_gpus
    return need_cpu * PACK_HEADROOM > cpu_total or need_mem * PACK_HEADROOM > mem_total


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
    Whole-GPU pods spread only where that risk exists (`stranding_risk`); elsewhere CPU and memory
    headroom buys nothing and they pack GPUs instead (`pack_value`: the node left with the fewest free
    GPUs, as a fraction, wins), so whole nodes and NVLink islands stay free for the multi-GPU jobs. A
    whole-node job (≥ BIG_JOB_GPUS GPUs) takes the reverse of the spread — the node it fills best — so the
    big nodes (e.g. 128 cores) stay for the jobs that only fit there.
    """
    spread = spread_value(free, present, cpu_free, mem_free, cpu_total, mem_total, cpu, mem, count, milli)
    if count >= BIG_JOB_GPUS:
        spread = -spread
    elif (
        milli >= WHOLE
        and count > 0
        and not stranding_risk(present, cpu_total, mem_total, tp_cpu, tp_mem, tp_count, tp_milli, tp_weight)
    ):
        spread = pack_value(free, present, count, milli)
    s, g = frag_gain(
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
        W_FRAG,
        False,
    )
    return s + spread, g


# ---- twins: the same rules in plain Python (tests hold them equal) ------------------------------------


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
    """Fractions of CPU, memory and GPU the node keeps free after placing, weighted ."""
    v = 0.0
    if cpu_total > 0:
        v += W_CPU * (cpu_free - cpu) / cpu_total
    if mem_total > 0:
        v += W_MEM * (mem_free - mem) / mem_total
    cap = WHOLE * len(_gpus(free, present))
    if cap > 0:
        v += W_GPU * (_free_total(free, present) - count * milli) / cap
    return v


def _stranding_risk(present: Arr, cpu_total: int, mem_total: int, tp: tuple[Arr, ...]) -> bool:
    """Shares among the typical pods, and the node short of PACK_HEADROOM × the CPU or memory its GPUs
    would need at the typical pods' per-GPU ratio."""
    tp_cpu, tp_mem, tp_count, tp_milli, _, tp_weight = tp
    gpu_pods = [t for t in range(len(tp_weight)) if tp_count[t] > 0]
    if not any(tp_milli[t] < WHOLE and tp_weight[t] > 0 for t in gpu_pods):
        return False
    w_gpu = sum(tp_weight[t] * tp_count[t] * tp_milli[t] / WHOLE for t in gpu_pods)
    n_gpus = float(np.count_nonzero(present))
    if w_gpu <= 0 or n_gpus <= 0:
        return False
    need_cpu = sum(tp_weight[t] * tp_cpu[t] for t in gpu_pods) / w_gpu * n_gpus
    need_mem = sum(tp_weight[t] * tp_mem[t] for t in gpu_pods) / w_gpu * n_gpus
    return bool(need_cpu * PACK_HEADROOM > cpu_total or need_mem * PACK_HEADROOM > mem_total)


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

    Whole-node jobs (≥ BIG_JOB_GPUS GPUs) subtract the spread instead: the node they fill best. Other
    whole-GPU pods, where `_stranding_risk` is false, take −W_GPU × the GPU fraction left free instead.
    """
    spread = _spread(free, present, cpu_free, mem_free, cpu_total, mem_total, cpu, mem, count, milli)
    if count >= BIG_JOB_GPUS:
        spread = -spread
    elif count > 0 and milli >= WHOLE and not _stranding_risk(present, cpu_total, mem_total, tp):
        spread = -W_GPU * (_free_total(free, present) - count * milli) / (WHOLE * len(_gpus(free, present)))
    s, g = _frag_gain(
        free, present, cpu_free, mem_free, model, cpu, mem, count, milli, tp, lambda d: W_FRAG * d / WHOLE
    )
    return s + spread, g
