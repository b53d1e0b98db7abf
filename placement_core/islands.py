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
