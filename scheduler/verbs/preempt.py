"""preempt: make kube-scheduler's victims free the RIGHT GPUs, adding victims where they do not.

kube-scheduler v1.36.3 chooses victims itself and asks the extender afterwards
(pkg/scheduler/framework/preemption/preemption.go, `Evaluator.Preempt` → `callExtenders`). Its dry run
(`SelectVictimsOnNode`, pkg/scheduler/framework/plugins/defaultpreemption/default_preemption.go) runs the
in-tree filters only: it counts `nvidia.com/gpu` and cannot see that two freed GPUs on different NVLink
islands do not make an NVLink-connected pair (kubernetes #139270). What the extender may answer, from
the same sources:

- every node it returns must carry at least one victim: `callExtenders` turns an empty list into an
  error that abandons the whole preemption ("expected at least one victim pod on node"; kubernetes
  PR #135486, which allows empty lists, is later than 1.36). gpuplace never answers an empty list;
- victims may be any pods on that node (`HTTPExtender.convertPodUIDToPod` looks them up among the
  node's pods, not among the proposed victims), and `pickOneNodeForPreemption` reads `Pods[0]` as the
  highest-priority victim: the list goes in decreasing importance;
- `NumPDBViolations` is taken as given and ranks the nodes first.

So, per candidate node, gpuplace only ever ADDS victims:

1. Node unknown to gpuplace, or the pod can never fit there (an unresolvable reason) → leave it out.
2. Every victim kube-scheduler chose stays. Its dry run found each one necessary for a constraint it
   checks (a reprieve test failed with it present, and in-tree filters only get stricter as pods are
   added), and gpuplace does not model most of those (host ports, anti-affinity, volumes, other
   resources, nominated non-GPU pods). In particular, when gpuplace believes the pod already fits, the
   scheduler's victims are returned unchanged: the node stays a candidate and preemption goes ahead.
3. With those victims released, if the pod fits gpuplace's model → done (victims and count unchanged).
4. Else release every other pod on the node that the preemptor may evict (lower priority, known to
   gpuplace: bound with a known priority). Still no fit → leave the node out. Otherwise reprieve them
   as `SelectVictimsOnNode` does: the PDB-violating ones first, then the rest, and by priority, highest
   first; a pod stays only if the preemptor still fits. What is left is added. Within one priority
   gpuplace reprieves the largest subset that still fits — the fewest added victims, the seeds' rule
   "evict the fewest training pods" — and start time (upstream's next key) only breaks ties between
   subsets of one size: the earlier-started pods are kept. These victims are gpuplace's own choice, not
   the dry run's, so upstream's pod-by-pod order binds nothing here; reprieving by start time alone
   evicted two running pods where one freed the island.
5. `NumPDBViolations` = kube-scheduler's count for its own victims + the added victims that violate a
   budget, classified like `filterPodsWithPDBViolation` over all the node's potential victims in
   importance order (scheduler.disruption; gpuplace watches PDBs for this).

A preemptor whose own Binding has an unknown outcome (scheduler.verbs.bind) already holds its GPUs on
that node, and bind refuses it any other node until the outcome is known: only that node is answered,
with kube-scheduler's victims unchanged (they are for what the in-tree filters found); every other node
is left out, so nothing is evicted for a bind that would be refused.

Every fit check also counts the pods nominated to the node with priority >= the preemptor's, as the
dry run does (`RunFilterPluginsWithNominatedPods`; scheduler.nominated).

Pods that cannot preempt through this verb at all: a pod that in-tree filters say fits a node (only
gpuplace rejects it: NVLink island, share, MIG slot) gets no candidate there — the dry run finds no
victim and the extender is never asked. See scheduler/README.md, "Preemption".

The simulation releases and re-allocates on the live ClusterState without any await in between, so no
other coroutine (a bind) can observe the intermediate state; everything is restored in `finally`.
Feasibility is evaluated on the one node's row only (O(GPUs on the node) per check).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import combinations, groupby

from placement_core import GpuRequest, Placement, Reason, placer
from scheduler.context import ExtenderContext
from scheduler.disruption import Victim
from scheduler.nominated import holding
from scheduler.podreq import PodRequestError
from scheduler.wire import ExtenderPreemptionArgs, ExtenderPreemptionResult, MetaPod, MetaVictims, Pod

log = logging.getLogger("gpuplace.scheduler.preempt")
MAX_EXHAUSTIVE = 6  # pods of one importance level searched exhaustively (2^6 fit checks at most)


@dataclass(frozen=True, slots=True)
class Candidate:
    """kube-scheduler's proposal for one node: its victims (in its order) and its PDB count."""

    victims: list[Victim]
    pdb_violations: int


