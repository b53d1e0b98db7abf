"""Why a node cannot take a pod: reason codes the kernels emit, and the sentence a person reads."""

from __future__ import annotations

import enum


class Reason(enum.IntEnum):
    OK = 0
    # Unresolvable: no preemption on this node can ever fix these.
    UNSCHEDULABLE = 1
    NO_GPUS = 2
    MODEL = 3
    GPU_MEMORY = 4
    TOO_FEW_GPUS = 5
    MIG_ABSENT = 6
    NVLINK_TOPOLOGY = 7
    # Resolvable: freeing running work on the node could fix these.
    CPU = 8
    MEMORY = 9
    GPUS_BUSY = 10
    NVLINK_BUSY = 11
    SHARE_BUSY = 12
    MIG_BUSY = 13
    # Unresolvable too (numbered after the others so existing codes keep their values).
    SHARE_NOT_TIME_SLICED = 14

    @property
    def unresolvable(self) -> bool:
        return 0 < self.value < Reason.CPU.value or self is Reason.SHARE_NOT_TIME_SLICED

    @property
    def slug(self) -> str:
        """Low-cardinality label for metrics."""
        return self.name.lower()


def explain(
    reason: int,
    detail: int,
    *,
    what: str,
    count: int,
    milli: int,
    min_memory_mib: int,
    mig_profile: str | None,
    models: str,
) -> str:
    """A sentence for one rejected node, e.g. 'needs 4 NVLink-connected GPUs; largest free NVLink island here is 2'."""
    r = Reason(reason)
    if r is Reason.UNSCHEDULABLE:
        return "node is unschedulable or unknown to gpuplace"
    if r is Reason.NO_GPUS:
        return "node has no GPUs"
    if r is Reason.MODEL:
        return f"GPU model is not one of {models}"
    if r is Reason.GPU_MEMORY:
        return f"needs GPUs with ≥ {min_memory_mib} MiB; largest GPU here has {detail} MiB"
    if r is Reason.TOO_FEW_GPUS:
        return f"needs {count} GPUs; node has {detail} suitable GPUs in total"
    if r is Reason.MIG_ABSENT:
        return f"needs {count}× MIG {mig_profile}; node has {detail} such instances in total"
    if r is Reason.NVLINK_TOPOLOGY:
        return f"needs {count} NVLink-connected GPUs; largest NVLink island on this node is {detail}"
    if r is Reason.CPU:
        return f"not enough CPU free ({detail}m free)"
    if r is Reason.MEMORY:
        return f"not enough memory free ({detail} MiB free)"
    if r is Reason.GPUS_BUSY:
        return f"needs {count} free GPUs; {detail} free here"
    if r is Reason.NVLINK_BUSY:
        return f"needs {count} NVLink-connected GPUs; largest free NVLink island here is {detail}"
    if r is Reason.SHARE_BUSY:
        return f"needs {milli}m of one GPU; most free on any GPU here is {max(detail, 0)}m"
    if r is Reason.MIG_BUSY:
        return f"needs {count}× MIG {mig_profile}; {detail} free here"
    if r is Reason.SHARE_NOT_TIME_SLICED:
        return (
            f"needs a {milli}m share of a GPU; GPUs here are not time-sliced (nvidia.com/gpu.replicas "
            "absent or 1), so the device plugin would hand out a whole GPU"
        )
    return f"feasible ({what})"
