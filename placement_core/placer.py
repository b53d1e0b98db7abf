"""The facade the extender and the simulator call: evaluate, score and choose on a ClusterState.

It compiles a `GpuRequest` into the scalars and masks the kernels take, runs one kernel call over all
rows, and turns kernel outputs back into `Placement`s. Every function here has a `twin=True` switch that
runs the pure-Python twins instead — the property tests and the benchmark use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from placement_core.cluster import ClusterState, Placement
from placement_core.feasibility import feasibility_kernel, feasibility_twin
from placement_core.gpuset import (
    choose_gpus_kernel,
    choose_gpus_twin,
    choose_mig_kernel,
    choose_mig_twin,
    choose_share_kernel,
    choose_share_twin,
)
from placement_core.policies.definitions import Policy
from placement_core.request import GpuRequest, NvlinkNeed
from placement_core.scoring import RULES, rule_of, score_kernel, score_twin

UNKNOWN_MIG = -2  # a MIG profile no node in the cluster has


@dataclass(frozen=True, slots=True)
class Compiled:
    model_ok: npt.NDArray[np.bool_]
    count: int
    milli: int
    min_mem: int
    nvlink_required: bool
    mig_id: int
    cpu: int
    mem: int
    fit_cpu_mem: bool


def compile_request(state: ClusterState, req: GpuRequest) -> Compiled:
    mig_id = -1
    if req.mig_profile is not None:
        mig_id = state.mig_names.ids.get(req.mig_profile.replace("+", "."), UNKNOWN_MIG)
    return Compiled(
        model_ok=state.model_mask(req.models),
        count=req.count,
        milli=req.milli,
        min_mem=req.min_memory_mib,
        nvlink_required=req.nvlink == NvlinkNeed.REQUIRED,
        mig_id=mig_id,
        cpu=req.cpu_milli,
        mem=req.memory_mib,
        fit_cpu_mem=req.fit_cpu_memory,
    )


Rows = slice | npt.NDArray[np.intp]


def evaluate(
    state: ClusterState, req: GpuRequest, *, twin: bool = False, rows: Rows | None = None
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int32]]:
    """(reason, detail) per row; reason 0 = feasible. Rows follow `state.names`; `rows` limits the scan
    to a slice (bind evaluates one node, in O(GPUs on it)) or to row indices (the extender's memo redoes
    the rows changed since it last evaluated: ClusterState.changed_rows)."""
    c = compile_request(state, req)
    if twin:
        r, d = feasibility_twin(
            state,
            c.model_ok,
            c.count,
            c.milli,
            c.min_mem,
            c.nvlink_required,
            c.mig_id,
            c.cpu,
            c.mem,
            c.fit_cpu_mem,
        )
        return (r[rows], d[rows]) if rows is not None else (r, d)
    sl = rows if rows is not None else slice(0, state.n_rows)
    s = state
    cols = [
        getattr(s, name)[sl]
        for name in (
            "node_valid",
            "node_model",
            "node_gpu_count",
            "node_cpu_free",
            "node_mem_free",
            "node_sliced",
            "gpu_present",
            "gpu_healthy",
            "gpu_mem",
            "gpu_free_milli",
            "gpu_mig",
            "links",
            "link_class",
            "mig_profile",
            "mig_used",
        )
    ]
    cols.insert(13, s.island_tables)  # after link_class: the tables are per link matrix, not per row
    n = len(cols[0])
    reason = np.zeros(n, np.int8)
    detail = np.zeros(n, np.int32)
    feasibility_kernel(  # type: ignore[call-arg]  # numba's Dispatcher stub rejects a *list splat
        *cols,
        n,
        c.model_ok,
        c.count,
        c.milli,
        c.min_mem,
        c.nvlink_required,
        c.mig_id,
        c.cpu,
        c.mem,
        c.fit_cpu_mem,
        reason,
        detail,
    )
    return reason, detail


def score(
    state: ClusterState,
    req: GpuRequest,
    reason: npt.NDArray[np.int8],
    policy: Policy,
    *,
    topo_weight: float = 0.5,
    twin: bool = False,
    rows: npt.NDArray[np.intp] | None = None,
) -> npt.NDArray[np.float64]:
    """Raw score per row (higher is better, −inf where reason ≠ 0): the GPU part of `policy`, one of
    MOST_ALLOCATED, LEAST_ALLOCATED, BEST_FIT (placement_core.scoring). `reason` covers all rows; with
    `rows` only those rows are scored (the result has one entry per index)."""
    rule = rule_of(policy)
    c = compile_request(state, req)
    if twin:
        out: npt.NDArray[np.float64] = score_twin(
            state, reason, rule, c.count, c.milli, c.mig_id, topo_weight
        )
        return out if rows is None else out[rows]
    s = state
    n = s.n_rows if rows is None else len(rows)
    sel = slice(0, n) if rows is None else rows
    out = np.empty(n, np.float64)
    score_kernel(
        s.gpu_present[sel],
        s.gpu_healthy[sel],
        s.gpu_free_milli[sel],
        s.gpu_mig[sel],
        s.links[sel],
        s.link_class[sel],
        s.island_tables,
        s.mig_profile[sel],
        s.mig_used[sel],
        n,
        reason[sel],
        rule,
        c.count,
        c.milli,
        c.mig_id,
        topo_weight,
        out,
    )
    return out


def choose(state: ClusterState, node: str, req: GpuRequest, *, twin: bool = False) -> Placement | None:
    """The exact GPUs (or share, or MIG instances) for `req` on `node`; None when it does not fit now."""
    i = state.index.get(node)
    if i is None:
        return None
    reason, _ = evaluate(state, req, twin=twin, rows=slice(i, i + 1))
    if reason[0] != 0:
        return None
    s = state
    c = compile_request(state, req)
    healthy = s.gpu_present[i] & s.gpu_healthy[i]
    base = {"node": node, "cpu_milli": req.cpu_milli, "memory_mib": req.memory_mib}
    if c.mig_id != -1:
        fn_mig = choose_mig_twin if twin else choose_mig_kernel
        pairs = fn_mig(healthy, s.mig_profile[i], s.mig_used[i], c.mig_id, c.count)
        if len(pairs) < c.count:
            return None
        return Placement(mig=tuple((int(g), int(k)) for g, k in pairs), **base)  # type: ignore[arg-type]
    if req.is_share:
        fn_share = choose_share_twin if twin else choose_share_kernel
        g = fn_share(
            s.gpu_present[i],
            s.gpu_healthy[i],
            s.gpu_mem[i],
            s.gpu_free_milli[i],
            s.gpu_mig[i],
            c.min_mem,
            c.milli,
        )
        return None if g < 0 else Placement(gpus=(int(g),), milli=c.milli, **base)  # type: ignore[arg-type]
    if c.count == 0:
        return Placement(**base)  # type: ignore[arg-type]
    fn = choose_gpus_twin if twin else choose_gpus_kernel
    gpus = fn(
        s.gpu_present[i],
        s.gpu_healthy[i],
        s.gpu_mem[i],
        s.gpu_free_milli[i],
        s.gpu_mig[i],
        s.links[i],
        c.count,
        c.min_mem,
        c.nvlink_required,
    )
    if len(gpus) < c.count:
        return None
    return Placement(gpus=tuple(int(g) for g in gpus), **base)  # type: ignore[arg-type]


def warmup() -> None:
    """Compile (or load from the Numba cache) every kernel a request can reach, on a tiny cluster.

    Every entry point the extender calls: the placer's rules, the fragmentation-aware policies'
    `score_all` (through `PolicyScorer`, with the argument types the extender passes), the gang
    planner and the DRA device fit (`devicefit`). A kernel missed here compiles on the first real request, on the event loop
    (tests/scheduler/test_warmup.py holds this list complete)."""
    from placement_core.catalog import MODELS
    from placement_core.gangplan import Member, plan_gang
    from placement_core.inventory import GpuSpec, MigInstance, NodeSpec
    from placement_core.scorer import PolicyScorer, island_fit

    st = ClusterState(max_gpus=8, capacity=4)
    a100 = MODELS["A100-80GB"]
    p3g = a100.mig_profile("3g.40gb")
    assert p3g is not None
    st.upsert_node(NodeSpec.uniform("w0", MODELS["H100-80GB"], 8, cpu_milli=1000, memory_mib=1000))
    st.upsert_node(
        NodeSpec(
            "w1",
            a100,
            [GpuSpec(0, a100.memory_mib, mig=(MigInstance(p3g, 0),))],
            cpu_milli=1000,
            memory_mib=1000,
        )
    )
    for req in (
        GpuRequest(count=2, nvlink=NvlinkNeed.REQUIRED),
        GpuRequest(milli=500),
        GpuRequest(mig_profile="3g.40gb"),
    ):
        reason, _ = evaluate(st, req)
        for pol in RULES:
            score(st, req, reason, pol)
        for frag_policy in (Policy.GPUPLACE, Policy.FGD):
            PolicyScorer(frag_policy)(st, req, reason)
        island_fit(st, req, reason)
        choose(st, "w0", req)
        choose(st, "w1", req)
    plan_gang(
        st,
        [Member("g0", GpuRequest(count=2)), Member("g1", GpuRequest(count=2))],
        need=2,
        rows=np.arange(1, dtype=np.int64),
    )
    from placement_core import devicefit, mig

    devicefit.warmup()
    out = np.zeros(st.n_rows, np.int32)
    mig.creatable_kernel(
        st.gpu_present, st.gpu_healthy, st.gpu_mig, st.mig_start, st.mig_size, st.n_rows, 4, 0b10001, 8, out
    )
