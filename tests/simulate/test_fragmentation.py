"""The fragmentation measure on worked examples, and kernel == twin on random clusters."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from placement_core.fragmentation import cluster_frag, frag_all, frag_all_twin, node_frag, node_frag_twin
from tests.simulate.strategies import Nodes, nodes, typical

# Typical pods of the worked examples (cpu, mem, count, milli, weight):
#   A: a 0.5-GPU share, 2 cores           weight 0.5
#   B: two whole GPUs, 8 cores, 100 GB     weight 0.3
#   C: CPU only, 4 cores                   weight 0.2
TP = (
    np.array([2000, 8000, 4000], np.int64),
    np.array([0, 100_000, 0], np.int64),
    np.array([1, 2, 0], np.int32),
    np.array([500, 1000, 0], np.int32),
    np.ones((3, 2), np.bool_),
    np.array([0.5, 0.3, 0.2]),
)
FREE = np.array([1000, 1000, 300, 0], np.int32)  # 2.3 GPUs free: two whole, one 0.3 sliver
PRESENT = np.ones(4, np.bool_)


def frag(free: np.ndarray, cpu: int, mem: int, model: int = 0, tp: tuple = TP) -> float:
    value = node_frag(free, PRESENT[: len(free)], cpu, mem, model, *tp)
    assert value == pytest.approx(node_frag_twin(free, PRESENT[: len(free)], cpu, mem, model, *tp))
    return float(value)


def test_node_that_hosts_everything() -> None:
    # A fits (two GPUs ≥ 500): only the 300 sliver is a fragment for it   → 0.5 · 300  = 150
    # B fits (two whole GPUs, 8 cores, memory): the 300 sliver again       → 0.3 · 300  =  90
    # C needs no GPU: every free milli is a fragment for it                → 0.2 · 2300 = 460
    assert frag(FREE, cpu=10_000, mem=200_000) == pytest.approx(700)


def test_cpu_shortage_makes_all_free_gpu_a_fragment() -> None:
    # 5 cores left: B (8 cores) cannot land, all 2300 milli are fragments for it → 0.3 · 2300 = 690
    assert frag(FREE, cpu=5_000, mem=200_000) == pytest.approx(150 + 690 + 460)


def test_memory_shortage_counts_like_cpu() -> None:
    assert frag(FREE, cpu=10_000, mem=50_000) == pytest.approx(150 + 690 + 460)


def test_gpu_model_the_pod_may_not_use() -> None:
    tp = (*TP[:4], np.array([[False, True], [True, True], [True, True]]), TP[5])
    # A may only run on model 1; on this model-0 node all 2300 milli are fragments for it → 0.5 · 2300
    assert frag(FREE, cpu=10_000, mem=200_000, model=0, tp=tp) == pytest.approx(1150 + 90 + 460)


def test_too_few_whole_gpus() -> None:
    # [1000, 500, 500, 0]: B needs two whole GPUs, only one → 0.3 · 2000; A: no sliver below 500 → 0
    assert frag(np.array([1000, 500, 500, 0], np.int32), cpu=10_000, mem=200_000) == pytest.approx(600 + 400)


def test_full_and_gpu_less_nodes_have_no_fragmentation() -> None:
    assert frag(np.zeros(4, np.int32), cpu=10_000, mem=200_000) == 0.0
    assert node_frag(np.zeros(0, np.int32), np.zeros(0, np.bool_), 1000, 1000, -1, *TP) == 0.0


def test_cluster_amount_and_rate() -> None:
    free = np.array([[1000, 1000, 300, 0], [0, 0, 0, 0]], np.int32)
    present = np.ones((2, 4), np.bool_)
    amount, idle = cluster_frag(free, present, np.array([10_000, 0]), np.array([200_000, 0]),
                                np.array([0, 0], np.int32), *TP)
    assert (amount, idle) == (pytest.approx(700), 2300)  # rate = 700 / 2300


@settings(max_examples=150, deadline=None)
@given(nodes(), typical())
def test_kernel_equals_twin(c: Nodes, tp: tuple) -> None:
    args = (c.gpu_free_milli, c.gpu_present, c.node_cpu_free, c.node_mem_free, c.node_model, *tp)
    np.testing.assert_allclose(frag_all(*args), frag_all_twin(*args), rtol=1e-12, atol=1e-9)
