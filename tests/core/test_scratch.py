"""ClusterState.scratch: the gang planner's private copy behaves as a deep copy under allocate and
release, and what is done on it never reaches the state it came from."""

from __future__ import annotations

import copy

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from placement_core import ClusterState, placer

from .strategies import clusters, requests


def same(a: ClusterState, b: ClusterState) -> None:
    for c in ClusterState._COLUMNS:
        assert np.array_equal(getattr(a, c), getattr(b, c)), c
    assert a.allocations == b.allocations
    assert a._node_pods == b._node_pods
    assert (a.version, a.hw_version) == (b.version, b.hw_version)


@settings(max_examples=80, deadline=None)
@given(clusters(), st.data())
def test_a_scratch_copy_acts_as_a_deep_copy_and_leaves_its_original_alone(state: ClusterState,
                                                                          data: st.DataObject) -> None:  # fmt: skip
    before = copy.deepcopy(state)
    deep, scratch = copy.deepcopy(state), state.scratch()
    for i in range(data.draw(st.integers(0, 12))):
        if state.n_rows and data.draw(st.booleans()):
            node = state.names[data.draw(st.integers(0, state.n_rows - 1))]
            req = data.draw(requests())
            p = placer.choose(deep, node, req)
            assert p == placer.choose(scratch, node, req)
            if p is not None:
                deep.allocate(f"try{i}", p)
                scratch.allocate(f"try{i}", p)
        elif deep.allocations:
            uid = data.draw(st.sampled_from(sorted(deep.allocations)))
            assert deep.release(uid) == scratch.release(uid)
    same(deep, scratch)
    same(state, before)
    assert not scratch.check_invariants()
