"""Node-scoring policies: FGD, the published baselines, Kubernetes' two, and gpuplace's — one import path.

Reading order (each module holds its Numba kernels with their plain-Python twins below them):
- `definitions` — the `Policy` names and their definitions, the `Request` and `Context` a policy gets;
- `node_ops` — per-node operations every policy shares (fits, free GPU, which GPU a share takes);
- `fgd` — FGD: ΔF, the fragmentation a placement removes, as a score (`frag_gain`, shared with gpuplace);
- `gpuplace` — gpuplace's policy: exact ΔF plus where the node's headroom should go (spread, pack, fill);
- `baselines` — GpuPacking, GpuClustering, BestFit, DotProd, MostAllocated / LeastAllocated;
- `node` — `node_score`: any policy on one node (the simulator's replay loop calls it);
- `reserve` — the empty 8-GPU nodes gpuplace holds back for whole-node jobs;
- `grouping` — nodes grouped by state, so the fragmentation-aware policies score each state once;
- `batch` — `score_all` over every node, and its Python entry point `score_nodes`.
"""

from placement_core.policies.baselines import (
    allocated_value,
    best_fit_value,
    dot_prod_value,
    gpu_clustering_value,
    gpu_packing_value,
)
from placement_core.policies.batch import score_all, score_all_twin, score_nodes
from placement_core.policies.definitions import NEG_INF, WHOLE, Context, Policy, Request, kind_of
from placement_core.policies.fgd import fgd_node, fgd_value, frag_gain, share_scores
from placement_core.policies.gpuplace import (
    W_CPU,
    W_FRAG,
    W_GPU,
    W_MEM,
    gpuplace_node,
    pack_value,
    spread_value,
    stranding_risk,
)
from placement_core.policies.grouping import group_states, group_states_twin, state_key
from placement_core.policies.node import node_score, node_score_twin
from placement_core.policies.node_ops import (
    fits,
    fits_twin,
    gpu_capacity,
    gpu_free_total,
    random_gpu,
    take_whole,
    tightest_gpu,
)
from placement_core.policies.reserve import RESERVE_PENALTY, is_empty_big, reserve_plan, reserved_nodes

__all__ = [
    "NEG_INF",
    "RESERVE_PENALTY",
    "WHOLE",
    "W_CPU",
    "W_FRAG",
    "W_GPU",
    "W_MEM",
    "Context",
    "Policy",
    "Request",
    "allocated_value",
    "best_fit_value",
    "dot_prod_value",
    "fgd_node",
    "fgd_value",
    "fits",
    "fits_twin",
    "frag_gain",
    "gpu_capacity",
    "gpu_clustering_value",
    "gpu_free_total",
    "gpu_packing_value",
    "gpuplace_node",
    "group_states",
    "group_states_twin",
    "is_empty_big",
    "kind_of",
    "node_score",
    "node_score_twin",
    "pack_value",
    "random_gpu",
    "reserve_plan",
    "reserved_nodes",
    "score_all",
    "score_all_twin",
    "score_nodes",
    "share_scores",
    "spread_value",
    "state_key",
    "stranding_risk",
    "take_whole",
    "tightest_gpu",
]
