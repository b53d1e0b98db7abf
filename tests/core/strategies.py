"""Hypothesis strategies: random clusters with mixed models, topologies, MIG layouts and usage."""

from __future__ import annotations

import numpy as np
from hypothesis import event
from hypothesis import strategies as st

from placement_core import MODELS, ClusterState, GpuRequest, GpuSpec, MigInstance, NodeSpec, NvlinkNeed
from placement_core.cluster import Placement
from placement_core.gpuset import choose_gpus_kernel, choose_mig_kernel, choose_share_kernel

MODEL_NAMES = ["H100-80GB", "A100-80GB", "V100-32GB", "L4", "T4", "A30"]
MIG_NAMES = ["1g.10gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb", "1g.6gb", "2g.12gb"]


@st.composite
def mig_layout(draw, model):
    """A valid MIG layout: instances added greedily at random valid, non-overlapping starts."""
    occupied = 0
    out = []
    slices = model.mig_memory_slices
    for _ in range(draw(st.integers(0, 7))):
        p = draw(st.sampled_from(model.mig_profiles))
        starts = [s for s in p.starts if s + p.size <= slices and not occupied & (((1 << p.size) - 1) << s)]
        if not starts or (p.media and any(i.profile.media for i in out)):
            continue
        s = draw(st.sampled_from(starts))
        occupied |= ((1 << p.size) - 1) << s
        out.append(MigInstance(p, s))
    return tuple(out)


@st.composite
def node_spec(draw, name):
    if draw(st.integers(0, 9)) == 0:
        return NodeSpec(name, None, cpu_milli=8000, memory_mib=32000)
    model = MODELS[draw(st.sampled_from(MODEL_NAMES))]
    n = draw(st.sampled_from([1, 2, 4, 8]))
    gpus = []
    for i in range(n):
        mig = draw(mig_layout(model)) if model.mig_capable and draw(st.booleans()) else None
        gpus.append(GpuSpec(i, model.memory_mib - draw(st.sampled_from([0, 0, 4096])),
                            healthy=draw(st.integers(0, 7)) > 0, mig=mig))
    links = None
    if draw(st.booleans()):
        m = np.array(draw(st.lists(st.integers(0, 2), min_size=n * n, max_size=n * n)), np.uint8).reshape(n, n)
        links = np.triu(m, 1) + np.triu(m, 1).T
    return NodeSpec(name, model, gpus, links, cpu_milli=draw(st.sampled_from([4000, 64000])),
                    memory_mib=64000, schedulable=draw(st.integers(0, 9)) > 0)


@st.composite
def clusters(draw, max_nodes=8):
    """A ClusterState with random nodes and random existing allocations (made by the kernels)."""
    state = ClusterState(max_gpus=8, capacity=2)
    for i in range(draw(st.integers(0, max_nodes))):
        state.upsert_node(draw(node_spec(f"n{i}")))
    for k in range(draw(st.integers(0, 12))):
        if not state.names:
            break
        row = draw(st.integers(0, state.n_rows - 1))
        req = draw(requests())
        p = _kernel_place(state, row, req)
        if p is not None:
            state.allocate(f"pod{k}", p)
    return state


def _kernel_place(state, row, req):
    s = state
    name = s.names[row]
    if req.mig_profile:
        mig_id = s.mig_names.ids.get(req.mig_profile, -2)
        pairs = choose_mig_kernel(s.gpu_present[row] & s.gpu_healthy[row], s.mig_profile[row], s.mig_used[row],
                                  mig_id, req.count)
        return Placement(name, mig=tuple(map(tuple, pairs.tolist()))) if len(pairs) else None
    if req.is_share:
        g = choose_share_kernel(s.gpu_present[row], s.gpu_healthy[row], s.gpu_mem[row], s.gpu_free_milli[row],
                                s.gpu_mig[row], 0, req.milli)
        return Placement(name, gpus=(g,), milli=req.milli) if g >= 0 else None
    gpus = choose_gpus_kernel(s.gpu_present[row], s.gpu_healthy[row], s.gpu_mem[row], s.gpu_free_milli[row],
                              s.gpu_mig[row], s.links[row], req.count, 0, False)
    return Placement(name, gpus=tuple(gpus.tolist())) if len(gpus) else None


@st.composite
def requests(draw):
    shape = draw(st.sampled_from(["whole", "share", "mig"]))
    common = {
        "min_memory_mib": draw(st.sampled_from([0, 0, 20000, 70000])),
        "models": draw(st.sampled_from([None, None, frozenset({"H100-80GB", "A100-80GB"}), frozenset({"L4"})])),
        "cpu_milli": draw(st.sampled_from([0, 1000, 8000])),
        "memory_mib": draw(st.sampled_from([0, 1000])),
    }
    if shape == "share":
        return GpuRequest(count=1, milli=draw(st.integers(1, 999)), **common)
    if shape == "mig":
        return GpuRequest(count=draw(st.integers(1, 3)), mig_profile=draw(st.sampled_from(MIG_NAMES)),
                          cpu_milli=common["cpu_milli"])
    return GpuRequest(count=draw(st.integers(0, 8)),
                      nvlink=draw(st.sampled_from(list(NvlinkNeed))), **common)


def note_cases(state, req, reason) -> None:
    """Label the cases that matter (hypothesis `event`; see them with --hypothesis-show-statistics)."""
    feasible = bool((reason == 0).any())
    if req.mig_profile:
        event(f"MIG request feasible on some node: {feasible}")
    elif not req.is_share and req.count >= 6:
        event(f"6-8 whole-GPU request feasible on some node: {feasible}")
