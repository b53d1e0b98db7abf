"""The gang manager: the gangs' state, and the decisions made in filter — quorum, planning, order.

Filter (sync, one event loop: no lock needed between filter calls):
1. fewer live members than the minimum → every node unresolvable, "gang train: waiting for members: 3
   of 4 exist" (no preemption, like Coscheduling's PreFilter);
2. a plan holds this member → only its planned node passes; a member passed again with no bind call
   since it was last passed is an attempt kube-scheduler dropped after gpuplace's answer, and after
   `release_after_dropped_attempts` of them (nothing bound) the plan is released and the gang backs off;
3. no plan → plan now: gangs ranked ahead (priority, then age) that are waiting with their quorum are
   planned first, then this gang on what is left. A plan is made only when its whole quorum fits
   (placement_core.gangplan), so no gang ever holds part of what it needs: two gangs that fit one at a
   time never deadlock, the first in order proceeds. The plan's placements become holds
   (scheduler.gang.holds) that every other pod sees as used.
After the first bind a gang only rolls forward: replacements are planned inside its domain.

The rest lives beside it: the bind barrier (scheduler.gang.binding), and persistence, expiry, nudges
and leadership (scheduler.gang.upkeep); the audit and views in scheduler.gang.ledger.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from placement_core import GpuRequest
from placement_core.gangplan import Level, domain_ids, plan_gang
from placement_core.gangplan import Member as PlanMember
from scheduler.cache import ClusterCache
from scheduler.gang.binding import BindBarrier
from scheduler.gang.holds import Holds
from scheduler.gang.identity import gang_of
from scheduler.gang.members import Gang, Registry
from scheduler.gang.podgroups import KINDS, PodGroupCache, Ref
from scheduler.gang.store import Plan, PlanStore
from scheduler.gang.upkeep import Upkeep
from scheduler.settings import GangSettings
from scheduler.wire import Pod

log = logging.getLogger("gpuplace.scheduler.gang")
Nudge = Callable[[str, str, dict[str, str]], Awaitable[None]]


class Verdict:
    """A gang member's filter answer: `node` passes (when offered), every other node fails with `reason`."""

    __slots__ = ("node", "reason")

    def __init__(self, node: str | None, reason: str) -> None:
        self.node, self.reason = node, reason


