from __future__ import annotations

import numpy as np
import pytest

from placement_core import MODELS, ClusterState, DoubleBookingError, GpuSpec, MigInstance, NodeSpec, Placement


def _state() -> ClusterState:
    st = ClusterState(max_gpus=8, capacity=1)
    st.upsert_node(NodeSpec.uniform("h", MODELS["H100-80GB"], 8, cpu_milli=64000, memory_mib=512000))
    st.upsert_node(NodeSpec.uniform("l", MODELS["L4"], 1, cpu_milli=8000, memory_mib=32000))
    return st


def test_allocate_release_roundtrip_restores_arrays() -> None:
    st = _state()
    before = st.gpu_free_milli.copy(), st.node_cpu_free.copy()
    st.allocate("a", Placement("h", gpus=(0, 1), cpu_milli=1000, memory_mib=10))
    st.allocate("b", Placement("h", gpus=(2,), milli=300))
    assert st.gpu_free_milli[0, :3].tolist() == [0, 0, 700]
    assert st.node_cpu_free[0] == 63000
    st.release("a")
    st.release("b")
    st.release("never-existed")
    assert (st.gpu_free_milli == before[0]).all() and (st.node_cpu_free == before[1]).all()


def test_double_booking_is_refused_and_changes_nothing() -> None:
    st = _state()
    st.allocate("a", Placement("h", gpus=(0,)))
    snapshot = st.gpu_free_milli.copy()
    with pytest.raises(DoubleBookingError):
        st.allocate("b", Placement("h", gpus=(1, 0)))
    with pytest.raises(DoubleBookingError):
        st.allocate("c", Placement("h", gpus=(3, 3)))
    with pytest.raises(DoubleBookingError):
        st.allocate("a", Placement("h", gpus=(5,)))  # same pod, different placement
    st.allocate("a", Placement("h", gpus=(0,)))  # idempotent repeat
    assert (st.gpu_free_milli == snapshot).all()
    assert st.check_invariants() == []


def test_shares_fill_one_gpu_up_to_capacity() -> None:
    st = _state()
    st.allocate("a", Placement("l", gpus=(0,), milli=600))
    st.allocate("b", Placement("l", gpus=(0,), milli=400))
    with pytest.raises(DoubleBookingError):
        st.allocate("c", Placement("l", gpus=(0,), milli=1))


def test_node_update_keeps_allocations_and_grows_rows() -> None:
    st = _state()
    st.allocate("a", Placement("h", gpus=(4,), cpu_milli=500))
    for i in range(100):  # forces several array growths
        st.upsert_node(NodeSpec.uniform(f"x{i}", MODELS["T4"], 1))
    st.upsert_node(NodeSpec.uniform("h", MODELS["H100-80GB"], 8, cpu_milli=32000, memory_mib=512000))
    row = st.index["h"]
    assert st.gpu_free_milli[row, 4] == 0 and st.node_cpu_free[row] == 31500


def test_removed_node_row_is_recycled_and_its_pods_forgotten() -> None:
    st = _state()
    st.allocate("a", Placement("l", gpus=(0,)))
    st.remove_node("l")
    assert "a" not in st.allocations
    row = st.upsert_node(NodeSpec.uniform("new", MODELS["T4"], 1))
    assert row == 1 and st.gpu_free_milli[row, 0] == 1000


def test_mig_instances_are_booked_once() -> None:
    a100 = MODELS["A100-80GB"]
    p = a100.mig_profile("3g.40gb")
    assert p is not None
    st = ClusterState(max_gpus=8)
    st.upsert_node(
        NodeSpec("m", a100, [GpuSpec(0, a100.memory_mib, mig=(MigInstance(p, 0), MigInstance(p, 4)))])
    )
    st.allocate("a", Placement("m", mig=((0, 1),)))
    with pytest.raises(DoubleBookingError):
        st.allocate("b", Placement("m", mig=((0, 1),)))
    with pytest.raises(DoubleBookingError):
        st.allocate("b", Placement("m", mig=((0, 5),)))  # no instance there
    assert np.count_nonzero(st.mig_used) == 1


def test_overlapping_mig_layout_is_rejected() -> None:
    a100 = MODELS["A100-80GB"]
    p3, p4 = a100.mig_profile("3g.40gb"), a100.mig_profile("4g.40gb")
    assert p3 and p4
    bad = NodeSpec("m", a100, [GpuSpec(0, 1, mig=(MigInstance(p4, 0), MigInstance(p3, 0)))])
    with pytest.raises(ValueError, match="overlap"):
        ClusterState().upsert_node(bad)
