"""The typical-pod distribution: what the next pod is likely to ask for.

Fragmentation is only defined against a workload (FGD, USENIX ATC'23, §4): a free GPU slice is a fragment
when the pods that usually arrive cannot use it. The distribution is a short list of pod shapes with
weights summing to 1. `typical_pods` builds it from any pod list with FGD's rule; `DEFAULT_TYPICAL_PODS`
is that rule applied once to the Alibaba openb default trace and embedded here, so an installation needs
no data files. `DEFAULT_TYPICAL_PODS` (what gpuplace's default policy uses) also keys shapes on memory, so
that memory, like CPU, can strand GPUs; `FGD_TYPICAL_PODS` is FGD's memory-free form of the same trace.

FGD's rule (alibaba/kubernetes-scheduler-simulator, `GetTypicalPods`, default experiment settings):
group pods by (CPU, GPU milli per GPU, GPU count, allowed models) — memory is not part of the shape —
count each group, sort by count (descending; ties by larger CPU, then larger milli, count, model string),
take groups from the top until they cover ≥ `coverage` (95 %) of all pods, and renormalise their counts
to weights. CPU-only pods are kept: they consume the CPU that stranded GPUs would need.

`big_jobs` lists every pod shape needing ≥ `BIG_JOB_GPUS` GPUs (whole 8-GPU nodes), whatever its frequency,
with its share of the total GPU demand; gpuplace keeps empty nodes for them in proportion
(`placement_core.policies.reserve_plan`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from placement_core.request import WHOLE

BIG_JOB_GPUS = 8


@dataclass(frozen=True, slots=True)
class PodShape:
    """The part of a pod that matters for fragmentation. `gpu_milli` is per GPU (1000 = whole GPUs)."""

    cpu_milli: int
    gpu_count: int = 0
    gpu_milli: int = 0
    models: frozenset[str] | None = None  # None = any GPU model
    memory_mib: int = 0

    @property
    def model_key(self) -> str:
        return "|".join(sorted(self.models)) if self.models else ""


@dataclass(frozen=True, slots=True)
class BigJob:
    """A pod shape that needs a whole big node, and its share of all requested GPU milli."""

    cpu_milli: int
    memory_mib: int
    gpu_count: int
    share: float


@dataclass(frozen=True, slots=True)
class TypicalPods:
    """T typical pod shapes as parallel arrays (the form the kernels take) plus their model names."""

    cpu_milli: npt.NDArray[np.int64]  # [T]
    memory_mib: npt.NDArray[np.int64]  # [T] 0 when the distribution ignores memory (FGD's form)
    gpu_count: npt.NDArray[np.int32]  # [T] 0 for CPU-only pods
    gpu_milli: npt.NDArray[np.int32]  # [T] per GPU; 0 for CPU-only pods
    weight: npt.NDArray[np.float64]  # [T] sums to 1
    models: tuple[frozenset[str] | None, ...]  # [T] allowed GPU models, None = any
    big_jobs: tuple[BigJob, ...] = ()  # shapes needing ≥ BIG_JOB_GPUS GPUs, with their GPU-demand share

    @property
    def big_job_share(self) -> float:
        """Fraction of the GPU demand from pods needing ≥ BIG_JOB_GPUS GPUs."""
        return sum(b.share for b in self.big_jobs)

    def __len__(self) -> int:
        return len(self.weight)

    def allowed_matrix(self, model_names: Sequence[str]) -> npt.NDArray[np.bool_]:
        """bool[T, M]: may typical pod t run on model id m (ids = positions in `model_names`)?

        One extra column is appended (like `ClusterState.model_mask`), so M ≥ 1 even with no models.
        """
        out = np.ones((len(self), len(model_names) + 1), np.bool_)
        for t, allowed in enumerate(self.models):
            if allowed is not None:
                out[t, :] = False
                for m, name in enumerate(model_names):
                    out[t, m] = name in allowed
        return out

    def shapes(self) -> list[tuple[PodShape, float]]:
        return [
            (PodShape(int(c), int(n), int(m), models, int(mem)), float(w))
            for c, n, m, models, mem, w in zip(
                self.cpu_milli,
                self.gpu_count,
                self.gpu_milli,
                self.models,
                self.memory_mib,
                self.weight,
                strict=True,
            )
        ]

    def arrays(
        self, model_names: Sequence[str]
    ) -> tuple[
        npt.NDArray[np.int64],
        npt.NDArray[np.int64],
        npt.NDArray[np.int32],
        npt.NDArray[np.int32],
        npt.NDArray[np.bool_],
        npt.NDArray[np.float64],
    ]:
        """(tp_cpu, tp_mem, tp_count, tp_milli, tp_allowed, tp_weight): the kernels' argument order."""
        return (
            self.cpu_milli,
            self.memory_mib,
            self.gpu_count,
            self.gpu_milli,
            self.allowed_matrix(model_names),
            self.weight,
        )


