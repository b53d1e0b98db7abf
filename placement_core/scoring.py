"""The placer's node scores for one request over all nodes: the GPU part of most-allocated,
least-allocated and best-fit, + topology.

For each feasible node (reason == OK) the *base* score looks at the node's GPU utilisation after placing
the request (MIG requests: its MIG instances); the `Policy` names are those of
`placement_core.policies`, whose definitions cover CPU and memory too (kube-scheduler's own
NodeResourcesFit scores those beside the extender):
- MOST_ALLOCATED (pack): used_after / total — fills busy nodes first, keeps whole nodes free.
- LEAST_ALLOCATED (spread): 1 − used_after / total.
- BEST_FIT: −(GPUs left free after placing) — the tightest hole wins, in absolute GPUs.
For multi-GPU requests a *topology* term adds `topo_weight × k / s`, where s is the size of the smallest
free NVLink island that can hold the k GPUs: an exact fit scores 1 and a job that would break a big island
scores less, which keeps 8-GPU islands whole for 8-GPU jobs. Infeasible nodes score −inf.
The fragmentation-aware policies (FGD and gpuplace's) live in placement_core.policies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from numba import njit

from placement_core.islands import smallest_island_at_least_at, smallest_island_at_least_py
from placement_core.policies.definitions import Policy
from placement_core.request import WHOLE

if TYPE_CHECKING:
    from placement_core.cluster import ClusterState

_MOST, _LEAST, _BEST_FIT = 0, 1, 2  # the kernels' rule codes
RULES = {Policy.MOST_ALLOCATED: _MOST, Policy.LEAST_ALLOCATED: _LEAST, Policy.BEST_FIT: _BEST_FIT}


def rule_of(policy: Policy) -> int:
    """The kernel's rule code for one of the three policies the placer scores (ValueError otherwise)."""
    try:
        return RULES[policy]
    except KeyError:
        names = ", ".join(p.label for p in RULES)
        raise ValueError(f"the placer scores {names}, not {Policy(policy).label}") from None


def _base_py(rule: int, total: float, used_after: float) -> float:
    if total <= 0:
        return 0.0
    if rule == _MOST:
        return used_after / total
    if rule == _LEAST:
        return 1.0 - used_after / total
    return -(total - used_after) / WHOLE


def score_twin(
    s: ClusterState,
    reason: npt.NDArray[Any],
    rule: int,
    count: int,
    milli: int,
    mig_id: int,
    topo_weight: float,
) -> npt.NDArray[np.float64]:
    """Per node score as documented in the module docstring."""
    n = s.n_rows
    out = np.full(n, -np.inf)
    for i in range(n):
        if reason[i] != 0:
            continue
        healthy = s.gpu_present[i] & s.gpu_healthy[i]
        if mig_id >= 0:
            inst = (s.mig_profile[i] >= 0) & healthy[:, None]
            total = float(inst.sum()) * WHOLE
            used_after = float((inst & s.mig_used[i]).sum() + count) * WHOLE
            out[i] = _base_py(rule, total, used_after)
            continue
        plain = healthy & ~s.gpu_mig[i]
        total = float(plain.sum()) * WHOLE
        free_now = float(np.clip(s.gpu_free_milli[i][plain], 0, WHOLE).sum())
        used_after = total - free_now + (milli if milli < WHOLE else count * WHOLE)
        out[i] = _base_py(rule, total, used_after)
        if count > 1 and milli >= WHOLE and topo_weight > 0:
            free = plain & (s.gpu_free_milli[i] >= WHOLE)
            size = smallest_island_at_least_py(s.links[i], free, count)
            out[i] += topo_weight * (count / size if size else 0.0)
    return out


@njit(cache=True, nogil=True)
def score_kernel(
    gpu_present,
    gpu_healthy,
    gpu_free_milli,
    gpu_mig,
    links,
    link_class,
    island_tables,
    mig_profile,
    mig_used,
    n,
    reason,
    rule,
    count,
    milli,
    mig_id,
    topo_weight,
    out,
):
    """Fills out[:n]; same rule as `score_twin`."""
    G = gpu_present.shape[1]
    S = mig_profile.shape[2]
    free = np.empty(G, np.bool_)
    for i in range(n):
        if reason[i] != 0:
            out[i] = -np.inf
            continue
        total = 0.0
        used_after = 0.0
        if mig_id >= 0:
            used = 0
            inst = 0
            for g in range(G):
                if gpu_present[i, g] and gpu_healthy[i, g]:
                    for k in range(S):
                        if mig_profile[i, g, k] >= 0:
                            inst += 1
                            if mig_used[i, g, k]:
                                used += 1
            total = inst * float(WHOLE)
            used_after = (used + count) * float(WHOLE)
        else:
            free_now = 0.0
            for g in range(G):
                p = gpu_present[i, g] and gpu_healthy[i, g] and not gpu_mig[i, g]
                free[g] = p and gpu_free_milli[i, g] >= WHOLE
                if p:
                    total += WHOLE
                    free_now += min(max(gpu_free_milli[i, g], 0), WHOLE)
            used_after = total - free_now + (milli if milli < WHOLE else count * WHOLE)
        if total <= 0:
            base = 0.0
        elif rule == _MOST:
            base = used_after / total
        elif rule == _LEAST:
            base = 1.0 - used_after / total
        else:
            base = -(total - used_after) / WHOLE
        if mig_id < 0 and count > 1 and milli >= WHOLE and topo_weight > 0:
            size = smallest_island_at_least_at(island_tables, link_class[i], links[i], free, count)
            if size > 0:
                base += topo_weight * (count / size)
        out[i] = base
