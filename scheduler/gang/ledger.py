"""The reservation ledger audit (and the read-only views built on it: metrics counts, /debug/gangs): the invariants of gang plans and their holds, checked on demand
(`GET /debug/gangs`, and by the e2e scenarios while they run). Empty list = consistent.

1. Per node and GPU: bound + binding + held ≤ capacity (ClusterState.check_invariants; holds are
   allocations, so a double booking shows up as a negative free count).
2. Every hold belongs to a live plan, to a member that exists and is pending, with the planned placement.
3. Every pending planned member has its hold, or its bind's reservation (hold taken under the node lock).
4. A plan covers at least its minimum (planned + bound members), inside one domain of its level.
5. A plan with nothing bound is released within its TTL plus `margin` seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from placement_core.gangplan import Level, domain_ids

if TYPE_CHECKING:
    from scheduler.gang.manager import GangManager


def audit(mgr: GangManager, *, margin: float = 5.0) -> list[str]:
    from scheduler.gang.holds import HOLD

    state, cache, now = mgr.cache.state, mgr.cache, mgr.clock()
    problems = list(state.check_invariants())
    owner = {uid: plan for plan in mgr.plans.values() for uid in plan.assignments}
    for huid, p in state.allocations.items():
        if not huid.startswith(HOLD):
            continue
        uid = huid[len(HOLD) :]
        plan = owner.get(uid)
        gang = mgr.registry.gang_of_pod(uid)
        m = gang.members.get(uid) if gang else None
        if plan is None:
            problems.append(f"hold {uid} on {p.node} belongs to no plan")
        elif plan.assignments[uid] != p:
            problems.append(f"hold {uid} on {p.node} differs from its plan ({plan.assignments[uid].node})")
        if m is not None and m.node:
            problems.append(f"hold {uid} on {p.node} kept for a bound member")
    for plan in mgr.plans.values():
        gang = mgr.registry.gangs.get(plan.key)
        bound = {m.uid for m in gang.bound} if gang else set()
        for uid in plan.assignments:
            if uid in bound:
                continue
            if HOLD + uid not in state.allocations and uid not in cache.reservations:
                problems.append(f"gang {plan.gang}: planned member {plan.pods.get(uid, uid)} holds nothing")
        covered = len(set(plan.assignments) | bound)
        if covered < plan.min_member:
            problems.append(f"gang {plan.gang}: plan covers {covered} of {plan.min_member} members")
        if plan.level != Level.CLUSTER:
            ids = domain_ids(state, plan.level)
            doms = {int(ids[state.index[p.node]]) for p in plan.assignments.values() if p.node in state.index}
            if len(doms) > 1:
                problems.append(f"gang {plan.gang}: plan spans {len(doms)} {plan.level.noun}s")
        if not bound and now > plan.expires + margin:
            problems.append(
                f"gang {plan.gang}: plan {plan.uid} outlived its TTL by {now - plan.expires:.1f}s"
            )
    return problems


def counts(mgr: GangManager) -> tuple[dict[str, int], float]:
    """(gangs per state, GPUs held) for the metrics."""
    from scheduler.gang.holds import HOLD

    out = {"waiting": 0, "planned": 0, "binding": 0}
    for key, gang in mgr.registry.gangs.items():
        if key in mgr.plans:
            out["binding" if gang.bound else "planned"] += 1
        elif gang.pending:
            out["waiting"] += 1
    held = sum(
        (len(p.gpus) * p.milli / 1000 if p.gpus else len(p.mig))
        for uid, p in mgr.cache.state.allocations.items()
        if uid.startswith(HOLD)
    )
    return out, held


def snapshot(mgr: GangManager) -> dict[str, Any]:
    """GET /debug/gangs: plans, gangs, holds and the audit."""
    from scheduler.gang.holds import HOLD

    return {
        "plans": [
            orjson.loads(p.to_json()) | {"saved": p.saved, "arrived": sorted(p.arrived)}
            for p in mgr.plans.values()
        ],
        "gangs": [
            {
                "namespace": g.id.namespace,
                "name": g.id.name,
                "minMember": g.id.min_member,
                "members": len(g.members),
                "bound": len(g.bound),
                "backoffUntil": g.backoff_until,
            }
            for g in mgr.registry.gangs.values()
        ],
        "holds": sorted(u[len(HOLD) :] for u in mgr.cache.state.allocations if u.startswith(HOLD)),
        # per PodGroup API: true = watched, false = not served, null = not listed yet
        "podgroups": dict(mgr.podgroups.served) if mgr.podgroups else {},
        "audit": audit(mgr),
    }