def _normalise(shape: PodShape, with_memory: bool) -> PodShape:
    mem = shape.memory_mib if with_memory else 0
    if shape.gpu_count <= 0 or shape.gpu_milli <= 0:
        return PodShape(shape.cpu_milli, 0, 0, None, mem)
    return PodShape(shape.cpu_milli, shape.gpu_count, shape.gpu_milli, shape.models, mem)


def from_counts(counted: Sequence[tuple[PodShape, float]], *, big_jobs: Sequence[BigJob] = ()) -> TypicalPods:
    """Arrays from (shape, count-or-weight) pairs; weights are renormalised to sum to 1."""
    if not counted:
        raise ValueError("a typical-pod distribution needs at least one pod shape")
    total = float(sum(w for _, w in counted))
    if total <= 0 or any(w < 0 for _, w in counted):
        raise ValueError("typical-pod weights must be positive")
    return TypicalPods(
        cpu_milli=np.array([s.cpu_milli for s, _ in counted], np.int64),
        memory_mib=np.array([s.memory_mib for s, _ in counted], np.int64),
        gpu_count=np.array([s.gpu_count for s, _ in counted], np.int32),
        gpu_milli=np.array([s.gpu_milli for s, _ in counted], np.int32),
        weight=np.array([w / total for _, w in counted], np.float64),
        models=tuple(s.models for s, _ in counted),
        big_jobs=tuple(big_jobs),
    )


def big_jobs(pods: Iterable[PodShape]) -> tuple[BigJob, ...]:
    """Every shape needing ≥ BIG_JOB_GPUS GPUs with its share of the GPU demand (largest share first)."""
    total = 0
    demand: Counter[tuple[int, int, int]] = Counter()
    for p in pods:
        milli = p.gpu_count * p.gpu_milli if p.gpu_count > 0 else 0
        total += milli
        if p.gpu_count >= BIG_JOB_GPUS:
            demand[(p.cpu_milli, p.memory_mib, p.gpu_count)] += milli
    ranked = sorted(demand.items(), key=lambda kv: (-kv[1], -kv[0][0], -kv[0][1]))
    return tuple(BigJob(cpu, mem, n, milli / total) for (cpu, mem, n), milli in ranked)


def typical_pods(
    pods: Iterable[PodShape], *, coverage: float = 0.95, with_memory: bool = False
) -> TypicalPods:
    """FGD's typical pods of a pod list: the most frequent shapes covering `coverage` of all pods.

    `with_memory=False` is FGD's rule exactly (memory is not part of a shape); gpuplace uses True.
    """
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    pods = list(pods)
    counts = Counter(_normalise(p, with_memory) for p in pods)
    total = sum(counts.values())
    if total == 0:
        raise ValueError("cannot derive typical pods from an empty pod list")
    ranked = sorted(
        counts.items(),
        key=lambda kv: (
            kv[1],
            kv[0].cpu_milli,
            kv[0].gpu_milli,
            kv[0].gpu_count,
            kv[0].model_key,
            kv[0].memory_mib,
        ),
        reverse=True,
    )
    chosen: list[tuple[PodShape, float]] = []
    covered = 0
    for shape, n in ranked:
        if covered >= coverage * total:
            break
        chosen.append((shape, float(n)))
        covered += n
    return from_counts(chosen, big_jobs=big_jobs(pods))


# openb_pod_list_default.csv (Alibaba cluster-trace-gpu-v2023, 8,152 pods). Regenerate with `typical_pods`
# over the trace; tests/simulate check both tables against the trace when it is available.
# The 44 eight-GPU pods (352 of the 6,086.8 GPUs requested), as (cpu_milli, memory_mib, gpu_count, pods).
_OPENB_BIG: tuple[tuple[int, int, int, int], ...] = (
    (88000, 327680, 8, 18),
    (64200, 263168, 8, 18),
    (120000, 737280, 8, 3),
    (64000, 262144, 8, 3),
    (120200, 640000, 8, 2),
)
_OPENB_GPU_MILLI = 6_086_800
_OPENB_BIG_JOBS = tuple(BigJob(c, m, n, k * n * WHOLE / _OPENB_GPU_MILLI) for c, m, n, k in _OPENB_BIG)

