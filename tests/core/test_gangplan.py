"""The gang planner: smallest fitting domain, best fit, required levels, and the kernel equal to its twin."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from placement_core import MODELS, ClusterState, GpuRequest, GpuSpec, NodeSpec, Placement, placer
from placement_core.gangplan import (
    Level,
    Member,
    _fits_by_counting,
    _fits_by_trying,
    best_domain_kernel,
    best_domain_twin,
    countable,
    plan_gang,
)
from placement_core.request import WHOLE, NvlinkNeed

from .strategies import cases, clusters, requests

H100 = MODELS["H100-80GB"]


def _cluster(layout: dict[str, tuple[str, str, str]], gpus: int = 8) -> ClusterState:
    """nodes name → (clique, rack, zone), each with `gpus` H100s."""
    s = ClusterState(max_gpus=8, capacity=4)
    for name, (clique, rack, zone) in layout.items():
        s.upsert_node(
            NodeSpec(
                name,
                H100,
                [GpuSpec(i, H100.memory_mib) for i in range(gpus)],
                cpu_milli=64000,
                memory_mib=512000,
                clique=clique,
                rack=rack,
                zone=zone,
            )
        )
    return s


def _members(n: int, count: int = 8) -> list[Member]:
    return [Member(f"m{i}", GpuRequest(count=count)) for i in range(n)]


def _rows(s: ClusterState) -> np.ndarray:
    return np.arange(s.n_rows)


def _busy(s: ClusterState, node: str, uid: str, gpus: int) -> None:
    s.allocate(uid, Placement(node, gpus=tuple(range(gpus))))


def test_whole_gang_goes_into_one_clique() -> None:
    s = _cluster(
        {f"a{i}": ("ca", "r1", "z") for i in range(4)} | {f"b{i}": ("cb", "r1", "z") for i in range(4)}
    )
    _busy(s, "a0", "x", 8)  # clique a has room for 3, clique b for 4
    out = plan_gang(s, _members(4), need=4, rows=_rows(s))
    assert out.assignments is not None and out.level == Level.CLIQUE
    assert {p.node for p in out.assignments.values()} == {f"b{i}" for i in range(4)}


def test_best_fit_picks_the_clique_with_least_room_left() -> None:
    layout = {f"a{i}": ("ca", "r1", "z") for i in range(4)} | {f"b{i}": ("cb", "r1", "z") for i in range(2)}
    s = _cluster(layout)
    out = plan_gang(s, _members(2), need=2, rows=_rows(s))
    assert out.assignments is not None
    assert {p.node for p in out.assignments.values()} == {"b0", "b1"}


def test_climbs_to_the_rack_when_no_clique_fits_and_stops_at_a_required_level() -> None:
    s = _cluster(
        {"a0": ("ca", "r1", "z"), "a1": ("ca", "r1", "z"), "b0": ("cb", "r1", "z"), "c0": ("cc", "r2", "z")}
    )
    out = plan_gang(s, _members(3), need=3, rows=_rows(s))
    assert out.assignments is not None and out.level == Level.RACK
    assert {p.node for p in out.assignments.values()} == {"a0", "a1", "b0"}
    req = plan_gang(s, _members(3), need=3, rows=_rows(s), max_level=Level.CLIQUE)
    assert req.assignments is None
    assert req.why_not() == "2 of 3 members fit; needs 8 more GPUs in one NVLink domain"


def test_four_of_five_fit_is_no_plan_with_a_readable_reason() -> None:
    s = _cluster({f"n{i}": ("c", "r", "z") for i in range(4)})
    out = plan_gang(s, _members(5), need=5, rows=_rows(s))
    assert out.assignments is None
    assert out.why_not() == "4 of 5 members fit; needs 8 more GPUs in the cluster"


def test_candidate_rows_limit_the_plan_and_the_live_state_is_untouched() -> None:
    s = _cluster({f"n{i}": ("c", "r", "z") for i in range(4)})
    before = (s.version, dict(s.allocations), s.gpu_free_milli.copy())
    out = plan_gang(s, _members(2), need=2, rows=np.array([1, 3]))
    assert out.assignments is not None
    assert {p.node for p in out.assignments.values()} == {"n1", "n3"}
    assert (s.version, dict(s.allocations)) == before[:2]
    assert (s.gpu_free_milli == before[2]).all()


def test_several_members_share_a_node() -> None:
    s = _cluster({"n0": ("c", "r", "z"), "n1": ("c", "r", "z")})
    out = plan_gang(s, _members(4, count=4), need=4, rows=_rows(s))
    assert out.assignments is not None
    gpus = [(p.node, g) for p in out.assignments.values() for g in p.gpus]
    assert len(gpus) == len(set(gpus)) == 16


def test_quorum_below_size_places_as_many_as_fit() -> None:
    s = _cluster({f"n{i}": ("c", "r", "z") for i in range(3)})
    out = plan_gang(s, _members(4), need=3, rows=_rows(s))
    assert out.assignments is not None and len(out.assignments) == 3


def test_within_confines_the_plan_to_one_domain() -> None:
    s = _cluster({"a0": ("ca", "r", "z"), "b0": ("cb", "r", "z"), "b1": ("cb", "r", "z")})
    cb = s.cliques.ids["cb"]
    out = plan_gang(s, _members(1), need=1, rows=_rows(s), within=(Level.CLIQUE, cb))
    assert out.assignments is not None and out.assignments["m0"].node in {"b0", "b1"}


def test_a_gang_spread_over_a_level_fills_the_biggest_tighter_domains_first() -> None:
    """Kueue TAS "preferred": the fewest domains at each tighter level. The small cliques come first in
    row order, so filling nodes in row order would use all three cliques (and all three racks)."""
    s = _cluster(
        {"x0": ("cx", "rx", "z"), "y0": ("cy", "ry", "z")} | {f"w{i}": ("cw", "rw", "z") for i in range(3)}
    )
    out = plan_gang(s, _members(4), need=4, rows=_rows(s))
    assert out.assignments is not None and out.level == Level.ZONE
    nodes = {p.node for p in out.assignments.values()}
    assert {"w0", "w1", "w2"} <= nodes and len(nodes & {"x0", "y0"}) == 1
    s2 = _cluster({"x0": ("", "", ""), "y0": ("", "", "")} | {f"w{i}": ("", "rw", "") for i in range(2)})
    out = plan_gang(s2, _members(3), need=3, rows=_rows(s2))  # no labels but racks: the rack first
    assert out.assignments is not None and {"w0", "w1"} <= {p.node for p in out.assignments.values()}


def test_nodes_without_a_zone_label_leave_the_rack_to_decide_whatever_their_rows() -> None:
    """A node without a label is a domain of its own at that level; it must not order the nodes by row
    there (the e2e gang of 3 on racks of 1, 1 and 2 nodes spread over all three racks once a long-lived
    gpuplace had reused rows: the small racks' nodes sat on the highest rows)."""
    s = _cluster({"w0": ("", "rw", ""), "w1": ("", "rw", ""), "x0": ("", "rx", ""), "y0": ("", "ry", "")})
    out = plan_gang(s, _members(3), need=3, rows=_rows(s))
    assert out.assignments is not None and out.level == Level.CLUSTER
    nodes = {p.node for p in out.assignments.values()}
    assert {"w0", "w1"} <= nodes, nodes


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_best_domain_kernel_equals_twin(data: st.DataObject) -> None:
    n = data.draw(st.integers(0, 20))
    n_dom = data.draw(st.integers(1, 5))
    fits = np.array(data.draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)), np.int32)
    free = np.array(data.draw(st.lists(st.integers(0, 16000), min_size=n, max_size=n)), np.int64)
    dom = np.array(data.draw(st.lists(st.integers(-1, n_dom - 1), min_size=n, max_size=n)), np.int32)
    need = data.draw(st.integers(1, 8))
    bk, ck = best_domain_kernel(fits, free, dom, n_dom, need)
    bt, ct = best_domain_twin(fits, free, dom, n_dom, need)
    assert int(bk) == bt and ck.tolist() == ct.tolist()