def _fits(ctx: ExtenderContext, preemptor: Pod, node: str, row: int, req: GpuRequest) -> int:
    """placer's reason code for the preemptor on `row` (0 = fits), nominated pods included."""
    held = ctx.cache.nominated.against(preemptor.metadata.uid, preemptor.spec.priority, node)
    with holding(ctx.cache, held):
        reason, _ = placer.evaluate(ctx.cache.state, req, rows=slice(row, row + 1))
    return int(reason[0])


def _merge(chosen: list[Victim], added: list[Victim]) -> list[Victim]:
    """kube-scheduler's victims in their own order, with `added` (in importance order) inserted before
    the first of them that is less important."""
    out: list[Victim] = []
    rest = list(added)
    for v in chosen:
        while rest and rest[0].importance() < v.importance():
            out.append(rest.pop(0))
        out.append(v)
    return out + rest


def victims_on_node(
    ctx: ExtenderContext, preemptor: Pod, req: GpuRequest, node: str, cand: Candidate
) -> MetaVictims | None:
    """The victims to evict on `node` (never an empty list), or None to leave the node out."""
    state, cache = ctx.cache.state, ctx.cache
    row = state.index.get(node)
    if row is None or not cand.victims:
        return None
    now = _fits(ctx, preemptor, node, row, req)
    if now != 0 and Reason(now).unresolvable:
        return None
    chosen = {v.uid for v in cand.victims}
    released: list[tuple[str, Placement]] = []

    def release(uid: str) -> None:
        p = state.allocations.get(uid)
        if p is not None and p.node == node:
            state.release(uid)
            released.append((uid, p))

    try:
        for v in cand.victims:
            release(v.uid)
        if _fits(ctx, preemptor, node, row, req) == 0:
            return _answer(cand.victims, cand.pdb_violations)
        prio = preemptor.spec.priority
        extra = [
            cache.disruption.victim(uid, rec.namespace, rec.name, rec.priority)
            for uid in state.pods_on(node)
            if uid not in chosen and (rec := cache.pods.get(uid)) is not None and rec.priority < prio
        ]
        for v in extra:
            release(v.uid)
        if _fits(ctx, preemptor, node, row, req) != 0:
            return None
        potential = sorted([*cand.victims, *extra], key=Victim.importance)
        bad = dict(zip((v.uid for v in potential), cache.disruption.violating(potential), strict=True))
        extra.sort(key=lambda v: (not bad[v.uid], v.importance()))  # violating first, then by importance
        placements = dict(released)
        added: list[Victim] = []
        for _, level in groupby(extra, key=lambda v: (not bad[v.uid], v.priority)):
            added += _reprieve(ctx, preemptor, node, row, req, list(level), placements)
        added.sort(key=Victim.importance)
        log.debug(
            "preempt %s on %s: %d victim(s) added to %d", preemptor.key, node, len(added), len(cand.victims)
        )
        return _answer(_merge(cand.victims, added), cand.pdb_violations + sum(bad[v.uid] for v in added))
    finally:
        for uid, p in released:
            if uid not in state.allocations:
                state.allocate(uid, p, check=False)


