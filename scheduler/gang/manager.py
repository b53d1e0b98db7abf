"""The gang manager: plans, the reservations they hold, the bind barrier, expiry and nudges.

Filter (sync, one event loop: no lock needed between filter calls):
1. fewer live members than the minimum → every node unresolvable, "gang train: waiting for members: 3
   of 4 exist" (no preemption, like Coscheduling's PreFilter);
2. a plan holds this member → only its planned node passes;
3. no plan → plan now: gangs ranked ahead (priority, then age) that are waiting with their quorum are
   planned first, then this gang on what is left. A plan is made only when its whole quorum fits
   (placement_core.gangplan), so no gang ever holds part of what it needs: two gangs that fit one at a
   time never deadlock, the first in order proceeds. The plan's placements are held in the ClusterState
   under `gang-hold/<pod uid>`, so every other pod that reaches gpuplace (filter, prioritize, bind,
   preempt) sees them as used; preempt never offers them as victims (they are no pods).
Bind: the planned node only; a member waits at a barrier until the quorum has reached bind (or is
bound), so nothing binds before the gang can complete; the member's hold becomes its bind reservation
under the node lock. After the first bind a gang only rolls forward: replacements are planned inside
its domain. A plan with nothing bound expires after `plan_ttl_seconds` (kube-scheduler never tells an
extender that a member was rejected elsewhere), its holds are released and the gang backs off.
kube-scheduler does not retry a pod rejected by an extender when a sibling binds (kubernetes #127290),
so every plan change patches `gpuplace.io/gang-plan` on the pending members: an update of the pod
itself requeues it (scheduling_queue.go, podUpdate).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from placement_core import DoubleBookingError, GpuRequest, Placement
from placement_core.gangplan import Level, domain_ids, plan_gang
from placement_core.gangplan import Member as PlanMember
from scheduler.cache import ClusterCache
from scheduler.gang.identity import gang_of
from scheduler.gang.members import Gang, Registry
from scheduler.gang.store import Plan, PlanStore
from scheduler.settings import GangSettings
from scheduler.wire import Pod

log = logging.getLogger("gpuplace.scheduler.gang")
HOLD = "gang-hold/"
PLAN_ANNOTATION = "gpuplace.io/gang-plan"
Nudge = Callable[[str, str, dict[str, str]], Awaitable[None]]


def hold_uid(uid: str) -> str:
    return HOLD + uid


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
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.store = store
        self.nudge_fn = nudge
        self.clock = clock
        self.hooks = hooks  # scheduler.metrics.Metrics (gang_* series) or None
        self.registry = Registry(settings, cache.pod_rules)
        self.plans: dict[tuple[str, str], Plan] = {}
        self.loaded = False
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

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

    def _plan_of(self, uid: str) -> Plan | None:
        for plan in self.plans.values():
            if uid in plan.assignments:
                return plan
        return None

    def _member_left(self, uid: str) -> None:
        plan = self._plan_of(uid)
        if plan is None:
            return
        self._drop_hold(uid)
        del plan.assignments[uid]
        plan.pods.pop(uid, None)
        plan.arrived.discard(uid)
        gang = self.registry.gangs.get(plan.key)
        if gang is None or not any(m.node for m in gang.members.values()):
            self._release(plan, "member deleted before any bind")
        else:
            self._save(plan)
        self._signal()

    def _member_bound(self, uid: str, key: tuple[str, str] | None) -> None:
        plan = self.plans.get(key) if key else None
        self._drop_hold(uid)  # bind turned it into a reservation already; a foreign bind frees it
        if plan is None:
            return
        gang = self.registry.gangs.get(plan.key)
        pending = [u for u in plan.assignments if gang is None or not (gang.members.get(u) or _NONE).node]
        if not pending:  # every planned member is bound: the plan is done
            if self.hooks is not None:
                self.hooks.gang_bound(self.clock() - plan.created)
            del self.plans[plan.key]
            self._spawn(self.store.delete(*plan.key))
        self._signal()

    # ---- holds ---------------------------------------------------------------------------------
    def _hold(self, uid: str, p: Placement) -> bool:
        try:
            self.cache.state.allocate(hold_uid(uid), p)
        except (DoubleBookingError, KeyError) as e:
            log.warning("gang hold for pod %s on %s refused: %s", uid, p.node, e)
            return False
        return True

    def _drop_hold(self, uid: str) -> None:
        if hold_uid(uid) in self.cache.state.allocations:
            self.cache.state.release(hold_uid(uid))

    def take_hold(self, uid: str, node: str) -> bool:
        """Bind, under the node lock: free this member's hold so its own bind can take the GPUs."""
        p = self.cache.state.allocations.get(hold_uid(uid))
        if p is None or p.node != node:
            return False
        self.cache.state.release(hold_uid(uid))
        return True

    def return_hold(self, uid: str) -> None:
        """Bind failed after take_hold: hold the planned GPUs again while the plan lives."""
        plan = self._plan_of(uid)
        gang = self.registry.gang_of_pod(uid)
        m = gang.members.get(uid) if gang else None
        if (
            plan is not None
            and (m is None or not m.node)
            and hold_uid(uid) not in self.cache.state.allocations
            and uid not in self.cache.reservations  # e.g. outcome unknown: the reservation holds the GPUs
        ):
            self._hold(uid, plan.assignments[uid])

    def _release(self, plan: Plan, why: str) -> None:
        for uid in plan.assignments:
            self._drop_hold(uid)
        self.plans.pop(plan.key, None)
        self._spawn(self.store.delete(*plan.key))
        log.info("gang %s/%s: plan %s released (%s)", plan.namespace, plan.gang, plan.uid, why)
        if self.hooks is not None:
            self.hooks.gang_released(why)
        self._nudge(plan.key, "")

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
        if gid.min_member is None:
            return Verdict(None, f"gang {gid} ({gid.source}): waiting: {gid.missing}")
        plan = self.plans.get(gid.key)
        if plan is not None and member.uid in plan.assignments:
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
        planned = made.assignments[member.uid].node
        return Verdict(planned, f"gang {gid}: planned on node {planned}")

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
                now + self.settings.plan_ttl_seconds,
                {},
                {},
            )
            self.plans[gid.key] = plan
        names = {m.uid: m.name for m in todo}
        for uid, p in out.assignments.items():
            if self._hold(uid, p):
                plan.assignments[uid] = p
                plan.pods[uid] = names[uid]
        if len(plan.assignments) + len(bound) < gid.min_member:  # a hold was refused: never a partial plan
            self._release(plan, "hold refused")
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
        self._save(plan)
        self._nudge(gid.key, f"{plan.uid}/{plan.epoch}")
        return plan

    def _domain_id(self, plan: Plan) -> int:
        if plan.level == Level.CLUSTER:
            return 0
        return int(_interner(self.cache, plan.level).ids.get(plan.domain, -2))

    # ---- bind ----------------------------------------------------------------------------------
    async def before_bind(self, uid: str, node: str) -> str:
        """ "" when the member may bind to `node` now (or the pod is no gang member); else why not."""
        gang = self.registry.gang_of_pod(uid)
        if gang is None:
            return ""
        plan = self.plans.get(gang.id.key)
        if plan is None or uid not in plan.assignments:
            return f"gang {gang.id}: no plan holds this pod (expired or released); it will be planned again"
        if plan.assignments[uid].node != node:
            return f"gang {gang.id}: planned on {plan.assignments[uid].node}, not {node}"
        plan.arrived.add(uid)
        self._signal()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.barrier_seconds
        while True:
            if self.plans.get(gang.id.key) is not plan or uid not in plan.assignments:
                return f"gang {gang.id}: its plan was released while waiting to bind"
            ready = len(plan.arrived | {m.uid for m in gang.bound})
            if plan.saved and ready >= plan.min_member:
                return ""
            left = deadline - loop.time()
            if left <= 0:
                plan.arrived.discard(uid)
                return (
                    f"gang {gang.id}: {ready} of {plan.min_member} members ready to bind "
                    f"after {self.settings.barrier_seconds:g}s; retrying"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    def bind_failed(self, uid: str) -> None:
        """The member's bind failed after the barrier: it no longer counts as ready."""
        plan = self._plan_of(uid)
        if plan is not None:
            plan.arrived.discard(uid)
        self.return_hold(uid)

    def _signal(self) -> None:
        ev, self._changed = self._changed, asyncio.Event()
        ev.set()

    # ---- visibility (scheduler.gang.ledger) ------------------------------------------------------
    def counts(self) -> tuple[dict[str, int], float]:
        from scheduler.gang.ledger import counts

        return counts(self)

    def snapshot(self) -> dict[str, Any]:
        from scheduler.gang.ledger import snapshot

        return snapshot(self)

    # ---- expiry, persistence, nudges -------------------------------------------------------------
    def expire(self) -> int:
        """Release plans with nothing bound past their TTL, repair holds a vanished node dropped, and
        nudge gangs whose backoff ended (nothing else would make kube-scheduler retry them soon)."""
        now, n = self.clock(), 0
        for key, backed_off in self.registry.gangs.items():
            if backed_off.backoff_until and backed_off.backoff_until <= now:
                backed_off.backoff_until = 0.0
                self._nudge(key, f"retry/{backed_off.epoch}")
        for plan in list(self.plans.values()):
            gang = self.registry.gangs.get(plan.key)
            bound = gang.bound if gang else []
            for uid in list(plan.assignments):
                m = gang.members.get(uid) if gang else None
                if (
                    (m is None or not m.node)
                    and hold_uid(uid) not in self.cache.state.allocations
                    and uid not in plan.arrived
                    and plan.assignments[uid].node not in self.cache.state.index
                ):
                    del plan.assignments[uid]  # its node is gone; re-planned at the member's next filter
            if not bound and (now >= plan.expires or len(plan.assignments) < plan.min_member):
                if gang is not None:
                    gang.backoff_until = now + self.settings.backoff_seconds
                self._release(plan, "expired" if now >= plan.expires else "planned node gone")
                n += 1
        return n

    def _save(self, plan: Plan) -> None:
        plan.saved = False

        async def write() -> None:
            delay = 0.2
            while self.plans.get(plan.key) is plan:
                try:
                    await self.store.save(plan)
                except Exception as e:
                    log.warning("saving gang plan %s/%s failed: %r; retrying", plan.namespace, plan.gang, e)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                plan.saved = True
                self._signal()
                return

        self._spawn(write())

    def _nudge(self, key: tuple[str, str], value: str) -> None:
        gang = self.registry.gangs.get(key)
        if not self.settings.nudge or self.nudge_fn is None or gang is None:
            return
        for m in gang.pending:
            self._spawn(self.nudge_fn(key[0], m.name, {PLAN_ANNOTATION: value or f"released/{gang.epoch}"}))

    def _spawn(self, coro: Awaitable[None]) -> None:
        try:
            task = asyncio.get_running_loop().create_task(_logged(coro))
        except RuntimeError:  # no loop (plain unit tests): run nothing in the background
            coro.close()  # type: ignore[attr-defined]
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def load(self) -> None:
        """Before ready: the live plans from the store, their holds re-made (pods come from the watch)."""
        now = self.clock()
        for plan in await self.store.load():
            if plan.expires <= now and not plan.arrived:
                plan.expires = now + self.settings.plan_ttl_seconds  # bound members may exist: see expire
            self.plans[plan.key] = plan
            for uid, p in list(plan.assignments.items()):
                if not self._hold(uid, p):
                    del plan.assignments[uid]
        self.loaded = True
        log.info("loaded %d gang plan(s)", len(self.plans))

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await t


class _None:
    node = ""


_NONE = _None()


def _interner(cache: ClusterCache, level: Level) -> Any:
    s = cache.state
    return {Level.CLIQUE: s.cliques, Level.RACK: s.racks, Level.ZONE: s.zones}[level]


async def _logged(coro: Awaitable[None]) -> None:
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("gang background task failed")
