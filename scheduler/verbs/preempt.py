"""preempt: keep the candidate nodes where evicting (some of) the victims really makes the pod fit.

kube-scheduler picks victims by resource counts; it cannot see that two freed GPUs on different NVLink
islands do not make an NVLink-connected pair, or that a MIG slice of the wrong profile frees nothing
(kubernetes #139270: preemption that ignores the extender). For each candidate node:

1. Node unknown, or the pod can never fit there (an unresolvable reason) → drop the node.
2. The pod fits with no eviction → keep the node with no victims (empty victim lists are legal,
   kubernetes PR #135486).
3. Release every victim gpuplace knows; if the pod still does not fit → drop the node.
4. Otherwise reprieve victims one at a time, highest priority first and, within one priority, the
   smallest GPU footprint first; a reprieved victim stays only if the pod still fits. This is
   kube-scheduler's own selectVictimsOnNode rule (evict low priority before high), and putting small
   pods back first means the evictions that remain are few and large — fewest victims for the same
   freed capacity. The result is minimal: no remaining victim can be spared alone. It is not
   guaranteed minimum-cardinality (that is a subset search; victim lists are short, but candidates are
   many and this runs inside the scheduler's timeout).

The simulation releases and re-allocates on the live ClusterState without any await in between, so no
other coroutine (a bind) can observe the intermediate state; every victim is restored in `finally`.
Feasibility is evaluated on the one node's rows only (O(GPUs on the node) per check).
Victims gpuplace does not know hold nothing it models and are never returned. Only constraints the
model has (GPUs, NVLink, MIG, CPU, memory) are re-checked; `NumPDBViolations` is kept as the scheduler
counted it, capped at the number of victims returned.
"""

from __future__ import annotations

from placement_core import GpuRequest, Placement, Reason, placer
from scheduler.context import ExtenderContext
from scheduler.podreq import PodRequestError
from scheduler.wire import ExtenderPreemptionArgs, ExtenderPreemptionResult, MetaPod, MetaVictims


def _fits(ctx: ExtenderContext, row: int, req: GpuRequest) -> int:
    reason, _ = placer.evaluate(ctx.cache.state, req, rows=slice(row, row + 1))
    return int(reason[0])


def _footprint(p: Placement) -> int:
    return len(p.gpus) * p.milli + 1000 * len(p.mig)


def minimal_victims(
    ctx: ExtenderContext, node: str, req: GpuRequest, victims: list[tuple[str, int]]
) -> list[str] | None:
    """UIDs to evict on `node` (in eviction order), [] if none is needed, None if eviction cannot help.
    `victims` are (uid, priority) pairs."""
    state = ctx.cache.state
    row = state.index.get(node)
    if row is None:
        return None
    now = _fits(ctx, row, req)
    if now == 0:
        return []
    if Reason(now).unresolvable:
        return None
    held = [
        (uid, prio, state.allocations[uid])
        for uid, prio in victims
        if uid in state.allocations and state.allocations[uid].node == node
    ]
    for uid, _, _ in held:
        state.release(uid)
    try:
        if _fits(ctx, row, req) != 0:
            return None
        evicted = []
        for uid, prio, p in sorted(held, key=lambda v: (-v[1], _footprint(v[2]), v[0])):
            state.allocate(uid, p, check=False)
            if _fits(ctx, row, req) != 0:
                state.release(uid)
                evicted.append((prio, uid))
        return [uid for _, uid in sorted(evicted)]
    finally:
        for uid, _, p in held:
            if uid not in state.allocations:
                state.allocate(uid, p, check=False)


def preempt(args: ExtenderPreemptionArgs, ctx: ExtenderContext) -> ExtenderPreemptionResult:
    """The preempt verb (both the meta-victims and the full-victims form)."""
    try:
        req = ctx.requests.get(args.pod)
    except PodRequestError:
        return ExtenderPreemptionResult()  # filter already failed this pod with the reason
    candidates: dict[str, tuple[list[tuple[str, int]], int]] = {}
    pods = ctx.cache.pods
    if args.node_name_to_meta_victims is not None:
        for node, mv in args.node_name_to_meta_victims.items():
            vs = [(p.uid, pods[p.uid].priority if p.uid in pods else 0) for p in (mv.pods if mv else [])]
            candidates[node] = (vs, mv.num_pdb_violations if mv else 0)
    elif args.node_name_to_victims is not None:
        for node, v in args.node_name_to_victims.items():
            vs = [(p.metadata.uid, p.spec.priority) for p in (v.pods if v else [])]
            candidates[node] = (vs, v.num_pdb_violations if v else 0)
    out: dict[str, MetaVictims] = {}
    for node, (victims, pdb) in candidates.items():
        chosen = minimal_victims(ctx, node, req, victims)
        if chosen is not None:
            out[node] = MetaVictims(
                pods=[MetaPod(UID=u) for u in chosen], NumPDBViolations=min(pdb, len(chosen))
            )
    return ExtenderPreemptionResult(node_name_to_meta_victims=out)
