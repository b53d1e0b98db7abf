"""NVLink island sizes over a member mask — the graph helper every kernel shares.

`largest_island(links, members)`: size of the largest connected component of the NVLink graph restricted
to `members`. `smallest_island_at_least(links, members, k)`: size of the smallest such component with at
least k GPUs (0 if none) — a k-GPU job placed there keeps bigger islands whole.
The `_py` functions are the readable twins; the kernels below are the same algorithm for Numba.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

BoolArr = npt.NDArray[np.bool_]
U8Arr = npt.NDArray[np.uint8]


def component_sizes_py(links: U8Arr, members: BoolArr) -> list[int]:
    n = len(members)
    seen = [False] * n
    sizes = []
    for s in range(n):
        if members[s] and not seen[s]:
            seen[s] = True
            stack, size = [s], 0
            while stack:
                u = stack.pop()
                size += 1
                for v in range(n):
                    if members[v] and not seen[v] and links[u, v] > 0:
                        seen[v] = True
                        stack.append(v)
            sizes.append(size)
    return sizes


def largest_island_py(links: U8Arr, members: BoolArr) -> int:
    return max(component_sizes_py(links, members), default=0)


def smallest_island_at_least_py(links: U8Arr, members: BoolArr, k: int) -> int:
    fitting = [s for s in component_sizes_py(links, members) if s >= k]
    return min(fitting, default=0)


@njit(cache=True, nogil=True)
def _component_sizes(links, members, sizes_out):
    """Fill sizes_out[:c] with component sizes, return c. Iterative DFS with a fixed stack."""
    n = members.shape[0]
    seen = np.zeros(n, np.bool_)
    stack = np.empty(n, np.int64)
    c = 0
    for s in range(n):
        if members[s] and not seen[s]:
            seen[s] = True
            top = 0
            stack[0] = s
            size = 0
            while top >= 0:
                u = stack[top]
                top -= 1
                size += 1
                for v in range(n):
                    if members[v] and not seen[v] and links[u, v] > 0:
                        seen[v] = True
                        top += 1
                        stack[top] = v
            sizes_out[c] = size
            c += 1
    return c


@njit(cache=True, nogil=True)
def largest_island(links, members):
    sizes = np.empty(members.shape[0], np.int64)
    c = _component_sizes(links, members, sizes)
    best = 0
    for i in range(c):
        best = max(best, sizes[i])
    return best


@njit(cache=True, nogil=True)
def smallest_island_at_least(links, members, k):
    sizes = np.empty(members.shape[0], np.int64)
    c = _component_sizes(links, members, sizes)
    best = 0
    for i in range(c):
        if sizes[i] >= k and (best == 0 or sizes[i] < best):
            best = sizes[i]
    return best


# ---- a lookup table per distinct link matrix -------------------------------------------------------
TABLE_MAX_GPUS = 12  # 2^12 member masks per link matrix; nodes with more GPU slots search every time


@njit(cache=True, nogil=True)
def island_size_table(links):
    """For every member mask m (bit g = GPU g): a bit set of the component sizes (bit s = some NVLink
    island of exactly s members). Why: the feasibility and scoring kernels ask about one node's islands
    for every node on every call (≈ 200 ns each); a fleet has a handful of distinct link matrices, so a
    table per matrix turns each question into one read."""
    n = links.shape[0]
    out = np.zeros(1 << n, np.uint32)
    members = np.zeros(n, np.bool_)
    sizes = np.empty(n, np.int64)
    for m in range(1 << n):
        for g in range(n):
            members[g] = (m >> g) & 1
        c = _component_sizes(links, members, sizes)
        bits = 0
        for i in range(c):
            bits |= 1 << sizes[i]
        out[m] = bits
    return out


@njit(cache=True, nogil=True)
def member_mask(members):
    m = 0
    for g in range(members.shape[0]):
        if members[g]:
            m |= 1 << g
    return m


@njit(cache=True, nogil=True)
def largest_from_bits(bits):
    best = 0
    s = 0
    while bits != 0:
        if bits & 1:
            best = s
        bits >>= 1
        s += 1
    return best


@njit(cache=True, nogil=True)
def smallest_at_least_from_bits(bits, k):
    s = max(k, 0)
    bits >>= s
    while bits != 0:
        if bits & 1:
            return s
        bits >>= 1
        s += 1
    return 0


@njit(cache=True, nogil=True)
def largest_island_at(tables, cls, links, members):
    """`largest_island(links, members)`, read from the node's island table when it has one."""
    if cls >= 0:
        m = member_mask(members)
        if m < tables.shape[1]:
            return largest_from_bits(np.int64(tables[cls, m]))
    return largest_island(links, members)


@njit(cache=True, nogil=True)
def smallest_island_at_least_at(tables, cls, links, members, k):
    """`smallest_island_at_least(links, members, k)`, read from the node's island table when it has one."""
    if cls >= 0:
        m = member_mask(members)
        if m < tables.shape[1]:
            return smallest_at_least_from_bits(np.int64(tables[cls, m]), k)
    return smallest_island_at_least(links, members, k)
