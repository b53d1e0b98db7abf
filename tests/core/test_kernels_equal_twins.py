"""Property tests: every Numba kernel equals its pure-Python twin on random clusters."""

from __future__ import annotations

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

from placement_core import ClusterState, placer
from placement_core.islands import (
    island_size_table,
    largest_island,
    largest_island_at,
    largest_island_py,
    smallest_island_at_least,
    smallest_island_at_least_at,
    smallest_island_at_least_py,
)
from placement_core.mig import creatable_kernel, creatable_twin, hostable_starts_kernel, hostable_starts_twin
from placement_core.scoring import RULES

from .strategies import cases, clusters, note_cases

PROFILE = settings(max_examples=150, deadline=None)


@PROFILE
@given(cases())
def test_feasibility_kernel_equals_twin(case) -> None:
    state, req = case
    rk, dk = placer.evaluate(state, req)
    rt, dt = placer.evaluate(state, req, twin=True)
    note_cases(state, req, rk)
    assert rk.tolist() == rt.tolist()
    assert dk.tolist() == dt.tolist()


@PROFILE
@given(cases(), st.sampled_from(list(RULES)), st.sampled_from([0.0, 0.5, 2.0]))
def test_score_kernel_equals_twin(case, policy, w) -> None:
    state, req = case
    reason, _ = placer.evaluate(state, req)
    note_cases(state, req, reason)
    sk = placer.score(state, req, reason, policy, topo_weight=w)
    st_ = placer.score(state, req, reason, policy, topo_weight=w, twin=True)
    np.testing.assert_allclose(sk, st_, rtol=0, atol=1e-12)
    assert np.isneginf(sk[reason != 0]).all()
    assert np.isfinite(sk[reason == 0]).all()


@PROFILE
@given(cases())
def test_choose_kernel_equals_twin_and_respects_feasibility(case) -> None:
    state, req = case
    reason, _ = placer.evaluate(state, req)
    note_cases(state, req, reason)
    for row, name in enumerate(state.names):
        pk = placer.choose(state, name, req)
        pt = placer.choose(state, name, req, twin=True)
        assert pk == pt
        # a feasible node always yields a placement, an infeasible one never does
        assert (pk is not None) == (reason[row] == 0)
        if pk is not None:
            if pk.gpus and len(pk.gpus) >= 6:
                event("6-8 GPU placement chosen and checked")
            state.allocate("probe", pk)  # raises on any double booking
            assert state.check_invariants() == []
            state.release("probe")


@PROFILE
@given(st.integers(1, 10), st.data())
def test_island_kernels_equal_twins(n, data) -> None:
    raw = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n * n, max_size=n * n)), np.uint8).reshape(
        n, n
    )
    links = np.triu(raw, 1) + np.triu(raw, 1).T
    members = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), np.bool_)
    k = data.draw(st.integers(0, n + 1))
    assert largest_island(links, members) == largest_island_py(links, members)
    assert smallest_island_at_least(links, members, k) == smallest_island_at_least_py(links, members, k)
    tables = island_size_table(links)[None, :]  # the per-link-matrix table the kernels read
    assert largest_island_at(tables, 0, links, members) == largest_island_py(links, members)
    assert smallest_island_at_least_at(tables, 0, links, members, k) == smallest_island_at_least_py(
        links, members, k
    )


@PROFILE
@given(st.integers(0, 255), st.sampled_from([1, 2, 4, 8]), st.integers(0, 255), st.sampled_from([4, 8]))
def test_mig_hostable_kernel_equals_twin(occupied, size, starts_mask, slices) -> None:
    mask = hostable_starts_kernel(occupied, size, starts_mask, slices)
    assert [s for s in range(8) if mask >> s & 1] == hostable_starts_twin(occupied, size, starts_mask, slices)


@PROFILE
@given(clusters(), st.sampled_from([(1, 0b1111111), (2, 0b1010101), (4, 0b10001), (8, 0b1)]))
def test_mig_creatable_kernel_equals_twin(state, geometry) -> None:
    size, starts = geometry
    out = np.zeros(state.n_rows, np.int32)
    creatable_kernel(
        state.gpu_present,
        state.gpu_healthy,
        state.gpu_mig,
        state.mig_start,
        state.mig_size,
        state.n_rows,
        size,
        starts,
        8,
        out,
    )
    assert out.tolist() == creatable_twin(state, size, starts, 8).tolist()


def test_placer_scores_only_its_three_policies() -> None:
    import pytest

    from placement_core import GpuRequest, Policy

    state = ClusterState(max_gpus=8, capacity=2)
    req = GpuRequest(count=1)
    reason, _ = placer.evaluate(state, req)
    with pytest.raises(ValueError, match="the placer scores"):
        placer.score(state, req, reason, Policy.FGD)
