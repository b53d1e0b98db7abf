"""Plain descriptions of a node's hardware, as the cluster model takes them in.

Whoever reads the cluster (the extender's Kubernetes cache, the simulator's CSV reader, tests) builds a
`NodeSpec`; `ClusterState.upsert_node` turns it into array rows. Nothing here knows Kubernetes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from placement_core.catalog import GpuModel, MigProfile
from placement_core.topology import LinkMatrix, preset


@dataclass(frozen=True, slots=True)
class MigInstance:
    """An existing MIG GPU instance: `profile` placed at memory slice `start`."""

    profile: MigProfile
    start: int


@dataclass(frozen=True, slots=True)
class GpuSpec:
    index: int
    memory_mib: int
    healthy: bool = True
    uuid: str = ""
    mig: tuple[MigInstance, ...] | None = None  # None = MIG off; () = MIG on, no instances yet


@dataclass(slots=True)
class NodeSpec:
    name: str
    model: GpuModel | None  # None for CPU-only nodes
    gpus: list[GpuSpec] = field(default_factory=list)
    links: LinkMatrix | None = None  # None = the model's preset
    cpu_milli: int = 0
    memory_mib: int = 0
    zone: str = ""
    rack: str = ""
    clique: str = ""
    schedulable: bool = True
    # GPUs shared by time-slicing (or MPS) replicas. False: every unit of the GPU resource is a whole
    # device, so a fractional share cannot be placed and one found there costs a whole GPU.
    time_sliced: bool = True

    @classmethod
    def uniform(
        cls,
        name: str,
        model: GpuModel | None,
        count: int,
        *,
        cpu_milli: int = 0,
        memory_mib: int = 0,
        **kw: object,
    ) -> NodeSpec:
        """A node with `count` identical healthy GPUs of `model`, topology from its preset."""
        mem = model.memory_mib if model else 0
        gpus = [GpuSpec(i, mem) for i in range(count)] if model else []
        return cls(name, model, gpus, None, cpu_milli, memory_mib, **kw)  # type: ignore[arg-type]

    def link_matrix(self) -> LinkMatrix:
        n = len(self.gpus)
        if self.links is not None:
            m = np.asarray(self.links, dtype=np.uint8)
            if m.shape != (n, n):
                raise ValueError(f"node {self.name}: link matrix is {m.shape}, expected {(n, n)}")
            return m
        if self.model is None:
            return np.zeros((n, n), dtype=np.uint8)
        return preset(self.model.nvlink, n, self.model.name)

    def validate(self) -> None:
        """Reject inconsistent hardware descriptions (overlapping MIG slices, bad indices)."""
        for pos, g in enumerate(self.gpus):
            if g.index != pos:
                raise ValueError(f"node {self.name}: GPU at position {pos} has index {g.index}")
            if g.mig is None:
                continue
            if self.model is None or not self.model.mig_capable:
                raise ValueError(
                    f"node {self.name}: GPU {g.index} has MIG instances but its model has no MIG"
                )
            occupied = 0
            for inst in g.mig:
                if inst.start not in inst.profile.starts:
                    raise ValueError(
                        f"node {self.name}: GPU {g.index}: {inst.profile.name} cannot start at slice {inst.start}"
                    )
                mask = ((1 << inst.profile.size) - 1) << inst.start
                if occupied & mask:
                    raise ValueError(
                        f"node {self.name}: GPU {g.index}: MIG instances overlap at slice {inst.start}"
                    )
                occupied |= mask
            if len(g.mig) > 8:
                raise ValueError(f"node {self.name}: GPU {g.index}: more than 8 MIG instances")
