"""PolicyScorer's caches (hardware context, per-row fragmentation) never change its answers."""

from __future__ import annotations

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

from placement_core import placer
from placement_core.policies import Policy
from placement_core.scorer import PolicyScorer

from .strategies import cases, note_cases, requests


@settings(max_examples=60, deadline=None)
@given(cases(fleet_odds=2), st.lists(requests(), max_size=3), st.sampled_from([Policy.GPUPLACE, Policy.FGD]))
def test_cached_scores_equal_fresh_scores_across_allocations(case, more, policy) -> None:  # type: ignore[no-untyped-def]
    state, first = case
    reqs = [first, *more]
    warm = PolicyScorer(policy)
    for k, req in enumerate(reqs):
        reason, _ = placer.evaluate(state, req)
        cached = warm(state, req, reason)
        note_cases(state, req, reason)
        if policy == Policy.GPUPLACE and not req.mig_profile and (req.is_share or req.count < 8):
            event(
                f"gpuplace reserve held back a feasible node: {bool((warm.reserved(state) & (reason == 0)).any())}"
            )
        fresh = PolicyScorer(policy)(state, req, reason)
        np.testing.assert_array_equal(cached, fresh)
        assert np.isneginf(cached[reason != 0]).all()
        best = int(np.argmax(cached)) if np.isfinite(cached).any() else None
        if best is not None:  # change one row, so the next round exercises the per-row cache
            p = placer.choose(state, state.names[best], req)
            if p is not None:
                state.allocate(f"scored-{k}", p)
