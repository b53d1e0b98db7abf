"""What a node-scoring policy is: the `Policy` names, and the request and context every policy is given.

Every policy answers, for one request and one node: a score (higher is better, −inf = infeasible) and, for
a fractional share, which GPU on that node it would take (−1 otherwise; whole-GPU sets are chosen by the
GPU-set chooser). Published policies score in kube-scheduler units (0–100): with `quantize=True` a score is
truncated to the integer their reference implementation compares (FGD's simulator,
alibaba/kubernetes-scheduler-simulator, then breaks equal scores by a random node order) — this matters:
FGD with exact scores allocates ~1.4 points less on the openb trace. Definitions (FGD paper §6.1 and that
simulator's plugins):

- RANDOM: uniform over feasible nodes (the caller supplies one uniform draw `u` per node); a random fitting
  GPU for shares.
- BEST_FIT: 100·(1 − ½·(cpu_free − cpu)/max_cpu − ½·(gpu_free − gpu)/max_gpu) — least left over wins.
- DOT_PROD (Tetris): 100·(1 − ½·(free · request)), [cpu, gpu] vectors normalised by the largest node.
- GPU_PACKING: shared GPUs first (100 − free % of the GPUs used / 10, ≥ 50), then partly used nodes
  (50 − whole GPUs taken, ≥ 33), then empty nodes (33 − free GPUs).
- GPU_CLUSTERING: nodes hosting only pods of the same kind (share / k-GPU) 75–100, with that kind among
  others 50–75, empty 25–50, others 0–25; fuller is better inside a band. CPU-only pods score 0 everywhere.
- FGD: 100·sigmoid(ΔF/1000), ΔF = node fragmentation before − after placing (placement_core.fragmentation);
  a share takes the GPU with the largest score (lowest index on ties).
- MOST_ALLOCATED / LEAST_ALLOCATED: Kubernetes NodeResourcesFit over cpu, memory and GPU milli, weight 1
  each: mean of requested-after / allocatable (or its complement) × 100. (The extender's placer scores
  the GPU part of these and of BEST_FIT: `placement_core.scoring`.)
- GPUPLACE (see `gpuplace.gpuplace_node`): W_FRAG·ΔF/1000 with a memory-aware typical-pod
  distribution, plus the CPU, memory and GPU fractions the node keeps free after placement (whole-node
  jobs: the reverse, the smallest node that fits), minus RESERVE_PENALTY on the empty 8-GPU nodes held
  back for 8-GPU jobs (`reserve.reserve_plan` sizes that reserve per node class from the 8-GPU jobs'
  share of the GPU demand).
Other policies put shares on the tightest GPU that fits (the reference's "best" GPU selection).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from placement_core.request import WHOLE
from placement_core.workload import BIG_JOB_GPUS, BigJob, TypicalPods

__all__ = ["NEG_INF", "WHOLE", "Context", "Policy", "Request", "kind_of"]

NEG_INF = -np.inf


class Policy(enum.IntEnum):
    RANDOM = 0
    BEST_FIT = 1
    DOT_PROD = 2
    GPU_PACKING = 3
    GPU_CLUSTERING = 4
    FGD = 5
    MOST_ALLOCATED = 6
    LEAST_ALLOCATED = 7
    GPUPLACE = 8

    @property
    def label(self) -> str:
        return _LABELS[self]

    @classmethod
    def parse(cls, name: str) -> Policy:
        key = name.strip().lower().replace("-", "").replace("_", "")
        for p in cls:
            if key in (p.label.lower(), p.name.lower().replace("_", "")):
                return p
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(p.label for p in cls)}")


_LABELS = {
    Policy.RANDOM: "Random",
    Policy.BEST_FIT: "BestFit",
    Policy.DOT_PROD: "DotProd",
    Policy.GPU_PACKING: "GpuPacking",
    Policy.GPU_CLUSTERING: "GpuClustering",
    Policy.FGD: "FGD",
    Policy.MOST_ALLOCATED: "MostAllocated",
    Policy.LEAST_ALLOCATED: "LeastAllocated",
    Policy.GPUPLACE: "gpuplace",
}
_RANDOM, _BEST_FIT, _DOT_PROD, _GPU_PACKING, _GPU_CLUSTERING, _FGD, _MOST, _LEAST, _GPUPLACE = range(9)


def kind_of(count: int, milli: int) -> int:
    """GpuClustering's pod kind, a column of `node_kinds`: 0 = share, k = k whole GPUs, −1 = no GPU."""
    if count <= 0:
        return -1
    return 0 if milli < WHOLE else count


@dataclass(frozen=True, slots=True)
class Request:
    """One pod: `gpu_milli` per GPU (1000 = whole GPUs; < 1000 = a share, count 1); `allowed` bool[M]."""

    cpu_milli: int
    memory_mib: int
    gpu_count: int
    gpu_milli: int
    allowed: npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Context:
    """Scoring inputs besides the node arrays: the typical pods compiled against the model ids, the largest
    node's CPU and GPU milli (BestFit/DotProd normalisation), the integer-score switch, and the big jobs
    gpuplace keeps empty nodes for."""

    tp_cpu: npt.NDArray[np.int64]
    tp_mem: npt.NDArray[np.int64]
    tp_count: npt.NDArray[np.int32]
    tp_milli: npt.NDArray[np.int32]
    tp_allowed: npt.NDArray[np.bool_]
    tp_weight: npt.NDArray[np.float64]
    max_cpu: int
    max_gpu_milli: int
    quantize: bool = False
    big_jobs: tuple[BigJob, ...] = ()
    big_gpus: int = BIG_JOB_GPUS

    @classmethod
    def build(
        cls,
        typical: TypicalPods,
        model_names: list[str] | tuple[str, ...],
        gpu_present: npt.NDArray[np.bool_],
        node_cpu_total: npt.NDArray[np.int64],
        *,
        quantize: bool = False,
    ) -> Context:
        """A context for a cluster, with BestFit/DotProd normalisers taken from its largest node."""
        return cls(
            *typical.arrays(model_names),
            max_cpu=max(1, int(node_cpu_total.max(initial=0))),
            max_gpu_milli=max(WHOLE, int(gpu_present.sum(axis=1).max(initial=0)) * WHOLE),
            quantize=quantize,
            big_jobs=typical.big_jobs,
        )

    def typical_args(
        self,
    ) -> tuple[
        npt.NDArray[np.int64],
        npt.NDArray[np.int64],
        npt.NDArray[np.int32],
        npt.NDArray[np.int32],
        npt.NDArray[np.bool_],
        npt.NDArray[np.float64],
    ]:
        return self.tp_cpu, self.tp_mem, self.tp_count, self.tp_milli, self.tp_allowed, self.tp_weight
