"""FGD and gpuplace score each distinct node state once (`group_states`): same numbers, bit for bit, as
scoring node by node, whatever the GPU order, the repeats and the hash collisions."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from placement_core.policies import (
    RESERVE_PENALTY,
    Policy,
    group_states,
    group_states_twin,
    node_score,
    score_all,
    score_all_twin,
    state_key,
)
from tests.simulate.strategies import Nodes, nodes, note_scores, requests, typical

FRAG_POLICIES = [Policy.FGD, Policy.GPUPLACE]


@st.composite
def repeated(draw: st.DrawFn, mode: str | None = None) -> Nodes:
    """A few node states, each repeated with its GPU slots (values and presence) shuffled."""
    c = draw(nodes(max_nodes=5, mode=mode))
    n, G = c.gpu_free_milli.shape
    if n == 0:
        return c
    rows = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=14))
    perms = [np.array(draw(st.permutations(range(G)))) for _ in rows]
    free = np.array([c.gpu_free_milli[r][p] for r, p in zip(rows, perms, strict=True)], np.int32)
    present = np.array([c.gpu_present[r][p] for r, p in zip(rows, perms, strict=True)], np.bool_)
    if draw(st.booleans()):  # a GPU above 1000 free: slot order matters again
        free[0, 0] = 1500
    idx = np.array(rows)
    return Nodes(free, present, c.node_cpu_free[idx], c.node_mem_free[idx], c.node_cpu_total[idx],
                 c.node_mem_total[idx], c.node_model[idx], c.node_kinds[idx])


def row_by_row(args: tuple) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[type-arg]
    """`score_all` without the grouping: `node_score` on every row."""
    (policy, free, present, cpu_free, mem_free, cpu_total, mem_total, model, kinds, cpu, mem, count, milli,
     allowed, *tp, max_cpu, max_gpu, quantize, reserved, big_gpus, u) = args
    n = free.shape[0]
    scores, gpus = np.empty(n), np.empty(n, np.int32)
    for i in range(n):
        s, g = node_score(policy, free[i], present[i], cpu_free[i], mem_free[i], cpu_total[i], mem_total[i],
                          model[i], kinds[i], np.nan, cpu, mem, count, milli, allowed, *tp, max_cpu, max_gpu,
                          quantize, u[i])
        if policy == Policy.GPUPLACE and reserved[i] and count < big_gpus and s > -np.inf:
            s -= RESERVE_PENALTY
        scores[i], gpus[i] = s, g
    return scores, gpus


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(FRAG_POLICIES), st.data(), requests(), typical(), st.booleans(), st.booleans())
def test_grouped_scores_equal_row_by_row(policy: Policy, data: st.DataObject, req: tuple, tp: tuple,  # type: ignore[type-arg]
                                         quantize: bool, reserve: bool) -> None:
    roomy = req[2] >= 2 and data.draw(st.integers(0, 2)) > 0  # multi-GPU requests mostly meet nodes they fit
    c = data.draw(repeated("roomy" if roomy else None))
    n = c.gpu_free_milli.shape[0]
    reserved = (np.arange(n) % 2 == 0) & reserve
    max_cpu = int(c.node_cpu_total.max(initial=1))
    max_gpu = max(1000, int(c.gpu_present.sum(axis=1).max(initial=0)) * 1000)
    args = (int(policy), c.gpu_free_milli, c.gpu_present, c.node_cpu_free, c.node_mem_free, c.node_cpu_total,
            c.node_mem_total, c.node_model, c.node_kinds, *req, *tp, max_cpu, max_gpu, quantize, reserved, 8,
            np.zeros(n))
    s_kernel, g_kernel = score_all(*args)
    note_scores(int(policy), req, s_kernel, reserved)
    s_rows, g_rows = row_by_row(args)
    np.testing.assert_array_equal(s_kernel, s_rows)  # bit for bit
    np.testing.assert_array_equal(g_kernel, g_rows)
    s_twin, g_twin = score_all_twin(*args)
    np.testing.assert_allclose(s_kernel, s_twin, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(g_kernel, g_twin)


@settings(max_examples=150, deadline=None)
@given(st.one_of(repeated(), nodes()))
def test_group_states_equals_twin(c: Nodes) -> None:
    args = (c.gpu_free_milli, c.gpu_present, c.node_cpu_free, c.node_mem_free, c.node_cpu_total,
            c.node_mem_total, c.node_model)
    group, first = group_states(*args)
    group_twin, first_twin = group_states_twin(*args)
    np.testing.assert_array_equal(group, group_twin)
    np.testing.assert_array_equal(first, first_twin)


def test_many_states_grow_the_table_and_survive_collisions() -> None:
    rng = np.random.default_rng(7)
    n, G = 3000, 8
    free = rng.choice(np.array([0, 100, 300, 500, 700, 1000], np.int32), size=(n, G))
    present = rng.random((n, G)) < 0.9
    cpu_free = rng.choice(np.array([0, 1000, 64000], np.int64), n)
    mem_free = rng.choice(np.array([0, 4096], np.int64), n)
    total = np.full(n, 64000, np.int64)
    model = rng.integers(0, 3, n).astype(np.int32)
    args = (free, present, cpu_free, mem_free, total, total, model)
    group, first = group_states(*args)
    group_twin, first_twin = group_states_twin(*args)
    assert len(first) > 64  # past the initial key buffer
    np.testing.assert_array_equal(group, group_twin)
    np.testing.assert_array_equal(first, first_twin)


def test_eight_gpu_sorting_network_sorts_every_zero_one_input() -> None:
    """A comparator network that sorts all 0/1 inputs sorts every input (the 0-1 principle)."""
    key = np.empty(14, np.int64)
    present = np.ones(8, np.bool_)
    for bits in itertools.product([0, 1], repeat=8):
        state_key(np.array(bits, np.int32), present, 0, 0, 0, 0, 0, key)
        assert list(key[1:9]) == sorted(bits)
