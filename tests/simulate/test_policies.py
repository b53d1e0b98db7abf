"""Each policy's choice on a hand-built cluster (worked out in the comments), and kernel == twin."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from placement_core.policies import (
    RESERVE_PENALTY,
    Context,
    Policy,
    Request,
    reserve_plan,
    reserved_nodes,
    score_all,
    score_all_twin,
    score_nodes,
)
from placement_core.policies.gpuplace import _stranding_risk, stranding_risk
from placement_core.workload import BigJob
from tests.simulate.strategies import Nodes, nodes, note_scores, ranked, typical

# Two 2-GPU nodes, 16 cores and 64,000 MiB each (so max_cpu = 16,000 and max_gpu = 2,000):
#   n0: half its CPU used, 48,000 MiB free, GPUs free [1000, 500]  (one share pod of 0.5 on GPU 1)
#   n1: untouched
CLUSTER = SimpleNamespace(
    gpu_free_milli=np.array([[1000, 500], [1000, 1000]], np.int32),
    gpu_present=np.ones((2, 2), np.bool_),
    node_cpu_free=np.array([8000, 16000], np.int64),
    node_mem_free=np.array([48000, 64000], np.int64),
    node_cpu_total=np.array([16000, 16000], np.int64),
    node_mem_total=np.array([64000, 64000], np.int64),
    node_model=np.array([0, 0], np.int32),
)
KINDS = np.array([[1, 0, 0], [0, 0, 0]], np.int32)  # n0 hosts one share pod
SHARE = Request(cpu_milli=2000, memory_mib=1000, gpu_count=1, gpu_milli=500, allowed=np.ones(2, np.bool_))
# Typical pods: a 0.5-GPU share (1 core) and a whole GPU (1 core), half and half.
TP = (np.array([1000, 1000], np.int64), np.zeros(2, np.int64), np.array([1, 1], np.int32),
      np.array([500, 1000], np.int32), np.ones((2, 2), np.bool_), np.array([0.5, 0.5]))


def ctx(quantize: bool = False) -> Context:
    return Context(*TP, max_cpu=16000, max_gpu_milli=2000, quantize=quantize)


def scores(policy: Policy, quantize: bool = False, u: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    return score_nodes(policy, CLUSTER, SHARE, ctx(quantize), node_kinds=KINDS, u=u)


def test_best_fit() -> None:
    # left = ½·(cpu_free − 2000)/16000 + ½·(gpu_free − 500)/2000
    #   n0: ½·6000/16000 + ½·1000/2000 = 0.1875 + 0.25  = 0.4375 → 56.25
    #   n1: ½·14000/16000 + ½·1500/2000 = 0.4375 + 0.375 = 0.8125 → 18.75
    s, g = scores(Policy.BEST_FIT)
    assert s.tolist() == pytest.approx([56.25, 18.75])
    assert g[0] == 1  # the tightest GPU that fits: exactly 500 free
    assert scores(Policy.BEST_FIT, quantize=True)[0].tolist() == [56.0, 18.0]


def test_dot_prod() -> None:
    # 100·(1 − ½·(cpu_free/16000 · 2000/16000 + gpu_free/2000 · 500/2000))
    #   n0: ½·(0.5·0.125 + 0.75·0.25) = 0.125 → 87.5;   n1: ½·(1·0.125 + 1·0.25) = 0.1875 → 81.25
    assert scores(Policy.DOT_PROD)[0].tolist() == pytest.approx([87.5, 81.25])


def test_gpu_packing() -> None:
    # n0 is partly used and the share fits a shared GPU (500 free = 50 %): 100 − 50 // 10 = 95
    # n1 is empty: 100 // 3 − 2 free GPUs = 31
    assert scores(Policy.GPU_PACKING)[0].tolist() == [95.0, 31.0]


def test_gpu_clustering() -> None:
    # n0 hosts only share pods, like this one: 75 + 25·(2000 − 1500)/2000 = 81.25 (81 as an integer)
    # n1 is empty: 25 + 0
    assert scores(Policy.GPU_CLUSTERING)[0].tolist() == pytest.approx([81.25, 25.0])
    assert scores(Policy.GPU_CLUSTERING, quantize=True)[0].tolist() == [81.0, 25.0]


def test_most_and_least_allocated() -> None:
    # requested after placing, per resource, % of allocatable:
    #   n0: cpu 10000/16000 = 62.5, mem 17000/64000 = 26.5625, gpu 1000/2000 = 50 → mean 46.354…
    #   n1: cpu 2000/16000 = 12.5,  mem 1000/64000 = 1.5625,   gpu 500/2000 = 25  → mean 13.020…
    most = scores(Policy.MOST_ALLOCATED)[0]
    least = scores(Policy.LEAST_ALLOCATED)[0]
    assert most.tolist() == pytest.approx([(62.5 + 26.5625 + 50) / 3, (12.5 + 1.5625 + 25) / 3])
    assert least.tolist() == pytest.approx([100 - most[0], 100 - most[1]])
    assert int(np.argmax(most)) == 0 and int(np.argmax(least)) == 1


def test_fgd() -> None:
    # F(n0) before: the share fits both GPUs, no sliver < 500 → 0; the whole pod fits GPU 0, and GPU 1's
    # 500 is a sliver for it → ½·500 = 250.
    # Share on GPU 1 → [1000, 0]: no slivers for either → F = 0, ΔF = +250 → 100·σ(0.25) = 56.22
    # Share on GPU 0 → [500, 500]: the whole pod cannot land → ½·1000 = 500, ΔF = −250
    # n1: F = 0 before; after [500, 1000] the 500 is a sliver for the whole pod → 250, ΔF = −250 → 43.78
    s, g = scores(Policy.FGD)
    assert s.tolist() == pytest.approx([100 / (1 + math.exp(-0.25)), 100 / (1 + math.exp(0.25))])
    assert g.tolist() == [1, 0]
    assert scores(Policy.FGD, quantize=True)[0].tolist() == [56.0, 43.0]


def test_gpuplace() -> None:
    # 4·ΔF/1000 + spread, spread = 1·cpu + 2·mem + 2·gpu fractions left after placing:
    #   n0: 4·0.25 + (6000/16000 + 2·47000/64000 + 2·1000/2000) = 1 + 0.375 + 1.46875 + 1 = 3.84375
    #   n1: 4·(−0.25) + (14000/16000 + 2·63000/64000 + 2·1500/2000) = −1 + 0.875 + 1.96875 + 1.5 = 3.34375
    s, g = scores(Policy.GPUPLACE)
    assert s.tolist() == pytest.approx([3.84375, 3.34375])
    assert g[0] == 1


def test_random() -> None:
    s, _ = scores(Policy.RANDOM, u=np.array([0.3, 0.7]))
    assert s.tolist() == [0.3, 0.7]


def test_infeasible_nodes_score_minus_infinity() -> None:
    too_big = Request(cpu_milli=12000, memory_mib=0, gpu_count=2, gpu_milli=1000, allowed=np.ones(2, np.bool_))
    for p in Policy:
        s, _ = score_nodes(p, CLUSTER, too_big, ctx(), node_kinds=KINDS)
        assert s[0] == -math.inf, p  # n0: only one whole GPU free and 8 cores
        assert s[1] > -math.inf, p
    wrong_model = Request(cpu_milli=0, memory_mib=0, gpu_count=1, gpu_milli=1000,
                          allowed=np.array([False, True]))
    assert np.all(score_nodes(Policy.FGD, CLUSTER, wrong_model, ctx())[0] == -math.inf)


def test_reserve_plan_sizes_classes_by_the_jobs_they_can_host() -> None:
    # 10 nodes of 8 GPUs and 96 cores, 2 of 8 GPUs and 128 cores, 4 of 2 GPUs (never reserved).
    gpus = [8] * 10 + [8] * 2 + [2] * 4
    present = np.array([[g < n for g in range(8)] for n in gpus])
    cpu = np.array([96000] * 10 + [128000] * 2 + [64000] * 4, np.int64)
    mem = np.full(16, 1 << 20, np.int64)
    model = np.zeros(16, np.int32)
    jobs = (BigJob(88000, 0, 8, 0.24), BigJob(120000, 0, 8, 0.1))
    node_class, reserve = reserve_plan(jobs, present, cpu, mem, model)
    assert node_class.tolist() == [0] * 10 + [1] * 2 + [-1] * 4
    # 88-core jobs: 0.24 · 12 big nodes = 2.88 nodes, spread 10:2 → 2.4 and 0.48
    # 120-core jobs fit the 128-core class only: 0.1 · 12 = 1.2 → class 1 needs 1.68
    assert reserve.tolist() == [2, 2]


def test_gpuplace_reserve_holds_back_empty_eight_gpu_nodes() -> None:
    big = SimpleNamespace(
        gpu_free_milli=np.array([[1000] * 8, [1000] * 8, [1000] * 7 + [0]], np.int32),
        gpu_present=np.ones((3, 8), np.bool_),
        node_cpu_free=np.array([96000, 96000, 90000], np.int64),
        node_mem_free=np.full(3, 393216, np.int64),
        node_cpu_total=np.full(3, 96000, np.int64),
        node_mem_total=np.full(3, 393216, np.int64),
        node_model=np.zeros(3, np.int32),
    )
    free = Context(*TP, max_cpu=96000, max_gpu_milli=8000)
    # 8-GPU jobs are half the GPU demand: 0.5 · 3 nodes → 2 (rounded) to hold back; both empty ones are
    kept = Context(*TP, max_cpu=96000, max_gpu_milli=8000, big_jobs=(BigJob(1000, 0, 8, 0.5),))
    assert reserved_nodes(big, kept).tolist() == [True, True, False]
    assert reserved_nodes(big, free).tolist() == [False, False, False]
    one = Request(cpu_milli=1000, memory_mib=0, gpu_count=1, gpu_milli=1000, allowed=np.ones(2, np.bool_))
    plain, _ = score_nodes(Policy.GPUPLACE, big, one, free)
    held, _ = score_nodes(Policy.GPUPLACE, big, one, kept)
    assert held.tolist() == pytest.approx([plain[0] - RESERVE_PENALTY, plain[1] - RESERVE_PENALTY, plain[2]])
    eight = Request(cpu_milli=1000, memory_mib=0, gpu_count=8, gpu_milli=1000, allowed=np.ones(2, np.bool_))
    s8, _ = score_nodes(Policy.GPUPLACE, big, eight, kept)
    assert s8[0] == score_nodes(Policy.GPUPLACE, big, eight, free)[0][0] and s8[2] == -math.inf


def test_whole_node_jobs_take_the_node_they_fill_best() -> None:
    two = SimpleNamespace(
        gpu_free_milli=np.full((2, 8), 1000, np.int32),
        gpu_present=np.ones((2, 8), np.bool_),
        node_cpu_free=np.array([96000, 128000], np.int64),
        node_mem_free=np.array([393216, 786432], np.int64),
        node_cpu_total=np.array([96000, 128000], np.int64),
        node_mem_total=np.array([393216, 786432], np.int64),
        node_model=np.zeros(2, np.int32),
    )
    eight = Request(cpu_milli=88000, memory_mib=327680, gpu_count=8, gpu_milli=1000, allowed=np.ones(2, np.bool_))
    s, _ = score_nodes(Policy.GPUPLACE, two, eight, Context(*TP, max_cpu=128000, max_gpu_milli=8000))
    assert int(np.argmax(s)) == 0  # the 96-core node; the 128-core one stays for jobs only it can host


def test_policy_names() -> None:
    assert Policy.parse("FGD") is Policy.FGD
    assert Policy.parse("best-fit") is Policy.BEST_FIT
    assert Policy.parse("mostallocated") is Policy.MOST_ALLOCATED
    assert Policy.parse("gpuplace") is Policy.GPUPLACE
    with pytest.raises(ValueError, match="unknown policy 'tetris'"):
        Policy.parse("tetris")


@settings(max_examples=120, deadline=None)
@given(st.sampled_from([*Policy, Policy.GPUPLACE, Policy.GPUPLACE]), ranked(), typical(), st.booleans(),
       st.booleans())  # gpuplace three times as often: its reserve is a path of its own
def test_kernel_equals_twin(policy: Policy, case: tuple[Nodes, tuple], tp: tuple, quantize: bool,  # type: ignore[type-arg]
                            reserve: bool) -> None:
    c, req = case
    n = c.gpu_free_milli.shape[0]
    reserved = (np.arange(n) % 2 == 0) & reserve
    u = np.linspace(0.05, 0.95, n) if n else np.zeros(0)
    max_cpu = int(c.node_cpu_total.max(initial=1))
    max_gpu = max(1000, int(c.gpu_present.sum(axis=1).max(initial=0)) * 1000)
    args = (int(policy), c.gpu_free_milli, c.gpu_present, c.node_cpu_free, c.node_mem_free, c.node_cpu_total,
            c.node_mem_total, c.node_model, c.node_kinds, *req, *tp, max_cpu, max_gpu, quantize, reserved, 8, u)
    s_kernel, g_kernel = score_all(*args)
    note_scores(int(policy), req, s_kernel, reserved)
    s_twin, g_twin = score_all_twin(*args)
    np.testing.assert_allclose(s_kernel, s_twin, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(g_kernel, g_twin)


# Two 8-GPU nodes, identical but for use: n0 has 6 GPUs (and 6/8 of its CPU and memory) taken, n1 is empty.
def eight_gpu_pair(cpu_total: int, mem_total: int) -> SimpleNamespace:
    return SimpleNamespace(
        gpu_free_milli=np.array([[0] * 6 + [1000] * 2, [1000] * 8], np.int32),
        gpu_present=np.ones((2, 8), np.bool_),
        node_cpu_free=np.array([cpu_total // 4, cpu_total], np.int64),
        node_mem_free=np.array([mem_total // 4, mem_total], np.int64),
        node_cpu_total=np.full(2, cpu_total, np.int64),
        node_mem_total=np.full(2, mem_total, np.int64),
        node_model=np.zeros(2, np.int32),
    )


ONE_GPU = Request(cpu_milli=4000, memory_mib=16384, gpu_count=1, gpu_milli=1000, allowed=np.ones(2, np.bool_))
# Typical pods needing 12 cores and 48 GiB per GPU: a share of 0.5 with 6 cores, and a whole GPU with 12.
WITH_SHARES = (np.array([6000, 12000], np.int64), np.array([24576, 49152], np.int64), np.array([1, 1], np.int32),
               np.array([500, 1000], np.int32), np.ones((2, 2), np.bool_), np.array([0.5, 0.5]))
WHOLE_ONLY = (np.array([12000], np.int64), np.array([49152], np.int64), np.array([1], np.int32),
              np.array([1000], np.int32), np.ones((1, 2), np.bool_), np.array([1.0]))


def gpuplace_choice(cluster: SimpleNamespace, tp: tuple) -> int:  # type: ignore[type-arg]
    s, _ = score_nodes(Policy.GPUPLACE, cluster, ONE_GPU, Context(*tp, max_cpu=224000, max_gpu_milli=8000))
    return int(np.argmax(s))


def test_gpuplace_packs_whole_gpu_pods_where_cpu_and_memory_are_ample() -> None:
    # 224 cores and 2 TiB (HGX H100) against 8 × 12 cores and 8 × 48 GiB: over twice what the GPUs need,
    # nothing can strand, so the 1-GPU pod goes to the node it leaves fullest and n1 stays whole.
    assert gpuplace_choice(eight_gpu_pair(224000, 2 << 20), WITH_SHARES) == 0


def test_gpuplace_spreads_whole_gpu_pods_where_shares_compete_for_scarce_cpu() -> None:
    # 96 cores / 384 GiB: the GPUs alone would take 96 cores at the typical ratio; with shares about, the
    # pod keeps the headroom (the emptier node), as the openb trace rewards.
    assert gpuplace_choice(eight_gpu_pair(96000, 393216), WITH_SHARES) == 1


def test_gpuplace_packs_whole_gpu_pods_when_the_workload_has_no_shares() -> None:
    assert gpuplace_choice(eight_gpu_pair(96000, 393216), WHOLE_ONLY) == 0


@settings(max_examples=150, deadline=None)
@given(nodes(), typical())
def test_stranding_risk_kernel_equals_twin(c: Nodes, tp: tuple) -> None:  # type: ignore[type-arg]
    tp_cpu, tp_mem, tp_count, tp_milli, _, tp_weight = tp
    for i in range(c.gpu_free_milli.shape[0]):
        args = (c.gpu_present[i], int(c.node_cpu_total[i]), int(c.node_mem_total[i]))
        kernel = stranding_risk(*args, tp_cpu, tp_mem, tp_count, tp_milli, tp_weight)
        assert kernel == _stranding_risk(*args, tp)
