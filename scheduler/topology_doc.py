"""The `gpuplace.io/gpu-topology` node annotation, version 1: schema and validation.

Why an annotation of our own: no standard label says which GPU is which inside a node, how they are
NVLinked, which are healthy, or how MIG is laid out — GFD labels carry model, memory and counts only.
A node agent (or an operator, by hand) may publish this document; without it gpuplace assumes the
product's preset (see placement_core.topology). The schema (scheduler/README.md has an example):

    {"version": 1,
     "gpus": [{"index": 0, "uuid": "GPU-…", "model": "NVIDIA-H100-80GB-HBM3", "memoryMiB": 81559,
               "healthy": true, "mig": [{"profile": "3g.40gb", "start": 0, "uuid": "MIG-…"}]}, …],
     "links": [[0, 18, …], …]}

- `gpus` lists every GPU once, indices 0..n-1 (the order of `nvidia-smi -L`).
- `model` is a GFD product string or a catalog name; absent → the node's `nvidia.com/gpu.product`.
  All GPUs of a node must be the same model.
- `memoryMiB` absent → the `nvidia.com/gpu.memory` label or the catalog's value.
- `mig` absent or null → MIG off; `[]` → MIG on with no instances yet. `start` is the first memory slice.
- `links` (optional): n×n NVLink counts between GPUs, symmetric, zero diagonal; absent → preset.
Unknown keys are ignored (a v1 reader accepts v1 documents with additions); any other `version` is
rejected. A document that fails validation never breaks the node: gpuplace logs a warning, counts it
in `gpuplace_topology_annotation_invalid_total`, and uses the labels and presets instead.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Doc(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class MigEntry(_Doc):
    profile: str = Field(min_length=1)
    start: int = Field(ge=0, le=7)
    uuid: str = ""


class GpuEntry(_Doc):
    index: int = Field(ge=0, le=63)
    uuid: str = ""
    model: str = ""
    memory_mib: int | None = Field(None, alias="memoryMiB", ge=0)
    healthy: bool = True
    mig: list[MigEntry] | None = None


class TopologyDoc(_Doc):
    version: Literal[1]
    gpus: list[GpuEntry] = Field(min_length=1, max_length=64)
    links: list[list[int]] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TopologyDoc:
        n = len(self.gpus)
        if sorted(g.index for g in self.gpus) != list(range(n)):
            raise ValueError(f"gpus must have indices 0..{n - 1}, each once")
        models = {g.model for g in self.gpus if g.model}
        if len(models) > 1:
            raise ValueError(f"all GPUs of a node must be one model, got {sorted(models)}")
        if self.links is not None:
            if len(self.links) != n or any(len(row) != n for row in self.links):
                raise ValueError(f"links must be a {n}×{n} matrix")
            for i in range(n):
                if self.links[i][i] != 0:
                    raise ValueError("links must have a zero diagonal")
                for j in range(n):
                    if not 0 <= self.links[i][j] <= 255:
                        raise ValueError("link counts must be 0..255")
                    if self.links[i][j] != self.links[j][i]:
                        raise ValueError(f"links must be symmetric (GPU {i}–{j})")
        return self

    def ordered(self) -> list[GpuEntry]:
        return sorted(self.gpus, key=lambda g: g.index)


def parse_topology(raw: str) -> TopologyDoc:
    """Validate an annotation value; ValueError with a one-line reason when it is not a v1 document."""
    try:
        return TopologyDoc.model_validate_json(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise ValueError(f"{where}: {first['msg']}") from None
