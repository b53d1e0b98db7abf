"""Accounting rules the extender needs from the model (issue 9 items 4, 5, 7): shares on GPUs without
time-slicing, requests whose cpu/memory are counted but not fitted, and requests for no GPU."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from placement_core import MODELS, ClusterState, GpuRequest, NodeSpec, Placement, Reason, placer

from .strategies import clusters, requests


@settings(max_examples=150, deadline=None)
@given(clusters(), requests(), st.data())
def test_kernel_equals_twin_with_unsliced_nodes_and_unfitted_cpu(state: ClusterState, req, data) -> None:
    n = state.n_rows
    state.node_sliced[:n] = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    req = dataclasses.replace(req, fit_cpu_memory=data.draw(st.booleans()))
    rk, dk = placer.evaluate(state, req)
    rt, dt = placer.evaluate(state, req, twin=True)
    assert rk.tolist() == rt.tolist() and dk.tolist() == dt.tolist()
    if req.is_share:
        assert not ((rk == 0) & ~state.node_sliced[:n]).any()
    if not req.fit_cpu_memory:
        assert not np.isin(rk, [Reason.CPU, Reason.MEMORY]).any()
    for row, name in enumerate(state.names):
        assert (placer.choose(state, name, req) is not None) == (rk[row] == 0)


def test_a_share_on_an_unsliced_node_holds_its_whole_gpu() -> None:
    st_ = ClusterState()
    st_.upsert_node(NodeSpec.uniform("plain", MODELS["H100-80GB"], 2, time_sliced=False))
    share = Placement("plain", gpus=(0,), milli=250)
    st_.allocate("a", share)
    assert st_.gpu_free_milli[0, :2].tolist() == [0, 1000]
    reason, _ = placer.evaluate(st_, GpuRequest(milli=250))
    assert Reason(reason[0]) is Reason.SHARE_NOT_TIME_SLICED and Reason(reason[0]).unresolvable
    st_.upsert_node(NodeSpec.uniform("plain", MODELS["H100-80GB"], 2, time_sliced=True))  # replicas added
    assert st_.gpu_free_milli[0, :2].tolist() == [750, 1000]
    st_.upsert_node(NodeSpec.uniform("plain", MODELS["H100-80GB"], 2, time_sliced=False))
    st_.release("a")
    assert st_.gpu_free_milli[0, :2].tolist() == [1000, 1000] and not st_.check_invariants()


def test_unfitted_cpu_is_still_counted() -> None:
    st_ = ClusterState()
    st_.upsert_node(NodeSpec.uniform("h", MODELS["H100-80GB"], 8, cpu_milli=1000, memory_mib=1000))
    req = GpuRequest(count=1, cpu_milli=4000, memory_mib=4000, fit_cpu_memory=False)
    reason, _ = placer.evaluate(st_, req)
    assert reason.tolist() == [0]
    p = placer.choose(st_, "h", req)
    assert p is not None and (p.cpu_milli, p.memory_mib) == (4000, 4000)
    st_.allocate("x", p)
    assert (st_.node_cpu_free[0], st_.node_mem_free[0]) == (-3000, -3000)
