"""Policy name (from the config) → scoring function over all nodes.

Why a registry of plain functions: prioritize must not know which policy it runs, and a new policy
(placement_core.policies: FGD and gpuplace's default, once its entry point settles) is one more line in
`POLICIES`. Every function has the shape of `placer.score`: raw float per row, higher is better, −inf
where `reason` says infeasible; prioritize normalises to kube-scheduler's 0..10.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from placement_core import ClusterState, GpuRequest, Policy, placer

ScoreFn = Callable[[ClusterState, GpuRequest, npt.NDArray[np.int8]], npt.NDArray[np.float64]]


def _placer(policy: Policy) -> Callable[[float], ScoreFn]:
    def make(topology_weight: float) -> ScoreFn:
        def fn(state: ClusterState, req: GpuRequest, reason: npt.NDArray[np.int8]) -> npt.NDArray[np.float64]:
            return placer.score(state, req, reason, policy, topo_weight=topology_weight)

        return fn

    return make


# name → factory(topology_weight) → ScoreFn. The default is most-allocated + topology until
# placement_core.policies exposes a ClusterState-level entry point; then add e.g.
#   "gpuplace": lambda w: policies_adapter(PolicyId.GPUPLACE, w),
POLICIES: dict[str, Callable[[float], ScoreFn]] = {
    "most-allocated": _placer(Policy.MOST_ALLOCATED),
    "least-allocated": _placer(Policy.LEAST_ALLOCATED),
    "best-fit": _placer(Policy.BEST_FIT),
}
DEFAULT_POLICY = "most-allocated"


def scoring_function(name: str, topology_weight: float) -> ScoreFn:
    try:
        return POLICIES[name](topology_weight)
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(sorted(POLICIES))}") from None
