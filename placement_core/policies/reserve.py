"""gpuplace's reserve: empty big (8-GPU) nodes held back for whole-node jobs, sized per node class from
those jobs' share of the GPU demand. Placing a smaller pod on a held node costs RESERVE_PENALTY."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from placement_core.policies.definitions import Context
from placement_core.policies.node_ops import gpu_capacity
from placement_core.request import WHOLE
from placement_core.workload import BIG_JOB_GPUS, BigJob

RESERVE_PENALTY = 10.0  # gpuplace: cost of placing a smaller pod on a reserved empty 8-GPU node


@njit(cache=True, nogil=True)
def is_empty_big(free, present, cpu_free, cpu_total, big_gpus):
    """An untouched node with at least `big_gpus` GPUs (a candidate for the 8-GPU reserve)."""
    if cpu_free != cpu_total or gpu_capacity(present) < big_gpus * WHOLE:
        return False
    for g in range(free.shape[0]):  # noqa: SIM110 - a plain loop compiles in Numba
        if present[g] and free[g] < WHOLE:
            return False
    return True


def reserve_plan(
    big_jobs: tuple[BigJob, ...],
    gpu_present: npt.NDArray[np.bool_],
    node_cpu_total: npt.NDArray[np.int64],
    node_mem_total: npt.NDArray[np.int64],
    node_model: npt.NDArray[np.int32],
    big_gpus: int = BIG_JOB_GPUS,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """(node_class[N], class_reserve[C]): how many empty nodes gpuplace keeps per class of big nodes.

    Nodes with ≥ `big_gpus` GPUs are grouped by (model, GPUs, CPU, memory); other rows get class −1. Each big
    job shape needs share × (number of big nodes) whole nodes — its part of the GPU demand, in nodes; that
    need is spread over the classes able to host it (enough GPUs, CPU and memory), in proportion to their
    size. So a 120-core job's need lands on the 128-core nodes only, and the reserve tracks the workload.
    """
    gpus = gpu_present.sum(axis=1)
    keys: dict[tuple[int, int, int, int], int] = {}
    node_class = np.full(len(gpus), -1, np.int32)
    for n in np.nonzero(gpus >= big_gpus)[0]:
        key = (int(node_model[n]), int(gpus[n]), int(node_cpu_total[n]), int(node_mem_total[n]))
        node_class[n] = keys.setdefault(key, len(keys))
    sizes = np.bincount(node_class[node_class >= 0], minlength=len(keys))
    need = np.zeros(len(keys))
    for job in big_jobs:
        hosts = [
            k
            for (_, g, cpu, mem), k in keys.items()
            if g >= job.gpu_count and cpu >= job.cpu_milli and mem >= job.memory_mib
        ]
        room = sum(int(sizes[k]) for k in hosts)
        for k in hosts:
            need[k] += job.share * int(sizes.sum()) * sizes[k] / room
    return node_class, np.round(need).astype(np.int64)


def reserved_nodes(s: Any, ctx: Context, n: int | None = None) -> npt.NDArray[np.bool_]:
    """bool[N]: the empty big nodes gpuplace currently holds back (their class has ≤ its reserve empty)."""
    rows = s.gpu_free_milli.shape[0] if n is None else n
    node_class, reserve = reserve_plan(
        ctx.big_jobs,
        s.gpu_present[:rows],
        s.node_cpu_total[:rows],
        s.node_mem_total[:rows],
        s.node_model[:rows],
        ctx.big_gpus,
    )
    present = s.gpu_present[:rows]
    untouched = np.asarray(s.node_cpu_free[:rows] == s.node_cpu_total[:rows], np.bool_)
    all_free = np.all(~present | (s.gpu_free_milli[:rows] >= WHOLE), axis=1)
    empty: npt.NDArray[np.bool_] = untouched & all_free & (node_class >= 0)
    if not empty.any():
        return empty
    per_class = np.bincount(node_class[empty], minlength=len(reserve))
    k = np.maximum(node_class, 0)
    held: npt.NDArray[np.bool_] = empty & (per_class[k] <= reserve[k])
    return held
