"""The typical-pod distribution: FGD's rule, the embedded openb defaults, model masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gpuplace.simulate.engine import trace_typical_pods
from gpuplace.simulate.traces import read_pods
from placement_core.workload import (
    DEFAULT_TYPICAL_PODS,
    FGD_TYPICAL_PODS,
    PodShape,
    big_jobs,
    typical_pods,
)


def test_most_frequent_shapes_until_coverage() -> None:
    pods = [PodShape(1000, 1, 500)] * 6 + [PodShape(2000, 1, 1000)] * 3 + [PodShape(4000)] * 1
    tp = typical_pods(pods, coverage=0.8)  # 6/10 < 0.8, 9/10 ≥ 0.8 → two shapes, renormalised over 9
    assert [s for s, _ in tp.shapes()] == [PodShape(1000, 1, 500), PodShape(2000, 1, 1000)]
    assert tp.weight.tolist() == pytest.approx([6 / 9, 3 / 9])
    assert typical_pods(pods, coverage=1.0).weight.tolist() == pytest.approx([0.6, 0.3, 0.1])


def test_ties_go_to_the_larger_cpu_and_memory_is_optional() -> None:
    pods = [PodShape(1000, 1, 500, None, 10)] * 2 + [PodShape(3000, 1, 500)] * 2 + [PodShape(1000, 1, 500, None, 20)]
    assert typical_pods(pods, coverage=0.3, with_memory=True).shapes()[0][0].cpu_milli == 3000  # 2 vs 2
    without = typical_pods(pods)  # memory ignored: the 1000-milli-CPU pods are one shape of 3
    assert [(s.cpu_milli, s.memory_mib) for s, _ in without.shapes()] == [(1000, 0), (3000, 0)]
    with_mem = typical_pods(pods, with_memory=True, coverage=1.0)
    assert len(with_mem) == 3


def test_cpu_only_pods_drop_gpu_fields() -> None:
    tp = typical_pods([PodShape(1000, 0, 500, frozenset({"T4"}))])
    assert (int(tp.gpu_count[0]), int(tp.gpu_milli[0]), tp.models[0]) == (0, 0, None)


def test_allowed_matrix_over_model_ids() -> None:
    tp = typical_pods([PodShape(1000, 1, 500, frozenset({"T4"}))] * 2 + [PodShape(1000, 1, 1000)])
    m = tp.allowed_matrix(["P100", "T4"])
    assert m.tolist() == [[False, True, False], [True, True, True]]


def test_big_jobs_and_their_share_of_gpu_demand() -> None:
    pods = [PodShape(1000, 8, 1000, None, 5), PodShape(1000, 1, 1000), PodShape(1000, 1, 500), PodShape(1000)]
    (job,) = big_jobs(pods)
    assert (job.cpu_milli, job.memory_mib, job.gpu_count) == (1000, 5, 8)
    assert job.share == pytest.approx(8000 / 9500)
    assert typical_pods(pods).big_job_share == pytest.approx(8000 / 9500)


def test_errors() -> None:
    with pytest.raises(ValueError, match="empty pod list"):
        typical_pods([])
    with pytest.raises(ValueError, match="coverage"):
        typical_pods([PodShape(1)], coverage=0)


def test_embedded_defaults_are_the_openb_default_trace(openb: Path) -> None:
    pods = read_pods(openb / "openb_pod_list_default.csv")
    assert trace_typical_pods(pods).shapes() == FGD_TYPICAL_PODS.shapes()
    assert trace_typical_pods(pods, with_memory=True).shapes() == DEFAULT_TYPICAL_PODS.shapes()
    assert trace_typical_pods(pods).big_jobs == DEFAULT_TYPICAL_PODS.big_jobs
    assert DEFAULT_TYPICAL_PODS.big_job_share == pytest.approx(352_000 / 6_086_800)
    assert len(FGD_TYPICAL_PODS) == 35 and float(np.sum(FGD_TYPICAL_PODS.weight)) == pytest.approx(1.0)
