"""The typical-pod distribution: what the next pod is likely to ask for.

Fragmentation is only defined against a workload (FGD, USENIX ATC'23, §4): a free GPU slice is a fragment
when the pods that usually arrive cannot use it. The distribution is a short list of pod shapes with
weights summing to 1. `typical_pods` builds it from any pod list with FGD's rule; `DEFAULT_TYPICAL_PODS`
is that rule applied once to the Alibaba openb default trace and embedded here, so an installation needs
no data files.

FGD's rule (alibaba/kubernetes-scheduler-simulator, `GetTypicalPods`, default experiment settings):
group pods by (CPU, GPU milli per GPU, GPU count, allowed models) — memory is not part of the shape —
count each group, sort by count (descending; ties by larger CPU, then larger milli, count, model string),
take groups from the top until they cover ≥ `coverage` (95 %) of all pods, and renormalise their counts
to weights. CPU-only pods are kept: they consume the CPU that stranded GPUs would need.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

WHOLE = 1000


@dataclass(frozen=True, slots=True)
class PodShape:
    """The part of a pod that matters for fragmentation. `gpu_milli` is per GPU (1000 = whole GPUs)."""

    cpu_milli: int
    gpu_count: int = 0
    gpu_milli: int = 0
    models: frozenset[str] | None = None  # None = any GPU model

    @property
    def model_key(self) -> str:
        return "|".join(sorted(self.models)) if self.models else ""


@dataclass(frozen=True, slots=True)
class TypicalPods:
    """T typical pod shapes as parallel arrays (the form the kernels take) plus their model names."""

    cpu_milli: npt.NDArray[np.int64]  # [T]
    gpu_count: npt.NDArray[np.int32]  # [T] 0 for CPU-only pods
    gpu_milli: npt.NDArray[np.int32]  # [T] per GPU; 0 for CPU-only pods
    weight: npt.NDArray[np.float64]  # [T] sums to 1
    models: tuple[frozenset[str] | None, ...]  # [T] allowed GPU models, None = any

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
            (PodShape(int(c), int(n), int(m), models), float(w))
            for c, n, m, models, w in zip(
                self.cpu_milli, self.gpu_count, self.gpu_milli, self.models, self.weight, strict=True
            )
        ]


def _normalise(shape: PodShape) -> PodShape:
    if shape.gpu_count <= 0 or shape.gpu_milli <= 0:
        return PodShape(shape.cpu_milli, 0, 0, None)
    return shape


def from_counts(counted: Sequence[tuple[PodShape, float]]) -> TypicalPods:
    """Arrays from (shape, count-or-weight) pairs; weights are renormalised to sum to 1."""
    if not counted:
        raise ValueError("a typical-pod distribution needs at least one pod shape")
    total = float(sum(w for _, w in counted))
    if total <= 0:
        raise ValueError("typical-pod weights must be positive")
    return TypicalPods(
        cpu_milli=np.array([s.cpu_milli for s, _ in counted], np.int64),
        gpu_count=np.array([s.gpu_count for s, _ in counted], np.int32),
        gpu_milli=np.array([s.gpu_milli for s, _ in counted], np.int32),
        weight=np.array([w / total for _, w in counted], np.float64),
        models=tuple(s.models for s, _ in counted),
    )


def typical_pods(pods: Iterable[PodShape], *, coverage: float = 0.95) -> TypicalPods:
    """FGD's typical pods of a pod list: the most frequent shapes covering `coverage` of all pods."""
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    counts = Counter(_normalise(p) for p in pods)
    total = sum(counts.values())
    if total == 0:
        raise ValueError("cannot derive typical pods from an empty pod list")
    ranked = sorted(
        counts.items(),
        key=lambda kv: (kv[1], kv[0].cpu_milli, kv[0].gpu_milli, kv[0].gpu_count, kv[0].model_key),
        reverse=True,
    )
    chosen: list[tuple[PodShape, float]] = []
    covered = 0
    for shape, n in ranked:
        if covered >= coverage * total:
            break
        chosen.append((shape, float(n)))
        covered += n
    return from_counts(chosen)


# openb_pod_list_default.csv (Alibaba cluster-trace-gpu-v2023, 8,152 pods): the 35 shapes that cover
# ≥ 95 % of pods, as (cpu_milli, gpu_count, gpu_milli, pods). Regenerate with
# `typical_pods(...)` over the trace; tests/simulate check that this table equals that result.
_OPENB_DEFAULT: tuple[tuple[int, int, int, int], ...] = (
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

DEFAULT_TYPICAL_PODS: TypicalPods = from_counts(
    [(_normalise(PodShape(cpu, count, milli)), float(n)) for cpu, count, milli, n in _OPENB_DEFAULT]
)
