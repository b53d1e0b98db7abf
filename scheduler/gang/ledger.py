"""The reservation ledger audit: the invariants of gang plans and their holds, checked on demand
(`GET /debug/gangs`, and by the e2e scenarios while they run). Empty list = consistent.

1. Per node and GPU: bound + binding + held ≤ capacity (ClusterState.check_invariants; holds are
   allocations, so a double booking shows up as a negative free count).
2. Every hold belongs to a live plan, to a member that exists and is pending, with the planned placement.
3. Every pending planned member has its hold, or its bind's reservation (hold taken under the node lock).
4. A plan covers at least its minimum (planned + bound members), inside one domain of its level.
5. A plan with nothing bound is released within its TTL plus `margin` seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from placement_core.gangplan import Level, domain_ids

if TYPE_CHECKING:
    from scheduler.gang.manager import GangManager


def audit(mgr: GangManager, *, margin: float = 5.0) -> list[str]:
    from scheduler.gang.manager import HOLD

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
