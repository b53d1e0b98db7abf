"""Which whole GPUs inside the chosen node a pod gets, and the NVLink presets of the openb models.

The openb trace has no topology, so the simulator assumes one per model (documented in the bench README):
- G2, G3 (undisclosed, 8 GPUs/node): HGX-class NVSwitch boards, every pair linked (one 8-GPU island);
- V100M16 / V100M32 with 8 GPUs: DGX-1 / HGX-1 hybrid cube-mesh (placement_core.topology.dgx1_v100);
- V100M16 / V100M32 with 4 GPUs: all four pairwise NVLinked (DGX Station style);
- T4, P100 (PCIe), A10, and single-GPU nodes: no NVLink.
A GPU set is *inside one NVLink island* when it induces a connected NVLink subgraph — the definition
placement_core.islands uses.

Two choosers: `first_free` takes the lowest-index fully free GPUs (what FGD's reference simulator and the
published baselines do), `connected_set` keeps a k-GPU pod on one NVLink island whenever the node has a
free one. It is a stand-in until placement_core.gpuset.choose_gpus exists: smallest free island that fits
(big islands stay whole for big jobs), then, grown greedily from each start GPU, the set with the most
NVLink links inside it (lowest start index on ties).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

from placement_core.topology import all_to_all, dgx1_v100

WHOLE = 1000
NVSWITCH_MODELS = ("G2", "G3")
V100_MODELS = ("V100M16", "V100M32")


def openb_links(model: str, gpus: int) -> npt.NDArray[np.uint8]:
    """The assumed GPU×GPU NVLink matrix of an openb node (see module docstring)."""
    if gpus >= 2 and model in NVSWITCH_MODELS:
        return all_to_all(gpus, 12)
    if model in V100_MODELS and gpus == 8:
        return dgx1_v100(8)
    if model in V100_MODELS and gpus == 4:
        return all_to_all(4, 2)
    return np.zeros((gpus, gpus), np.uint8)


def preset_name(model: str, gpus: int) -> str:
    if gpus >= 2 and model in NVSWITCH_MODELS:
        return f"NVSwitch all-to-all ({gpus})"
    if model in V100_MODELS and gpus == 8:
        return "DGX-1 hybrid cube-mesh"
    if model in V100_MODELS and gpus == 4:
        return "4-way all-to-all NVLink"
    return "none (PCIe)"


@njit(cache=True, nogil=True)
def first_free(free, present, count, out):  # type: ignore[no-untyped-def]
    """Mark the `count` lowest-index fully free GPUs in `out`; returns how many were found."""
    got = 0
    for g in range(free.shape[0]):
        out[g] = False
        if got < count and present[g] and free[g] >= WHOLE:
            out[g] = True
            got += 1
    return got


@njit(cache=True, nogil=True)
def _components(links, members, comp):  # type: ignore[no-untyped-def]
    """comp[g] = component id of member g (−1 otherwise); returns the number of components."""
    G = members.shape[0]
    stack = np.empty(G, np.int64)
    for g in range(G):
        comp[g] = -1
    c = 0
    for s in range(G):
        if members[s] and comp[s] < 0:
            comp[s] = c
            top = 0
            stack[0] = s
            while top >= 0:
                u = stack[top]
                top -= 1
                for v in range(G):
                    if members[v] and comp[v] < 0 and links[u, v] > 0:
                        comp[v] = c
                        top += 1
                        stack[top] = v
            c += 1
    return c


@njit(cache=True, nogil=True)
def connected_set(free, present, links, count, out):  # type: ignore[no-untyped-def]
    """Mark `count` fully free GPUs forming one NVLink island if possible (else lowest-index ones)."""
    G = free.shape[0]
    members = np.zeros(G, np.bool_)
    for g in range(G):
        members[g] = present[g] and free[g] >= WHOLE
    comp = np.empty(G, np.int64)
    nc = _components(links, members, comp)
    best_c = -1
    best_size = G + 1
    for c in range(nc):
        size = 0
        for g in range(G):
            if comp[g] == c:
                size += 1
        if count <= size < best_size:
            best_c = c
            best_size = size
    if best_c < 0:
        return first_free(free, present, count, out)
    cand = np.zeros(G, np.bool_)
    best_links = -(2**62)
    for start in range(G):
        if comp[start] != best_c:
            continue
        for g in range(G):
            cand[g] = False
        cand[start] = True
        for _ in range(count - 1):
            pick = -1
            pick_links = -1
            for v in range(G):
                if comp[v] != best_c or cand[v]:
                    continue
                lk = 0
                adjacent = False
                for w in range(G):
                    if cand[w] and links[v, w] > 0:
                        lk += links[v, w]
                        adjacent = True
                if adjacent and lk > pick_links:
                    pick = v
                    pick_links = lk
            cand[pick] = True  # the island is connected, so a neighbour always exists
        inner = 0
        for v in range(G):
            for w in range(v + 1, G):
                if cand[v] and cand[w]:
                    inner += links[v, w]
        if count == 1:  # a single GPU: take the least connected one, keep the well-linked ones together
            inner = 0
            for w in range(G):
                if members[w] and w != start:
                    inner -= links[start, w]
        if inner > best_links:
            best_links = inner
            for g in range(G):
                out[g] = cand[g]
    return count
