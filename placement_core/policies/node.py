"""`node_score`: any policy on one node — the dispatcher the simulator's replay loop and `score_all` call."""

from __future__ import annotations

import math

from numba import njit

from placement_core.fragmentation import node_frag
from placement_core.policies.baselines import (
    _allocated,
    _best_fit,
    _dot_prod,
    _gpu_clustering,
    _gpu_packing,
    allocated_value,
    best_fit_value,
    dot_prod_value,
    gpu_clustering_value,
    gpu_packing_value,
)
from placement_core.policies.definitions import (
    _BEST_FIT,
    _DOT_PROD,
    _FGD,
    _GPU_CLUSTERING,
    _GPU_PACKING,
    _GPUPLACE,
    _MOST,
    _RANDOM,
    NEG_INF,
    Policy,
)
from placement_core.policies.fgd import _fgd, fgd_node
from placement_core.policies.gpuplace import _gpuplace, gpuplace_node
from placement_core.policies.node_ops import (
    Arr,
    _random_gpu,
    _tightest,
    fits,
    fits_twin,
    random_gpu,
    tightest_gpu,
)
from placement_core.request import WHOLE


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


# ---- twins: the same rules in plain Python (tests hold them equal) ------------------------------------


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
    if p == Policy.BEST_FIT:
        s = _best_fit(free, present, cpu_free, cpu, count, milli, max_cpu, max_gpu_milli)
    elif p == Policy.DOT_PROD:
        s = _dot_prod(free, present, cpu_free, cpu, count, milli, max_cpu, max_gpu_milli)
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
