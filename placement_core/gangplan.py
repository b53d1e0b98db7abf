"""Whole-gang placement: put every member of a gang into the smallest topology domain that fits it.

The rule (Kueue TAS BestFit and Volcano's hard network topology, in one sentence): walk the topology
levels from the tightest (`CLIQUE`, one multi-node NVLink domain, `nvidia.com/gpu.clique`) through
`RACK` and `ZONE` to `CLUSTER`; at the first level where some domain can hold the whole gang, pick the
domain with the least free GPU capacity left over (best fit, then the lowest domain id), and place the
members inside it one by one on a scratch copy of the cluster. A `required` level stops the walk there.

Two steps, kept apart on purpose:
- counting: how many members fit on each candidate node, by simulating them one after another with
  `placer.choose` on a private copy of the state (the live state is never touched);
- choosing: per domain, the sum of those counts and of the free GPUs, and the best-fit domain —
  `best_domain_kernel` (Numba) and its readable twin `best_domain_twin`, held equal by property tests.
The member-by-member placement in the chosen domain is then exact (the same `placer.choose` bind uses),
so a plan never promises GPUs a bind could not take.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit

from placement_core import placer
from placement_core.cluster import ClusterState, Placement
from placement_core.request import WHOLE, GpuRequest, NvlinkNeed


class Level(enum.IntEnum):
    """Topology levels, tightest first."""

    CLIQUE = 0
    RACK = 1
    ZONE = 2
    CLUSTER = 3

    @property
    def noun(self) -> str:
        return ("NVLink domain", "rack", "zone", "cluster")[self]


@dataclass(frozen=True, slots=True)
class Member:
    uid: str
    req: GpuRequest


@dataclass(frozen=True, slots=True)
class GangPlacement:
    """The planner's answer. `assignments` is None when the gang does not fit: then `best_fit` members
    fit in the best domain of the widest level tried, and `short_milli` more GPU capacity is missing."""

    assignments: dict[str, Placement] | None
    level: Level
    domain: int  # domain id at `level` (ClusterState interner id; 0 for CLUSTER), -1 when none
    best_fit: int
    need: int
    short_milli: int

    def why_not(self) -> str:
        gpus = -(-self.short_milli // 1000)
        where = "the cluster" if self.level == Level.CLUSTER else f"one {self.level.noun}"
        return (
            f"{self.best_fit} of {self.need} members fit; needs {gpus} more GPU{'s' if gpus != 1 else ''} "
            f"in {where}"
        )


def domain_ids(state: ClusterState, level: Level) -> npt.NDArray[np.int32]:
    """Per row: the domain id at `level`, -1 for nodes without that label (they belong to no domain)."""
    n = state.n_rows
    if level == Level.CLIQUE:
        return state.node_clique[:n].astype(np.int32)
    if level == Level.RACK:
        return state.node_rack[:n].astype(np.int32)
    if level == Level.ZONE:
        return state.node_zone[:n].astype(np.int32)
    return np.zeros(n, np.int32)


def best_domain_twin(
    fits: npt.NDArray[np.int32],
    free: npt.NDArray[np.int64],
    dom: npt.NDArray[np.int32],
    n_dom: int,
    need: int,
) -> tuple[int, npt.NDArray[np.int64]]:
    """(best domain or -1, members that fit per domain). Best = fits ≥ need, then least free capacity,
    then lowest id. Rows with dom < 0 or fits == 0 take no part."""
    cap = np.zeros(n_dom, np.int64)
    room = np.zeros(n_dom, np.int64)
    for r in range(len(fits)):
        d = dom[r]
        if d >= 0 and fits[r] > 0:
            cap[d] += fits[r]
            room[d] += free[r]
    best, best_room = -1, 0
    for d in range(n_dom):
        if cap[d] >= need and (best < 0 or room[d] < best_room):
            best, best_room = d, room[d]
    return best, cap


@njit(cache=True)
def best_domain_kernel(fits, free, dom, n_dom, need):
    cap = np.zeros(n_dom, np.int64)
    room = np.zeros(n_dom, np.int64)
    for r in range(fits.shape[0]):
        d = dom[r]
        if d >= 0 and fits[r] > 0:
            cap[d] += fits[r]
            room[d] += free[r]
    best = -1
    best_room = 0
    for d in range(n_dom):
        if cap[d] >= need and (best < 0 or room[d] < best_room):
            best = d
            best_room = room[d]
    return best, cap


def _fits_per_node(
    scratch: ClusterState, rows: npt.NDArray[np.int64], req: GpuRequest, need: int
) -> npt.NDArray[np.int32]:
    """How many copies of `req` fit on each row, one after another (at most `need`); scratch restored.

    Whole GPUs without a required NVLink island are counted (`_fits_by_counting`); anything else is
    tried copy by copy with `placer.choose` (`_fits_by_trying`). The two agree where both apply
    (tests/core/test_gangplan.py)."""
    fits = np.zeros(scratch.n_rows, np.int32)
    reason, _ = placer.evaluate(scratch, req)
    ok = rows[reason[rows] == 0]
    fits[ok] = (
        _fits_by_counting(scratch, ok, req, need)
        if countable(req)
        else _fits_by_trying(scratch, ok, req, need)
    )
    return fits


def countable(req: GpuRequest) -> bool:
    """Copies of `req` on a node are a matter of counting: whole GPUs, no MIG, any GPUs will do."""
    return (
        req.mig_profile is None
        and not req.is_share
        and req.count >= 1
        and not (req.nvlink == NvlinkNeed.REQUIRED and req.count > 1)
    )


def _fits_by_counting(
    s: ClusterState, ok: npt.NDArray[np.int64], req: GpuRequest, need: int
) -> npt.NDArray[np.int64]:
    """For rows where one copy of a countable `req` fits: the whole free GPUs `placer.choose` may take
    (healthy, not MIG, enough memory: the feasibility kernel's `eligible`) // count, bounded by cpu and
    memory when the request counts them."""
    free = (
        s.gpu_present[ok]
        & s.gpu_healthy[ok]
        & ~s.gpu_mig[ok]
        & (s.gpu_mem[ok] >= req.min_memory_mib)
        & (s.gpu_free_milli[ok] >= WHOLE)
    ).sum(axis=1)
    k = np.minimum(free // req.count, need)
    if req.fit_cpu_memory and req.cpu_milli > 0:
        k = np.minimum(k, s.node_cpu_free[ok] // req.cpu_milli)
    if req.fit_cpu_memory and req.memory_mib > 0:
        k = np.minimum(k, s.node_mem_free[ok] // req.memory_mib)
    return np.asarray(k, np.int64)


def _fits_by_trying(
    scratch: ClusterState, ok: npt.NDArray[np.int64], req: GpuRequest, need: int
) -> npt.NDArray[np.int64]:
    out = np.zeros(len(ok), np.int64)
    for i, r in enumerate(ok.tolist()):
        node, taken = scratch.names[r], list[str]()
        while len(taken) < need:
            p = placer.choose(scratch, node, req)
            if p is None:
                break
            uid = f"\x00count/{len(taken)}"
            scratch.allocate(uid, p)
            taken.append(uid)
        for uid in taken:
            scratch.release(uid)
        out[i] = len(taken)
    return out


def _place(
    scratch: ClusterState, order: list[int], members: list[Member], need: int
) -> dict[str, Placement] | None:
    """First fit of the members (largest first) over rows in `order`; at least `need` of them, else None."""
    out: dict[str, Placement] = {}
    for m in sorted(members, key=lambda m: (-m.req.gpu_milli_total * max(1, m.req.count), m.uid)):
        for r in order:
            p = placer.choose(scratch, scratch.names[r], m.req)
            if p is not None:
                scratch.allocate(f"\x00plan/{m.uid}", p)
                out[m.uid] = p
                break
    for uid in out:
        scratch.release(f"\x00plan/{uid}")
    return out if len(out) >= need else None


def _fewest_domains_first(
    scratch: ClusterState,
    rows: npt.NDArray[np.int64],
    fits: npt.NDArray[np.int32],
    free: npt.NDArray[np.int64],
    level: Level,
) -> list[int]:
    """The rows of the chosen domain in fill order: inside it, the tighter domain that holds the most
    members first, at every tighter level (widest first), then the node that takes the most members,
    then the tightest node. A gang spread over a rack fills its biggest NVLink domain before the next,
    one spread over the cluster its biggest zone, then rack, then clique (Kueue TAS "preferred":
    minimise the domains used at each level). Nodes without a level's label are a domain of their own
    there, ordered by the tighter levels as equals (never by row)."""
    order: list[int] = [int(r) for r in rows]
    keys: dict[int, list[int]] = {r: [] for r in order}
    for lv in sorted((lv for lv in Level if lv < level), reverse=True):
        ids = domain_ids(scratch, lv)
        cap: dict[int, int] = {}
        for r in order:
            d = int(ids[r])
            cap[d if d >= 0 else -1 - r] = cap.get(d if d >= 0 else -1 - r, 0) + int(fits[r])
        for r in order:
            d = int(ids[r]) if ids[r] >= 0 else -1 - r
            keys[r] += [-cap[d], max(d, -1)]  # unlabelled: its own domain, but no order by row here
    order.sort(key=lambda r: (*keys[r], -int(fits[r]), int(free[r]), r))
    return order


def plan_gang(
    state: ClusterState,
    members: list[Member],
    *,
    need: int,
    rows: npt.NDArray[np.int64],
    max_level: Level = Level.CLUSTER,
    within: tuple[Level, int] | None = None,
    twin: bool = False,
) -> GangPlacement:
    """Place at least `need` of `members` (as many as fit, all when possible) on the candidate `rows`.

    `max_level` is the widest level allowed (a `required` topology); `within` confines the plan to one
    domain (a gang that already has members bound rolls forward inside their domain).
    """
    if not members or need <= 0:
        return GangPlacement({}, Level.CLIQUE, -1, 0, 0, 0)
    scratch = state.scratch()
    rows = np.asarray(rows, np.int64)
    ref = max(members, key=lambda m: (m.req.gpu_milli_total * max(1, m.req.count), m.uid)).req
    fits = _fits_per_node(scratch, rows, ref, len(members))
    free = scratch.gpu_free_milli[: scratch.n_rows].astype(np.int64).sum(axis=1)
    free = np.where(fits > 0, free, 0)
    per_member = ref.gpu_milli_total if ref.is_share else ref.count * 1000
    choose = best_domain_twin if twin else best_domain_kernel
    levels = [lv for lv in Level if lv <= max_level]
    if within is not None:
        levels = [within[0]]
    last = GangPlacement(None, levels[-1], -1, 0, need, need * per_member)
    for level in levels:
        dom = domain_ids(scratch, level)
        if within is not None:
            dom = np.where(dom == within[1], 0, -1).astype(np.int32)
        n_dom = int(dom.max()) + 1 if len(dom) else 0
        if n_dom <= 0:
            continue
        banned: set[int] = set()
        while True:
            d_fits = np.where(np.isin(dom, list(banned)), 0, fits).astype(np.int32) if banned else fits
            best, cap = choose(d_fits, free, dom, n_dom, need)
            best = int(best)
            if best < 0:
                top = int(cap.max()) if len(cap) else 0
                last = GangPlacement(None, level, -1, top, need, max(0, need - top) * per_member)
                break
            in_dom = _fewest_domains_first(
                scratch, np.nonzero((dom == best) & (fits > 0))[0], fits, free, level
            )
            placed = _place(scratch, in_dom, members, need)
            if placed is not None:
                real = best if within is None else within[1]
                return GangPlacement(placed, level, real, len(placed), need, 0)
            banned.add(best)  # mixed member sizes: the count overestimated this domain
    return last
