"""Feasibility of one request on every node at once: a reason code and a detail number per node.

`feasibility_twin` states the rule in plain Python, node by node; `feasibility_kernel` is the same rule
compiled with Numba over all rows in one call. Unresolvable reasons (see `Reason.unresolvable`) are checked
before resolvable ones, so a node that can never host the pod is reported as such even when it is busy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from numba import njit

from placement_core.islands import largest_island_at, largest_island_py
from placement_core.reasons import Reason
from placement_core.request import WHOLE

if TYPE_CHECKING:
    from placement_core.cluster import ClusterState

_R = Reason


def feasibility_twin(
    s: ClusterState,
    model_ok: npt.NDArray[Any],
    count: int,
    milli: int,
    min_mem: int,
    nvlink_required: bool,
    mig_id: int,
    cpu: int,
    mem: int,
    fit_cpu_mem: bool = True,
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Per node: (reason, detail). `s` is a ClusterState (or anything with its array attributes).
    `fit_cpu_mem=False`: cpu and memory never make a node infeasible (GpuRequest.fit_cpu_memory)."""
    n = s.n_rows
    reason = np.zeros(n, np.int8)
    detail = np.zeros(n, np.int32)
    for i in range(n):
        reason[i], detail[i] = _one_node_py(
            s, i, model_ok, count, milli, min_mem, nvlink_required, mig_id, cpu, mem, fit_cpu_mem
        )
    return reason, detail


def _one_node_py(
    s: ClusterState,
    i: int,
    model_ok: npt.NDArray[Any],
    count: int,
    milli: int,
    min_mem: int,
    nvlink_required: bool,
    mig_id: int,
    cpu: int,
    mem: int,
    fit_cpu_mem: bool,
) -> tuple[int, int]:
    if not s.node_valid[i]:
        return _R.UNSCHEDULABLE, 0
    if count == 0 and mig_id == -1:  # no GPU asked: any node with the cpu and memory
        if fit_cpu_mem and s.node_cpu_free[i] < cpu:
            return _R.CPU, s.node_cpu_free[i]
        if fit_cpu_mem and s.node_mem_free[i] < mem:
            return _R.MEMORY, s.node_mem_free[i]
        return _R.OK, 0
    if s.node_gpu_count[i] == 0 or s.node_model[i] < 0:
        return _R.NO_GPUS, 0
    if not model_ok[s.node_model[i]]:
        return _R.MODEL, 0
    healthy = s.gpu_present[i] & s.gpu_healthy[i]
    if mig_id != -1:
        is_profile = (s.mig_profile[i] == mig_id) & healthy[:, None]
        total = int(is_profile.sum())
        free = int((is_profile & ~s.mig_used[i]).sum())
        if mig_id < 0 or total < count:
            return _R.MIG_ABSENT, total
        if fit_cpu_mem and s.node_cpu_free[i] < cpu:
            return _R.CPU, s.node_cpu_free[i]
        if fit_cpu_mem and s.node_mem_free[i] < mem:
            return _R.MEMORY, s.node_mem_free[i]
        return (_R.MIG_BUSY, free) if free < count else (_R.OK, free)
    plain = healthy & ~s.gpu_mig[i]
    eligible = plain & (s.gpu_mem[i] >= min_mem)
    if plain.any() and not eligible.any():
        return _R.GPU_MEMORY, int(s.gpu_mem[i][plain].max())
    if eligible.sum() < count:
        return _R.TOO_FEW_GPUS, int(eligible.sum())
    if milli < WHOLE and not s.node_sliced[i]:
        return _R.SHARE_NOT_TIME_SLICED, 0
    need_island = nvlink_required and count > 1
    if need_island and largest_island_py(s.links[i], eligible) < count:
        return _R.NVLINK_TOPOLOGY, largest_island_py(s.links[i], eligible)
    if fit_cpu_mem and s.node_cpu_free[i] < cpu:
        return _R.CPU, s.node_cpu_free[i]
    if fit_cpu_mem and s.node_mem_free[i] < mem:
        return _R.MEMORY, s.node_mem_free[i]
    if milli < WHOLE:
        best = int(s.gpu_free_milli[i][eligible].max())
        return (_R.SHARE_BUSY, best) if best < milli else (_R.OK, best)
    free = eligible & (s.gpu_free_milli[i] >= WHOLE)
    if free.sum() < count:
        return _R.GPUS_BUSY, int(free.sum())
    if need_island:
        island = largest_island_py(s.links[i], free)
        if island < count:
            return _R.NVLINK_BUSY, island
    return _R.OK, int(free.sum())


