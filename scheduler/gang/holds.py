"""Holds: a plan's placements allocated in the ClusterState under `gang-hold/<pod uid>`, so every other
pod that reaches gpuplace (filter, prioritize, bind, preempt) sees them as used. They are no pods, so
preempt never offers them as victims, and they are never stored: plans are, and holds are re-made from
them (scheduler.gang.upkeep)."""

from __future__ import annotations

import logging

from placement_core import DoubleBookingError, Placement
from scheduler.cache import ClusterCache

log = logging.getLogger("gpuplace.scheduler.gang")
HOLD = "gang-hold/"


def hold_uid(uid: str) -> str:
    return HOLD + uid


class Holds:
    def __init__(self, cache: ClusterCache) -> None:
        self.cache = cache

    def hold(self, uid: str, p: Placement) -> bool:
        try:
            self.cache.state.allocate(hold_uid(uid), p)
        except (DoubleBookingError, KeyError) as e:
            log.warning("gang hold for pod %s on %s refused: %s", uid, p.node, e)
            return False
        return True

    def drop(self, uid: str) -> None:
        if hold_uid(uid) in self.cache.state.allocations:
            self.cache.state.release(hold_uid(uid))

    def held(self, uid: str) -> bool:
        return hold_uid(uid) in self.cache.state.allocations
