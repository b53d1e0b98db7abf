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
def mig_only_node(draw, name):
    """Every GPU in MIG mode with at least one instance: MIG requests have somewhere to land."""
    model = MODELS[draw(st.sampled_from(["A100-80GB", "H100-80GB", "A30"]))]
    gpus = []
    for i in range(draw(st.sampled_from([1, 4, 8]))):
        first = draw(st.sampled_from([p for p in model.mig_profiles if 0 in p.starts]))
        layout = draw(mig_layout(model))
        layout = layout if layout else (MigInstance(first, 0),)
        gpus.append(GpuSpec(i, model.memory_mib, healthy=draw(st.integers(0, 9)) > 0, mig=layout))
    return NodeSpec(name, model, gpus, None, cpu_milli=64000, memory_mib=262144)


def big_node(name, model="H100-80GB", cpu_milli=96000):
    """An empty, healthy 8-GPU NVSwitch node with the CPU and memory of the trace's 8-GPU jobs (88 cores)."""
    m = MODELS[model]
    return NodeSpec(
        name, m, [GpuSpec(i, m.memory_mib) for i in range(8)], None, cpu_milli=cpu_milli, memory_mib=393216
    )


@st.composite
def node_spec(draw, name):
    kind = draw(st.sampled_from(["random"] * 5 + ["cpu", "big", "big", "mig"]))
    if kind == "cpu":
        return NodeSpec(name, None, cpu_milli=8000, memory_mib=32000)
    if kind == "big":
        return big_node(name, draw(st.sampled_from(["H100-80GB", "A100-80GB"])))
    if kind == "mig":
        return draw(mig_only_node(name))
    model = MODELS[draw(st.sampled_from(MODEL_NAMES))]
    n = draw(st.sampled_from([1, 2, 4, 8]))
    gpus = []
    for i in range(n):
        mig = draw(mig_layout(model)) if model.mig_capable and draw(st.booleans()) else None
        gpus.append(
            GpuSpec(
                i,
                model.memory_mib - draw(st.sampled_from([0, 0, 4096])),
                healthy=draw(st.integers(0, 7)) > 0,
                mig=mig,
            )
        )
    links = None
    if draw(st.booleans()):
        m = np.array(draw(st.lists(st.integers(0, 2), min_size=n * n, max_size=n * n)), np.uint8).reshape(
            n, n
        )
        links = np.triu(m, 1) + np.triu(m, 1).T
    return NodeSpec(
        name,
        model,
        gpus,
        links,
        cpu_milli=draw(st.sampled_from([4000, 64000])),
        memory_mib=64000,
        schedulable=draw(st.integers(0, 9)) > 0,
    )


@st.composite
def clusters(draw, max_nodes=8, fleet_odds=4):
    """A ClusterState with random nodes and random existing allocations (made by the kernels), or — one time in
    `fleet_odds` — a fleet of identical 8-GPU nodes, all but one or two of them touched, where gpuplace's reserve for
    8-GPU jobs holds back the last empty one (10 nodes × the trace's 8-GPU share ≈ 0.5 of a node)."""
    state = ClusterState(max_gpus=8, capacity=2)
    if draw(st.integers(1, fleet_odds)) == 1:
        fleet = draw(st.integers(10, 14))
        for i in range(fleet):
            state.upsert_node(big_node(f"b{i}", cpu_milli=112000))  # a class of its own
        empty = draw(st.sampled_from([1, 1, 2]))  # two empty: more than the reserve, none held back
        for i in range(fleet - empty):
            state.allocate(f"small{i}", Placement(f"b{i}", gpus=(draw(st.integers(0, 7)),)))
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


@st.composite
def cases(draw, max_nodes=8, fleet_odds=4):
    """(cluster, request), the request often asking for a MIG profile the cluster has, or for 6-8 GPUs."""
    state = draw(clusters(max_nodes, fleet_odds))
    profiles = (
        sorted(
            {state.mig_names.names[int(i)] for i in np.unique(state.mig_profile[: state.n_rows]) if i >= 0}
        )
        if state.n_rows
        else []
    )
    req = draw(requests())
    if profiles and draw(st.integers(0, 2)) > 0:
        req = GpuRequest(
            count=draw(st.sampled_from([1, 1, 2, 3])),
            mig_profile=draw(st.sampled_from(profiles)),
            cpu_milli=req.cpu_milli,
        )
    elif draw(st.integers(0, 3)) == 0:
        req = GpuRequest(
            count=draw(st.integers(6, 8)),
            nvlink=draw(st.sampled_from(list(NvlinkNeed))),
            cpu_milli=draw(st.sampled_from([0, 8000, 88000])),
        )
    return state, req


def _kernel_place(state, row, req):
    s = state
    name = s.names[row]
    if req.mig_profile:
        mig_id = s.mig_names.ids.get(req.mig_profile, -2)
        pairs = choose_mig_kernel(
            s.gpu_present[row] & s.gpu_healthy[row], s.mig_profile[row], s.mig_used[row], mig_id, req.count
        )
        return Placement(name, mig=tuple(map(tuple, pairs.tolist()))) if len(pairs) else None
    if req.is_share:
        g = choose_share_kernel(
            s.gpu_present[row],
            s.gpu_healthy[row],
            s.gpu_mem[row],
            s.gpu_free_milli[row],
            s.gpu_mig[row],
            0,
            req.milli,
        )
        return Placement(name, gpus=(g,), milli=req.milli) if g >= 0 else None
    gpus = choose_gpus_kernel(
        s.gpu_present[row],
        s.gpu_healthy[row],
        s.gpu_mem[row],
        s.gpu_free_milli[row],
        s.gpu_mig[row],
        s.links[row],
        req.count,
        0,
        False,
    )
    return Placement(name, gpus=tuple(gpus.tolist())) if len(gpus) else None


@st.composite
def requests(draw):
    shape = draw(st.sampled_from(["whole", "share", "mig"]))
    common = {
        "min_memory_mib": draw(st.sampled_from([0, 0, 20000, 70000])),
        "models": draw(
            st.sampled_from([None, None, frozenset({"H100-80GB", "A100-80GB"}), frozenset({"L4"})])
        ),
        "cpu_milli": draw(st.sampled_from([0, 1000, 8000])),
        "memory_mib": draw(st.sampled_from([0, 1000])),
    }
    if shape == "share":
        return GpuRequest(count=1, milli=draw(st.integers(1, 999)), **common)
    if shape == "mig":
        return GpuRequest(
            count=draw(st.integers(1, 3)),
            mig_profile=draw(st.sampled_from(MIG_NAMES)),
            cpu_milli=common["cpu_milli"],
        )
    return GpuRequest(count=draw(st.integers(0, 8)), nvlink=draw(st.sampled_from(list(NvlinkNeed))), **common)


def note_cases(state, req, reason) -> None:
    """Label the cases that matter (hypothesis `event`; see them with --hypothesis-show-statistics)."""
    feasible = bool((reason == 0).any())
    if req.mig_profile:
        event(f"MIG request feasible on some node: {feasible}")
    elif not req.is_share and req.count >= 6:
        event(f"6-8 whole-GPU request feasible on some node: {feasible}")
