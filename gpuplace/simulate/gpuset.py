"""Which whole GPUs inside the chosen node a pod gets, and the NVLink presets of the openb models.

The openb trace has no topology, so the simulator assumes one per model (documented in the bench README):
- G2, G3 (undisclosed, 8 GPUs/node): HGX-class NVSwitch boards, every pair linked (one 8-GPU island);
  the same for the multi-GPU models of the Alibaba 2026 node list (A100/A800-SXM4-80GB, H800: HGX boards;
  the undisclosed GPU-series-1/2 assumed so);
- V100M16 / V100M32 with 8 GPUs: DGX-1 / HGX-1 hybrid cube-mesh (placement_core.topology.dgx1_v100);
- V100M16 / V100M32 with 4 GPUs: all four pairwise NVLinked (DGX Station style);
- T4, P100 (PCIe), A10, and single-GPU nodes: no NVLink.
A GPU set is *inside one NVLink island* when it induces a connected NVLink subgraph — the definition
placement_core.islands uses.

Two choosers: `first_free` takes the lowest-index fully free GPUs (what FGD's reference simulator and the
published baselines do), `connected_set` keeps a k-GPU pod on one NVLink island whenever the node has a
free one, using placement_core.gpuset.choose_gpus_kernel (the chooser bind uses).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

from placement_core.gpuset import choose_gpus_kernel
from placement_core.request import WHOLE
from placement_core.topology import all_to_all, dgx1_v100

NVSWITCH_MODELS = ("G2", "G3", "A100-SXM4-80GB", "A800-SXM4-80GB", "H800", "GPU-series-1", "GPU-series-2")
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
def connected_set(free, present, links, count, out):  # type: ignore[no-untyped-def]
    """Mark in `out` the GPUs placement_core's chooser picks (the extender's bind uses the same kernel):
    an NVLink-connected set when the node has one, most links inside, biggest island left intact."""
    G = free.shape[0]
    zeros_mem = np.zeros(G, np.int32)
    no_mig = np.zeros(G, np.bool_)
    chosen = choose_gpus_kernel(present, present, zeros_mem, free, no_mig, links, count, 0, False)
    for g in range(G):
        out[g] = False
    for j in range(chosen.shape[0]):
        out[chosen[j]] = True
    return chosen.shape[0]
