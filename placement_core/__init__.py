"""placement_core: the pure GPU placement library behind gpuplace (numpy and numba only).

Entry points: `ClusterState` (the struct-of-arrays cluster model), `NodeSpec` (hardware descriptions),
`GpuRequest` (what a pod asks for), and `placer.evaluate / score / choose` (kernels over all nodes).
"""

from placement_core.catalog import MODELS, GpuModel, MigProfile, resolve_product
from placement_core.cluster import ClusterState, DoubleBookingError, Placement
from placement_core.inventory import GpuSpec, MigInstance, NodeSpec
from placement_core.policies import Policy
from placement_core.reasons import Reason, explain
from placement_core.request import WHOLE, GpuRequest, NvlinkNeed, Scope

__all__ = [
    "MODELS",
    "WHOLE",
    "ClusterState",
    "DoubleBookingError",
    "GpuModel",
    "GpuRequest",
    "GpuSpec",
    "MigInstance",
    "MigProfile",
    "NodeSpec",
    "NvlinkNeed",
    "Placement",
    "Policy",
    "Reason",
    "Scope",
    "explain",
    "resolve_product",
]