@njit(cache=True, nogil=True)
def feasibility_kernel(
    node_valid,
    node_model,
    node_gpu_count,
    node_cpu_free,
    node_mem_free,
    node_sliced,
    gpu_present,
    gpu_healthy,
    gpu_mem,
    gpu_free_milli,
    gpu_mig,
    links,
    link_class,
    island_tables,
    mig_profile,
    mig_used,
    n,
    model_ok,
    count,
    milli,
    min_mem,
    nvlink_required,
    mig_id,
    cpu,
    mem,
    fit_cpu_mem,
    reason,
    detail,
):
    """Fills reason[:n] / detail[:n]; same rule as `_one_node_py`."""
    G = gpu_present.shape[1]
    S = mig_profile.shape[2]
    healthy = np.empty(G, np.bool_)
    eligible = np.empty(G, np.bool_)
    free = np.empty(G, np.bool_)
    need_island = nvlink_required and count > 1
    for i in range(n):
        reason[i] = 0
        detail[i] = 0
        if not node_valid[i]:
            reason[i] = 1
            continue
        if count == 0 and mig_id == -1:
            if fit_cpu_mem and node_cpu_free[i] < cpu:
                reason[i] = 8
                detail[i] = node_cpu_free[i]
            elif fit_cpu_mem and node_mem_free[i] < mem:
                reason[i] = 9
                detail[i] = node_mem_free[i]
            continue
        if node_gpu_count[i] == 0 or node_model[i] < 0:
            reason[i] = 2
            continue
        if not model_ok[node_model[i]]:
            reason[i] = 3
            continue
        for g in range(G):
            healthy[g] = gpu_present[i, g] and gpu_healthy[i, g]
        if mig_id != -1:
            total = 0
            nfree = 0
            for g in range(G):
                if healthy[g]:
                    for k in range(S):
                        if mig_profile[i, g, k] == mig_id:
                            total += 1
                            if not mig_used[i, g, k]:
                                nfree += 1
            if mig_id < 0 or total < count:
                reason[i] = 6
                detail[i] = total
            elif fit_cpu_mem and node_cpu_free[i] < cpu:
                reason[i] = 8
                detail[i] = node_cpu_free[i]
            elif fit_cpu_mem and node_mem_free[i] < mem:
                reason[i] = 9
                detail[i] = node_mem_free[i]
            else:
                reason[i] = 13 if nfree < count else 0
                detail[i] = nfree
            continue
        n_plain = 0
        n_elig = 0
        max_mem = 0
        for g in range(G):
            p = healthy[g] and not gpu_mig[i, g]
            eligible[g] = p and gpu_mem[i, g] >= min_mem
            if p:
                n_plain += 1
                max_mem = max(max_mem, gpu_mem[i, g])
            if eligible[g]:
                n_elig += 1
        if n_plain > 0 and n_elig == 0:
            reason[i] = 4
            detail[i] = max_mem
            continue
        if n_elig < count:
            reason[i] = 5
            detail[i] = n_elig
            continue
        if milli < WHOLE and not node_sliced[i]:
            reason[i] = 14
            continue
        if need_island:
            isl = largest_island_at(island_tables, link_class[i], links[i], eligible)
            if isl < count:
                reason[i] = 7
                detail[i] = isl
                continue
        if fit_cpu_mem and node_cpu_free[i] < cpu:
            reason[i] = 8
            detail[i] = node_cpu_free[i]
            continue
        if fit_cpu_mem and node_mem_free[i] < mem:
            reason[i] = 9
            detail[i] = node_mem_free[i]
            continue
        if milli < WHOLE:
            best = -(2**31)
            for g in range(G):
                if eligible[g] and gpu_free_milli[i, g] > best:
                    best = gpu_free_milli[i, g]
            reason[i] = 12 if best < milli else 0
            detail[i] = best
            continue
        nfree = 0
        for g in range(G):
            free[g] = eligible[g] and gpu_free_milli[i, g] >= WHOLE
            if free[g]:
                nfree += 1
        if nfree < count:
            reason[i] = 10
            detail[i] = nfree
            continue
        detail[i] = nfree
        if need_island:
            isl = largest_island_at(island_tables, link_class[i], links[i], free)
            if isl < count:
                reason[i] = 11
                detail[i] = isl