# FGD's form: the 35 shapes covering ≥ 95 % of pods, as (cpu_milli, gpu_count, gpu_milli, pods).
_OPENB_FGD: tuple[tuple[int, int, int, int], ...] = (
    (3152, 1, 810, 1047),
    (11300, 1, 1000, 874),
    (11400, 1, 1000, 599),
    (3152, 1, 1000, 470),
    (11908, 1, 470, 388),
    (12500, 0, 0, 366),
    (8000, 1, 470, 360),
    (12000, 1, 1000, 326),
    (32000, 0, 0, 290),
    (18708, 1, 1000, 255),
    (11908, 1, 650, 237),
    (4000, 1, 320, 232),
    (9810, 1, 1000, 195),
    (8000, 0, 0, 185),
    (8000, 1, 1000, 164),
    (4000, 1, 1000, 159),
    (15700, 1, 1000, 158),
    (11908, 1, 1000, 153),
    (16000, 1, 1000, 150),
    (4000, 1, 230, 122),
    (15400, 0, 0, 120),
    (6000, 1, 460, 120),
    (16500, 0, 0, 95),
    (14200, 1, 1000, 93),
    (24200, 1, 1000, 84),
    (3152, 1, 590, 75),
    (8000, 1, 320, 72),
    (4152, 1, 550, 72),
    (11900, 1, 1000, 55),
    (4000, 1, 160, 54),
    (4152, 1, 370, 45),
    (4000, 1, 220, 43),
    (8200, 1, 1000, 41),
    (15200, 1, 1000, 36),
    (4152, 1, 810, 31),
)

# Memory-aware form: the 53 shapes covering ≥ 95 % of pods, as (cpu_milli, memory_mib, gpu_count,
# gpu_milli, pods).
_OPENB_WITH_MEMORY: tuple[tuple[int, int, int, int, int], ...] = (
    (3152, 5600, 1, 810, 1047),
    (11300, 49152, 1, 1000, 857),
    (11400, 48128, 1, 1000, 534),
    (3152, 5600, 1, 1000, 470),
    (11908, 47104, 1, 470, 388),
    (12500, 57344, 0, 0, 364),
    (8000, 30517, 1, 470, 360),
    (32000, 49152, 0, 0, 284),
    (18708, 64512, 1, 1000, 255),
    (11908, 47104, 1, 650, 237),
    (9810, 41560, 1, 1000, 195),
    (8000, 30517, 0, 0, 163),
    (15700, 58368, 1, 1000, 158),
    (12000, 24576, 1, 1000, 158),
    (11908, 47104, 1, 1000, 153),
    (15400, 51200, 0, 0, 120),
    (4000, 22888, 1, 320, 111),
    (16000, 32768, 1, 1000, 108),
    (8000, 16384, 1, 1000, 104),
    (4000, 24576, 1, 1000, 104),
    (12000, 16384, 1, 1000, 99),
    (16500, 51200, 0, 0, 95),
    (14200, 58368, 1, 1000, 93),
    (24200, 93184, 1, 1000, 84),
    (4000, 30517, 1, 230, 84),
    (4000, 15258, 1, 320, 78),
    (3152, 5600, 1, 590, 75),
    (8000, 30517, 1, 320, 72),
    (4152, 10600, 1, 550, 72),
    (11400, 77824, 1, 1000, 65),
    (8000, 32768, 1, 1000, 55),
    (4000, 15258, 1, 160, 53),
    (11900, 77824, 1, 1000, 51),
    (6000, 6144, 1, 460, 51),
    (4152, 10600, 1, 370, 45),
    (12000, 15360, 1, 1000, 44),
    (4000, 30517, 1, 320, 43),
    (8200, 33792, 1, 1000, 41),
    (4000, 31250, 1, 1000, 40),
    (15200, 80896, 1, 1000, 36),
    (16000, 65536, 1, 1000, 33),
    (4152, 10600, 1, 810, 31),
    (6000, 12288, 1, 460, 29),
    (16400, 125952, 1, 1000, 27),
    (4000, 22888, 1, 230, 26),
    (4000, 15258, 1, 220, 24),
    (1000, 2048, 1, 320, 22),
    (6000, 22888, 1, 160, 20),
    (8000, 30517, 1, 220, 19),
    (88000, 327680, 8, 1000, 18),
    (64200, 263168, 8, 1000, 18),
    (8000, 30517, 1, 230, 18),
    (6000, 18432, 1, 460, 18),
)

FGD_TYPICAL_PODS: TypicalPods = from_counts(
    [(_normalise(PodShape(cpu, count, milli), False), float(n)) for cpu, count, milli, n in _OPENB_FGD],
    big_jobs=_OPENB_BIG_JOBS,
)
DEFAULT_TYPICAL_PODS: TypicalPods = from_counts(
    [
        (_normalise(PodShape(cpu, count, milli, None, mem), True), float(n))
        for cpu, mem, count, milli, n in _OPENB_WITH_MEMORY
    ],
    big_jobs=_OPENB_BIG_JOBS,
)
