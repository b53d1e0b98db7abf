"""Bind's reservations: GPUs booked for a pod between bind's choice and the watch showing it bound.

Split from scheduler.cache (the cluster model) because this is the one part with its own life cycle:
a reservation is made under the node's lock before the Binding is sent (`reserve`), marked WRITTEN
when kube-apiserver accepted it (`bound`) or UNKNOWN when the answer was lost (`unknown`, held until
the server's deadline for that write), and ends when the watch confirms it (ClusterCache._count),
when bind rolls it back (`rollback`) or when the sweeper settles it (`expired`, scheduler.verbs.bind).
`ReservationBook` is mixed into ClusterCache; it only books and releases under the pod's UID.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from placement_core import ClusterState, Placement

if TYPE_CHECKING:
    from scheduler.cache import CacheHooks, PodRecord
    from scheduler.settings import SchedulerSettings


@dataclass(slots=True)
class Reservation:
    uid: str
    namespace: str
    name: str
    node: str
    placement: Placement
    created: float
    state: str = "writing"  # ReservationState.*
    hold_until: float = 0.0  # a Binding sent for it may still commit until then (the cache's clock)
    record: Placement | None = None  # what the Binding's record says, when not `placement` (DRA pods)


class ReservationState:
    """WRITING: the bind coroutine owns it (sweeper and relist leave it alone). UNKNOWN: a Binding was
    sent and its answer lost; it may commit until `hold_until`, so the GPUs stay booked, yet the pod
    never counts as bound (a retry writes the Binding again). WRITTEN: kube-apiserver answered the
    Binding; the watch (or the sweeper, after the TTL) confirms it."""

    WRITING = "writing"
    UNKNOWN = "unknown"
    WRITTEN = "written"


class ReservationBook:
    """The reservation methods of ClusterCache (which provides these attributes)."""

    state: ClusterState
    settings: SchedulerSettings
    hooks: CacheHooks
    clock: Callable[[], float]
    pods: dict[str, PodRecord]
    reservations: dict[str, Reservation]

    def reserve(
        self, uid: str, namespace: str, name: str, placement: Placement, *, record: Placement | None = None
    ) -> None:
        """Allocate for a bind; DoubleBookingError leaves everything unchanged. `record`: the devices the
        Binding's record names when they are booked elsewhere (a DRA pod's claims hold its GPUs)."""
        self.state.allocate(uid, placement)
        self.reservations[uid] = Reservation(
            uid, namespace, name, placement.node, placement, self.clock(), record=record
        )

    def bound(self, uid: str) -> None:
        """The Binding was created: the reservation now waits for the watch (or the sweeper)."""
        res = self.reservations.get(uid)
        if res is not None:
            res.state = ReservationState.WRITTEN
            res.created = self.clock()

    def unknown(self, uid: str, hold_until: float) -> None:
        """A Binding's answer was lost: keep the GPUs until `hold_until` (or the watch) settles it."""
        res = self.reservations.get(uid)
        if res is not None:
            res.state = ReservationState.UNKNOWN
            res.hold_until = max(res.hold_until, hold_until)

    def resume(self, uid: str) -> Reservation | None:
        """A retry takes back a reservation whose outcome is unknown, to write its Binding again."""
        res = self.reservations.get(uid)
        if res is None or res.state != ReservationState.UNKNOWN:
            return None
        res.state = ReservationState.WRITING
        return res

    def outcome_unknown(self, uid: str) -> Reservation | None:
        """The pod's reservation while the outcome of its Binding is unknown."""
        res = self.reservations.get(uid)
        return res if res is not None and res.state == ReservationState.UNKNOWN else None

    def rollback(self, uid: str, why: str) -> None:
        """Undo this pod's reservation, and nothing else: only while the reservation exists (the watch
        has not turned it into the pod's record) and the UID still holds exactly the reserved placement.
        Allocations are keyed by UID, so another pod's GPUs are never touched."""
        res = self.reservations.pop(uid, None)
        if res is None:
            return
        if self.state.allocations.get(uid) == res.placement:
            self.state.release(uid)
        self.hooks.reservation_rolled_back(why)

    def expired(self) -> list[Reservation]:
        """Reservations for the sweeper: written ones the watch has not confirmed within the TTL, and
        unknown ones whose Binding can no longer commit."""
        now = self.clock()
        limit = now - self.settings.reservation_ttl_seconds
        return [
            r
            for r in self.reservations.values()
            if (r.state == ReservationState.WRITTEN and r.created < limit)
            or (r.state == ReservationState.UNKNOWN and r.hold_until < now)
        ]

    def bound_node(self, uid: str) -> str | None:
        """The node the pod is bound to as far as the cache knows: its record, or a reservation whose
        Binding kube-apiserver accepted. Never one whose outcome is unknown."""
        rec = self.pods.get(uid)
        if rec is not None:
            return rec.node
        res = self.reservations.get(uid)
        return res.node if res is not None and res.state == ReservationState.WRITTEN else None
