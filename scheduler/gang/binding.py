"""The bind side of a gang: the barrier and the hand-over of a member's hold to its own bind.

A member's bind is accepted only on its planned node and waits (at most `barrier_seconds`) until the
plan is saved and at least `min_member` members have reached bind or are bound; nothing binds before
the whole quorum passed kube-scheduler's filters. Then, under the node lock (scheduler/verbs/bind.py),
`take_hold` frees the member's hold so its bind reservation can take the same GPUs; a bind that fails
afterwards gives them back (`return_hold`) while the plan lives. Why a barrier and not Permit: an
extender has no Permit; kube-scheduler's binding cycle calls the extender's bind per pod, so holding
the call is the only wait an extender can impose (GANG.md §7).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from scheduler.gang.holds import hold_uid

if TYPE_CHECKING:
    from scheduler.gang.manager import GangManager


class BindBarrier:
    def __init__(self, mgr: GangManager) -> None:
        self.mgr = mgr
        self._changed = asyncio.Event()

    def signal(self) -> None:
        """Wake every waiting bind to look again (a plan saved, released, a member arrived or bound)."""
        ev, self._changed = self._changed, asyncio.Event()
        ev.set()

    def take_hold(self, uid: str, node: str) -> bool:
        """Bind, under the node lock: free this member's hold so its own bind can take the GPUs."""
        state = self.mgr.cache.state
        p = state.allocations.get(hold_uid(uid))
        if p is None or p.node != node:
            return False
        state.release(hold_uid(uid))
        return True

    def return_hold(self, uid: str) -> None:
        """Bind failed after take_hold: hold the planned GPUs again while the plan lives."""
        mgr = self.mgr
        plan = mgr.plan_of(uid)
        gang = mgr.registry.gang_of_pod(uid)
        m = gang.members.get(uid) if gang else None
        if (
            plan is not None
            and (m is None or not m.node)
            and hold_uid(uid) not in mgr.cache.state.allocations
            and uid not in mgr.cache.reservations  # e.g. outcome unknown: the reservation holds the GPUs
        ):
            mgr.holds.hold(uid, plan.assignments[uid])

    async def before_bind(self, uid: str, node: str) -> str:
        """ "" when the member may bind to `node` now (or the pod is no gang member); else why not."""
        mgr = self.mgr
        gang = mgr.registry.gang_of_pod(uid)
        if gang is None:
            return ""
        if mgr.reloading:
            return f"gang {gang.id}: gpuplace is reloading gang plans (it just took the lease); retrying"
        plan = mgr.plans.get(gang.id.key)
        if plan is None or uid not in plan.assignments:
            return f"gang {gang.id}: no plan holds this pod (expired or released); it will be planned again"
        plan.answered.discard(uid)  # kube-scheduler went on to bind it: this attempt was not dropped
        if plan.assignments[uid].node != node:
            return f"gang {gang.id}: planned on {plan.assignments[uid].node}, not {node}"
        plan.arrived.add(uid)
        self.signal()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + mgr.settings.barrier_seconds
        while True:
            if mgr.plans.get(gang.id.key) is not plan or uid not in plan.assignments:
                return f"gang {gang.id}: its plan was released while waiting to bind"
            ready = len(plan.arrived | {m.uid for m in gang.bound})
            if plan.saved and ready >= plan.min_member:
                return ""
            left = deadline - loop.time()
            if left <= 0:
                plan.arrived.discard(uid)
                return (
                    f"gang {gang.id}: {ready} of {plan.min_member} members ready to bind "
                    f"after {mgr.settings.barrier_seconds:g}s; retrying"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    def bind_failed(self, uid: str) -> None:
        """The member's bind failed after the barrier: it no longer counts as ready."""
        plan = self.mgr.plan_of(uid)
        if plan is not None:
            plan.arrived.discard(uid)
        self.return_hold(uid)