class GangManager:
    def __init__(
        self,
        settings: GangSettings,
        cache: ClusterCache,
        store: PlanStore,
        *,
        nudge: Nudge | None = None,
        clock: Callable[[], float] = time.time,
        hooks: Any = None,
        is_leader: Callable[[], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.store = store
        self.nudge_fn = nudge
        self.clock = clock
        self.hooks = hooks  # scheduler.metrics.Metrics (gang_* series) or None
        self.is_leader = is_leader  # None: no election, this replica always leads
        self.podgroups = PodGroupCache(settings) if settings.podgroups else None
        self.registry = Registry(settings, cache.pod_rules, self.podgroups)
        self.plans: dict[tuple[str, str], Plan] = {}
        self.loaded = False  # the plans were read at start (scheduler.service waits for it)
        self.reloading = False  # took the lease, rereading the plans: gangs wait meanwhile
        self.holds = Holds(cache)
        self.barrier = BindBarrier(self)
        self.upkeep = Upkeep(self)

    # ---- watch ---------------------------------------------------------------------------------
    def observe(self, etype: str, raw: dict[str, Any]) -> None:
        uid, member, prev = self.registry.observe(etype, raw)
        if not uid:
            return
        key = self.registry.of_pod.get(uid)
        if member is None:
            self._member_left(uid)
        elif member.node and not prev:
            self._member_bound(uid, key)

    def retain(self, uids: set[str]) -> None:
        """After a relist: members absent from it are gone, and so are planned members (a plan loaded
        at start names pods the first list may no longer have)."""
        for uid in [u for u in self.registry.of_pod if u not in uids]:
            self.registry.forget(uid)
            self._member_left(uid)
        for plan in list(self.plans.values()):
            for uid in [u for u in plan.assignments if u not in uids]:
                if uid in plan.assignments:
                    self._member_left(uid)

    def plan_of(self, uid: str) -> Plan | None:
        for plan in self.plans.values():
            if uid in plan.assignments:
                return plan
        return None

    def _member_left(self, uid: str) -> None:
        plan = self.plan_of(uid)
        if plan is None:
            return
        self.holds.drop(uid)
        del plan.assignments[uid]
        plan.pods.pop(uid, None)
        plan.arrived.discard(uid)
        plan.answered.discard(uid)
        gang = self.registry.gangs.get(plan.key)
        if gang is None or not any(m.node for m in gang.members.values()):
            self.release(plan, "member deleted before any bind")
        else:
            self.upkeep.save(plan)
        self.barrier.signal()

    def _member_bound(self, uid: str, key: tuple[str, str] | None) -> None:
        plan = self.plans.get(key) if key else None
        self.holds.drop(uid)  # bind turned it into a reservation already; a foreign bind frees it
        if plan is None:
            return
        gang = self.registry.gangs.get(plan.key)
        bound = {m.uid for m in gang.bound} if gang else set()
        pending = [u for u in plan.assignments if u not in bound]
        if not pending:  # every planned member is bound: the plan is done
            if self.hooks is not None:
                self.hooks.gang_bound(self.clock() - plan.created)
            self.drop_plan(plan, "complete", store=True, nudge=False)
        self.barrier.signal()

    # ---- plans ending ----------------------------------------------------------------------------
    def release(self, plan: Plan, why: str) -> None:
        """Give a plan up before it completed: its holds freed, its object deleted, members nudged."""
        self.drop_plan(plan, why, store=True)
        if self.hooks is not None:
            self.hooks.gang_released(why)

    def drop_plan(self, plan: Plan, why: str, *, store: bool, nudge: bool = True) -> None:
        """Forget `plan` here (holds freed); `store`: delete its object too (the leader's writes only)."""
        for uid in plan.assignments:
            self.holds.drop(uid)
        if self.plans.get(plan.key) is plan:
            del self.plans[plan.key]
        if store:
            self.upkeep.delete(plan)
        log.info("gang %s/%s: plan %s/%d dropped (%s)", plan.namespace, plan.gang, plan.uid, plan.epoch, why)
        if nudge:
            self.upkeep.nudge(plan.key, "")
        self.barrier.signal()

    # ---- filter --------------------------------------------------------------------------------
    def filter(self, pod: Pod, req: GpuRequest, rows: npt.NDArray[np.int64]) -> Verdict | None:
        """The answer for a gang member (None: not a gang member). `rows`: the offered nodes' rows.
        Raises GangIdentityError for a gang key gpuplace cannot read."""
        gang_of(pod, self.settings)  # raises on a malformed key (the watch path ignores those pods)
        member, _ = self.registry.admit(pod, req)
        if member is None:
            return None
        gang = self.registry.gangs[self.registry.of_pod[member.uid]]
        gid, now = gang.id, self.clock()
        if not self.upkeep.leading() or self.reloading:
            return Verdict(None, f"gang {gid}: gpuplace is reloading gang plans (it just took the lease)")
        if gid.min_member is None:
            return Verdict(None, f"gang {gid} ({gid.source}): waiting: {gid.missing}")
        plan = self.plans.get(gid.key)
        if plan is not None and member.uid in plan.assignments:
            if self._offered(plan, member.uid, rows) and self._dropped(plan, gang, member.uid):
                return Verdict(
                    None,
                    f"gang {gid}: kube-scheduler dropped its planned members after gpuplace's filter "
                    f"{plan.dropped} times (is a member kept off by its own constraints?); planning again in "
                    f"{self.settings.backoff_seconds:.0f}s",
                )
            node = plan.assignments[member.uid].node
            return Verdict(node, f"gang {gid}: planned on node {node}")
        if len(gang.members) < gid.min_member:
            gang.waiting_since = 0.0
            return Verdict(
                None, f"gang {gid}: waiting for members: {len(gang.members)} of {gid.min_member} exist"
            )
        if plan is None and gang.backoff_until > now:
            return Verdict(
                None, f"gang {gid}: its plan expired; planning again in {gang.backoff_until - now:.0f}s"
            )
        if plan is None:
            self._plan_ahead(gang)
        valid = rows[rows >= 0]
        made = self._plan(gang, valid)
        if isinstance(made, str):
            gang.waiting_since = gang.waiting_since or now
            return Verdict(None, f"gang {gid}: {made}")
        if member.uid not in made.assignments:
            return Verdict(None, f"gang {gid}: no room for this member in the gang's {made.level.noun}")
        made.answered.add(member.uid)
        planned = made.assignments[member.uid].node
        return Verdict(planned, f"gang {gid}: planned on node {planned}")

    def _offered(self, plan: Plan, uid: str, rows: npt.NDArray[np.int64]) -> bool:
        """Whether kube-scheduler offered the member its planned node (gpuplace's answer passes it); a
        call offering only other nodes (its nominated node, evaluateNominatedNode in schedule_one.go) is
        gpuplace's own rejection, never an attempt dropped by kube-scheduler."""
        row = self.cache.state.index.get(plan.assignments[uid].node, -1)
        return row >= 0 and bool((rows == row).any())

    def _dropped(self, plan: Plan, gang: Gang, uid: str) -> bool:
        """Count a filter that passes a member passed before with no bind call since (kube-scheduler
        dropped the attempt after gpuplace's answer); at `release_after_dropped_attempts` with nothing
        bound, release the plan and back off. Under the native gates this is a group the pod-group cycle keeps failing
        (pkg/scheduler/schedule_one_podgroup.go podGroupSchedulingDefaultAlgorithm: Permit never reaches
        minCount) and retries back to back (GangScheduling's Permit activates the members,
        framework/plugins/gangscheduling/gangscheduling.go Permit); gpuplace is never told it failed, and
        would otherwise hold the GPUs for the TTL (300 s for a v1alpha2 PodGroup)."""
        if uid in plan.answered:
            plan.dropped += 1
        plan.answered.add(uid)
        limit = self.settings.release_after_dropped_attempts
        if not limit or plan.dropped < limit or gang.bound:
            return False
        gang.backoff_until = self.clock() + self.settings.backoff_seconds
        self.release(plan, "dropped after filter")
        return True

    def _plan_ahead(self, current: Gang) -> None:
        """Give gangs ranked ahead of `current`, waiting with their quorum, the first chance.

        kube-scheduler filtered the offered nodes for `current`'s pod only; for the others gpuplace plans on
        every node except those tainted not-ready / unreachable, which TaintToleration would keep their pods
        off (scheduler.nodeinv): a plan there would hold GPUs for members never offered that node."""
        all_rows = np.nonzero(~self.cache.unavailable_rows())[0]
        now = self.clock()
        for gang in sorted(self.registry.gangs.values(), key=Gang.order):
            if gang is current or gang.order() > current.order():
                break
            gid = gang.id
            if (
                gid.min_member is None
                or gid.key in self.plans
                or gang.backoff_until > now
                or len(gang.members) < gid.min_member
                or gang.bound
            ):
                continue
            self._plan(gang, all_rows)

    def _domain(self, gang: Gang) -> tuple[Level, int] | None:
        """The domain a gang with bound members must stay in: the tightest one holding all of them."""
        rows = [self.cache.state.index.get(m.node, -1) for m in gang.bound]
        if not rows or min(rows) < 0:
            return None
        for level in Level:
            ids = domain_ids(self.cache.state, level)[rows]
            if ids[0] >= 0 and (ids == ids[0]).all():
                return level, int(ids[0])
        return None

    def _plan(self, gang: Gang, rows: npt.NDArray[np.int64]) -> Plan | str:
        """Plan (or extend the plan of) `gang` on `rows`: the plan, or why it does not fit."""
        gid, now = gang.id, self.clock()
        assert gid.min_member is not None
        plan = self.plans.get(gid.key)
        bound = gang.bound
        todo = [m for m in gang.pending if plan is None or m.uid not in plan.assignments]
        held = len(plan.assignments) if plan else 0
        need = max(0, gid.min_member - len(bound) - held) if plan else max(0, gid.min_member - len(bound))
        within = None
        if plan is not None:
            within = (plan.level, self._domain_id(plan))
        elif bound:
            within = self._domain(gang)
        out = plan_gang(
            self.cache.state,
            [PlanMember(m.uid, m.req) for m in todo],
            need=max(need, 1),
            rows=rows,
            max_level=gid.max_level,
            within=within,
        )
        if out.assignments is None:
            return out.why_not()
        if plan is None:
            gang.epoch += 1
            domain = "" if out.level == Level.CLUSTER else _interner(self.cache, out.level).names[out.domain]
            plan = Plan(
                gid.namespace,
                gid.name,
                uuid.uuid4().hex[:12],
                gang.epoch,
                gid.min_member,
                out.level,
                domain,
                now,
                now + (gid.ttl if gid.ttl is not None else self.settings.plan_ttl_seconds),
                {},
                {},
            )
            self.plans[gid.key] = plan
        names = {m.uid: m.name for m in todo}
        for uid, p in out.assignments.items():
            if self.holds.hold(uid, p):
                plan.assignments[uid] = p
                plan.pods[uid] = names[uid]
        if len(plan.assignments) + len(bound) < gid.min_member:  # a hold was refused: never a partial plan
            self.release(plan, "hold refused")
            return "capacity changed while planning"
        gang.waiting_since = 0.0
        log.info(
            "gang %s: plan %s/%d in %s %r: %s",
            gid,
            plan.uid,
            plan.epoch,
            plan.level.noun,
            plan.domain,
            {plan.pods[u]: p.node for u, p in out.assignments.items()},
        )
        self.upkeep.save(plan)
        self.upkeep.nudge(gid.key, f"{plan.uid}/{plan.epoch}")
        return plan

    def _domain_id(self, plan: Plan) -> int:
        if plan.level == Level.CLUSTER:
            return 0
        return int(_interner(self.cache, plan.level).ids.get(plan.domain, -2))

    # ---- visibility (scheduler.gang.ledger) ------------------------------------------------------
    def counts(self) -> tuple[dict[str, int], float]:
        from scheduler.gang.ledger import counts

        return counts(self)

    def snapshot(self) -> dict[str, Any]:
        from scheduler.gang.ledger import snapshot

        return snapshot(self)

    # ---- PodGroup objects (scheduler.gang.podgroups; fed by scheduler.service) --------------------
    def podgroups_listed(self, kind: str, items: list[dict[str, Any]]) -> None:
        if self.podgroups is not None:
            self._podgroups_changed(self.podgroups.replace(KINDS[kind], items))

    def podgroup_event(self, kind: str, etype: str, obj: dict[str, Any]) -> None:
        if self.podgroups is not None:
            ref = self.podgroups.apply(KINDS[kind], etype, obj)
            self._podgroups_changed({ref} if ref else set())

    def podgroups_unserved(self, kind: str, why: str) -> None:
        if self.podgroups is not None:
            self._podgroups_changed(self.podgroups.unserved(KINDS[kind], why))

    def _podgroups_changed(self, refs: set[Ref]) -> None:
        """Gangs named by changed PodGroups take the new size and TTL, and their members retry now (a
        PodGroup event requeues no pod in kube-scheduler)."""
        if not refs:
            return
        keys, dropped = self.registry.refresh(refs)
        for uid in dropped:
            self._member_left(uid)
        for key in keys:
            self.upkeep.nudge(key, "")

    # ---- the parts beside the planner (scheduler.gang.binding, scheduler.gang.upkeep) ---------------
    async def before_bind(self, uid: str, node: str) -> str:
        return await self.barrier.before_bind(uid, node)

    def bind_failed(self, uid: str) -> None:
        self.barrier.bind_failed(uid)

    def take_hold(self, uid: str, node: str) -> bool:
        return self.barrier.take_hold(uid, node)

    def return_hold(self, uid: str) -> None:
        self.barrier.return_hold(uid)

    def expire(self) -> int:
        return self.upkeep.expire()

    async def load(self) -> None:
        await self.upkeep.load()

    async def close(self) -> None:
        await self.upkeep.close()


def _interner(cache: ClusterCache, level: Level) -> Any:
    s = cache.state
    return {Level.CLIQUE: s.cliques, Level.RACK: s.racks, Level.ZONE: s.zones}[level]
