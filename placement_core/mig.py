"""MIG placement rules: which free memory slices can host a new instance of a profile geometry.

A GPU instance of `size` memory slices may start only at the profile's valid starts and may not overlap an
occupied slice (the one rule NVML enforces). `hostable_starts` answers that for one GPU; the all-nodes
kernel counts, per node, how many new instances of a geometry its MIG GPUs could still take by greedy
lowest-start packing (optimal here, because valid starts are multiples of the size except for 1-slice
profiles). The extender uses the count to say "absent, but the free slices could host it after
repartitioning" and to report stranded MIG capacity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from numba import njit

if TYPE_CHECKING:
    from placement_core.cluster import ClusterState


def occupied_mask_py(mig_start: npt.NDArray[Any], mig_size: npt.NDArray[Any]) -> int:
    """Bitmask of memory slices occupied by the instances of one GPU (slot arrays)."""
    mask = 0
    for k in range(len(mig_size)):
        if mig_size[k] > 0:
            mask |= ((1 << int(mig_size[k])) - 1) << int(mig_start[k])
    return mask


def hostable_starts_twin(occupied: int, size: int, starts_mask: int, slices: int) -> list[int]:
    """Valid starts s where slices s..s+size-1 exist and are all free."""
    block = (1 << size) - 1
    return [
        s
        for s in range(slices)
        if starts_mask >> s & 1 and s + size <= slices and not occupied & (block << s)
    ]


@njit(cache=True, nogil=True)
def hostable_starts_kernel(occupied, size, starts_mask, slices):
    """Bitmask form of `hostable_starts_twin`."""
    block = (1 << size) - 1
    out = 0
    for s in range(slices):
        if (starts_mask >> s) & 1 and s + size <= slices and (occupied & (block << s)) == 0:
            out |= 1 << s
    return out


def creatable_twin(s: ClusterState, size: int, starts_mask: int, slices: int) -> npt.NDArray[Any]:
    """Per node: how many new `size`-slice instances fit into the free slices of its healthy MIG GPUs."""
    out = np.zeros(s.n_rows, np.int32)
    for i in range(s.n_rows):
        for g in range(s.G):
            if not (s.gpu_present[i, g] and s.gpu_healthy[i, g] and s.gpu_mig[i, g]):
                continue
            occ = occupied_mask_py(s.mig_start[i, g], s.mig_size[i, g])
            while True:
                starts = hostable_starts_twin(occ, size, starts_mask, slices)
                if not starts:
                    break
                occ |= ((1 << size) - 1) << starts[0]
                out[i] += 1
    return out


@njit(cache=True, nogil=True)
def creatable_kernel(
    gpu_present,
    gpu_healthy,
    gpu_mig,
    mig_start,
    mig_size,
    n,
    size,
    starts_mask,
    slices,
    out,
):
    G, S = gpu_mig.shape[1], mig_size.shape[2]
    block = (1 << size) - 1
    for i in range(n):
        out[i] = 0
        for g in range(G):
            if not (gpu_present[i, g] and gpu_healthy[i, g] and gpu_mig[i, g]):
                continue
            occ = 0
            for k in range(S):
                if mig_size[i, g, k] > 0:
                    occ |= ((1 << mig_size[i, g, k]) - 1) << mig_start[i, g, k]
            while True:
                h = hostable_starts_kernel(occ, size, starts_mask, slices)
                if h == 0:
                    break
                first = 0
                while not (h >> first) & 1:
                    first += 1
                occ |= block << first
                out[i] += 1
