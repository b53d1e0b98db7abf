"""Hand-worked placement decisions (the expected answers are derived in the comments)."""

from __future__ import annotations

import numpy as np

from placement_core import (
    MODELS,
    ClusterState,
    GpuRequest,
    NodeSpec,
    NvlinkNeed,
    Placement,
    Policy,
    Reason,
    placer,
)
from placement_core.reasons import explain


def _dgx1(free: list[int]) -> ClusterState:
    st = ClusterState(max_gpus=8)
    st.upsert_node(NodeSpec.uniform("dgx1", MODELS["V100-32GB"], 8, cpu_milli=64000, memory_mib=10**6))
    busy = tuple(g for g in range(8) if g not in free)
    if busy:
        st.allocate("busy", Placement("dgx1", gpus=busy))
    return st


def test_dgx1_pair_prefers_double_nvlink() -> None:
    # free {0,2,4,5}: links 0-2=1, 0-4=2, 4-5=1, others 0 → {0,4} has the most NVLinks.
    # (NVIDIA's BestEffort returns {4,5}: it maximises the total of the whole partition instead.)
    p = placer.choose(_dgx1([0, 2, 4, 5]), "dgx1", GpuRequest(count=2))
    assert p is not None and p.gpus == (0, 4)


def test_dgx1_quad_from_empty_takes_a_fully_linked_half() -> None:
    # {0,1,2,3} and {4,5,6,7} both sum 9 links and leave a 4-island; lexicographic tie-break.
    p = placer.choose(_dgx1(list(range(8))), "dgx1", GpuRequest(count=4, nvlink=NvlinkNeed.REQUIRED))
    assert p is not None and p.gpus == (0, 1, 2, 3)


def test_single_gpu_on_bridge_pairs_keeps_the_pair_intact() -> None:
    st = ClusterState(max_gpus=8)
    st.upsert_node(NodeSpec.uniform("a", MODELS["A40"], 4))  # bridges 0-1, 2-3
    st.allocate("x", Placement("a", gpus=(3,)))
    # free {0,1,2}: taking 2 leaves the {0,1} island (size 2); taking 0 or 1 leaves islands of 1.
    p = placer.choose(st, "a", GpuRequest(count=1))
    assert p is not None and p.gpus == (2,)


def test_nvlink_required_reports_island_sizes() -> None:
    st = _dgx1([0, 5, 6, 7])  # free graph: 5-6, 5-7, 6-7 connected; 0 isolated → largest island 3
    req = GpuRequest(count=4, nvlink=NvlinkNeed.REQUIRED)
    reason, detail = placer.evaluate(st, req)
    assert Reason(reason[0]) is Reason.NVLINK_BUSY and detail[0] == 3
    text = explain(
        reason[0], detail[0], what="", count=4, milli=1000, min_memory_mib=0, mig_profile=None, models=""
    )
    assert text == "needs 4 NVLink-connected GPUs; largest free NVLink island here is 3"
    pcie = ClusterState()
    pcie.upsert_node(NodeSpec.uniform("p", MODELS["L40S"], 8))
    r, d = placer.evaluate(pcie, req)
    assert Reason(r[0]) is Reason.NVLINK_TOPOLOGY and Reason(r[0]).unresolvable and d[0] == 1


def test_share_goes_to_the_gpu_leaving_least_waste() -> None:
    st = ClusterState()
    st.upsert_node(NodeSpec.uniform("t", MODELS["T4"], 4))
    st.allocate("a", Placement("t", gpus=(1,), milli=500))
    st.allocate("b", Placement("t", gpus=(2,), milli=700))
    p = placer.choose(st, "t", GpuRequest(milli=300))  # GPU2 has 300 free: exact fit
    assert p is not None and p.gpus == (2,) and p.milli == 300
    p = placer.choose(st, "t", GpuRequest(milli=400))  # GPU1 has 500 free: least waste
    assert p is not None and p.gpus == (1,)


def test_unresolvable_reasons_and_model_filter() -> None:
    st = ClusterState()
    st.upsert_node(NodeSpec.uniform("h", MODELS["H100-80GB"], 8, cpu_milli=1000, memory_mib=1000))
    st.upsert_node(NodeSpec.uniform("l", MODELS["L4"], 1, cpu_milli=1000, memory_mib=1000))
    st.upsert_node(NodeSpec("cpu", None, cpu_milli=1000, memory_mib=1000))
    r, d = placer.evaluate(st, GpuRequest(count=2, models=frozenset({"H100-80GB"})))
    assert [Reason(x) for x in r] == [Reason.OK, Reason.MODEL, Reason.NO_GPUS]
    r, d = placer.evaluate(st, GpuRequest(count=1, min_memory_mib=40000))
    assert Reason(r[1]) is Reason.GPU_MEMORY and d[1] == MODELS["L4"].memory_mib
    r, d = placer.evaluate(st, GpuRequest(count=1, cpu_milli=2000))
    assert Reason(r[0]) is Reason.CPU and d[0] == 1000


def test_most_allocated_packs_and_topology_term_keeps_big_islands() -> None:
    st = ClusterState()
    for name in ("a", "b"):
        st.upsert_node(NodeSpec.uniform(name, MODELS["H100-80GB"], 8))
    st.allocate("x", Placement("a", gpus=(0, 1, 2, 3)))
    req = GpuRequest(count=4, nvlink=NvlinkNeed.PREFERRED)
    reason, _ = placer.evaluate(st, req)
    s = placer.score(st, req, reason, Policy.MOST_ALLOCATED)
    assert s[0] > s[1]  # half-used node "a" is an exact 4-island fit and is fuller
    s = placer.score(st, req, reason, Policy.LEAST_ALLOCATED, topo_weight=0.0)
    assert s[1] > s[0]
    assert np.isfinite(s).all()


def test_a_request_for_no_gpus_fits_any_node_and_chooses_nothing() -> None:
    """`nvidia.com/gpu: "0"` is no GPU request (issue 9 item 7): CPU nodes fit it, nothing is chosen."""
    st = ClusterState()
    st.upsert_node(NodeSpec.uniform("h", MODELS["H100-80GB"], 8, cpu_milli=1000, memory_mib=1000))
    st.upsert_node(NodeSpec("cpu", None, cpu_milli=1000, memory_mib=1000))
    r, _ = placer.evaluate(st, GpuRequest(count=0))
    assert [Reason(x) for x in r] == [Reason.OK, Reason.OK]
    assert placer.choose(st, "cpu", GpuRequest(count=0, cpu_milli=500)) == Placement("cpu", cpu_milli=500)