def _reprieve(
    ctx: ExtenderContext,
    preemptor: Pod,
    node: str,
    row: int,
    req: GpuRequest,
    level: list[Victim],
    placements: dict[str, Placement],
) -> list[Victim]:
    """Put back the largest subset of one priority level (in importance order: earlier start first)
    that keeps the preemptor fitting (the state fits on entry); return the rest, the victims. Searched
    exhaustively for up to MAX_EXHAUSTIVE pods — `combinations` yields subsets of one size with the
    most important pods first, so ties keep those — else one at a time in importance order."""
    state = ctx.cache.state

    def put(vs: tuple[Victim, ...]) -> None:
        for v in vs:
            state.allocate(v.uid, placements[v.uid], check=False)

    def take(vs: tuple[Victim, ...]) -> None:
        for v in vs:
            state.release(v.uid)

    if len(level) <= MAX_EXHAUSTIVE:
        for size in range(len(level), 0, -1):
            for keep in combinations(level, size):
                put(keep)
                if _fits(ctx, preemptor, node, row, req) == 0:
                    kept = {v.uid for v in keep}
                    return [v for v in level if v.uid not in kept]
                take(keep)
        return list(level)
    evicted = []
    for v in level:
        put((v,))
        if _fits(ctx, preemptor, node, row, req) != 0:
            take((v,))
            evicted.append(v)
    return evicted


def _answer(victims: list[Victim], pdb_violations: int) -> MetaVictims:
    return MetaVictims(pods=[MetaPod(UID=v.uid) for v in victims], NumPDBViolations=pdb_violations)


def candidates(args: ExtenderPreemptionArgs, ctx: ExtenderContext) -> dict[str, Candidate]:
    """kube-scheduler's proposal in either form: meta (UIDs; the rest from gpuplace's cache) or full Pods."""
    out: dict[str, Candidate] = {}
    cache = ctx.cache
    if args.node_name_to_meta_victims is not None:
        for node, mv in args.node_name_to_meta_victims.items():
            vs = []
            for p in mv.pods if mv else []:
                rec = cache.pods.get(p.uid)
                if rec is None:  # e.g. assumed by kube-scheduler, not bound yet: kept, ordered as given
                    vs.append(Victim(p.uid, "", "", preemptor_floor(args), {}, None))
                else:
                    vs.append(cache.disruption.victim(p.uid, rec.namespace, rec.name, rec.priority))
            out[node] = Candidate(vs, mv.num_pdb_violations if mv else 0)
    elif args.node_name_to_victims is not None:
        for node, v in args.node_name_to_victims.items():
            vs = [
                Victim(
                    p.metadata.uid,
                    p.metadata.namespace,
                    p.metadata.name,
                    p.spec.priority,
                    p.metadata.labels,
                    p.status.start_time,
                )
                for p in (v.pods if v else [])
            ]
            out[node] = Candidate(vs, v.num_pdb_violations if v else 0)
    return out


def preemptor_floor(args: ExtenderPreemptionArgs) -> int:
    """A stand-in priority for a victim gpuplace does not know: just below the preemptor's (every
    victim has a lower priority), so added victims are never put in front of it by mistake."""
    return args.pod.spec.priority - 1


def preempt(args: ExtenderPreemptionArgs, ctx: ExtenderContext) -> ExtenderPreemptionResult:
    """The preempt verb (both the meta-victims and the full-victims form)."""
    try:
        req = ctx.requests.get(args.pod)
    except PodRequestError:
        return ExtenderPreemptionResult()  # filter already failed this pod with the reason
    out: dict[str, MetaVictims] = {}
    proposed = candidates(args, ctx)
    extended = 0
    unknown = ctx.cache.outcome_unknown(args.pod.metadata.uid)
    for node, cand in proposed.items():
        if unknown is not None:  # its GPUs are booked on unknown.node; a bind elsewhere is refused
            mv = _answer(cand.victims, cand.pdb_violations) if node == unknown.node and cand.victims else None
        else:
            mv = victims_on_node(ctx, args.pod, req, node, cand)
        if mv is not None:
            out[node] = mv
            extended += len(mv.pods) > len(cand.victims)
    log.info(
        "preempt %s: %d candidate node(s): %d as proposed, %d with victims added, %d left out",
        args.pod.key,
        len(proposed),
        len(out) - extended,
        extended,
        len(proposed) - len(out),
    )
    return ExtenderPreemptionResult(node_name_to_meta_victims=out)
