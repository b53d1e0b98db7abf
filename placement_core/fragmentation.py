"""GPU fragmentation of a node against a typical-pod distribution (FGD, USENIX ATC'23, §4).

A node's free GPU capacity is a *fragment* for a typical pod when that pod cannot use it:
- the pod needs no GPU (CPU-only): all free GPU milli on the node is a fragment for it;
- the pod may not run on this GPU model, or the node cannot host it at all (too few GPUs with enough free
  milli, too little free CPU, or too little free memory): all free GPU milli is a fragment;
- the node can host it: the free milli on GPUs that each have less than the pod's per-GPU milli is a
  fragment (the pod can never use those slivers), the rest is not.
The node's fragmentation F is the expectation over the distribution: Σ_t weight_t · fragment_t, in
milli-GPU. The cluster's *fragmentation amount* is Σ_nodes F, its *fragmentation rate* that amount divided
by the free GPU milli. (FGD's reference simulator, `NodeGpuShareFragAmount`, computes exactly this; its
category breakdown Q1–Q4/XL/XR/NA only labels the same sums.) FGD's typical pods carry no memory
(`tp_mem` all 0, so the memory test always passes); gpuplace's carry it.

Array layout: `gpu_free_milli[N, G]` (slots beyond a node's GPUs hold 0 and are not `gpu_present`),
`node_cpu_free[N]` milli-CPU, `node_mem_free[N]` MiB, `node_model[N]` model id (−1 = no GPU), typical pods
as parallel arrays (`placement_core.workload.TypicalPods.arrays`) with `tp_allowed[T, M]` over model ids.
`node_frag_twin` / `frag_all_twin` are the readable definitions; the `@njit` functions are the same rule.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]


def node_frag_twin(
    free: I32,
    present: Bool,
    cpu_free: int,
    mem_free: int,
    model: int,
    tp_cpu: I64,
    tp_mem: I64,
    tp_count: I32,
    tp_milli: I32,
    tp_allowed: Bool,
    tp_weight: F64,
) -> float:
    """Expected fragmented milli-GPU on one node (see module docstring)."""
    gpus = [max(int(f), 0) for f, p in zip(free, present, strict=True) if p]
    idle = sum(gpus)
    if idle == 0:
        return 0.0
    frag = 0.0
    for cpu, mem, count, milli, allowed, weight in zip(
        tp_cpu, tp_mem, tp_count, tp_milli, tp_allowed, tp_weight, strict=True
    ):
        if milli == 0 or model < 0 or not allowed[model]:
            frag += weight * idle  # a CPU-only pod, or a GPU it may not use
            continue
        usable = [g for g in gpus if g >= milli]
        if len(usable) >= count and cpu_free >= cpu and mem_free >= mem:
            frag += weight * sum(g for g in gpus if g < milli)  # slivers too small for it
        else:
            frag += weight * idle  # it cannot land here at all
    return frag


@njit(cache=True, nogil=True)
def node_frag(
    free, present, cpu_free, mem_free, model, tp_cpu, tp_mem, tp_count, tp_milli, tp_allowed, tp_weight
):
    """Same as `node_frag_twin`; `free`/`present` are one node's rows."""
    G = free.shape[0]
    idle = 0
    for g in range(G):
        if present[g] and free[g] > 0:
            idle += free[g]
    if idle == 0:
        return 0.0
    frag = 0.0
    for t in range(tp_weight.shape[0]):
        milli = tp_milli[t]
        if milli == 0 or model < 0 or not tp_allowed[t, model]:
            frag += tp_weight[t] * idle
            continue
        usable = 0
        small = 0
        for g in range(G):
            if present[g]:
                f = max(free[g], 0)
                if f >= milli:
                    usable += 1
                else:
                    small += f
        if usable >= tp_count[t] and cpu_free >= tp_cpu[t] and mem_free >= tp_mem[t]:
            frag += tp_weight[t] * small
        else:
            frag += tp_weight[t] * idle
    return frag


def frag_all_twin(
    gpu_free_milli: I32,
    gpu_present: Bool,
    node_cpu_free: I64,
    node_mem_free: I64,
    node_model: I32,
    tp_cpu: I64,
    tp_mem: I64,
    tp_count: I32,
    tp_milli: I32,
    tp_allowed: Bool,
    tp_weight: F64,
) -> F64:
    """float64[N]: `node_frag_twin` of every node."""
    rows = range(gpu_free_milli.shape[0])
    return np.array(
        [
            node_frag_twin(
                gpu_free_milli[i],
                gpu_present[i],
                int(node_cpu_free[i]),
                int(node_mem_free[i]),
                int(node_model[i]),
                tp_cpu,
                tp_mem,
                tp_count,
                tp_milli,
                tp_allowed,
                tp_weight,
            )
            for i in rows
        ],
        np.float64,
    )


@njit(cache=True, nogil=True)
def frag_all(
    gpu_free_milli,
    gpu_present,
    node_cpu_free,
    node_mem_free,
    node_model,
    tp_cpu,
    tp_mem,
    tp_count,
    tp_milli,
    tp_allowed,
    tp_weight,
):
    """float64[N]: `node_frag` of every node (same as `frag_all_twin`)."""
    n = gpu_free_milli.shape[0]
    out = np.empty(n, np.float64)
    for i in range(n):
        out[i] = node_frag(
            gpu_free_milli[i],
            gpu_present[i],
            node_cpu_free[i],
            node_mem_free[i],
            node_model[i],
            tp_cpu,
            tp_mem,
            tp_count,
            tp_milli,
            tp_allowed,
            tp_weight,
        )
    return out


def cluster_frag(
    gpu_free_milli: I32,
    gpu_present: Bool,
    node_cpu_free: I64,
    node_mem_free: I64,
    node_model: I32,
    tp_cpu: I64,
    tp_mem: I64,
    tp_count: I32,
    tp_milli: I32,
    tp_allowed: Bool,
    tp_weight: F64,
) -> tuple[float, float]:
    """(fragmentation amount, free GPU milli) of a whole cluster; rate = amount / free."""
    frag = frag_all(
        gpu_free_milli,
        gpu_present,
        node_cpu_free,
        node_mem_free,
        node_model,
        tp_cpu,
        tp_mem,
        tp_count,
        tp_milli,
        tp_allowed,
        tp_weight,
    )
    idle = np.where(gpu_present, np.maximum(gpu_free_milli, 0), 0).sum()
    return float(frag.sum()), float(idle)
