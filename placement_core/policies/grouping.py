"""Grouping nodes by state, so FGD and gpuplace score each distinct state once.

FGD's and gpuplace's score of a node depends only on its state: the multiset of its GPUs' free milli (GPU
order does not matter: every term sums over GPUs, and `take_whole` empties GPUs with exactly 1000 free),
its free and total CPU and memory, and its model. Real clusters hold thousands of nodes in a few hundred
states, so `batch.score_all` scores each distinct state once. Only the share GPU depends on the order: it
is the lowest-index GPU whose free milli is among the values with the best ΔF (`_share_ties`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from placement_core.policies.definitions import NEG_INF
from placement_core.policies.fgd import share_scores
from placement_core.policies.node_ops import Arr, _gpus
from placement_core.request import WHOLE

_NO_GPU = np.iinfo(np.int64).max  # key filler for absent GPU slots (sorts after every value)


@njit(cache=True, nogil=True, inline="always")
def _cx(a, b):
    return min(a, b), max(a, b)


@njit(cache=True, nogil=True)
def state_key(free, present, cpu_free, mem_free, cpu_total, mem_total, model, key):
    """Write a node's state into `key` (int64[G + 6]) and return a hash of it.

    key = [order, GPU free milli (G), cpu_free, mem_free, cpu_total, mem_total, model]. order 0: the GPUs'
    values ascending, absent slots as `_NO_GPU` (last); order 1 (a GPU has > 1000 free, so which GPUs
    `take_whole` empties matters): the values slot by slot.
    """
    G = free.shape[0]
    over = False
    for g in range(G):
        v = np.int64(free[g]) if present[g] else _NO_GPU
        if present[g] and v > WHOLE:
            over = True
        key[g + 1] = v
    if not over and G == 8:  # an optimal 19-comparator sorting network, branch-free
        a0, a1, a2, a3 = key[1], key[2], key[3], key[4]
        a4, a5, a6, a7 = key[5], key[6], key[7], key[8]
        a0, a2 = _cx(a0, a2)
        a1, a3 = _cx(a1, a3)
        a4, a6 = _cx(a4, a6)
        a5, a7 = _cx(a5, a7)
        a0, a4 = _cx(a0, a4)
        a1, a5 = _cx(a1, a5)
        a2, a6 = _cx(a2, a6)
        a3, a7 = _cx(a3, a7)
        a0, a1 = _cx(a0, a1)
        a2, a3 = _cx(a2, a3)
        a4, a5 = _cx(a4, a5)
        a6, a7 = _cx(a6, a7)
        a2, a4 = _cx(a2, a4)
        a3, a5 = _cx(a3, a5)
        a1, a4 = _cx(a1, a4)
        a3, a6 = _cx(a3, a6)
        a1, a2 = _cx(a1, a2)
        a3, a4 = _cx(a3, a4)
        a5, a6 = _cx(a5, a6)
        key[1], key[2], key[3], key[4] = a0, a1, a2, a3
        key[5], key[6], key[7], key[8] = a4, a5, a6, a7
    elif not over:  # insertion sort
        for g in range(1, G):
            v = key[g + 1]
            j = g
            while j > 0 and key[j] > v:
                key[j + 1] = key[j]
                j -= 1
            key[j + 1] = v
    key[0] = 1 if over else 0
    key[G + 1] = cpu_free
    key[G + 2] = mem_free
    key[G + 3] = cpu_total
    key[G + 4] = mem_total
    key[G + 5] = model
    h = np.uint64(0)
    for c in range(G + 6):
        h = (h + np.uint64(key[c])) * np.uint64(0x9E3779B97F4A7C15)
    h ^= h >> np.uint64(32)
    return np.int64(h)


@njit(cache=True, nogil=True)
def group_states(
    gpu_free_milli, gpu_present, node_cpu_free, node_mem_free, node_cpu_total, node_mem_total, node_model
):
    """(group int32[N], first int64[K]): rows with equal `state_key` share a group; groups are numbered in
    order of their first row, `first[k]` is that row."""
    n, G = gpu_free_milli.shape
    L = G + 6
    size = 1
    while size < 2 * n:
        size *= 2
    mask = size - 1
    table = np.full(size, -1, np.int64)  # open addressing, linear probing: slot → group
    group = np.empty(n, np.int32)
    first = np.empty(n, np.int64)
    keys = np.empty((min(n, 64), L), np.int64)  # one key per group, grown on demand
    cur = np.empty(L, np.int64)
    k = 0
    for i in range(n):
        h = state_key(
            gpu_free_milli[i],
            gpu_present[i],
            node_cpu_free[i],
            node_mem_free[i],
            node_cpu_total[i],
            node_mem_total[i],
            node_model[i],
            cur,
        )
        j = h & mask
        while True:
            gid = table[j]
            if gid < 0:
                if k == keys.shape[0]:
                    grown = np.empty((2 * k, L), np.int64)
                    grown[:k] = keys
                    keys = grown
                keys[k] = cur
                table[j] = k
                first[k] = i
                group[i] = k
                k += 1
                break
            same = True
            for c in range(L):
                if keys[gid, c] != cur[c]:
                    same = False
                    break
            if same:
                group[i] = gid
                break
            j = (j + 1) & mask
    return group, first[:k].copy()


@njit(cache=True, nogil=True)
def _share_ties(
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
    ties,
):
    """Write into `ties` the free-milli values whose GPU gets `_best_share`'s best score; return how many.

    `_best_share` keeps the first GPU (in index order) with the best score, so on any node with this state
    its GPU is the lowest-index one whose free milli is among `ties`.
    """
    G = free.shape[0]
    gpus = np.empty(G, np.int64)
    vs = np.empty(G, np.float64)
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
        vs,
    )
    best = NEG_INF
    for j in range(m):
        if vs[j] > best:  # noqa: PLR1730 - as `_best_share` compares (a NaN never wins)
            best = vs[j]
    n_ties = 0
    if best > NEG_INF:
        for j in range(m):
            if vs[j] == best:
                ties[n_ties] = free[gpus[j]]
                n_ties += 1
    return n_ties


# ---- twins: the same rules in plain Python (tests hold them equal) ------------------------------------


def group_states_twin(
    gpu_free_milli: Arr,
    gpu_present: Arr,
    node_cpu_free: Arr,
    node_mem_free: Arr,
    node_cpu_total: Arr,
    node_mem_total: Arr,
    node_model: Arr,
) -> tuple[Arr, Arr]:
    """Same as `group_states`: rows whose FGD/gpuplace score cannot differ share a group.

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