@settings(max_examples=60, deadline=None)
@given(clusters(), requests(), st.integers(1, 5))
def test_plans_are_feasible_and_twin_equal(state: ClusterState, req: GpuRequest, n: int) -> None:
    members = [Member(f"m{i}", req) for i in range(n)]
    k = plan_gang(state, members, need=n, rows=np.arange(state.n_rows))
    t = plan_gang(state, members, need=n, rows=np.arange(state.n_rows), twin=True)
    assert k == t
    if k.assignments is not None:
        live = copy.deepcopy(state)
        for uid, p in k.assignments.items():
            live.allocate(uid, p)  # raises DoubleBookingError when the plan double-books
        assert not live.check_invariants()


@settings(max_examples=100, deadline=None)
@given(
    cases(),
    st.integers(1, 8),
    st.sampled_from([0, 8000, 24000, 48000]),
    st.sampled_from([0, 1000, 20000, 100000]),
    st.booleans(),
    st.sampled_from([0, 1, 1, 2, 4]),
)
def test_counting_copies_agrees_with_trying_them(
    case: tuple[ClusterState, GpuRequest], need: int, cpu: int, memory: int, fit: bool, small: int
) -> None:
    """cpu and memory sized so that they, not the GPUs, often bound the copies per node."""
    state, asked = case
    count = small or max(1, asked.count)  # small counts: several copies per node
    nvlink = NvlinkNeed.NONE if asked.nvlink == NvlinkNeed.REQUIRED and count > 1 else asked.nvlink
    req = replace(asked, count=count, milli=WHOLE, mig_profile=None, nvlink=nvlink,
                  cpu_milli=cpu, memory_mib=memory, fit_cpu_memory=fit)  # fmt: skip
    assert countable(req)
    rows = np.arange(state.n_rows)
    reason, _ = placer.evaluate(state, req)
    ok = rows[reason == 0]
    before = copy.deepcopy(state)
    counted = _fits_by_counting(state, ok, req, need)
    assert counted.tolist() == _fits_by_trying(state, ok, req, need).tolist()
    assert state.allocations == before.allocations
    assert np.array_equal(state.gpu_free_milli, before.gpu_free_milli)
