"""Which GPUs inside one node a pod gets.

Whole GPUs — among all k-subsets of the node's free eligible GPUs, take the best by, in order:
  1. NVLink-connected (required when the request says so, preferred otherwise),
  2. most NVLinks inside the set (sum of link counts over pairs),
  3. largest free NVLink island left after taking the set (keep room for the next big job),
  4. lowest indices (lexicographic), so the answer is deterministic.
Shares — the GPU whose free milli-GPU is smallest but still enough (least waste, fills partly used GPUs).
MIG — a free instance of the profile, preferring the GPU with most instances already in use, then the
lowest (GPU, slot).
Each `*_twin` is the readable statement; the kernel enumerates combinations in the same lexicographic
order with strict improvement, so ties resolve identically.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from placement_core.islands import largest_island, largest_island_py
from placement_core.request import WHOLE


def _eligible_py(
    present: npt.NDArray[Any],
    healthy: npt.NDArray[Any],
    mem: npt.NDArray[Any],
    free_milli: npt.NDArray[Any],
    mig: npt.NDArray[Any],
    min_mem: int,
    need_milli: int,
) -> npt.NDArray[Any]:
    out: npt.NDArray[Any] = present & healthy & ~mig & (mem >= min_mem) & (free_milli >= need_milli)
    return out


def choose_gpus_twin(
    present: npt.NDArray[Any],
    healthy: npt.NDArray[Any],
    mem: npt.NDArray[Any],
    free_milli: npt.NDArray[Any],
    mig: npt.NDArray[Any],
    links: npt.NDArray[Any],
    count: int,
    min_mem: int,
    nvlink_required: bool,
) -> list[int]:
    """Best k whole free GPUs on one node as a sorted list; [] when none qualifies."""
    free = _eligible_py(present, healthy, mem, free_milli, mig, min_mem, WHOLE)
    cands = [g for g in range(len(free)) if free[g]]
    best: list[int] = []
    best_key: tuple[bool, int, int] | None = None
    for combo in itertools.combinations(cands, count):
        members = np.zeros(len(free), np.bool_)
        members[list(combo)] = True
        connected = count <= 1 or largest_island_py(links, members) == count
        if nvlink_required and not connected:
            continue
        link_sum = sum(int(links[a, b]) for a, b in itertools.combinations(combo, 2))
        remaining = largest_island_py(links, free & ~members)
        key = (connected, link_sum, remaining)
        if best_key is None or key > best_key:
            best, best_key = list(combo), key
    return best


@njit(cache=True, nogil=True)
def choose_gpus_kernel(present, healthy, mem, free_milli, mig, links, count, min_mem, nvlink_required):
    """Same as `choose_gpus_twin`; returns an int64 array (empty when none qualifies)."""
    G = present.shape[0]
    free = np.zeros(G, np.bool_)
    cands = np.empty(G, np.int64)
    m = 0
    for g in range(G):
        free[g] = present[g] and healthy[g] and not mig[g] and mem[g] >= min_mem and free_milli[g] >= WHOLE
        if free[g]:
            cands[m] = g
            m += 1
    best = np.empty(0, np.int64)
    if count <= 0 or count > m:
        return best
    idx = np.arange(count)
    members = np.zeros(G, np.bool_)
    rest = np.zeros(G, np.bool_)
    have = False
    b_conn, b_links, b_rem = False, -1, -1
    while True:
        members[:] = False
        for j in range(count):
            members[cands[idx[j]]] = True
        connected = count <= 1 or largest_island(links, members) == count
        if connected or not nvlink_required:
            ls = 0
            for a in range(count):
                for b in range(a + 1, count):
                    ls += links[cands[idx[a]], cands[idx[b]]]
            for g in range(G):
                rest[g] = free[g] and not members[g]
            rem = largest_island(links, rest)
            better = (
                not have
                or (connected and not b_conn)
                or (connected == b_conn and (ls > b_links or (ls == b_links and rem > b_rem)))
            )
            if better:
                have = True
                b_conn, b_links, b_rem = connected, ls, rem
                best = np.empty(count, np.int64)
                for j in range(count):
                    best[j] = cands[idx[j]]
        # next combination in lexicographic order
        j = count - 1
        while j >= 0 and idx[j] == m - count + j:
            j -= 1
        if j < 0:
            break
        idx[j] += 1
        for t in range(j + 1, count):
            idx[t] = idx[t - 1] + 1
    return best


def choose_share_twin(
    present: npt.NDArray[Any],
    healthy: npt.NDArray[Any],
    mem: npt.NDArray[Any],
    free_milli: npt.NDArray[Any],
    mig: npt.NDArray[Any],
    min_mem: int,
    milli: int,
) -> int:
    """GPU index for a fractional share: least free milli that still fits; -1 if none."""
    fits = _eligible_py(present, healthy, mem, free_milli, mig, min_mem, milli)
    best, best_left = -1, 0
    for g in range(len(fits)):
        if fits[g] and (best < 0 or free_milli[g] - milli < best_left):
            best, best_left = g, int(free_milli[g]) - milli
    return best


@njit(cache=True, nogil=True)
def choose_share_kernel(present, healthy, mem, free_milli, mig, min_mem, milli):
    best = -1
    best_left = 0
    for g in range(present.shape[0]):
        if present[g] and healthy[g] and not mig[g] and mem[g] >= min_mem and free_milli[g] >= milli:
            left = free_milli[g] - milli
            if best < 0 or left < best_left:
                best, best_left = g, left
    return best


def choose_mig_twin(
    healthy: npt.NDArray[Any],
    mig_profile: npt.NDArray[Any],
    mig_used: npt.NDArray[Any],
    mig_id: int,
    count: int,
) -> list[tuple[int, int]]:
    """`count` (gpu, slot) pairs of free instances of `mig_id`; [] if not enough."""
    used = mig_used.copy()
    out = []
    for _ in range(count):
        options = [
            (-int(((mig_profile[g] >= 0) & used[g]).sum()), g, k)
            for g in range(len(healthy))
            if healthy[g]
            for k in range(mig_profile.shape[1])
            if mig_profile[g, k] == mig_id and not used[g, k]
        ]
        if not options:
            return []
        _, g, k = min(options)
        used[g, k] = True
        out.append((g, k))
    return out


@njit(cache=True, nogil=True)
def choose_mig_kernel(healthy, mig_profile, mig_used, mig_id, count):
    G, S = mig_profile.shape
    used = mig_used.copy()
    out = np.empty((count, 2), np.int64)
    for c in range(count):
        bg, bk, bu = -1, -1, -1
        for g in range(G):
            if not healthy[g]:
                continue
            n_used = 0
            for k in range(S):
                if mig_profile[g, k] >= 0 and used[g, k]:
                    n_used += 1
            for k in range(S):
                if mig_profile[g, k] == mig_id and not used[g, k] and n_used > bu:
                    bg, bk, bu = g, k, n_used
                    break
        if bg < 0:
            return np.empty((0, 2), np.int64)
        used[bg, bk] = True
        out[c, 0] = bg
        out[c, 1] = bk
    return out
