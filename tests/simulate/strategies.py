"""Hypothesis strategies: random clusters (empty, full, heterogeneous, single-GPU, and roomy 8-GPU nodes where
multi-GPU requests fit on several nodes, so rankings compare finite scores), requests, typical pods."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import event
from hypothesis import strategies as st

M = 3  # model ids 0..2 (+1 spare column, as ClusterState.model_mask)


@dataclass
class Nodes:
    gpu_free_milli: np.ndarray
    gpu_present: np.ndarray
    node_cpu_free: np.ndarray
    node_mem_free: np.ndarray
    node_cpu_total: np.ndarray
    node_mem_total: np.ndarray
    node_model: np.ndarray
    node_kinds: np.ndarray


@st.composite
def nodes(draw: st.DrawFn, max_nodes: int = 6, mode: str | None = None) -> Nodes:
    mode = mode or draw(st.sampled_from(["mixed", "empty", "full", "roomy"]))
    G = 8 if mode == "roomy" else draw(st.sampled_from([1, 2, 4, 8]))
    n = draw(st.integers(2 if mode == "roomy" else 0, max_nodes))
    free = np.zeros((n, G), np.int32)
    present = np.zeros((n, G), np.bool_)
    cpu_total = np.zeros(n, np.int64)
    mem_total = np.zeros(n, np.int64)
    cpu_free = np.zeros(n, np.int64)
    mem_free = np.zeros(n, np.int64)
    model = np.full(n, -1, np.int32)
    kinds = np.zeros((n, G + 1), np.int32)
    for i in range(n):
        k = G if mode == "roomy" else draw(st.integers(0, G))
        present[i, :k] = True
        model[i] = draw(st.integers(0, M - 1)) if k else -1
        cpu_total[i] = draw(st.sampled_from([64000, 96000] if mode == "roomy" else [8000, 16000, 64000, 96000]))
        mem_total[i] = draw(st.sampled_from([131072, 393216] if mode == "roomy" else [32768, 131072, 393216]))
        used = draw(st.integers(0, 4)) if mode == "roomy" else 0
        for g in range(k):
            if mode == "empty":
                free[i, g] = 1000
            elif mode == "full":
                free[i, g] = 0
            elif mode == "roomy":  # a few GPUs used or shared, the rest free
                free[i, g] = draw(st.sampled_from([0, 500, 190])) if g < used else 1000
            else:
                free[i, g] = draw(st.sampled_from([0, 1000, 1000, 500, 190, 530])) if draw(st.booleans()) else \
                    draw(st.integers(0, 100)) * 10
        if mode == "empty":
            cpu_free[i], mem_free[i] = cpu_total[i], mem_total[i]
        elif mode == "full":
            cpu_free[i], mem_free[i] = 0, 0
        elif mode == "roomy":
            cpu_free[i] = draw(st.sampled_from([int(cpu_total[i]), int(cpu_total[i]) // 2]))
            mem_free[i] = mem_total[i]
        else:
            cpu_free[i] = draw(st.sampled_from([int(cpu_total[i]), int(cpu_total[i]) // 2, 3000, 0]))
            mem_free[i] = draw(st.sampled_from([int(mem_total[i]), int(mem_total[i]) // 3, 4096]))
        for c in range(G + 1):
            kinds[i, c] = draw(st.sampled_from([0, 0, 1, 3]))
    return Nodes(free, present, cpu_free, mem_free, cpu_total, mem_total, model, kinds)


@st.composite
def requests(draw: st.DrawFn) -> tuple[int, int, int, int, np.ndarray]:
    shape = draw(st.sampled_from(["cpu", "share", "whole", "multi"]))
    cpu = draw(st.sampled_from([0, 1000, 3152, 12000, 40000]))
    mem = draw(st.sampled_from([0, 4096, 50000]))
    if shape == "cpu":
        count, milli = 0, 0
    elif shape == "share":
        count, milli = 1, draw(st.integers(1, 99)) * 10
    elif shape == "whole":
        count, milli = draw(st.sampled_from([1, 2, 4, 8])), 1000
    else:  # a multi-GPU job that fits roomy nodes: the ranking between them is what is compared
        count, milli = draw(st.sampled_from([2, 3, 4, 6, 8])), 1000
        cpu, mem = draw(st.sampled_from([0, 1000, 3152, 12000])), draw(st.sampled_from([0, 4096]))
    allowed = np.array([draw(st.booleans()) for _ in range(M + 1)], np.bool_)
    if shape == "multi" or draw(st.booleans()):
        allowed[:] = True
    return cpu, mem, count, milli, allowed


@st.composite
def ranked(draw: st.DrawFn, max_nodes: int = 6) -> tuple[Nodes, tuple[int, int, int, int, np.ndarray]]:
    """(nodes, request); two multi-GPU requests in three meet roomy nodes, where several of them fit."""
    req = draw(requests())
    roomy = req[2] >= 2 and draw(st.integers(0, 2)) > 0
    return draw(nodes(max_nodes, "roomy" if roomy else None)), req


@st.composite
def typical(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    t = draw(st.integers(1, 5))
    cpu, mem, count, milli = [], [], [], []
    for _ in range(t):
        shape = draw(st.sampled_from(["cpu", "share", "whole"]))
        cpu.append(draw(st.sampled_from([1000, 4000, 12000, 80000])))
        mem.append(draw(st.sampled_from([0, 0, 8192, 100000])))
        if shape == "cpu":
            count.append(0)
            milli.append(0)
        elif shape == "share":
            count.append(1)
            milli.append(draw(st.sampled_from([160, 470, 810])))
        else:
            count.append(draw(st.sampled_from([1, 2, 8])))
            milli.append(1000)
    allowed = np.array([[draw(st.booleans()) or draw(st.booleans()) for _ in range(M + 1)] for _ in range(t)])
    w = np.array([draw(st.integers(1, 10)) for _ in range(t)], np.float64)
    return (np.array(cpu, np.int64), np.array(mem, np.int64), np.array(count, np.int32),
            np.array(milli, np.int32), allowed.astype(np.bool_), w / w.sum())


def note_scores(policy: int, req: tuple, scores: np.ndarray, reserved: np.ndarray) -> None:  # type: ignore[type-arg]
    """Label the cases that matter (hypothesis `event`; see them with --hypothesis-show-statistics)."""
    count = req[2]
    finite = np.isfinite(scores)
    if count >= 2:
        event(f"multi-GPU ranking compared on >= 2 finite scores: {int(finite.sum()) >= 2}")
    if policy == 8 and count < 8:  # Policy.GPUPLACE
        event(f"gpuplace reserve penalty on a feasible node: {bool((reserved & finite).any())}")
