"""Per-node operations every policy shares: does the request fit, how much GPU is free, which GPU a share
takes, what a node looks like after taking whole GPUs. Kernels first, their twins below."""

from __future__ import annotations

from typing import Any

import numpy.typing as npt
from numba import njit

from placement_core.request import WHOLE

Arr = npt.NDArray[Any]


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


# ---- twins: the same rules in plain Python (tests hold them equal) ------------------------------------


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


def _after_whole(free: Arr, present: Arr, count: int) -> Arr:
    """`free` after taking `count` fully free GPUs (lowest index first)."""
    out = free.copy()
    for g in [g for g in _gpus(free, present) if free[g] >= WHOLE][:count]:
        out[g] -= WHOLE
    return out
