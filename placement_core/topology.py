"""NVLink topology inside a node: GPU×GPU link matrices, presets, and NVLink islands.

A link matrix `links[i, j]` holds the number of bonded NVLinks between GPUs i and j (0 = no NVLink,
traffic goes over PCIe/SMP). NVSwitch systems are modelled as all-to-all with the per-GPU link count,
which is what `nvidia-smi topo -m` prints for them.

An *NVLink island* is a connected component of the NVLink graph restricted to the GPUs under
consideration (usually the free ones). A set of GPUs is *NVLink-connected* when it induces a connected
subgraph: collectives between its members never have to leave NVLink. We chose connectivity rather than
"every pair directly linked" because the DGX-1 hybrid cube-mesh has no directly-linked 8-set yet NCCL rings
over all 8 GPUs stay on NVLink; the GPU-set chooser still prefers sets with more direct links.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

LinkMatrix = npt.NDArray[np.uint8]

# DGX-1 / HGX-1 V100 hybrid cube-mesh, `nvidia-smi topo -m` (GPU-FACTS.md).
_DGX1_V100 = (
    (0, 1, 1, 2, 2, 0, 0, 0),
    (1, 0, 2, 1, 0, 2, 0, 0),
    (1, 2, 0, 2, 0, 0, 1, 0),
    (2, 1, 2, 0, 0, 0, 0, 1),
    (2, 0, 0, 0, 0, 1, 1, 2),
    (0, 2, 0, 0, 1, 0, 2, 1),
    (0, 0, 1, 0, 1, 2, 0, 2),
    (0, 0, 0, 1, 2, 1, 2, 0),
)


def all_to_all(n: int, links: int) -> LinkMatrix:
    """NVSwitch (HGX A100 NV12, HGX H100/H200/B200 NV18, DGX-2 NV6): every pair linked."""
    m = np.full((n, n), links, dtype=np.uint8)
    np.fill_diagonal(m, 0)
    return m


def bridge_pairs(n: int, links: int = 12) -> LinkMatrix:
    """PCIe boards with NVLink bridges between neighbours: pairs (0,1), (2,3), …"""
    m = np.zeros((n, n), dtype=np.uint8)
    for i in range(0, n - 1, 2):
        m[i, i + 1] = m[i + 1, i] = links
    return m


def dgx1_v100(n: int = 8) -> LinkMatrix:
    """Hybrid cube-mesh of DGX-1 V100; for other sizes fall back to no NVLink."""
    if n != 8:
        return np.zeros((n, n), dtype=np.uint8)
    return np.array(_DGX1_V100, dtype=np.uint8)


def nvswitch_trays(n: int, per_tray: int = 4, links: int = 18) -> LinkMatrix:
    """GB200 compute tray: 4 GPUs per tray all-to-all; the multi-node domain is the clique label."""
    m = np.zeros((n, n), dtype=np.uint8)
    for start in range(0, n, per_tray):
        stop = min(n, start + per_tray)
        m[start:stop, start:stop] = links
    np.fill_diagonal(m, 0)
    return m


def preset(name: str, n: int, model_name: str = "") -> LinkMatrix:
    """Link matrix for a preset name from the catalog (`GpuModel.nvlink`) and GPU count."""
    if n <= 1:
        return np.zeros((max(n, 0), max(n, 0)), dtype=np.uint8)
    if name == "nvswitch":
        if n == 4 and model_name.startswith("H100"):
            return all_to_all(n, 6)
        if n == 4 and model_name.startswith("A100"):
            return all_to_all(n, 4)
        links = 12 if model_name.startswith(("A100", "A800")) else 18
        return all_to_all(n, links)
    if name == "nvswitch4":
        return nvswitch_trays(n)
    if name == "dgx1":
        return dgx1_v100(n)
    if name == "pairs":
        return bridge_pairs(n, 4 if model_name.startswith(("A40", "RTX")) else 12)
    return np.zeros((n, n), dtype=np.uint8)


PRESETS = ("nvswitch", "nvswitch4", "dgx1", "pairs", "none")


def islands(links: LinkMatrix, members: npt.NDArray[np.bool_]) -> list[list[int]]:
    """Connected components of the NVLink graph restricted to `members` (pure Python, for display)."""
    n = len(members)
    seen = [False] * n
    out: list[list[int]] = []
    for s in range(n):
        if not members[s] or seen[s]:
            continue
        comp, stack = [], [s]
        seen[s] = True
        while stack:
            u = stack.pop()
            comp.append(u)
            for v in range(n):
                if members[v] and not seen[v] and links[u, v] > 0:
                    seen[v] = True
                    stack.append(v)
        out.append(sorted(comp))
    return out
