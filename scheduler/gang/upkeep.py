"""What keeps the gang manager's plans true over time: persistence, expiry, nudges, and leadership.

- Persistence: every plan change is written to the store compare-and-set (scheduler.gang.store), one
  operation at a time per gang (a delete never overtakes the save before it), retried with backoff.
  A `PlanConflictError` means someone else wrote the plan's object: this process gives its plan up (holds
  dropped, nothing written) and adopts the stored plan instead.
- Leadership: only the leader writes plans, expires them and nudges (LeaderBinder gates the nudges'
  API calls). A follower keeps the plans it loaded at start but never acts on them; when it takes the
  lease it reloads every plan from the store before it answers for gangs again (`reloading`
  meanwhile: members wait, binds retry), since the previous leader changed them since.
- Expiry: kube-scheduler never tells an extender that a member was rejected elsewhere, so a plan with
  nothing bound is released after its TTL (the PodGroup's, else `plan_ttl_seconds`), checked every
  second by scheduler.service; the gang backs off, and its members are nudged when the backoff ends.
- Nudges: kube-scheduler does not retry a pod an extender rejected when a sibling binds or appears
  (kubernetes #127290), but an update of the pod itself requeues it (scheduling_queue.go, podUpdate):
  every plan change patches `gpuplace.io/gang-plan` on the pending members, with a new value each time
  (an unchanged value is no update).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from scheduler.gang.store import Plan, PlanConflictError

if TYPE_CHECKING:
    from scheduler.gang.manager import GangManager

log = logging.getLogger("gpuplace.scheduler.gang")
PLAN_ANNOTATION = "gpuplace.io/gang-plan"


class Upkeep:
    def __init__(self, mgr: GangManager) -> None:
        self.mgr = mgr
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._leading: bool | None = None
        self._nudges = 0

    # ---- leadership ------------------------------------------------------------------------------
    def leading(self) -> bool:
        """Whether this replica leads now; on taking the lease, start reloading the plans."""
        is_leader = self.mgr.is_leader
        if is_leader is None:
            return True
        now = is_leader()
        if now and not self._leading:
            self.mgr.reloading = True
            self.spawn(self.reload())
        self._leading = now
        return now

    # ---- persistence -----------------------------------------------------------------------------
    def _lock(self, key: tuple[str, str]) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def save(self, plan: Plan) -> None:
        """Write `plan` in the background; `plan.saved` once it is stored (the barrier waits for it)."""
        plan.saved = False
        mgr = self.mgr

        async def write() -> None:
            delay = 0.2
            async with self._lock(plan.key):  # held across retries: the gang's next write waits
                while mgr.plans.get(plan.key) is plan:
                    if not self.leading():
                        return  # a follower never writes; it reloads the plans when it leads
                    try:
                        await mgr.store.save(plan)
                    except PlanConflictError as e:
                        self.lost(plan, e)
                        return
                    except Exception as e:
                        log.warning(
                            "saving gang plan %s/%s failed: %r; retrying", plan.namespace, plan.gang, e
                        )
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 5.0)
                        continue
                    plan.saved = True
                    mgr.barrier.signal()
                    return

        self.spawn(write())

    def delete(self, plan: Plan) -> None:
        """Delete a released or completed plan's object, before any later write of the same gang."""
        mgr = self.mgr

        async def remove() -> None:
            delay = 0.2
            async with self._lock(plan.key):
                while self.leading():
                    try:
                        await mgr.store.delete(plan)
                        return
                    except PlanConflictError as e:
                        log.info("gang plan %s/%s not deleted: %s", plan.namespace, plan.gang, e)
                        return
                    except Exception as e:
                        log.warning(
                            "deleting gang plan %s/%s failed: %r; retrying", plan.namespace, plan.gang, e
                        )
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 5.0)

        self.spawn(remove())

    def lost(self, plan: Plan, conflict: PlanConflictError) -> None:
        """Someone else wrote `plan`'s object: give this plan up and take the stored one, if any."""
        mgr = self.mgr
        log.warning("%s; giving up plan %s/%d", conflict, plan.uid, plan.epoch)
        if mgr.plans.get(plan.key) is plan:
            mgr.drop_plan(plan, "another writer's plan", store=False)
        if conflict.current is not None:
            self.install(conflict.current, members_known=True)
        mgr.barrier.signal()

    def install(self, plan: Plan, *, members_known: bool) -> None:
        """Take a stored plan: re-make the holds of its pending members. `members_known`: the pod watch
        is running, so a member it does not know is gone and a bound one holds through its record."""
        mgr = self.mgr
        gang = mgr.registry.gangs.get(plan.key)
        for uid, p in list(plan.assignments.items()):
            m = gang.members.get(uid) if gang else None
            if members_known and m is None:
                del plan.assignments[uid]
                plan.pods.pop(uid, None)
                continue
            if members_known and m is not None and m.node:
                continue
            if not mgr.holds.hold(uid, p):
                del plan.assignments[uid]
        mgr.plans[plan.key] = plan
        if gang is not None:
            gang.epoch = max(gang.epoch, plan.epoch)
            if members_known and all((gang.members.get(u) or _NONE).node for u in plan.assignments):
                mgr.drop_plan(plan, "complete", store=True)  # every planned member is bound

    async def load(self) -> None:
        """At start, before ready: the live plans, their holds re-made (pods come from the watch)."""
        mgr, now = self.mgr, self.mgr.clock()
        for plan in await mgr.store.load():
            if plan.expires <= now and not plan.arrived:
                plan.expires = now + mgr.settings.plan_ttl_seconds  # bound members may exist: see expire
            self.install(plan, members_known=False)
        mgr.loaded = True
        log.info("loaded %d gang plan(s)", len(mgr.plans))

    async def reload(self) -> None:
        """On taking the lease: the plans as the store has them now replace this replica's."""
        mgr, delay = self.mgr, 0.5
        while True:
            try:
                plans = await mgr.store.load()
                break
            except Exception as e:
                log.warning("reloading gang plans failed: %r; retrying in %.1fs", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        for plan in list(mgr.plans.values()):
            mgr.drop_plan(plan, "reloaded", store=False, nudge=False)
        for plan in plans:
            self.install(plan, members_known=True)
        mgr.reloading = False
        mgr.barrier.signal()
        log.info("took the lease: reloaded %d gang plan(s)", len(mgr.plans))

    # ---- expiry ----------------------------------------------------------------------------------
    def expire(self) -> int:
        """Release plans with nothing bound past their TTL, drop assignments on vanished nodes, and
        nudge gangs whose backoff ended (nothing else would make kube-scheduler retry them soon)."""
        mgr = self.mgr
        if not self.leading() or mgr.reloading:
            return 0
        now, n = mgr.clock(), 0
        for key, backed_off in mgr.registry.gangs.items():
            if backed_off.backoff_until and backed_off.backoff_until <= now:
                backed_off.backoff_until = 0.0
                self.nudge(key, f"retry/{backed_off.epoch}")
        for plan in list(mgr.plans.values()):
            gang = mgr.registry.gangs.get(plan.key)
            bound = gang.bound if gang else []
            for uid in list(plan.assignments):
                m = gang.members.get(uid) if gang else None
                if (
                    (m is None or not m.node)
                    and not mgr.holds.held(uid)
                    and uid not in plan.arrived
                    and plan.assignments[uid].node not in mgr.cache.state.index
                ):
                    del plan.assignments[uid]  # its node is gone; re-planned at the member's next filter
            if not bound and (now >= plan.expires or len(plan.assignments) < plan.min_member):
                if gang is not None:
                    gang.backoff_until = now + mgr.settings.backoff_seconds
                mgr.release(plan, "expired" if now >= plan.expires else "planned node gone")
                n += 1
        return n

    # ---- nudges and background tasks ---------------------------------------------------------------
    def nudge(self, key: tuple[str, str], value: str) -> None:
        mgr = self.mgr
        gang = mgr.registry.gangs.get(key)
        if not mgr.settings.nudge or mgr.nudge_fn is None or gang is None:
            return
        if not value:
            self._nudges += 1
            value = f"changed/{gang.epoch}.{self._nudges}"
        for m in gang.pending:
            self.spawn(mgr.nudge_fn(key[0], m.name, {PLAN_ANNOTATION: value}))

    def spawn(self, coro: Awaitable[None]) -> None:
        try:
            task = asyncio.get_running_loop().create_task(_logged(coro))
        except RuntimeError:  # no loop (plain unit tests): run nothing in the background
            coro.close()  # type: ignore[attr-defined]
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await t


class _None:
    node = ""


_NONE = _None()


async def _logged(coro: Awaitable[None]) -> None:
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("gang background task failed")
