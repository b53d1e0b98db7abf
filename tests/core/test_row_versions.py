"""What the extender's per-row memo (scheduler.memo.RowMemo) rests on: `changed_rows` names every row
whose arrays changed, and every per-row result computed for a subset of rows equals the full result there."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from placement_core import ClusterState, placer
from placement_core.policies import Policy
from placement_core.scorer import PolicyScorer, island_fit

from .strategies import _kernel_place, cases, node_spec, requests

COLUMNS = [c for c in ClusterState._COLUMNS if c != "row_version"]


def _snapshot(s: ClusterState) -> dict[str, np.ndarray]:
    return {c: getattr(s, c)[: s.n_rows].copy() for c in COLUMNS}


@settings(max_examples=80, deadline=None)
@given(cases(), st.lists(st.tuples(st.integers(0, 3), st.integers(0, 63), requests()), max_size=8), st.data())
def test_changed_rows_cover_every_changed_row(case, ops, data) -> None:  # type: ignore[no-untyped-def]
    state, _ = case
    since, before, n_before = state.version, _snapshot(state), state.n_rows
    for k, (op, pick, req) in enumerate(ops):
        if op == 0 and state.names:  # a pod placed on some node
            row = pick % state.n_rows
            p = _kernel_place(state, row, req) if state.names[row] else None
            if p is not None:
                state.allocate(f"op{k}", p)
        elif op == 1 and state.allocations:  # one released
            state.release(sorted(state.allocations)[pick % len(state.allocations)])
        elif op == 2:  # a node added or its hardware replaced
            state.upsert_node(data.draw(node_spec(f"n{pick % 10}")))
        elif op == 3 and state.names:
            state.remove_node(state.names[pick % state.n_rows])
    after = _snapshot(state)
    changed = set(state.changed_rows(since).tolist())
    for c in COLUMNS:
        diff = {
            r for r in range(min(n_before, state.n_rows)) if not np.array_equal(before[c][r], after[c][r])
        }
        assert diff <= changed, f"{c} changed on rows {sorted(diff - changed)} that changed_rows leaves out"
    assert set(range(n_before, state.n_rows)) <= changed, "new rows are changed rows"
    assert all(state.row_version[r] <= state.version for r in range(state.n_rows))


@settings(max_examples=80, deadline=None)
@given(cases(), st.sampled_from([Policy.GPUPLACE, Policy.FGD]), st.data())
def test_results_for_some_rows_equal_the_full_results_there(case, policy, data) -> None:  # type: ignore[no-untyped-def]
    state, req = case
    if not state.n_rows:
        return
    rows = np.array(
        sorted(data.draw(st.sets(st.integers(0, state.n_rows - 1), min_size=1, max_size=state.n_rows))),
        np.intp,
    )
    reason, detail = placer.evaluate(state, req)
    r, d = placer.evaluate(state, req, rows=rows)
    np.testing.assert_array_equal(r, reason[rows])
    np.testing.assert_array_equal(d, detail[rows])
    for rule in (Policy.MOST_ALLOCATED, Policy.BEST_FIT):
        full = placer.score(state, req, reason, rule, topo_weight=0.5)
        np.testing.assert_array_equal(
            placer.score(state, req, reason, rule, topo_weight=0.5, rows=rows), full[rows]
        )
        np.testing.assert_array_equal(
            placer.score(state, req, reason, rule, topo_weight=0.5, rows=rows, twin=True), full[rows]
        )
    np.testing.assert_array_equal(island_fit(state, req, reason, rows), island_fit(state, req, reason)[rows])
    scorer = PolicyScorer(policy)
    local = scorer.local(state, req, reason)
    np.testing.assert_array_equal(scorer.local(state, req, reason, rows), local[rows])
    np.testing.assert_array_equal(scorer.finish(state, req, reason, local), scorer(state, req, reason))
