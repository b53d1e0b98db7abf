"""What one pod asks for, in placement terms, and its compiled (array) form for the kernels."""

from __future__ import annotations

import enum
from dataclasses import dataclass

WHOLE = 1000  # milli-GPU in one GPU


class NvlinkNeed(enum.IntEnum):
    NONE = 0  # topology ignored
    PREFERRED = 1  # score NVLink-connected sets higher, never reject for it
    REQUIRED = 2  # the GPUs must be one NVLink-connected set


class Scope(enum.IntEnum):
    """How far apart the members of a gang may land (multi-node topology)."""

    ANY = 0
    ZONE = 1
    RACK = 2
    CLIQUE = 3  # one multi-node NVLink domain (`nvidia.com/gpu.clique`)
    NODE = 4


@dataclass(frozen=True, slots=True)
class GpuRequest:
    """A pod's GPU needs.

    Exactly one of three shapes: whole GPUs (`count` ≥ 1, `milli` = 1000), a fractional share of one GPU
    (`count` = 1, 0 < `milli` < 1000, time-sliced), or `count` MIG instances of `mig_profile`.
    `models` restricts catalog model names (None = any); `min_memory_mib` applies per GPU.
    `cpu_milli`/`memory_mib` are always counted (placements carry them; the policies score with them);
    `fit_cpu_memory=False` keeps them from making a node infeasible, for callers whose cpu/memory
    fit is decided elsewhere (the kube-scheduler extender: NodeResourcesFit).
    """

    count: int = 1
    milli: int = WHOLE
    min_memory_mib: int = 0
    models: frozenset[str] | None = None
    mig_profile: str | None = None
    nvlink: NvlinkNeed = NvlinkNeed.NONE
    scope: Scope = Scope.NODE
    cpu_milli: int = 0
    memory_mib: int = 0
    fit_cpu_memory: bool = True

    def __post_init__(self) -> None:
        if self.count < 0 or self.count > 64:
            raise ValueError(f"GPU count must be 0..64, got {self.count}")
        if not 0 < self.milli <= WHOLE:
            raise ValueError(f"GPU share must be 1..1000 milli-GPU, got {self.milli}")
        if self.milli < WHOLE and self.count != 1:
            raise ValueError("a fractional GPU share applies to exactly one GPU")
        if self.mig_profile is not None and self.milli != WHOLE:
            raise ValueError("a MIG request cannot also ask for a fractional share")
        if self.min_memory_mib < 0 or self.cpu_milli < 0 or self.memory_mib < 0:
            raise ValueError("resource amounts must not be negative")

    @property
    def is_share(self) -> bool:
        return self.milli < WHOLE

    @property
    def gpu_milli_total(self) -> int:
        return self.milli if self.is_share else self.count * WHOLE

    def describe(self) -> str:
        if self.mig_profile:
            what = f"{self.count}× MIG {self.mig_profile}"
        elif self.is_share:
            what = f"{self.milli / WHOLE:.2f} of a GPU"
        else:
            what = f"{self.count} GPU" + ("s" if self.count != 1 else "")
        if self.nvlink == NvlinkNeed.REQUIRED and self.count > 1:
            what += " (NVLink-connected)"
        return what
